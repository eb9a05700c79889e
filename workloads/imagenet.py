"""What the two ImageNet workloads share: facts, loss, batches and the eval.

``imagenet_resnet`` and ``imagenet_vit`` (and their variants) differ only in
the model; this base holds the rest, as the reference's
``BaseImagenetResNetWorkload`` does: 1000-class softmax cross-entropy with
label smoothing, ``accuracy`` as the target metric, the reference's example
counts, normalisation constants and batch format (``inputs`` NHWC float32,
``targets`` int32 class ids, ``weights`` float32 1/0 for padding).

Data: ``synthetic=True`` streams batches of the real shapes and dtypes,
each a pure function of the data seed and its index (so a resume jumps to
its position instead of replaying), with small eval splits a CPU can run.
The real-data pipeline (tfds ``imagenet2012`` and ``imagenet_v2``) is not
built yet: without ``synthetic`` the workload refuses to start with a
message that says so.
"""

from __future__ import annotations

import abc
import math
from typing import Any, Dict, Iterator, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from algoperf import jax_sharding_utils
from algoperf import spec
from algoperf.errors import ConfigError
from workloads import evaluation
from workloads.batching import local_positions, placed, seed_words
from workloads.classification import param_types_from_params
from workloads.facts import VersionFacts

NUM_CLASSES = 1000
EVAL_SPLITS = ('eval_train', 'validation', 'test')


def synthetic_rows(seed: Tuple[int, ...], index: int, rows: np.ndarray,
                   image_size: int) -> Dict[str, np.ndarray]:
  """Rows ``rows`` of synthetic batch ``index``: the same on every process.

  Each row is drawn from its own generator (seed, batch index, row), so a
  process that reads half the rows gets exactly those rows of the batch one
  process would read. Inputs are standard normal (the scale of normalised
  images); labels are uniform over the 1000 classes.
  """
  images = np.empty((len(rows), image_size, image_size, 3), np.float32)
  labels = np.empty((len(rows),), np.int32)
  for i, row in enumerate(rows):
    generator = np.random.default_rng([*seed, index, int(row)])
    images[i] = generator.standard_normal(images.shape[1:], np.float32)
    labels[i] = generator.integers(0, NUM_CLASSES)
  return {'inputs': images, 'targets': labels,
          'weights': np.ones((len(rows),), np.float32)}


