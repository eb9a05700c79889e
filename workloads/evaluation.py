"""The eval loop every workload shares: a jitted step of metric states, merged.

A workload's eval step maps ``(params, model_state, batch)`` to metric states
(``workloads/metrics.py``); ``evaluate`` runs it over a split's padded global
batches and finishes the merged states on the host. Classification workloads
share ``classification_states`` (accuracy and mean loss) as their step.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable

import jax
import jax.numpy as jnp

from algoperf import jax_sharding_utils
from algoperf import spec
from workloads import metrics


def classification_states(workload: spec.Workload, params: spec.ParameterContainer,
                          model_state: spec.ModelAuxiliaryState,
                          batch: Dict[str, jax.Array]) -> Dict[str, Any]:
  """Accuracy and loss states of one padded batch (weights mask the padding)."""
  logits, _ = workload.model_fn(
      params, batch, model_state, spec.ForwardPassMode.EVAL, rng=None,
      update_batch_norm=False)
  weights = batch['weights']
  losses = workload.loss_fn(batch['targets'], logits, weights)
  return {
      'accuracy': metrics.Accuracy.from_logits(logits, batch['targets'], weights),
      'loss': metrics.Average.from_sum(losses['summed'], jnp.sum(weights)),
  }


def jit_eval_step(
    workload: spec.Workload,
    states: Callable[..., Dict[str, Any]] = classification_states,
) -> Callable[..., Dict[str, Any]]:
  """``states(workload, params, model_state, batch)`` as one jitted eval step.

  Outputs are replicated; every split's padded batch has one shape, so the
  step compiles once per workload instance.
  """

  def _eval_step(params, model_state, batch):
    return states(workload, params, model_state, batch)

  return jax.jit(_eval_step, out_shardings=jax_sharding_utils.get_replicate_sharding())


def evaluate(step: Callable[..., Dict[str, Any]], params: spec.ParameterContainer,
             model_state: spec.ModelAuxiliaryState,
             batches: Iterable[Dict[str, jax.Array]]) -> Dict[str, float]:
  """The metrics of ``batches``: states merged on the device, computed on the host."""
  # Merging on the device keeps dispatch asynchronous until compute().
  states = metrics.merge_all(step(params, model_state, batch) for batch in batches)
  return metrics.compute_all(states)
