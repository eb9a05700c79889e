"""fastmri and its variants: a U-Net reconstructs knee MRI slices from 4x-undersampled k-space.

As the reference's ``FastMRIWorkload``: L1 loss (mean absolute error per
slice), ``ssim`` the target metric (``workloads/fastmri/ssim.py``), the
reference's example counts (train 34,742 slices; validation 3,554 and test
3,581, the official validation volumes split by name; eval_train the
validation count rounded up to whole eval batches of 256) and batch format:
``inputs``, ``targets`` float32 (N, 320, 320), ``mean``, ``std``,
``volume_max`` float32 (N,), and ``weights`` float32 (N,) (1/0 for padding)
in eval batches only. The model has no batch norm: ``model_state`` is None.

Data: the official ``.h5`` volumes under ``data_dir``, read by
``workloads/fastmri/data.py`` (train batches are a pure function of the
data seed and the batch index, so a resume starts at its batch).
``synthetic=True`` streams batches of the real shapes and dtypes instead,
each row drawn from (seed, batch index, row), with small eval splits a CPU
can run.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from algoperf import jax_sharding_utils
from algoperf import spec
from workloads import evaluation, metrics
from workloads.batching import checked_batch_size, local_positions, placed, seed_words
from workloads.classification import param_types_from_params
from workloads.facts import VersionFacts
from workloads.fastmri import data
from workloads.fastmri.model import UNet, variant_options
from workloads.fastmri.ssim import ssim

EVAL_SPLITS = ('eval_train', 'validation', 'test')
IMAGE_SIZE = 320


def synthetic_rows(seed: Tuple[int, ...], index: int, rows: np.ndarray,
                   image_size: int) -> Dict[str, np.ndarray]:
  """Rows ``rows`` of synthetic batch ``index`` (train format: no weights).

  Each row has its own generator (seed, batch index, row), so a process that
  reads some rows gets exactly those rows of the one-process batch. Targets
  are normalised-looking random images; inputs are the targets plus noise
  (so a model can learn something), both clipped to [-6, 6] like real
  slices; ``mean``, ``std`` and ``volume_max`` are of the scale of real
  knee volumes.
  """
  shape = (image_size, image_size)
  out = {'inputs': np.empty((len(rows), *shape), np.float32),
         'targets': np.empty((len(rows), *shape), np.float32),
         'mean': np.empty((len(rows),), np.float32),
         'std': np.empty((len(rows),), np.float32),
         'volume_max': np.empty((len(rows),), np.float32)}
  for i, row in enumerate(rows):
    generator = np.random.default_rng([*seed, index, int(row)])
    target = generator.standard_normal(shape, np.float32)
    noise = generator.standard_normal(shape, np.float32)
    out['targets'][i] = np.clip(target, -data.CLIP, data.CLIP)
    out['inputs'][i] = np.clip(target + 0.5 * noise, -data.CLIP, data.CLIP)
    out['mean'][i] = generator.uniform(2e-5, 1e-4)
    out['std'][i] = generator.uniform(1e-5, 5e-5)
    out['volume_max'][i] = out['mean'][i] + 6 * out['std'][i]
  return out


def eval_states(workload: 'FastMRIWorkload', params: spec.ParameterContainer,
                model_state: spec.ModelAuxiliaryState,
                batch: Dict[str, jax.Array]) -> Dict[str, Any]:
  """SSIM and L1 states of one padded eval batch (weights mask the padding)."""
  outputs, _ = workload.model_fn(
      params, batch, model_state, spec.ForwardPassMode.EVAL, rng=None,
      update_batch_norm=False)
  weights = batch['weights']
  values = ssim(outputs, batch['targets'], mean=batch['mean'], std=batch['std'],
                volume_max=batch['volume_max'])
  losses = workload.loss_fn(batch['targets'], outputs, weights)
  return {
      'ssim': metrics.Average.from_values(values, weights),
      'loss': metrics.Average.from_sum(losses['summed'], jnp.sum(weights)),
  }


class FastMRIWorkload(VersionFacts, spec.Workload):
  """fastMRI knee single-coil reconstruction with the reference's U-Net."""

  workload_name = 'fastmri'
  real_num_train_examples = 34_742
  real_num_validation_examples = 3_554
  real_num_test_examples = 3_581
  # Synthetic eval splits stay small enough for a CPU eval.
  synthetic_num_eval_examples = 8
  default_eval_batch_size = 256
  output_layer_name = 'Conv_0'

  def __init__(self, benchmark: Optional[str] = None,
               data_dir: Optional[str] = None, synthetic: bool = False,
               image_size: int = IMAGE_SIZE) -> None:
    """``image_size`` other than 320 is for quick synthetic tests."""
    super().__init__()
    self._load_facts(benchmark)
    self._data_dir = data_dir
    self._synthetic = bool(synthetic)
    self.image_size = int(image_size)
    self._model = self._make_model()
    self._jitted_eval_step = None
    # Real-data eval batches, built at the first eval of each split.
    self._eval_sources: Dict[Tuple[Any, ...], Iterable[Dict[str, np.ndarray]]] = {}

  def _make_model(self) -> nn.Module:
    return UNet(**variant_options(self.workload_name))

  # --- facts -------------------------------------------------------------------

  @property
  def synthetic(self) -> bool:
    return self._synthetic

  @property
  def num_channels(self) -> int:
    return self._model.num_channels

  @property
  def num_pool_layers(self) -> int:
    return self._model.num_pool_layers

  @property
  def use_tanh(self) -> bool:
    return self._model.use_tanh

  @property
  def use_layer_norm(self) -> bool:
    return self._model.use_layer_norm

  @property
  def center_fractions(self) -> Tuple[float, ...]:
    return (data.CENTER_FRACTION,)

  @property
  def accelerations(self) -> Tuple[int, ...]:
    return (int(data.ACCELERATION),)

  @property
  def loss_type(self) -> spec.LossType:
    return spec.LossType.MEAN_ABSOLUTE_ERROR

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
    # As the reference: validation's count rounded up to whole eval batches.
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
  def train_mean(self) -> Any:
    raise NotImplementedError(
        'fastmri has no dataset-wide mean: each slice is normalised by its own '
        "(batch['mean'], batch['std']).")

  @property
  def train_stddev(self) -> Any:
    raise NotImplementedError(
        'fastmri has no dataset-wide standard deviation: each slice is '
        "normalised by its own (batch['mean'], batch['std']).")

  def is_output_params(self, param_key: spec.ParameterKey) -> bool:
    return param_key == self.output_layer_name

  # --- model -------------------------------------------------------------------

  def init_model_fn(self, rng: spec.RandomState) -> spec.ModelInitState:
    """Initial ``(params, None)``, params replicated; also sets shapes and types."""
    # The reference initialises from the first half of a split key.
    params_rng, _ = jax.random.split(rng)
    # Parameter values depend on their shapes and the key only: one row will do.
    dummy = jnp.zeros((1, self.image_size, self.image_size), jnp.float32)
    variables = jax.jit(lambda key: self._model.init({'params': key}, dummy,
                                                     train=False))(params_rng)
    params = dict(variables)['params']
    self._param_shapes = jax.tree.map(lambda x: spec.ShapeTuple(x.shape), params)
    self._param_types = param_types_from_params(params)
    return jax_sharding_utils.replicate(params), None

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
    """Reconstructions ``(N, H, W)`` and ``None`` (there is no model state).

    ``dropout_rate`` is accepted and has no effect, as in the reference's
    JAX workload: its U-Net never passes the rate to its blocks, so a
    submission's dropout setting trains the same network there and here
    (the model itself supports channel dropout). The batch-norm flags are
    accepted and ignored. ``dropout_rate`` is the seventh positional
    parameter, as in the reference's fastmri ``model_fn``.
    """
    del model_state, update_batch_norm, use_running_average_bn, dropout_rate
    train = mode == spec.ForwardPassMode.TRAIN
    rate = 0.0  # The reference's JAX U-Net applies no dropout (see above).
    rngs = {'dropout': rng} if (train and rng is not None) else {}
    outputs = self._model.apply(
        {'params': params}, augmented_and_preprocessed_input_batch['inputs'],
        train=train, dropout_rate=rate, rngs=rngs)
    return outputs, None

  def loss_fn(
      self,
      label_batch: spec.Tensor,
      logits_batch: spec.Tensor,
      mask_batch: Optional[spec.Tensor] = None,
      label_smoothing: float = 0.0,
  ) -> Dict[str, spec.Tensor]:
    """Mean absolute error of each slice, summed over the valid ones.

    ``label_smoothing`` does not apply to a regression and is ignored.
    """
    del label_smoothing
    per_example = jnp.mean(jnp.abs(logits_batch - label_batch),
                           axis=tuple(range(1, logits_batch.ndim)))
    if mask_batch is not None:
      mask = jnp.asarray(mask_batch, per_example.dtype)
      # where(): a padded row's NaN never reaches the sum.
      per_example = jnp.where(mask != 0, per_example * mask, 0.0)
      n_valid_examples = mask.sum()
    else:
      n_valid_examples = per_example.shape[0]
    return {'summed': per_example.sum(), 'n_valid_examples': n_valid_examples,
            'per_example': per_example}

  # --- data --------------------------------------------------------------------

  def check_data(self) -> None:
    """Raises ``ConfigError`` (one line) if the volumes are missing."""
    if not self._synthetic:
      data.split_counts(self._data_dir)

  def _synthetic_batches(self, seed: Tuple[int, ...], global_batch_size: int,
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
      batches = self._synthetic_batches(seed, global_batch_size, start_position)
    else:
      batches = data.train_batches(data_dir or self._data_dir, seed,
                                   global_batch_size, start_position)
    return placed(batches, global_batch_size, num_batches)

  # --- evaluation ----------------------------------------------------------------

  def _real_eval_batches(self, split: str, num_examples: int, batch_size: int,
                         data_dir: Optional[str]) -> Iterable[Dict[str, np.ndarray]]:
    """The split's eval batches, built at its first eval and reused after."""
    data_dir = data_dir or self._data_dir
    key = (split, num_examples, batch_size, data_dir)
    if key not in self._eval_sources:
      self._eval_sources[key] = data.eval_batches(data_dir, split, num_examples,
                                                  batch_size)
    return self._eval_sources[key]

  def _synthetic_eval_batches(self, split: str, num_examples: int,
                              batch_size: int) -> Iterator[Dict[str, np.ndarray]]:
    """This process's rows of each padded eval batch of ``split`` (synthetic)."""
    # Each split has its own fixed seed: the same slices at every eval.
    seed = (EVAL_SPLITS.index(split) + 1, 0)
    rows = local_positions(batch_size)
    for index in range(math.ceil(num_examples / batch_size)):
      batch = synthetic_rows(seed, index, rows, self.image_size)
      valid = (index * batch_size + rows) < num_examples
      # Padding as the real pipeline pads: zeros everywhere, weight 0.
      batch = {k: np.where(valid.reshape(-1, *[1] * (v.ndim - 1)), v, 0).astype(v.dtype)
               for k, v in batch.items()}
      batch['weights'] = valid.astype(np.float32)
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
    """Mean SSIM and mean L1 over ``num_examples`` slices of ``split``, padded batches."""
    del rng, global_step
    if split not in EVAL_SPLITS:
      raise ValueError(f'Cannot evaluate on split {split!r}; use {EVAL_SPLITS}.')
    num_devices = jax.device_count()
    batch_size = int(global_batch_size or self.eval_batch_size)
    # No more rows than the split needs, in whole device multiples: one shape.
    batch_size = min(batch_size, num_examples)
    batch_size = -(-batch_size // num_devices) * num_devices
    if self._jitted_eval_step is None:
      self._jitted_eval_step = evaluation.jit_eval_step(self, eval_states)
    if self._synthetic:
      batches = self._synthetic_eval_batches(split, num_examples, batch_size)
    else:
      batches = self._real_eval_batches(split, num_examples, batch_size, data_dir)
    return evaluation.evaluate(self._jitted_eval_step, params, model_state,
                               placed(iter(batches), batch_size))


class FastMRIModelSizeWorkload(FastMRIWorkload):
  """64 channels, 3 pool layers."""

  workload_name = 'fastmri_model_size'


class FastMRITanhWorkload(FastMRIWorkload):
  """tanh activations instead of leaky ReLU."""

  workload_name = 'fastmri_tanh'


class FastMRILayerNormWorkload(FastMRIWorkload):
  """LayerNorm instead of instance norm in the conv blocks."""

  workload_name = 'fastmri_layernorm'
