"""Pieces that reference submissions share; any submission may import them.

Everything here uses only the public API (``spec`` and ``jax_sharding_utils``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from algoperf import jax_sharding_utils, spec

_GRAD_CLIP_EPS = 1e-6

# Global batch sizes of the reference baselines and of the small CPU workloads
# (docs/RULES.md, Submission hooks).
BASELINE_BATCH_SIZES: Dict[str, int] = {
    'criteo1tb': 262_144,
    'fastmri': 32,
    'imagenet_resnet': 1024,
    'imagenet_vit': 1024,
    'librispeech_conformer': 256,
    'librispeech_deepspeech': 256,
    'ogbg': 512,
    'wmt': 128,
    'fashion_mnist': 128,
    'mnist1d': 128,
}


def baseline_batch_size(workload_name: str) -> int:
  """The baselines' global batch size; ``ValueError`` for an unknown workload."""
  try:
    return BASELINE_BATCH_SIZES[workload_name]
  except KeyError:
    raise ValueError(f'Unsupported workload name: {workload_name}.') from None


def warmup_cosine_schedule(peak_lr: float, step_hint: int,
                           warmup_factor: float) -> optax.Schedule:
  """Linear warmup for ``warmup_factor * step_hint`` steps, then cosine to 0 at ``step_hint``."""
  warmup_steps = int(warmup_factor * step_hint)
  warmup = optax.linear_schedule(0.0, peak_lr, transition_steps=warmup_steps)
  cosine = optax.cosine_decay_schedule(
      peak_lr, decay_steps=max(step_hint - warmup_steps, 1))
  return optax.join_schedules([warmup, cosine], boundaries=[warmup_steps])


def schedule_steps(workload: spec.Workload,
                   hyperparameters: Optional[spec.Hyperparameters]) -> int:
  """The learning-rate schedule's length: ``step_hint_factor * workload.step_hint``.

  ``step_hint_factor`` is an optional hyperparameter (default 1). Methods that
  converge more slowly per step (SGD, LAMB) can stretch their schedule over
  more of the budget than the step hint, which the rules allow: the hint is
  only the number of steps the baseline needed.
  """
  factor = getattr(hyperparameters, 'step_hint_factor', 1.0)
  if factor is None:
    factor = 1.0
  if factor <= 0:
    raise ValueError(f'step_hint_factor must be positive, got {factor}.')
  return max(int(factor * workload.step_hint), 1)


def warmup_constant_schedule(peak_lr: float, step_hint: int,
                             warmup_factor: float) -> optax.Schedule:
  """Linear warmup from 0 for ``warmup_factor * step_hint`` steps, then constant ``peak_lr``.

  For methods that need no decay (Schedule-Free); ``warmup_factor`` 0 gives a
  constant schedule.
  """
  warmup_steps = int(warmup_factor * step_hint)
  if warmup_steps <= 0:
    # optax's linear schedule with 0 transition steps stays at its initial value.
    return optax.constant_schedule(peak_lr)
  return optax.linear_schedule(0.0, peak_lr, transition_steps=warmup_steps)


def zeros_like_params(workload: spec.Workload) -> Any:
  """A zero tree with the workload's parameter shapes."""
  return jax.tree.map(lambda s: jnp.zeros(s.shape_tuple), workload.param_shapes)


def clip_by_global_norm(grad: Any, grad_clip: Optional[float]) -> Tuple[Any, jax.Array]:
  """Scales ``grad`` so its global norm is at most ``grad_clip``; returns (grad, norm)."""
  norm = optax.tree.norm(grad)
  if grad_clip is not None:
    scale = jnp.clip(grad_clip / (norm + _GRAD_CLIP_EPS), 0.0, 1.0)
    grad = jax.tree.map(lambda g: g * scale, grad)
  return grad, norm


