"""The ogbg-molpcba input pipeline on the prepared tfds dataset: seekable train order.

Reads the TFRecord shards of ``ogbg_molpcba`` 0.1.3 as ``tfds`` prepares them
under ``data_dir`` (``algoperf datasets ogbg --data_dir DIR``), taking file
names, per-shard record counts and the feature spec from the dataset's
metadata. The molecules are small (350,343 train graphs, about 600 MB
decoded), so each process parses its share into host memory once, a batch
of records per vectorised ``tf.io.parse_example`` (tens of thousands of graphs
a second on 2 cores), as a :class:`~workloads.ogbg.graphs.GraphStore`, and
makes batches with numpy in the reference's format
(``workloads/ogbg/graphs.py``; a few ms for 512 graphs).

Train order, chosen so that a resume can jump to any batch:

* Process ``p`` of ``P`` owns the train records whose index (in the
  metadata's file order) is ``p`` modulo ``P``, and parses only those.
* Its stream is a sequence of epochs; epoch ``e`` is a permutation of its
  graphs drawn from (seed, ``p``, ``e``). Graphs too big for an empty shard
  (only possible with a few graphs per device) are left out, where the
  reference would stop with an error.
* Shards are packed greedily along the stream as ``jraph.dynamically_batch``
  packs them (a shard may take the last graphs of one epoch and the first of
  the next, as the reference's repeated dataset does), and local batch ``n``
  is shards ``[n L, (n + 1) L)`` of the stream, ``L`` = local devices. One
  process on every device: batch ``n`` is ``D`` consecutive shards of one
  stream, the reference's layout.

How many graphs a shard takes depends only on graph sizes, so starting at
batch ``n`` is a scan over the sizes of the epochs before it (numpy, about
0.1 s an epoch of the real train split: seconds for a resume at step 52,000
of batch size 512) that assembles nothing before batch ``n``; the
batches from there on are exactly those an uninterrupted run yields.

Eval splits (``eval_train`` is the first graphs of the train split in file
order): each process decodes a contiguous share of the first
``num_examples`` graphs, packs it with the same greedy rule into shards big
enough for the split's largest graph, and deals the shards to its devices in
order; every process yields the same number of batches (eval steps are
collective), padded with empty shards, so every graph counts exactly once.

TensorFlow is imported on first use (and kept off the GPUs, which JAX uses).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import jax
import numpy as np

from algoperf.errors import ConfigError
from workloads.ogbg import graphs as G

TFDS_NAME = 'ogbg_molpcba'
TFDS_VERSION = '0.1.3'
# Which tfds split each benchmark split reads.
TFDS_SPLITS = {'train': 'train', 'eval_train': 'train',
               'validation': 'validation', 'test': 'test'}
# Tags of the independent random streams drawn from one seed.
_TRAIN_ORDER = 1
# Records parsed per tf.io.parse_example call.
_DECODE_BATCH = 4096

INSTRUCTIONS = (
    'ogbg: tfds `ogbg_molpcba` 0.1.3 (molecules of OGB\'s molpcba: 350,343 '
    'train, 43,793 validation and 43,793 test graphs).\n'
    'tfds downloads it itself (OGB\'s pcba.zip, tens of MB; needs the '
    'internet): `algoperf datasets ogbg --data_dir {data_dir} --prepare` runs '
    '`tfds.builder(\'ogbg_molpcba:0.1.3\', data_dir=\'{data_dir}\')'
    '.download_and_prepare()` (minutes; the prepared records take under 1 GB) '
    'and verifies every split.\n'
    'Then run with `--data_dir {data_dir}`.')


class DatasetMissingError(ConfigError):
  """The prepared ogbg_molpcba dataset is not where the run looks for it."""


def instructions(data_dir: str) -> str:
  """How to get the dataset into ``data_dir`` (for ``algoperf datasets ogbg``)."""
  return INSTRUCTIONS.format(data_dir=data_dir)


# --- TensorFlow and tfds --------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _tf() -> Any:
  """``tensorflow``, imported once and kept off the GPUs (JAX holds them)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass  # TF was already initialised by the caller; its choice stands.
  return tf


