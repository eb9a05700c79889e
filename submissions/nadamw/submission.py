"""NAdamW with linear warmup and cosine decay: the AlgoPerf baseline (external tuning).

Hyperparameters (from the search space): learning_rate, one_minus_beta1, beta2,
weight_decay, warmup_factor, and optionally label_smoothing, dropout_rate,
grad_clip.
"""

from typing import Any, Dict, Iterator, List, Optional, Tuple

from algoperf import spec
from algoperf import submission_utils as su
from algoperf.optimizers import nadamw


def get_batch_size(workload_name: str) -> int:
  return su.baseline_batch_size(workload_name)


def init_optimizer_state(workload: spec.Workload,
                         model_params: spec.ParameterContainer,
                         model_state: spec.ModelAuxiliaryState,
                         hyperparameters: spec.Hyperparameters,
                         rng: spec.RandomState) -> spec.OptimizerState:
  del model_params, model_state, rng
  schedule = su.warmup_cosine_schedule(
      hyperparameters.learning_rate,
      su.schedule_steps(workload, hyperparameters),
      hyperparameters.warmup_factor)
  optimizer = nadamw(
      learning_rate=schedule,
      b1=1.0 - hyperparameters.one_minus_beta1,
      b2=hyperparameters.beta2,
      eps=1e-8,
      weight_decay=hyperparameters.weight_decay)
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
  return su.optax_update(workload, current_param_container, model_state,
                         hyperparameters, batch, optimizer_state, global_step,
                         rng)


def prepare_for_eval(workload: spec.Workload,
                     current_param_container: spec.ParameterContainer,
                     current_params_types: spec.ParameterTypeTree,
                     model_state: spec.ModelAuxiliaryState,
                     hyperparameters: spec.Hyperparameters,
                     loss_type: spec.LossType,
                     optimizer_state: spec.OptimizerState,
                     eval_results: List[Tuple[int, float]],
                     global_step: int,
                     rng: spec.RandomState) -> spec.UpdateReturn:
  del workload, current_params_types, hyperparameters, loss_type
  del eval_results, global_step, rng
  return optimizer_state, current_param_container, model_state


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
