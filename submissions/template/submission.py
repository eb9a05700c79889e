"""Template for a new submission: copy this folder and fill in the hooks.

The runner calls these hooks (see docs/RULES.md, Submission hooks, for the
exact rules):
- ``get_batch_size(workload_name)`` once per workload; raise ValueError for a
  workload you do not support.
- ``init_optimizer_state(...)`` once per trial, before the clock starts.
- ``data_selection(...)`` then ``update_params(...)`` every step, on the clock.
- ``prepare_for_eval(...)`` (optional) before each eval, on the clock.
Use only ``algoperf.spec``, ``algoperf.jax_sharding_utils`` and (optionally)
``algoperf.submission_utils``; never call ``workload._build_input_queue`` or
the eval functions. This template is plain SGD with a constant learning rate:
a working starting point, not a strong baseline.
"""

from typing import Any, Dict, Iterator, List, Optional, Tuple

import optax

from algoperf import spec
from algoperf import submission_utils as su


def get_batch_size(workload_name: str) -> int:
  return su.baseline_batch_size(workload_name)


def init_optimizer_state(workload: spec.Workload,
                         model_params: spec.ParameterContainer,
                         model_state: spec.ModelAuxiliaryState,
                         hyperparameters: spec.Hyperparameters,
                         rng: spec.RandomState) -> spec.OptimizerState:
  del model_params, model_state, rng
  optimizer = optax.sgd(hyperparameters.learning_rate)
  return optimizer.init(su.zeros_like_params(workload)), optimizer.update


def update_params(workload: spec.Workload,
                  current_param_container: spec.ParameterContainer,
                  current_params_types: spec.ParameterTypeTree,
                  model_state: spec.ModelAuxiliaryState,
                  hyperparameters: spec.Hyperparameters,
                  batch: Dict[str, spec.Tensor],
                  loss_type: spec.LossType,
                  optimizer_state: spec.OptimizerState,
                  eval_results: List[Tuple[int, float]],
                  global_step: int,
                  rng: spec.RandomState,
                  train_state: Optional[Dict[str, Any]] = None
                  ) -> spec.UpdateReturn:
  del current_params_types, loss_type, eval_results, train_state
  opt_state, opt_update_fn = optimizer_state
  opt_state, params, model_state, loss, grad_norm = su.train_step(
      workload, opt_update_fn, model_state, opt_state,
      current_param_container, batch, rng, grad_clip=None,
      label_smoothing=0.0, dropout_rate=None)
  su.log_train_metrics(workload, global_step, loss, grad_norm)
  return (opt_state, opt_update_fn), params, model_state


def data_selection(workload: spec.Workload,
                   input_queue: Iterator[Dict[str, spec.Tensor]],
                   optimizer_state: spec.OptimizerState,
                   current_param_container: spec.ParameterContainer,
                   model_state: spec.ModelAuxiliaryState,
                   hyperparameters: spec.Hyperparameters,
                   global_step: int,
                   rng: spec.RandomState) -> Dict[str, spec.Tensor]:
  del workload, optimizer_state, current_param_container, model_state
  del hyperparameters, global_step, rng
  return su.next_batch(input_queue)
