"""criteo1tb and its variants: DLRM-small click-through prediction on Criteo 1TB.

As the reference: sigmoid cross-entropy on one logit per example (label
smoothing is accepted and ignored), ``loss`` as the target metric (lower is
better) over whole splits, the reference's example counts, no model state
(``None``), eval batch size 131,072, and its batch format: ``inputs``
float32 ``[batch, 13 + 26]`` (log-transformed integer features, then the
hashed categorical ids as floats), ``targets`` float32 ``[batch]`` click
labels, and ``weights`` float32 ``[batch]`` (0 on eval padding; the
reference's train batches have none, here they are ones).

Data: the day files under ``data_dir`` (``algoperf datasets criteo1tb``),
read by ``workloads/criteo1tb/data.py``, train batches a pure function of
the seed and the batch index (a resume starts at its batch). With
``synthetic=True``, random batches of the real shapes and dtypes, seeded the
same way, and eval splits of a few examples.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from algoperf import benchmarks
from algoperf import jax_sharding_utils
from algoperf import spec
from workloads import evaluation
from workloads.batching import checked_batch_size, local_positions, placed, seed_words
from workloads.classification import param_types_from_params
from workloads.criteo1tb import data
from workloads.criteo1tb.exact_average import CompensatedAverage
from workloads.criteo1tb.model import make_model, variant_options
from workloads.facts import VersionFacts

NUM_FEATURES = data.NUM_DENSE_FEATURES + data.NUM_CATEGORICAL_FEATURES
EVAL_SPLITS = data.EVAL_SPLITS


def synthetic_rows(seed: Tuple[int, ...], index: int, rows: np.ndarray,
                   global_batch_size: int) -> Dict[str, np.ndarray]:
  """Rows ``rows`` of synthetic global batch ``index`` (the same on every process).

  The whole batch is drawn from one generator (seed, index), so a process
  that keeps half the rows gets exactly those rows of the batch one process
  gets. Integer features are geometric counts, log-transformed as the real
  ones; categorical ids are uniform over each feature's hash buckets, as
  float32 (rounded above 2**24, like the real ones); a click's probability
  grows with the counts, so training can lower the loss.
  """
  generator = np.random.default_rng([*seed, index])
  size = (global_batch_size, data.NUM_DENSE_FEATURES)
  dense = np.log(generator.geometric(0.2, size).astype(np.float32))
  buckets = np.asarray(data.VOCAB_SIZES, np.float64)
  ids = np.floor(generator.random((global_batch_size, len(buckets))) * buckets)
  logits = dense.mean(axis=1) - 2.0
  clicks = generator.random(global_batch_size) < 1.0 / (1.0 + np.exp(-logits))
  inputs = np.concatenate([dense, ids.astype(np.float32)], axis=1)
  return {'inputs': inputs[rows], 'targets': clicks[rows].astype(np.float32),
          'weights': np.ones((len(rows),), np.float32)}


def loss_states(workload: spec.Workload, params: spec.ParameterContainer,
                model_state: spec.ModelAuxiliaryState,
                batch: Dict[str, jax.Array]) -> Dict[str, Any]:
  """The summed loss of one padded eval batch, as a ``loss`` metric state."""
  logits, _ = workload.model_fn(
      params, batch, model_state, spec.ForwardPassMode.EVAL, rng=None,
      update_batch_norm=False)
  losses = workload.loss_fn(batch['targets'], logits, batch['weights'])
  return {'loss': CompensatedAverage.from_sum(losses['summed'],
                                              losses['n_valid_examples'])}


class Criteo1TbDlrmSmallWorkload(VersionFacts, spec.Workload):
  """DLRM-small on Criteo 1TB; variants change the model's options."""

  workload_name = 'criteo1tb'
  # The benchmark entry whose targets and budgets apply (None: workload_name).
  facts_name: Optional[str] = None
  real_num_train_examples = 4_195_197_692
  real_num_validation_examples = 83_274_637
  real_num_test_examples = 95_000_000
  # Synthetic eval splits stay small enough for a CPU eval.
  synthetic_num_eval_examples = 8
  default_eval_batch_size = 131_072
  output_layer_name = 'Dense_7'

  def __init__(self, benchmark: Optional[str] = None,
               data_dir: Optional[str] = None, synthetic: bool = False,
               vocab_size: Optional[int] = None) -> None:
    """``vocab_size``, if given, replaces the table's row count (quick tests)."""
    super().__init__()
    self._load_facts(benchmark)
    self._data_dir = data_dir
    self._synthetic = bool(synthetic)
    options = variant_options(self.workload_name)
    if vocab_size is not None:
      options['vocab_size'] = int(vocab_size)
    self._model = make_model(**options)
    self._jitted_eval_step = None
    # Real-data eval batches, built at the first eval of each split.
    self._eval_sources: Dict[Tuple[Any, ...], Iterable[Dict[str, np.ndarray]]] = {}

  def _load_facts(self, benchmark: Optional[str]) -> None:
    if self.facts_name is None:
      super()._load_facts(benchmark)
      return
    self._benchmark = benchmarks.load(benchmark)
    self._facts = self._benchmark.workload(self.facts_name)

  # --- facts -------------------------------------------------------------------

  @property
  def synthetic(self) -> bool:
    return self._synthetic

  @property
  def vocab_size(self) -> int:
    return self._model.vocab_size

  @property
  def loss_type(self) -> spec.LossType:
    return spec.LossType.SIGMOID_CROSS_ENTROPY

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
    raise NotImplementedError('criteo1tb has no input normalisation constants.')

  @property
  def train_stddev(self) -> Any:
    raise NotImplementedError('criteo1tb has no input normalisation constants.')

  def is_output_params(self, param_key: spec.ParameterKey) -> bool:
    return param_key == self.output_layer_name

  # --- model -------------------------------------------------------------------

  def init_model_fn(self, rng: spec.RandomState) -> spec.ModelInitState:
    """Initial ``(params, None)``, params replicated; also sets shapes and types."""
    # The reference initialises from the first half of a split key.
    params_rng, _ = jax.random.split(rng)
    dummy = jnp.ones((2, NUM_FEATURES), jnp.float32)
    init = jax.jit(lambda key, x: self._model.init({'params': key}, x, train=False))
    params = dict(init(params_rng, dummy)['params'])
    self._param_shapes = jax.tree.map(lambda x: spec.ShapeTuple(x.shape), params)
    types = param_types_from_params(params)
    # The reference types any leaf named *embedding* as an embedding.
    types['embedding_table'] = spec.ParameterType.EMBEDDING
    self._param_types = types
    return jax_sharding_utils.replicate(params), None

  def model_fn(
      self,
      params: spec.ParameterContainer,
      augmented_and_preprocessed_input_batch: Dict[str, spec.Tensor],
      model_state: spec.ModelAuxiliaryState,
      mode: spec.ForwardPassMode,
      rng: spec.RandomState,
      update_batch_norm: bool,
      use_running_average_bn: Optional[bool] = None,
      dropout_rate: Optional[float] = None,
  ) -> Tuple[spec.Tensor, spec.ModelAuxiliaryState]:
    """Logits ``[batch, 1]`` and ``None`` (the model has no state).

    Dropout (before the output layer) only in TRAIN mode, at ``dropout_rate``
    (may be traced; None means the reference's default, 0). The batch-norm
    flags are accepted and unused.
    """
    del model_state, update_batch_norm, use_running_average_bn
    train = mode == spec.ForwardPassMode.TRAIN
    rate = 0.0 if dropout_rate is None else dropout_rate
    rngs = {'dropout': rng} if (train and rng is not None) else {}
    logits = self._model.apply(
        {'params': params}, augmented_and_preprocessed_input_batch['inputs'],
        train=train, dropout_rate=rate, rngs=rngs)
    return logits, None

  def loss_fn(
      self,
      label_batch: spec.Tensor,
      logits_batch: spec.Tensor,
      mask_batch: Optional[spec.Tensor] = None,
      label_smoothing: float = 0.0,
  ) -> Dict[str, spec.Tensor]:
    """Sigmoid cross-entropy per example, summed over valid ones.

    Labels and logits may be ``[batch]`` or ``[batch, 1]``. As the
    reference, ``label_smoothing`` is ignored.
    """
    del label_smoothing
    batch_size = label_batch.shape[0]
    labels = jnp.reshape(label_batch, (batch_size,))
    logits = jnp.reshape(logits_batch, (batch_size,))
    per_example = optax.sigmoid_binary_cross_entropy(logits, labels)
    if mask_batch is not None:
      mask = jnp.reshape(jnp.asarray(mask_batch, per_example.dtype), (batch_size,))
      # where(): a padded row never leaks a NaN into the sum.
      per_example = jnp.where(mask != 0, per_example * mask, 0.0)
      n_valid_examples = mask.sum()
    else:
      n_valid_examples = len(per_example)
    return {'summed': per_example.sum(), 'n_valid_examples': n_valid_examples,
            'per_example': per_example}

  # --- data --------------------------------------------------------------------

  def check_data(self) -> None:
    """Raises ``ConfigError`` (one line) if the day files are missing or incomplete."""
    if not self._synthetic:
      data.split_counts(self._data_dir)

  def _synthetic_batches(self, seed: Tuple[int, ...], global_batch_size: int,
                         first: int = 0) -> Iterator[Dict[str, np.ndarray]]:
    rows = local_positions(global_batch_size)
    index = first
    while True:
      yield synthetic_rows(seed, index, rows, global_batch_size)
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
    """Endless training batches from global batch ``start_position`` on.

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
    """This process's rows of each padded synthetic eval batch of ``split``."""
    # Each split has its own fixed seed: the same examples at every eval.
    seed = (EVAL_SPLITS.index(split) + 1, 0)
    rows = local_positions(batch_size)
    for index in range(math.ceil(num_examples / batch_size)):
      batch = synthetic_rows(seed, index, rows, batch_size)
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
    """Mean loss over ``num_examples`` of ``split`` in padded batches: ``{'loss'}``."""
    del rng, global_step
    if split not in EVAL_SPLITS:
      raise ValueError(f'Cannot evaluate on split {split!r}; use {EVAL_SPLITS}.')
    num_devices = jax.device_count()
    batch_size = int(global_batch_size or self.eval_batch_size)
    # No more rows than the split needs, in whole device multiples: one shape.
    batch_size = min(batch_size, num_examples)
    batch_size = -(-batch_size // num_devices) * num_devices
    if self._jitted_eval_step is None:
      self._jitted_eval_step = evaluation.jit_eval_step(self, loss_states)
    if self._synthetic:
      batches = self._synthetic_eval_batches(split, num_examples, batch_size)
    else:
      batches = self._real_eval_batches(split, num_examples, batch_size, data_dir)
    return evaluation.evaluate(self._jitted_eval_step, params, model_state,
                               placed(iter(batches), batch_size))


class Criteo1TbDlrmSmallTestWorkload(Criteo1TbDlrmSmallWorkload):
  """The reference's small test workload: a 65,536-row table, criteo1tb's facts."""

  workload_name = 'criteo1tb_test'
  facts_name = 'criteo1tb'


class Criteo1TbDlrmSmallLayerNormWorkload(Criteo1TbDlrmSmallWorkload):
  workload_name = 'criteo1tb_layernorm'


class Criteo1TbDlrmSmallResNetWorkload(Criteo1TbDlrmSmallWorkload):
  workload_name = 'criteo1tb_resnet'


class Criteo1TbDlrmSmallEmbedInitWorkload(Criteo1TbDlrmSmallWorkload):
  workload_name = 'criteo1tb_embed_init'