def _tfds() -> Any:
  _tf()
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  return tfds


def prepare(data_dir: str) -> None:
  """Downloads and prepares ``ogbg_molpcba:0.1.3`` under ``data_dir`` with tfds."""
  _tfds().builder(f'{TFDS_NAME}:{TFDS_VERSION}',
                  data_dir=str(data_dir)).download_and_prepare()


def dataset_dir(data_dir: str) -> Path:
  """Where tfds prepares the dataset under ``data_dir``."""
  return Path(data_dir).expanduser() / TFDS_NAME / TFDS_VERSION


@functools.lru_cache(maxsize=None)
def _info(directory: str) -> Any:
  """The tfds ``DatasetInfo`` of the prepared folder (read once)."""
  return _tfds().builder_from_directory(directory).info


def _prepared_info(data_dir: Optional[str]) -> Any:
  if not data_dir:
    raise DatasetMissingError(
        f'No data folder given for {TFDS_NAME}:{TFDS_VERSION}; run `algoperf '
        'datasets ogbg --data_dir DIR --prepare` and pass --data_dir DIR (or '
        '--synthetic_data for random molecules of the real shapes).')
  directory = dataset_dir(data_dir)
  if not (directory / 'dataset_info.json').is_file():
    raise DatasetMissingError(
        f'The prepared dataset {TFDS_NAME}:{TFDS_VERSION} is missing: '
        f'{directory} has no dataset_info.json. Run `algoperf datasets ogbg '
        f'--data_dir {data_dir} --prepare` to prepare it (or pass '
        '--synthetic_data for random molecules of the real shapes).')
  return _info(str(directory))


@dataclasses.dataclass(frozen=True)
class SplitFiles:
  """The TFRecord shards of one prepared split, in the metadata's order."""

  paths: Tuple[str, ...]
  lengths: Tuple[int, ...]

  @property
  def num_examples(self) -> int:
    return sum(self.lengths)


def split_files(data_dir: Optional[str], split: str) -> SplitFiles:
  """The shard paths and record counts of tfds split ``split``."""
  info = _prepared_info(data_dir)
  if split not in info.splits:
    raise DatasetMissingError(
        f'{dataset_dir(data_dir)} has no {split!r} split; run `algoperf datasets '
        f'ogbg --data_dir {data_dir} --prepare` to prepare it.')
  found = info.splits[split]
  directory = dataset_dir(data_dir)
  return SplitFiles(tuple(str(directory / f) for f in found.filenames),
                    tuple(int(n) for n in found.shard_lengths))


def split_counts(data_dir: Optional[str]) -> Dict[str, int]:
  """Graphs in ``train``, ``validation`` and ``test``, from the tfds metadata.

  Raises:
    DatasetMissingError: the prepared dataset (or a split) is not there.
  """
  return {split: split_files(data_dir, split).num_examples
          for split in ('train', 'validation', 'test')}


# --- decoding -------------------------------------------------------------------------


def _parse_spec(features: Any) -> Dict[str, Any]:
  """``tf.io.parse_example`` features for the records, from their tfds serialisation.

  tfds writes each field as one flat list (``(None, 9)`` node features as
  ``9 n`` floats), so a batch of records parses in one vectorised op, far
  faster than decoding record by record; the trailing shapes come back from
  the serialised info.
  """
  tf = _tf()
  spec = {}
  for name, info in features.get_serialized_info().items():
    shape = tuple(info.shape)
    if shape and shape[0] is None:
      spec[name] = tf.io.RaggedFeature(info.tf_dtype)
    else:
      spec[name] = tf.io.FixedLenFeature(shape, info.tf_dtype)
  return spec


