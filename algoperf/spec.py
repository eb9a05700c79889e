"""The public API that submissions and workloads are written against.

Names, enum values and signatures match the AlgoPerf reference implementation
(v0.6, JAX), so that existing submissions run unchanged: they do
``from algoperf import spec`` and use the classes and aliases defined here.
"""

from __future__ import annotations

import abc
import enum
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union


class LossType(enum.Enum):
  SOFTMAX_CROSS_ENTROPY = 0
  SIGMOID_CROSS_ENTROPY = 1
  MEAN_SQUARED_ERROR = 2
  CTC_LOSS = 3
  MEAN_ABSOLUTE_ERROR = 4


class ForwardPassMode(enum.Enum):
  TRAIN = 0
  EVAL = 1


class ParameterType(enum.Enum):
  WEIGHT = 0
  BIAS = 1
  CONV_WEIGHT = 2
  BATCH_NORM_SCALE = 3
  BATCH_NORM_BIAS = 4
  LAYER_NORM_SCALE = 5
  LAYER_NORM_BIAS = 6
  EMBEDDING = 7
  ATTENTION_Q = 8
  ATTENTION_K = 9
  ATTENTION_V = 10
  ATTENTION_OUT = 11
  ATTENTION_QKV = 12
  ATTENTION_KV = 13
  ATTENTION_BIAS = 14


class TrainingCompleteError(Exception):
  """Raised by ``update_params`` to end training early (one final eval follows)."""


Tensor = Any


class ShapeTuple:
  """A parameter shape that pytree utilities treat as a single leaf.

  Submissions build zero trees with
  ``jax.tree.map(lambda s: jnp.zeros(s.shape_tuple), workload.param_shapes)``.
  """

  def __init__(self, shape_tuple: Tuple[int, ...]):
    self.shape_tuple = tuple(shape_tuple)

  def __repr__(self) -> str:
    return f'ShapeTuple({self.shape_tuple})'

  def __eq__(self, other: object) -> bool:
    return isinstance(other, ShapeTuple) and self.shape_tuple == other.shape_tuple

  def __hash__(self) -> int:
    return hash(self.shape_tuple)


Shape = Union[Tuple[int, ...], ShapeTuple]
ParameterKey = str
ParameterShapeTree = Dict[ParameterKey, Any]
ParameterContainer = Dict[ParameterKey, Any]
ParameterTypeTree = Dict[ParameterKey, Any]
RandomState = Any
OptimizerState = Union[Dict[str, Any], Tuple[Any, Any], Any]
Hyperparameters = Any
Timing = int
Steps = int
ModelAuxiliaryState = Any
ModelInitState = Tuple[ParameterContainer, ModelAuxiliaryState]
UpdateReturn = Tuple[OptimizerState, ParameterContainer, ModelAuxiliaryState]

# Hook signatures (see docs/RULES.md, Submission hooks).
InitOptimizerFn = Callable[
    [
        'Workload',
        ParameterContainer,
        ModelAuxiliaryState,
        Hyperparameters,
        RandomState,
    ],
    OptimizerState,
]
UpdateParamsFn = Callable[..., UpdateReturn]
PrepareForEvalFn = Callable[..., UpdateReturn]
DataSelectionFn = Callable[
    [
        'Workload',
        Iterator[Dict[str, Any]],
        OptimizerState,
        ParameterContainer,
        ModelAuxiliaryState,
        Hyperparameters,
        int,
        RandomState,
    ],
    Dict[str, Tensor],
]
GetBatchSizeFn = Callable[[str], int]


