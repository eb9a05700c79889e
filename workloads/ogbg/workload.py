"""ogbg and its variants: a GraphNet predicting 128 assays of molecules (ogbg-molpcba).

As the reference's ``OgbgWorkload``: a masked per-task sigmoid binary
cross-entropy (label smoothing as the reference applies it, towards
``1 / 128``), ``mean_average_precision`` as the target metric (plus ``loss``
and ``accuracy``), the reference's example counts and batch format:
``inputs`` a ``jraph.GraphsTuple`` padded to fixed node, edge and graph
budgets per device (``workloads/ogbg/graphs.py``), ``targets`` and
``weights`` of shape ``(graph slots, 128)``, weight 0 for unmeasured labels
and padding graphs. There is no model state (``None``).

Data: the prepared tfds ``ogbg_molpcba`` 0.1.3 under ``data_dir``
(``algoperf datasets ogbg --data_dir DIR``), read by ``workloads/ogbg/data.py``:
training batches are a pure function of the data seed and the batch index,
so a resume starts at its batch instead of replaying the ones before.
``synthetic=True`` streams random molecules of the real shapes and dtypes
instead (seeded by batch index and device shard), with small eval splits a
CPU can run.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from algoperf import jax_sharding_utils
from algoperf import spec
from workloads import evaluation
from workloads.batching import checked_batch_size, seed_words
from workloads.classification import param_types_from_params
from workloads.facts import VersionFacts
from workloads.ogbg import data
from workloads.ogbg import graphs as G
from workloads.ogbg import metrics as ogbg_metrics
from workloads.ogbg.model import DROPOUT_RATE, GNN, init_graph, variant_options

EVAL_SPLITS = ('eval_train', 'validation', 'test')


def synthetic_shard(seed: Tuple[int, ...], index: int, shard: int,
                    budget: G.Budget) -> Dict[str, np.ndarray]:
  """Shard ``shard`` of synthetic batch ``index``: the same on every process.

  Each shard is drawn from its own generator (seed, batch index, shard), so
  a process that holds some shards gets exactly those of the batch one
  process would make. It is full: ``budget.graphs`` random molecules.
  """
  generator = np.random.default_rng([*seed, index, int(shard)])
  store = G.random_graphs(generator, budget.graphs)
  return G.shard_arrays(store, np.arange(budget.graphs), budget)


def masked_sigmoid_cross_entropy(labels: jax.Array, logits: jax.Array,
                                 mask: jax.Array,
                                 label_smoothing: float = 0.0) -> jax.Array:
  """Per-label binary cross-entropy of ``(graphs, tasks)`` logits, 0 where ``mask`` is 0.

  Label smoothing as the reference's: ``optax.smooth_labels`` over the task
  axis, i.e. towards ``1 / tasks``, not ``1 / 2``.
  """
  if not logits.shape == labels.shape == mask.shape:
    raise ValueError(f'Shape mismatch between logits ({logits.shape}), targets '
                     f'({labels.shape}) and weights ({mask.shape}).')
  if logits.ndim != 2:
    raise ValueError(f'Rank of logits ({logits.shape}) must be 2.')
  # Unmeasured labels never reach the loss (nor a NaN its gradient).
  labels = jnp.where(mask, labels, 0.0)
  targets = optax.smooth_labels(labels, label_smoothing)
  losses = optax.sigmoid_binary_cross_entropy(logits, targets)
  return jnp.where(mask, losses, 0.0)


class OgbgWorkload(VersionFacts, spec.Workload):
  """GNN on ogbg-molpcba; variants change the activation or the model's sizes."""

  workload_name = 'ogbg'
  real_num_train_examples = 350_343
  real_num_eval_train_examples = 43_793
  real_num_validation_examples = 43_793
  real_num_test_examples = 43_793
  # Synthetic eval splits stay small enough for a CPU eval.
  synthetic_num_eval_examples = 64
  default_eval_batch_size = 32_768
  # The reference's answer for every variant: no parameter of the base model
  # is called Dense_17 (its decoder is Dense_15, ogbg_model_size's Dense_18).
  output_layer_name = 'Dense_17'

  def __init__(self, benchmark: Optional[str] = None,
               data_dir: Optional[str] = None, synthetic: bool = False) -> None:
    super().__init__()
    self._load_facts(benchmark)
    self._data_dir = data_dir
    self._synthetic = bool(synthetic)
    self._model = GNN(**variant_options(self.workload_name))
    self._jitted_eval_step = None
    # Eval batches, decoded at the first eval of each split and reused.
    self._eval_sources: Dict[Tuple[Any, ...], Any] = {}

  # --- facts -------------------------------------------------------------------

  @property
  def synthetic(self) -> bool:
    return self._synthetic

  @property
  def loss_type(self) -> spec.LossType:
    # Sic: the reference declares softmax cross-entropy for this sigmoid loss,
    # and submissions that branch on loss_type see what they saw there.
    return spec.LossType.SOFTMAX_CROSS_ENTROPY

  @property
  def num_train_examples(self) -> int:
    return self.real_num_train_examples

  @property
  def num_eval_train_examples(self) -> int:
    return (self.synthetic_num_eval_examples if self._synthetic
            else self.real_num_eval_train_examples)

  @property
  def num_validation_examples(self) -> int:
    return (self.synthetic_num_eval_examples if self._synthetic
            else self.real_num_validation_examples)

  @property
  def num_test_examples(self) -> int:
    return (self.synthetic_num_eval_examples if self._synthetic
            else self.real_num_test_examples)

  @property
  def eval_batch_size(self) -> int:
    return self.default_eval_batch_size

  @property
  def train_mean(self) -> Any:
    raise NotImplementedError('ogbg has no input normalisation constants.')

  @property
  def train_stddev(self) -> Any:
    raise NotImplementedError('ogbg has no input normalisation constants.')

  def is_output_params(self, param_key: spec.ParameterKey) -> bool:
    return param_key == self.output_layer_name

  # --- model -------------------------------------------------------------------

  def init_model_fn(self, rng: spec.RandomState) -> spec.ModelInitState:
    """Initial ``(params, None)``, params replicated; also sets shapes and types."""
    # The reference's split: its initial parameters for the same rng.
    _, params_rng = jax.random.split(rng, 2)
    variables = jax.jit(lambda key: self._model.init(
        {'params': key}, init_graph(), train=False))(params_rng)
    params = dict(variables['params'])
    self._param_shapes = jax.tree.map(lambda x: spec.ShapeTuple(x.shape), params)
    types = param_types_from_params(params)
    # The reference types the embeddings' kernels as embeddings.
    for name in ('node_embedding', 'edge_embedding'):
      types[name] = dict(types[name], kernel=spec.ParameterType.EMBEDDING)
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
    """Logits ``(graph slots, 128)`` and ``None`` (no model state).

    Dropout only in TRAIN mode, at ``dropout_rate`` (may be traced; ``None``
    means the reference's default, 0.1), drawn from ``rng``. The batch-norm
    flags are accepted and ignored (there is no batch norm).
    """
    del update_batch_norm, use_running_average_bn
    if model_state is not None and jax.tree.leaves(model_state):
      raise ValueError(f'Expected model_state to be None, received {model_state}.')
    if dropout_rate is None:
      dropout_rate = DROPOUT_RATE
    train = mode == spec.ForwardPassMode.TRAIN
    rngs = {'dropout': rng} if (train and rng is not None) else {}
    logits = self._model.apply(
        {'params': params}, augmented_and_preprocessed_input_batch['inputs'],
        train=train, dropout_rate=dropout_rate, rngs=rngs)
    return logits, None

  def loss_fn(
      self,
      label_batch: spec.Tensor,
      logits_batch: spec.Tensor,
      mask_batch: Optional[spec.Tensor] = None,
      label_smoothing: float = 0.0,
  ) -> Dict[str, spec.Tensor]:
    """Masked sigmoid cross-entropy per label, summed over the measured labels.

    ``per_example`` is ``(graph slots, 128)``, as the reference's;
    ``n_valid_examples`` is the mask's sum (measured labels), or the number
    of graph slots without a mask (then every label counts).
    """
    if mask_batch is None:
      mask = jnp.ones_like(logits_batch)
    else:
      mask = jnp.asarray(mask_batch)
    per_example = masked_sigmoid_cross_entropy(
        jnp.asarray(label_batch, logits_batch.dtype), logits_batch, mask,
        label_smoothing)
    n_valid_examples = (mask.sum() if mask_batch is not None
                        else per_example.shape[0])
    return {'summed': per_example.sum(), 'n_valid_examples': n_valid_examples,
            'per_example': per_example}

  # --- data --------------------------------------------------------------------

  def check_data(self) -> None:
    """Raises ``ConfigError`` (one line) if the prepared dataset is missing."""
    if not self._synthetic:
      data.split_counts(self._data_dir)

  def _synthetic_batches(self, seed: Tuple[int, ...], global_batch_size: int,
                         first: int) -> Iterator[G.Batch]:
    budget = G.Budget.for_graphs(global_batch_size // jax.device_count())
    shard_ids = G.local_shard_ids()
    index = first
    while True:
      shards = [synthetic_shard(seed, index, d, budget) for d in shard_ids]
      yield G.combine_shards(shards, shard_ids, budget)
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

    ``global_batch_size`` graphs per batch on average, as the reference: each
    device's shard has the budget of ``global_batch_size / devices`` graphs.
    The batches are a function of ``data_rng`` and their index only.
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
    return G.placed(batches, num_batches)

  # --- evaluation ----------------------------------------------------------------

  def _eval_source(self, split: str, num_examples: int, batch_size: int,
                   data_dir: Optional[str]) -> Any:
    """The split's eval batches, built at its first eval and reused after."""
    data_dir = data_dir or self._data_dir
    key = (split, num_examples, batch_size, None if self._synthetic else data_dir)
    if key not in self._eval_sources:
      graphs_per_device = batch_size // jax.device_count()
      if self._synthetic:
        # Each split has its own fixed seed: the same graphs at every eval.
        generator = np.random.default_rng([EVAL_SPLITS.index(split) + 1, 0])
        store = G.random_graphs(generator, num_examples)
        processes, index = jax.process_count(), jax.process_index()
        share = np.arange(num_examples * index // processes,
                          num_examples * (index + 1) // processes)
        self._eval_sources[key] = data.EvalBatches(store.take(share),
                                                   graphs_per_device)
      else:
        self._eval_sources[key] = data.eval_batches(data_dir, split, num_examples,
                                                    batch_size)
    return self._eval_sources[key]

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
    """mAP, mean loss and accuracy over the first ``num_examples`` graphs of ``split``."""
    del rng, global_step
    if split not in EVAL_SPLITS:
      raise ValueError(f'Cannot evaluate on split {split!r}; use {EVAL_SPLITS}.')
    num_devices = jax.device_count()
    batch_size = int(global_batch_size or self.eval_batch_size)
    # No more graphs than the split has, in whole device multiples.
    batch_size = min(batch_size, num_examples)
    batch_size = math.ceil(batch_size / num_devices) * num_devices
    if self._jitted_eval_step is None:
      self._jitted_eval_step = ogbg_metrics.jit_eval_step(self)
    source = self._eval_source(split, num_examples, batch_size, data_dir)
    return evaluation.evaluate(self._jitted_eval_step, params, model_state,
                               G.placed(source))


class OgbgGeluWorkload(OgbgWorkload):
  workload_name = 'ogbg_gelu'


class OgbgSiluWorkload(OgbgWorkload):
  workload_name = 'ogbg_silu'


class OgbgModelSizeWorkload(OgbgWorkload):
  workload_name = 'ogbg_model_size'
