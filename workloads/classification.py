"""A reusable base class for small in-memory classification workloads.

The whole dataset lives in host memory as numpy arrays; its batches come from
``workloads/in_memory.py`` and evaluation from ``workloads/evaluation.py``
(fixed-shape padded batches with weight 0 on the padding, one jitted eval step
per workload instance). This module holds the facts, model, loss and dropout.

Subclasses provide the model (a flax linen module taking ``(x, train,
dropout_rate)``), the example counts, the input normalisation constants and a
loader for the real data; this class provides everything the benchmark needs.
"""

from __future__ import annotations

import abc
from typing import Any, Dict, Iterator, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from algoperf import jax_sharding_utils
from algoperf import spec
from workloads import evaluation
from workloads.in_memory import padded_batches, shuffled_batches
from workloads.batching import local_positions, placed, seed_words
from workloads.facts import VersionFacts

# (inputs float32, integer labels) for one split.
SplitArrays = Tuple[np.ndarray, np.ndarray]

EVAL_SPLITS = ('eval_train', 'validation', 'test')


def dropout(x: jax.Array, rate: Any, rng: Optional[jax.Array]) -> jax.Array:
  """Inverted dropout whose ``rate`` may be a tracer.

  flax's ``nn.Dropout`` branches on ``rate == 0.0`` in Python, which fails when
  a submission passes ``dropout_rate`` as a traced jit argument. Here the rate
  only enters arithmetic. ``rate >= 1`` drops everything (no division by 0).
  """
  if isinstance(rate, (int, float)) and rate == 0:
    return x  # A Python zero: skip drawing random numbers at all.
  if rng is None:
    raise ValueError('dropout with a non-zero rate needs an rng.')
  keep = 1.0 - jnp.asarray(rate, dtype=jnp.float32)
  keep = jnp.clip(keep, 0.0, 1.0)
  mask = jax.random.bernoulli(rng, keep, x.shape)
  # jnp.where keeps 1/keep finite when keep == 0 (then the mask is all False).
  scale = jnp.where(keep > 0, 1.0 / jnp.where(keep > 0, keep, 1.0), 0.0)
  return jnp.where(mask, x * scale.astype(x.dtype), jnp.zeros_like(x))


class Dropout(nn.Module):
  """A linen wrapper of :func:`dropout`, drawing from the ``dropout`` rng stream."""

  @nn.compact
  def __call__(self, x: jax.Array, rate: Any, train: bool) -> jax.Array:
    if not train or (isinstance(rate, (int, float)) and rate == 0):
      return x
    return dropout(x, rate, self.make_rng('dropout'))


def _path_names(path: Tuple[Any, ...]) -> Tuple[str, ...]:
  return tuple(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path)


def param_type_for(path: Tuple[str, ...], leaf: Any) -> spec.ParameterType:
  """Infers a ``ParameterType`` from a flax parameter path and its array.

  Works on flax's default module names (``Conv_0``, ``Dense_1``,
  ``BatchNorm_0``, ``LayerNorm_0``, ``Embed_0``) and on names that contain
  those words in lower case (``batch_norm``, ``layer_norm``, ``embed``).
  """
  name = path[-1]
  module = '/'.join(path[:-1]).lower()
  if 'batchnorm' in module or 'batch_norm' in module:
    if name == 'scale':
      return spec.ParameterType.BATCH_NORM_SCALE
    if name == 'bias':
      return spec.ParameterType.BATCH_NORM_BIAS
  if 'layernorm' in module or 'layer_norm' in module:
    if name == 'scale':
      return spec.ParameterType.LAYER_NORM_SCALE
    if name == 'bias':
      return spec.ParameterType.LAYER_NORM_BIAS
  if name == 'embedding':
    return spec.ParameterType.EMBEDDING
  if name == 'bias':
    return spec.ParameterType.BIAS
  if name == 'kernel':
    return (spec.ParameterType.CONV_WEIGHT
            if len(np.shape(leaf)) > 2 else spec.ParameterType.WEIGHT)
  if name == 'scale':  # Any other normalisation scale.
    return spec.ParameterType.LAYER_NORM_SCALE
  return spec.ParameterType.WEIGHT


def param_types_from_params(params: Any) -> Any:
  """A tree of ``ParameterType`` with the structure of ``params``."""
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: param_type_for(_path_names(path), leaf), params)