class Workload(metaclass=abc.ABCMeta):
  """A fixed training problem: data, model, loss, metric, target and budget.

  Instances are hashed by identity: submissions pass the workload as a static
  argument to ``jax.jit``, so one trial must use one instance throughout.
  """

  def __init__(self, *args: Any, **kwargs: Any) -> None:
    del args, kwargs
    self._param_shapes: Optional[ParameterShapeTree] = None
    self._param_types: Optional[ParameterTypeTree] = None
    self._eval_iters: Dict[str, Iterator] = {}
    self.metrics_logger = None

  # --- facts -------------------------------------------------------------

  @property
  @abc.abstractmethod
  def target_metric_name(self) -> str:
    """Name of the metric the targets refer to, without the split prefix."""

  @property
  @abc.abstractmethod
  def validation_target_value(self) -> float:
    """The validation target."""

  @property
  @abc.abstractmethod
  def test_target_value(self) -> float:
    """The test target."""

  @property
  @abc.abstractmethod
  def loss_type(self) -> LossType:
    """The type of loss function."""

  @property
  @abc.abstractmethod
  def num_train_examples(self) -> int:
    """Size of the training split."""

  @property
  @abc.abstractmethod
  def num_eval_train_examples(self) -> int:
    """How many training examples the ``train/`` metrics are computed on."""

  @property
  @abc.abstractmethod
  def num_validation_examples(self) -> int:
    """Size of the validation split."""

  @property
  @abc.abstractmethod
  def num_test_examples(self) -> int:
    """Size of the test split."""

  @property
  @abc.abstractmethod
  def eval_batch_size(self) -> int:
    """Global batch size used for evaluation."""

  @property
  @abc.abstractmethod
  def train_mean(self) -> Any:
    """Mean of the training inputs."""

  @property
  @abc.abstractmethod
  def train_stddev(self) -> Any:
    """Standard deviation of the training inputs."""

  @property
  @abc.abstractmethod
  def max_allowed_runtime_sec(self) -> float:
    """The time budget (external tuning), in seconds of submission time."""

  @property
  @abc.abstractmethod
  def eval_period_time_sec(self) -> float:
    """Wall time between the end of one eval and the next eval."""

  @property
  @abc.abstractmethod
  def step_hint(self) -> int:
    """About how many steps the baseline takes within the budget."""

  @property
  def param_shapes(self) -> ParameterShapeTree:
    """A tree of ``ShapeTuple`` with the structure of the params."""
    if self._param_shapes is None:
      raise ValueError(
          'workload.param_shapes is set by workload.init_model_fn(); call it '
          'first.'
      )
    return self._param_shapes

  @property
  def model_params_types(self) -> ParameterTypeTree:
    """A tree of ``ParameterType`` with the structure of the params."""
    if self._param_types is None:
      raise ValueError(
          'workload.model_params_types is set by workload.init_model_fn(); '
          'call it first.'
      )
    return self._param_types

  def attach_metrics_logger(self, metrics_logger: Any) -> None:
    """Lets the submission log scalars through ``workload.metrics_logger``."""
    self.metrics_logger = metrics_logger

  # --- target checks -----------------------------------------------------

  @abc.abstractmethod
  def has_reached_validation_target(self, eval_result: Dict[str, float]) -> bool:
    """Whether ``eval_result`` meets the validation target."""

  @abc.abstractmethod
  def has_reached_test_target(self, eval_result: Dict[str, float]) -> bool:
    """Whether ``eval_result`` meets the test target."""

  # --- model -------------------------------------------------------------

  @abc.abstractmethod
  def is_output_params(self, param_key: ParameterKey) -> bool:
    """Whether ``param_key`` names the output layer's parameters."""

  @abc.abstractmethod
  def init_model_fn(self, rng: RandomState) -> ModelInitState:
    """Return ``(initial_params, initial_model_state)``."""

  @abc.abstractmethod
  def model_fn(
      self,
      params: ParameterContainer,
      augmented_and_preprocessed_input_batch: Dict[str, Tensor],
      model_state: ModelAuxiliaryState,
      mode: ForwardPassMode,
      rng: RandomState,
      update_batch_norm: bool,
      dropout_rate: Optional[float] = None,
      use_running_average_bn: Optional[bool] = None,
  ) -> Tuple[Tensor, ModelAuxiliaryState]:
    """Return ``(logits_batch, new_model_state)``."""

  def output_activation_fn(self, logits_batch: Tensor, framework: str) -> Tensor:
    """Turn logits into probabilities according to ``loss_type``."""
    if framework != 'jax':
      raise ValueError(f'Only framework="jax" is supported, got {framework!r}.')
    import jax  # pylint: disable=import-outside-toplevel

    activations = {
        LossType.SOFTMAX_CROSS_ENTROPY: jax.nn.softmax,
        LossType.SIGMOID_CROSS_ENTROPY: jax.nn.sigmoid,
        LossType.CTC_LOSS: jax.nn.softmax,
        LossType.MEAN_SQUARED_ERROR: lambda z: z,
        LossType.MEAN_ABSOLUTE_ERROR: lambda z: z,
    }
    return activations[self.loss_type](logits_batch)

  @abc.abstractmethod
  def loss_fn(
      self,
      label_batch: Union[Tuple[Tensor, Tensor], Tensor],
      logits_batch: Union[Tuple[Tensor, Tensor], Tensor],
      mask_batch: Optional[Tensor] = None,
      label_smoothing: float = 0.0,
  ) -> Dict[str, Tensor]:
    """Return ``{'summed', 'n_valid_examples', 'per_example'}`` (no regularisation)."""

  # --- data and evaluation (the harness's side; submissions must not call) --

  @abc.abstractmethod
  def _build_input_queue(
      self,
      data_rng: RandomState,
      split: str,
      data_dir: str,
      global_batch_size: int,
      cache: Optional[bool] = None,
      repeat_final_dataset: Optional[bool] = None,
      num_batches: Optional[int] = None,
      start_position: int = 0,
  ) -> Iterator[Dict[str, Any]]:
    """An iterator of global batches for ``split``.

    ``start_position`` (train only) is the index of the first batch: a
    resumed trial passes its checkpoint's input position and gets exactly
    the batches a trial from step 0 would have seen from there on, without
    the batches before it being built. A workload whose signature lacks it
    is resumed by discarding that many batches (a replay).
    """

  @abc.abstractmethod
  def _eval_model_on_split(
      self,
      split: str,
      num_examples: int,
      global_batch_size: int,
      params: ParameterContainer,
      model_state: ModelAuxiliaryState,
      rng: RandomState,
      data_dir: str,
      global_step: int = 0,
  ) -> Dict[str, float]:
    """Exact metrics over the first ``num_examples`` examples of ``split``."""

  def eval_model(
      self,
      global_batch_size: int,
      params: ParameterContainer,
      model_state: ModelAuxiliaryState,
      rng: RandomState,
      data_dir: str,
      imagenet_v2_data_dir: Optional[str],
      global_step: int,
  ) -> Dict[str, float]:
    """Evaluate on eval-train, validation and (if present) test splits.

    As the reference, the test split reads from ``imagenet_v2_data_dir`` when
    it is given (ImageNet's test set is ImageNet-v2, prepared apart), else
    from ``data_dir``.
    """
    results: Dict[str, float] = {}
    splits = [('train', 'eval_train', self.num_eval_train_examples),
              ('validation', 'validation', self.num_validation_examples)]
    if self.num_test_examples:
      splits.append(('test', 'test', self.num_test_examples))
    for prefix, split, num_examples in splits:
      metrics = self._eval_model_on_split(
          split=split,
          num_examples=num_examples,
          global_batch_size=global_batch_size,
          params=params,
          model_state=model_state,
          rng=rng,
          data_dir=(imagenet_v2_data_dir or data_dir) if split == 'test' else data_dir,
          global_step=global_step,
      )
      results.update({f'{prefix}/{k}': v for k, v in metrics.items()})
      if prefix != 'train':
        results[f'{prefix}/num_examples'] = num_examples
    return results


__all__ = [
    'DataSelectionFn', 'ForwardPassMode', 'GetBatchSizeFn', 'Hyperparameters',
    'InitOptimizerFn', 'LossType', 'ModelAuxiliaryState', 'ModelInitState',
    'OptimizerState', 'ParameterContainer', 'ParameterKey', 'ParameterShapeTree',
    'ParameterType', 'ParameterTypeTree', 'PrepareForEvalFn', 'RandomState',
    'Shape', 'ShapeTuple', 'Steps', 'Tensor', 'Timing', 'TrainingCompleteError',
    'UpdateParamsFn', 'UpdateReturn', 'Workload',
]