class ImageNetWorkload(VersionFacts, spec.Workload):
  """ImageNet classification; subclasses make the model and its ``model_fn``."""

  workload_name = ''
  # The reference's counts; eval_train is validation rounded up to a whole
  # number of eval batches, as the reference does.
  real_num_train_examples = 1_281_167
  real_num_validation_examples = 50_000
  real_num_test_examples = 10_000  # ImageNet-v2 (matched frequency).
  # Synthetic eval splits stay small enough for a CPU eval.
  synthetic_num_train_examples = 1_281_167
  synthetic_num_eval_examples = 8
  default_eval_batch_size = 1024
  output_layer_name = ''

  def __init__(self, benchmark: Optional[str] = None,
               data_dir: Optional[str] = None, synthetic: bool = False,
               image_size: int = 224) -> None:
    """``image_size`` below 224 (synthetic data only) is for quick tests."""
    super().__init__()
    self._load_facts(benchmark)
    self._data_dir = data_dir
    self._synthetic = bool(synthetic)
    if image_size != 224 and not self._synthetic:
      raise ValueError('image_size other than 224 needs synthetic data.')
    self.image_size = int(image_size)
    self._model = self._make_model()
    self._jitted_eval_step = None

  # --- subclass hooks ----------------------------------------------------------

  @abc.abstractmethod
  def _make_model(self) -> nn.Module:
    """The flax module of this workload (and variant)."""

  @abc.abstractmethod
  def _split_variables(self, variables: Dict[str, Any]) -> Tuple[Any, Any]:
    """``(params, model_state)`` from the module's initial variables."""

  # --- facts -------------------------------------------------------------------

  @property
  def synthetic(self) -> bool:
    return self._synthetic

  @property
  def loss_type(self) -> spec.LossType:
    return spec.LossType.SOFTMAX_CROSS_ENTROPY

  @property
  def num_train_examples(self) -> int:
    return self.real_num_train_examples

  @property
  def num_validation_examples(self) -> int:
    return (self.synthetic_num_eval_examples if self._synthetic
            else self.real_num_validation_examples)

  @property
  def num_eval_train_examples(self) -> int:
    if self._synthetic:
      return self.synthetic_num_eval_examples
    batches = math.ceil(self.num_validation_examples / self.eval_batch_size)
    return batches * self.eval_batch_size

  @property
  def num_test_examples(self) -> int:
    return (self.synthetic_num_eval_examples if self._synthetic
            else self.real_num_test_examples)

  @property
  def eval_batch_size(self) -> int:
    return self.default_eval_batch_size

  @property
  def train_mean(self) -> Tuple[float, float, float]:
    return (0.485 * 255, 0.456 * 255, 0.406 * 255)

  @property
  def train_stddev(self) -> Tuple[float, float, float]:
    return (0.229 * 255, 0.224 * 255, 0.225 * 255)

  def is_output_params(self, param_key: spec.ParameterKey) -> bool:
    return param_key == self.output_layer_name

  # --- model -------------------------------------------------------------------

  def init_model_fn(self, rng: spec.RandomState) -> spec.ModelInitState:
    """Initial ``(params, model_state)``, replicated; also sets shapes and types."""
    dummy = jnp.zeros((1, self.image_size, self.image_size, 3), jnp.float32)
    variables = jax.jit(self._model.init)({'params': rng}, dummy)
    # A copy: _split_variables may pop from it.
    params, model_state = self._split_variables(dict(variables))
    self._param_shapes = jax.tree.map(lambda x: spec.ShapeTuple(x.shape), params)
    self._param_types = param_types_from_params(params)
    return (jax_sharding_utils.replicate(params),
            jax_sharding_utils.replicate(model_state))

  def loss_fn(
      self,
      label_batch: spec.Tensor,
      logits_batch: spec.Tensor,
      mask_batch: Optional[spec.Tensor] = None,
      label_smoothing: float = 0.0,
  ) -> Dict[str, spec.Tensor]:
    """Softmax cross-entropy with label smoothing, summed over valid examples.

    ``label_batch``: class ids, or one-hot rows of width 1000.
    """
    if label_batch.shape[-1] != NUM_CLASSES or jnp.ndim(label_batch) == 1:
      one_hot = jax.nn.one_hot(label_batch, NUM_CLASSES)
    else:
      one_hot = label_batch
    targets = optax.smooth_labels(one_hot, label_smoothing)
    per_example = -jnp.sum(targets * jax.nn.log_softmax(logits_batch, axis=-1),
                           axis=-1)
    if mask_batch is not None:
      per_example = per_example * mask_batch
      n_valid_examples = mask_batch.sum()
    else:
      n_valid_examples = len(per_example)
    return {'summed': per_example.sum(), 'n_valid_examples': n_valid_examples,
            'per_example': per_example}

  # --- data --------------------------------------------------------------------

  def check_data(self) -> None:
    """Refuses a run on real data until its pipeline exists."""
    if not self._synthetic:
      raise ConfigError(
          f'{self.workload_name}: the ImageNet real-data pipeline is not '
          'available in this version; run with --synthetic_data (random '
          'images of the real shapes) to try a submission on this model.')

  def _batches(self, seed: Tuple[int, ...], global_batch_size: int,
               first: int = 0) -> Iterator[Dict[str, np.ndarray]]:
    rows = local_positions(global_batch_size)
    index = first
    while True:
      yield synthetic_rows(seed, index, rows, self.image_size)
      index += 1

  def _build_input_queue(
      self,
      data_rng: spec.RandomState,
      split: str,
      data_dir: Optional[str],
      global_batch_size: int,
      cache: Optional[bool] = None,
      repeat_final_dataset: Optional[bool] = None,
      num_batches: Optional[int] = None,
  ) -> Iterator[Dict[str, Any]]:
    """Endless shuffled training batches (synthetic data)."""
    del data_dir, cache, repeat_final_dataset
    self.check_data()
    if split != 'train':
      raise ValueError(f'The input queue is for the train split, not {split!r}.')
    global_batch_size = int(global_batch_size)
    if global_batch_size <= 0 or global_batch_size % jax.device_count():
      raise ValueError(
          f'global_batch_size {global_batch_size} must be a positive multiple '
          f'of the device count ({jax.device_count()}).')
    return placed(self._batches(seed_words(data_rng), global_batch_size),
                  global_batch_size, num_batches)

  # --- evaluation ----------------------------------------------------------------

  def _eval_batches(self, split: str, num_examples: int,
                    batch_size: int) -> Iterator[Dict[str, np.ndarray]]:
    """This process's rows of each padded eval batch of ``split``."""
    # Each split has its own fixed seed: the same examples at every eval.
    seed = (EVAL_SPLITS.index(split) + 1, 0)
    rows = local_positions(batch_size)
    for index in range(math.ceil(num_examples / batch_size)):
      batch = synthetic_rows(seed, index, rows, self.image_size)
      batch['weights'] = ((index * batch_size + rows) < num_examples).astype(
          np.float32)
      yield batch

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
    """Accuracy and mean loss over ``num_examples`` of ``split``, padded batches."""
    del rng, data_dir, global_step
    if split not in EVAL_SPLITS:
      raise ValueError(f'Cannot evaluate on split {split!r}; use {EVAL_SPLITS}.')
    self.check_data()
    num_devices = jax.device_count()
    batch_size = int(global_batch_size or self.eval_batch_size)
    # No more rows than the split needs, in whole device multiples: one shape.
    batch_size = min(batch_size, num_examples)
    batch_size = -(-batch_size // num_devices) * num_devices
    if self._jitted_eval_step is None:
      self._jitted_eval_step = evaluation.jit_eval_step(self)
    batches = self._eval_batches(split, num_examples, batch_size)
    return evaluation.evaluate(self._jitted_eval_step, params, model_state,
                               placed(batches, batch_size))