def read_graphs(files: SplitFiles, start: int, stop: int, step: int = 1,
                offset: int = 0) -> G.GraphStore:
  """Records ``start <= i < stop`` with ``i % step == offset``, decoded in order.

  Opens only the files that hold the range; records outside it or of another
  residue are skipped without being parsed.
  """
  tf = _tf()
  features = _info(str(Path(files.paths[0]).parent)).features
  serialized = features.get_serialized_info()
  widths = {name: int(np.prod(serialized[name].shape[1:], dtype=np.int64))
            for name in ('node_feat', 'edge_feat', 'edge_index')}
  stop = min(int(stop), files.num_examples)
  if stop <= start:
    return G.GraphStore.empty()
  ends = np.cumsum(files.lengths)
  first = int(np.searchsorted(ends, start, side='right'))
  last = int(np.searchsorted(ends, stop - 1, side='right'))
  skip = start - (int(ends[first - 1]) if first else 0)
  records = tf.data.TFRecordDataset(list(files.paths[first:last + 1]))
  records = records.skip(skip).take(stop - start)
  if step > 1:
    # Element j of the range is record start + j.
    records = records.shard(step, (offset - start) % step)
  spec = _parse_spec(features)
  batches = (records.batch(_DECODE_BATCH)
             .map(lambda batch: tf.io.parse_example(batch, spec),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
             .prefetch(2))
  parts = []
  for example in batches:
    flat = {name: example[name].flat_values.numpy().reshape(-1, width)
            for name, width in widths.items()}
    n_node = example['node_feat'].row_lengths().numpy() // widths['node_feat']
    n_edge = example['edge_index'].row_lengths().numpy() // widths['edge_index']
    if not np.array_equal(example['num_nodes'].flat_values.numpy(), n_node):
      raise ValueError(f'{files.paths[first]}: a record\'s num_nodes disagrees '
                       'with its node_feat.')
    parts.append(G.GraphStore(
        n_node=n_node, n_edge=n_edge, nodes=flat['node_feat'],
        edge_feat=flat['edge_feat'],
        edge_index=flat['edge_index'].astype(np.int32),
        labels=example['labels'].numpy()))
  return G.GraphStore.concatenate(parts)


# One decoded train share per (folder, process count, process): a resume or a
# second input queue reuses it.
_TRAIN_STORES: Dict[Tuple[str, int, int], G.GraphStore] = {}


def _train_store(data_dir: str, process_count: int, process_index: int) -> G.GraphStore:
  key = (str(dataset_dir(data_dir)), process_count, process_index)
  if key not in _TRAIN_STORES:
    files = split_files(data_dir, 'train')
    _TRAIN_STORES[key] = read_graphs(files, 0, files.num_examples,
                                     step=process_count, offset=process_index)
  return _TRAIN_STORES[key]


# --- the train order ------------------------------------------------------------------


class TrainStream:
  """The seekable shard sequence of one process (see the module docstring)."""

  def __init__(self, n_node: np.ndarray, n_directed_edge: np.ndarray,
               budget: G.Budget, seed: Sequence[int], process_index: int = 0) -> None:
    self.n_node = np.asarray(n_node, np.int64)
    self.n_edge = np.asarray(n_directed_edge, np.int64)
    self.budget = budget
    self._seed = [int(w) for w in seed]
    self._process_index = int(process_index)
    self.usable = np.flatnonzero(budget.fits(self.n_node, self.n_edge))
    if not len(self.usable):
      raise ValueError(f'No train graph fits a shard of budget {budget}.')

  @property
  def epoch_length(self) -> int:
    return len(self.usable)

  def epoch_order(self, epoch: int) -> np.ndarray:
    """Graph indices (into the process's store) of epoch ``epoch``, in stream order."""
    generator = np.random.default_rng(
        [*self._seed, _TRAIN_ORDER, self._process_index, int(epoch)])
    return self.usable[generator.permutation(len(self.usable))]

  def shards(self, first: int = 0) -> Iterator[np.ndarray]:
    """The graphs of every shard from shard ``first`` on (endless)."""
    length = self.epoch_length
    # A shard reaches at most this far past its epoch's end (further than
    # one epoch only on a toy dataset).
    reach = self.budget.graphs
    orders: Dict[int, np.ndarray] = {}
    epoch, position, shard = 0, 0, 0
    while True:
      ahead = -(-(length + reach) // length)  # Epochs the window spans.
      for e in range(epoch, epoch + ahead):
        if e not in orders:
          orders[e] = self.epoch_order(e)
      window = np.concatenate([orders[e] for e in range(epoch, epoch + ahead)])
      window = window[:length + reach]
      counts = G.pack_counts(self.n_node[window], self.n_edge[window],
                             self.budget).tolist()
      starts = G.pack_starts(counts, position, length)
      if shard + len(starts) > first:
        for q in starts[max(first - shard, 0):]:
          yield window[q:q + counts[q]]
      shard += len(starts)
      if starts:
        position = starts[-1] + counts[starts[-1]]
      position -= length
      orders.pop(epoch)
      epoch += 1


def train_batches(data_dir: str, seed: Sequence[int], global_batch_size: int,
                  start_position: int = 0) -> Iterator[G.Batch]:
  """This process's part of every global train batch from ``start_position`` on."""
  num_devices = jax.device_count()
  if global_batch_size % num_devices:
    raise ValueError(f'global_batch_size {global_batch_size} is not a multiple of '
                     f'the device count ({num_devices}).')
  budget = G.Budget.for_graphs(global_batch_size // num_devices)
  store = _train_store(data_dir, jax.process_count(), jax.process_index())
  stream = TrainStream(store.n_node, store.n_directed_edge, budget, seed,
                       jax.process_index())
  shard_ids = G.local_shard_ids()
  per_batch = len(shard_ids)
  shards = stream.shards(int(start_position) * per_batch)
  while True:
    parts = [G.shard_arrays(store, next(shards), budget) for _ in range(per_batch)]
    yield G.combine_shards(parts, shard_ids, budget)


# --- eval -----------------------------------------------------------------------------


def _agree_max(values: Sequence[int]) -> List[int]:
  """The element-wise maximum of ``values`` over all processes (a collective)."""
  local = np.asarray(values, np.int64)
  if jax.process_count() == 1:
    return [int(v) for v in local]
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  gathered = np.asarray(multihost_utils.process_allgather(local))
  return [int(v) for v in gathered.max(axis=0)]


class EvalBatches:
  """The padded eval batches of this process's share of a split (re-iterable).

  The graphs are decoded once; each pass assembles the batches anew.
  """

  def __init__(self, store: G.GraphStore, graphs_per_device: int) -> None:
    self.store = store
    self.shard_ids = G.local_shard_ids()
    base = G.Budget.for_graphs(graphs_per_device)
    largest = [int(store.n_node.max(initial=0)),
               int(store.n_directed_edge.max(initial=0))]
    most_nodes, most_edges = _agree_max(largest)
    # Every graph must be counted: shards grow to the split's largest graph.
    self.budget = G.Budget(base.graphs, max(base.nodes, most_nodes),
                           max(base.edges, most_edges))
    counts = G.pack_counts(store.n_node, store.n_directed_edge, self.budget).tolist()
    starts = G.pack_starts(counts, 0, len(store))
    self.shards = [np.arange(q, q + counts[q]) for q in starts]
    local_batches = math.ceil(len(self.shards) / len(self.shard_ids))
    self.num_batches = _agree_max([local_batches])[0]

  def __iter__(self) -> Iterator[G.Batch]:
    per_batch = len(self.shard_ids)
    for b in range(self.num_batches):
      parts = []
      for graphs in self.shards[b * per_batch:(b + 1) * per_batch]:
        parts.append(G.shard_arrays(self.store, graphs, self.budget))
      while len(parts) < per_batch:
        parts.append(G.empty_shard(self.budget))
      yield G.combine_shards(parts, self.shard_ids, self.budget)


def eval_batches(data_dir: str, split: str, num_examples: int,
                 global_batch_size: int) -> EvalBatches:
  """This process's part of the eval batches over the first ``num_examples`` graphs."""
  if split not in ('eval_train', 'validation', 'test'):
    raise ValueError(f'Unknown eval split {split!r}.')
  files = split_files(data_dir, TFDS_SPLITS[split])
  if num_examples > files.num_examples:
    raise ValueError(f'{split} has {files.num_examples} graphs; asked for {num_examples}.')
  processes, index = jax.process_count(), jax.process_index()
  start = num_examples * index // processes
  stop = num_examples * (index + 1) // processes
  store = read_graphs(files, start, stop)
  graphs_per_device = math.ceil(global_batch_size / jax.device_count())
  return EvalBatches(store, graphs_per_device)
