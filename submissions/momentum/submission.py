"""SGD with heavy-ball momentum, linear warmup and cosine decay (external tuning).

Polyak (1964) heavy-ball momentum as optax.sgd(momentum=beta1): m <- beta1 m + g,
w <- w - lr m, with L2 weight decay (weight_decay * w) added to the gradient.
Hyperparameters (from the search space): learning_rate, one_minus_beta1,
weight_decay, warmup_factor, and optionally label_smoothing, dropout_rate,
grad_clip.
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
  schedule = su.warmup_cosine_schedule(
      hyperparameters.learning_rate,
      su.schedule_steps(workload, hyperparameters),
      hyperparameters.warmup_factor)
  # L2 weight decay added to the gradient before the momentum update, as in
  # the AlgoPerf archived momentum/Nesterov baselines.
  optimizer = optax.chain(
      optax.add_decayed_weights(hyperparameters.weight_decay),
      optax.sgd(
          learning_rate=schedule,
          momentum=1.0 - hyperparameters.one_minus_beta1,
          nesterov=False))
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