class ClassificationWorkload(VersionFacts, spec.Workload):
  """Softmax classification on a dataset held in host memory.

  Subclasses set the class attributes below and implement ``_make_model`` and
  ``_load_real_splits``.
  """

  # --- what a subclass sets -------------------------------------------------
  workload_name: str = ''
  num_classes: int = 10
  input_shape: Tuple[int, ...] = ()
  # Example counts of the real data; the loader's arrays must match them.
  real_num_train_examples: int = 0
  real_num_validation_examples: int = 0
  real_num_test_examples: int = 0
  # How many training examples ``train/`` metrics use.
  real_num_eval_train_examples: int = 0
  # Smaller synthetic counts keep ``synthetic=True`` quick everywhere.
  synthetic_num_train_examples: int = 4096
  synthetic_num_validation_examples: int = 1000
  synthetic_num_test_examples: int = 1000
  synthetic_num_eval_train_examples: int = 1000
  # Normalisation constants of the real training split (see data.py).
  input_mean: float = 0.0
  input_stddev: float = 1.0
  default_dropout_rate: float = 0.0
  output_layer_name: str = 'output'
  default_eval_batch_size: int = 1024

  def __init__(self,
               benchmark: Optional[str] = None,
               data_dir: Optional[str] = None,
               synthetic: bool = False) -> None:
    super().__init__()
    self._load_facts(benchmark)
    self._data_dir = data_dir
    self._synthetic = bool(synthetic)
    self._model = self._make_model()
    # Filled on first use: data is loaded lazily so construction is cheap.
    self._splits: Optional[Dict[str, SplitArrays]] = None
    self._jitted_eval_step = None

  # --- subclass hooks -------------------------------------------------------

  @abc.abstractmethod
  def _make_model(self) -> nn.Module:
    """The flax module; called as ``module(x, train=..., dropout_rate=...)``."""

  @abc.abstractmethod
  def _load_real_splits(self, data_dir: Optional[str]) -> Dict[str, SplitArrays]:
    """Normalised real data: ``{'train'|'validation'|'test': (inputs, labels)}``."""

  # --- facts ----------------------------------------------------------------

  @property
  def synthetic(self) -> bool:
    return self._synthetic

  @property
  def loss_type(self) -> spec.LossType:
    return spec.LossType.SOFTMAX_CROSS_ENTROPY

  @property
  def num_train_examples(self) -> int:
    return (self.synthetic_num_train_examples
            if self._synthetic else self.real_num_train_examples)

  @property
  def num_eval_train_examples(self) -> int:
    return (self.synthetic_num_eval_train_examples
            if self._synthetic else self.real_num_eval_train_examples)

  @property
  def num_validation_examples(self) -> int:
    return (self.synthetic_num_validation_examples
            if self._synthetic else self.real_num_validation_examples)

  @property
  def num_test_examples(self) -> int:
    return (self.synthetic_num_test_examples
            if self._synthetic else self.real_num_test_examples)

  @property
  def eval_batch_size(self) -> int:
    return self.default_eval_batch_size

  @property
  def train_mean(self) -> float:
    return self.input_mean

  @property
  def train_stddev(self) -> float:
    return self.input_stddev

  # --- model ----------------------------------------------------------------

  def is_output_params(self, param_key: spec.ParameterKey) -> bool:
    return param_key == self.output_layer_name

  def init_model_fn(self, rng: spec.RandomState) -> spec.ModelInitState:
    """Initial ``(params, model_state)``; also sets param shapes and types."""
    params_rng, dropout_rng = jax.random.split(rng)
    dummy = jnp.zeros((1, *self.input_shape), jnp.float32)
    variables = self._model.init(
        {'params': params_rng, 'dropout': dropout_rng}, dummy, train=False)
    variables = _to_dict(variables)
    params = variables.pop('params')
    model_state = variables  # Empty, or e.g. batch statistics.
    self._param_shapes = jax.tree.map(lambda x: spec.ShapeTuple(x.shape), params)
    self._param_types = param_types_from_params(params)
    return (jax_sharding_utils.replicate(params),
            jax_sharding_utils.replicate(model_state))

  def model_fn(
      self,
      params: spec.ParameterContainer,
      augmented_and_preprocessed_input_batch: Dict[str, spec.Tensor],
      model_state: spec.ModelAuxiliaryState,
      mode: spec.ForwardPassMode,
      rng: spec.RandomState,
      update_batch_norm: bool,
      dropout_rate: Optional[float] = None,
      use_running_average_bn: Optional[bool] = None,
  ) -> Tuple[spec.Tensor, spec.ModelAuxiliaryState]:
    """Logits for a batch; dropout only in TRAIN mode.

    ``dropout_rate`` may be a traced value; ``None`` means the workload's
    default. The small models have no batch norm, so the batch-norm flags are
    accepted and ignored and ``model_state`` is returned unchanged.
    """
    del update_batch_norm, use_running_average_bn
    if dropout_rate is None:
      dropout_rate = self.default_dropout_rate
    train = mode == spec.ForwardPassMode.TRAIN
    rngs = {'dropout': rng} if (train and rng is not None) else {}
    variables = {'params': params, **model_state}
    logits = self._model.apply(
        variables,
        augmented_and_preprocessed_input_batch['inputs'],
        train=train,
        dropout_rate=dropout_rate,
        rngs=rngs)
    return logits, model_state

  def loss_fn(
      self,
      label_batch: spec.Tensor,
      logits_batch: spec.Tensor,
      mask_batch: Optional[spec.Tensor] = None,
      label_smoothing: float = 0.0,
  ) -> Dict[str, spec.Tensor]:
    """Cross-entropy with optional label smoothing, summed over valid examples.

    ``label_batch`` holds integer class ids (one-hot rows are also accepted).
    Examples with mask 0 contribute 0; ``n_valid_examples`` is the mask's sum,
    or the batch size without a mask.
    """
    if jnp.ndim(label_batch) == jnp.ndim(logits_batch):
      one_hot = jnp.asarray(label_batch, jnp.float32)
    else:
      one_hot = jax.nn.one_hot(label_batch, logits_batch.shape[-1])
    targets = optax.smooth_labels(one_hot, label_smoothing)
    per_example = optax.softmax_cross_entropy(logits_batch, targets)
    if mask_batch is not None:
      mask = jnp.asarray(mask_batch, per_example.dtype)
      # where() so that a padded example never leaks a NaN into the sum.
      per_example = jnp.where(mask != 0, per_example * mask, 0.0)
      n_valid_examples = mask.sum()
    else:
      n_valid_examples = per_example.shape[0]
    return {
        'summed': per_example.sum(),
        'n_valid_examples': n_valid_examples,
        'per_example': per_example,
    }

  # --- data -------------------------------------------------------------------

  def check_data(self) -> None:
    """Loads (or generates) the data now, so a missing or bad file fails before a run starts."""
    self._get_splits()

  def _get_splits(self) -> Dict[str, SplitArrays]:
    """Loads (or generates) the data on first use and checks its counts."""
    if self._splits is None:
      if self._synthetic:
        splits = self._synthetic_splits()
      else:
        splits = self._load_real_splits(self._data_dir)
      expected = {
          'train': self.num_train_examples,
          'validation': self.num_validation_examples,
          'test': self.num_test_examples,
      }
      for split, count in expected.items():
        inputs, labels = splits[split]
        if len(inputs) != count or len(labels) != count:
          raise ValueError(
              f'{self.workload_name} {split}: expected {count} examples, got '
              f'{len(inputs)} inputs and {len(labels)} labels.')
        if inputs.shape[1:] != tuple(self.input_shape):
          raise ValueError(
              f'{self.workload_name} {split}: expected inputs of shape '
              f'(N, {self.input_shape}), got {inputs.shape}.')
      self._splits = splits
    return self._splits

  def _synthetic_splits(self) -> Dict[str, SplitArrays]:
    """Random inputs of the real shape, labels from a fixed random linear map.

    The labels are a function of the inputs so that training on synthetic data
    still makes progress (a cheap sanity check of an algorithm).
    """
    rng = np.random.default_rng(0)
    dim = int(np.prod(self.input_shape))
    projection = rng.standard_normal((dim, self.num_classes)).astype(np.float32)
    splits = {}
    for split, count in (('train', self.num_train_examples),
                         ('validation', self.num_validation_examples),
                         ('test', self.num_test_examples)):
      inputs = rng.standard_normal((count, *self.input_shape)).astype(np.float32)
      labels = np.argmax(inputs.reshape(count, dim) @ projection, axis=1)
      splits[split] = (inputs, labels.astype(np.int32))
    return splits

  def _split_arrays(self, split: str) -> SplitArrays:
    splits = self._get_splits()
    if split == 'eval_train':
      inputs, labels = splits['train']
      n = self.num_eval_train_examples
      return inputs[:n], labels[:n]
    if split not in splits:
      raise ValueError(
          f'Unknown split {split!r}; expected train, eval_train, validation or '
          'test.')
    return splits[split]

  def _build_input_queue(
      self,
      data_rng: spec.RandomState,
      split: str,
      data_dir: Optional[str],
      global_batch_size: int,
      cache: Optional[bool] = None,
      repeat_final_dataset: Optional[bool] = None,
      num_batches: Optional[int] = None,
      start_position: int = 0,
  ) -> Iterator[Dict[str, Any]]:
    """Global batches ``{'inputs', 'targets', 'weights'}`` sharded over devices.

    ``train``: infinite, shuffled with a seed from ``data_rng`` and reshuffled
    every epoch, incomplete final batches dropped; ``start_position`` is the
    index of the first batch (a resume starts where the checkpoint was,
    without rebuilding the batches before it). Other splits: in order, the
    final batch padded with weight-0 examples, once (or forever with
    ``repeat_final_dataset``). ``data_dir``, if given, overrides the one the
    workload was built with (before the data is first loaded). On a
    multi-host run every process gets the same global batches but reads only
    the rows its own devices hold.
    """
    del cache  # Everything is in memory already.
    if data_dir is not None and self._splits is None:
      self._data_dir = data_dir
    global_batch_size = int(global_batch_size)
    num_devices = jax.device_count()
    if global_batch_size <= 0 or global_batch_size % num_devices:
      raise ValueError(
          f'global_batch_size {global_batch_size} must be a positive multiple '
          f'of the number of devices ({num_devices}).')
    inputs, labels = self._split_arrays(split)
    # Each process reads only the rows its own devices hold.
    positions = local_positions(global_batch_size)
    if split == 'train':
      batches = shuffled_batches(inputs, labels, global_batch_size,
                                 np.random.SeedSequence(seed_words(data_rng)),
                                 positions, start=start_position)
    else:
      batches = padded_batches(inputs, labels, global_batch_size,
                               bool(repeat_final_dataset), positions)
    return placed(batches, global_batch_size, num_batches)

  # --- evaluation ---------------------------------------------------------------

  def _get_jitted_eval_step(self):
    if self._jitted_eval_step is None:
      self._jitted_eval_step = evaluation.jit_eval_step(self)
    return self._jitted_eval_step

  def _eval_model_on_split(
      self,
      split: str,
      num_examples: int,
      global_batch_size: int,
      params: spec.ParameterContainer,
      model_state: spec.ModelAuxiliaryState,
      rng: spec.RandomState,
      data_dir: Optional[str],
      global_step: int = 0,
  ) -> Dict[str, float]:
    """Exact accuracy and mean cross-entropy over the first ``num_examples``."""
    del rng, global_step
    if split not in EVAL_SPLITS:
      raise ValueError(f'Cannot evaluate on split {split!r}; use {EVAL_SPLITS}.')
    batch_size = int(global_batch_size or self.eval_batch_size)
    # Padding is free in eval, so round up to a multiple of the device count.
    num_devices = jax.device_count()
    batch_size = -(-batch_size // num_devices) * num_devices
    if data_dir is not None and self._splits is None:
      self._data_dir = data_dir
    inputs, labels = self._split_arrays(split)
    if num_examples > len(inputs):
      raise ValueError(
          f'{split} has {len(inputs)} examples; asked for {num_examples}.')
    inputs, labels = inputs[:num_examples], labels[:num_examples]
    positions = local_positions(batch_size)
    batches = padded_batches(inputs, labels, batch_size, False, positions)
    return evaluation.evaluate(self._get_jitted_eval_step(), params, model_state,
                               placed(batches, batch_size))


def _to_dict(tree: Any) -> Any:
  """Plain nested dicts (flax may hand back FrozenDicts)."""
  if hasattr(tree, 'items'):
    return {k: _to_dict(v) for k, v in tree.items()}
  return tree