def mean_loss_and_grad(workload: spec.Workload, params: Any, model_state: Any,
                       batch: Dict[str, Any], rng: Any, label_smoothing: Any,
                       dropout_rate: Any) -> Tuple[jax.Array, Any, Any]:
  """Mean training loss over the valid examples, its gradient and the new model state."""

  def loss_of(p):
    logits, new_state = workload.model_fn(
        p, batch, model_state, spec.ForwardPassMode.TRAIN, rng,
        update_batch_norm=True, dropout_rate=dropout_rate)
    losses = workload.loss_fn(
        label_batch=batch['targets'], logits_batch=logits,
        mask_batch=batch.get('weights'), label_smoothing=label_smoothing)
    return losses['summed'] / losses['n_valid_examples'], new_state

  (loss, new_state), grad = jax.value_and_grad(loss_of, has_aux=True)(params)
  return loss, grad, new_state


def _train_step(workload, opt_update_fn, model_state, optimizer_state, params,
                batch, rng, grad_clip, label_smoothing, dropout_rate):
  loss, grad, new_model_state = mean_loss_and_grad(
      workload, params, model_state, batch, rng, label_smoothing, dropout_rate)
  grad, grad_norm = clip_by_global_norm(grad, grad_clip)
  updates, new_optimizer_state = opt_update_fn(grad, optimizer_state, params)
  new_params = optax.apply_updates(params, updates)
  return new_optimizer_state, new_params, new_model_state, loss, grad_norm


@functools.lru_cache(maxsize=None)
def _jitted_train_step(has_grad_clip: bool) -> Callable:
  del has_grad_clip  # Part of the cache key only: None vs float changes the trace.
  replicated = jax_sharding_utils.get_replicate_sharding()
  sharded = jax_sharding_utils.get_batch_dim_sharding()
  return jax.jit(
      _train_step,
      static_argnums=(0, 1),
      # Params, optimizer and model state are replaced by the outputs.
      donate_argnums=(2, 3, 4),
      in_shardings=(replicated, replicated, replicated, sharded, replicated,
                    replicated, replicated, replicated),
      out_shardings=(replicated,) * 5,
  )


def train_step(workload: spec.Workload, opt_update_fn: Callable,
               model_state: Any, optimizer_state: Any, params: Any,
               batch: Dict[str, Any], rng: Any, *, grad_clip: Optional[float],
               label_smoothing: float, dropout_rate: Optional[float]):
  """One data-parallel optimizer step, compiled once per (workload, optimizer).

  Returns ``(optimizer_state, params, model_state, loss, grad_norm)``. The
  inputs' buffers are donated: use only the returned arrays afterwards.
  """
  step = _jitted_train_step(grad_clip is not None)
  return step(workload, opt_update_fn, model_state, optimizer_state, params,
              batch, rng, grad_clip, label_smoothing, dropout_rate)


def optax_update(workload: spec.Workload, params: Any, model_state: Any,
                 hyperparameters: Any, batch: Dict[str, Any],
                 optimizer_state: Tuple[Any, Callable], global_step: int,
                 rng: Any) -> Tuple[Any, Any, Any]:
  """The whole ``update_params`` of a submission whose state is ``(optax_state, update_fn)``.

  One ``train_step`` with the optional ``grad_clip``, ``label_smoothing`` and
  ``dropout_rate`` hyperparameters, logging every 100 steps; returns
  ``((optax_state, update_fn), params, model_state)``.
  """
  opt_state, opt_update_fn = optimizer_state
  opt_state, params, model_state, loss, grad_norm = train_step(
      workload, opt_update_fn, model_state, opt_state, params, batch, rng,
      grad_clip=getattr(hyperparameters, 'grad_clip', None),
      label_smoothing=getattr(hyperparameters, 'label_smoothing', 0.0),
      dropout_rate=getattr(hyperparameters, 'dropout_rate', None))
  log_train_metrics(workload, global_step, loss, grad_norm)
  return (opt_state, opt_update_fn), params, model_state


def log_train_metrics(workload: spec.Workload, global_step: int, loss: jax.Array,
                      grad_norm: jax.Array, every: int = 100) -> None:
  """Logs loss and gradient norm every ``every`` steps (a device sync, so not every step)."""
  if global_step % every == 0 and workload.metrics_logger is not None:
    workload.metrics_logger.append_scalar_metrics(
        {'loss': float(loss), 'grad_norm': float(grad_norm)}, global_step)


def next_batch(input_queue) -> Dict[str, Any]:
  """The default ``data_selection``: the next batch of the pre-shuffled queue."""
  return next(input_queue)
