"""The ogbg eval metrics: mean average precision over tasks, loss and accuracy.

As the reference computes them: ``loss`` and ``accuracy`` are means over the
measured labels (weight 1) of the per-label binary cross-entropy and of
``(logit > 0) == label``; ``mean_average_precision`` is scikit-learn's
average precision of each task over its measured labels, averaged over the
tasks that have at least one label 1 and one label 0, NaN if none has.

The reference decides which tasks count on every row it collected, labels
of unmeasured entries and of padding graphs included (the pipeline sets
them to 0), and so does :func:`mean_average_precision`: the eval step keeps
every graph slot of every batch, padding too, for it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.metrics import average_precision_score

from algoperf import jax_sharding_utils
from algoperf import spec
from workloads import metrics


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-x))


def mean_average_precision(logits: np.ndarray, labels: np.ndarray,
                           mask: np.ndarray) -> float:
  """mAP of ``(graphs, tasks)`` logits against 0/1 labels where ``mask`` is set.

  A task counts if ``labels`` (every row, masked or not) holds a 1 and a 0;
  its AP is over the rows where ``mask`` is set.
  """
  logits = np.asarray(logits, np.float32)
  labels = np.asarray(labels)
  mask = np.asarray(mask).astype(bool)
  with np.errstate(over='ignore'):  # exp overflows to inf: probability 0.
    probs = _sigmoid(logits)
  precisions = []
  for task in range(labels.shape[1]):
    column = labels[:, task]
    if not (np.any(column == 0) and np.any(column == 1)):
      continue
    measured = mask[:, task]
    precisions.append(average_precision_score(column[measured], probs[measured, task]))
  if not precisions:
    return float('nan')
  return float(np.mean(precisions))


def eval_arrays(workload: spec.Workload, params: spec.ParameterContainer,
                model_state: spec.ModelAuxiliaryState,
                batch: Dict[str, jax.Array]) -> Dict[str, Any]:
  """The jitted part of an eval step: loss and accuracy states, and the rows mAP needs."""
  logits, _ = workload.model_fn(
      params, batch, model_state, spec.ForwardPassMode.EVAL, rng=None,
      update_batch_norm=False)
  labels, weights = batch['targets'], batch['weights']
  losses = workload.loss_fn(labels, logits, weights)
  correct = ((logits > 0) == labels).astype(jnp.float32)
  return {
      'accuracy': metrics.Average.from_values(correct, weights),
      'loss': metrics.Average.from_sum(losses['summed'], jnp.sum(weights)),
      'logits': logits,
      'labels': labels,
      'mask': weights,
      # Every graph slot is kept, padding too (see the module docstring).
      'rows': jnp.ones(labels.shape[:1], jnp.float32),
  }


def jit_eval_step(workload: spec.Workload) -> Callable[..., Dict[str, Any]]:
  """An ``evaluation.evaluate`` step: metric states of one padded batch.

  The averages come back replicated; logits, labels and mask stay split
  along the batch axis, so that each process moves only its own rows to the
  host (``metrics.Collected``) and the gather at ``compute()`` holds every
  row once.
  """
  replicated = jax_sharding_utils.get_replicate_sharding()
  split = jax_sharding_utils.get_batch_dim_sharding()
  jitted = jax.jit(
      functools.partial(eval_arrays, workload),
      out_shardings={'accuracy': replicated, 'loss': replicated, 'logits': split,
                     'labels': split, 'mask': split, 'rows': split})

  def step(params, model_state, batch) -> Dict[str, Any]:
    out = jitted(params, model_state, batch)
    collected = metrics.Collected(mean_average_precision).add(
        out['rows'], logits=out['logits'], labels=out['labels'], mask=out['mask'])
    return {'accuracy': out['accuracy'], 'loss': out['loss'],
            'mean_average_precision': collected}

  return step
