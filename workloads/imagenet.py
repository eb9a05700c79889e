"""What the two ImageNet workloads share: facts, loss, batches and the eval.

``imagenet_resnet`` and ``imagenet_vit`` (and their variants) differ only in
the model; this base holds the rest, as the reference's
``BaseImagenetResNetWorkload`` does: 1000-class softmax cross-entropy with
label smoothing, ``accuracy`` as the target metric, the reference's example
counts, normalisation constants and batch format (``inputs`` NHWC float32,
``targets`` int32 class ids, ``weights`` float32 1/0 for padding).

Data: the prepared tfds datasets ``imagenet2012`` and ``imagenet_v2`` under
``data_dir`` (``algoperf datasets imagenet --data_dir DIR`` prepares them),
read by ``workloads/imagenet_pipeline.py``: training batches are a pure
function of the data seed and the batch index, so a resume starts at its
batch instead of replaying the ones before; ViT workloads add RandAugment
and mixup, as the reference does. ``synthetic=True`` streams batches of the
real shapes and dtypes instead (random images, seeded the same way), with
small eval splits a CPU can run.
"""

from __future__ import annotations

import abc
import math
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from algoperf import jax_sharding_utils
from algoperf import spec
from workloads import evaluation
from workloads import imagenet_pipeline
from workloads.batching import checked_batch_size, local_positions, placed, seed_words
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
  # The reference trains ViT on RandAugment-ed, mixed-up batches.
  use_randaug_and_mixup = False

  def __init__(self, benchmark: Optional[str] = None,
               data_dir: Optional[str] = None, synthetic: bool = False,
               image_size: int = 224,
               imagenet_v2_data_dir: Optional[str] = None) -> None:
    """``image_size`` other than 224 is for quick tests.

    ``imagenet_v2_data_dir``: where ImageNet-v2 (the test split) is prepared,
    if not under ``data_dir`` (the runner's evals pass it as the test split's
    ``data_dir``, as the reference does).
    """
    super().__init__()
    self._load_facts(benchmark)
    self._data_dir = data_dir
    self._imagenet_v2_data_dir = imagenet_v2_data_dir
    self._synthetic = bool(synthetic)
    self.image_size = int(image_size)
    self._model = self._make_model()
    self._jitted_eval_step = None
    # Real-data eval batches, built at the first eval of each split.
    self._eval_sources: Dict[Tuple[Any, ...], Iterable[Dict[str, np.ndarray]]] = {}

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
    """Raises ``ConfigError`` (one line) if a prepared dataset is missing."""
    if not self._synthetic:
      imagenet_pipeline.split_counts(self._data_dir, self._imagenet_v2_data_dir)

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
      start_position: int = 0,
  ) -> Iterator[Dict[str, Any]]:
    """Endless shuffled training batches from global batch ``start_position`` on.

    The batches are a function of ``data_rng`` and their index only: a
    resume passes the checkpoint's input position as ``start_position``.
    """
    del cache, repeat_final_dataset
    if split != 'train':
      raise ValueError(f'The input queue is for the train split, not {split!r}.')
    global_batch_size = checked_batch_size(global_batch_size)
    seed = seed_words(data_rng)
    if self._synthetic:
      batches = self._batches(seed, global_batch_size, first=start_position)
    else:
      batches = imagenet_pipeline.train_batches(
          data_dir or self._data_dir, seed, global_batch_size, start_position,
          randaugment=self.use_randaug_and_mixup,
          mixup_alpha=(imagenet_pipeline.VIT_MIXUP_ALPHA
                       if self.use_randaug_and_mixup else None),
          image_size=self.image_size)
    return placed(batches, global_batch_size, num_batches)

  # --- evaluation ----------------------------------------------------------------

  def _real_eval_batches(self, split: str, num_examples: int, batch_size: int,
                         data_dir: Optional[str]) -> Iterable[Dict[str, np.ndarray]]:
    """The split's eval batches, built at its first eval and reused after."""
    data_dir = data_dir or self._data_dir
    key = (split, num_examples, batch_size, data_dir, self._imagenet_v2_data_dir)
    if key not in self._eval_sources:
      self._eval_sources[key] = imagenet_pipeline.eval_batches(
          data_dir, split, num_examples, batch_size,
          imagenet_v2_data_dir=self._imagenet_v2_data_dir,
          image_size=self.image_size)
    return self._eval_sources[key]

  def _eval_batches(self, split: str, num_examples: int,
                    batch_size: int) -> Iterator[Dict[str, np.ndarray]]:
    """This process's rows of each padded eval batch of ``split`` (synthetic)."""
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
    del rng, global_step
    if split not in EVAL_SPLITS:
      raise ValueError(f'Cannot evaluate on split {split!r}; use {EVAL_SPLITS}.')
    num_devices = jax.device_count()
    batch_size = int(global_batch_size or self.eval_batch_size)
    # No more rows than the split needs, in whole device multiples: one shape.
    batch_size = min(batch_size, num_examples)
    batch_size = -(-batch_size // num_devices) * num_devices
    if self._jitted_eval_step is None:
      self._jitted_eval_step = evaluation.jit_eval_step(self)
    if self._synthetic:
      batches = self._eval_batches(split, num_examples, batch_size)
    else:
      batches = self._real_eval_batches(split, num_examples, batch_size, data_dir)
    return evaluation.evaluate(self._jitted_eval_step, params, model_state,
                               placed(batches, batch_size))
