"""The fastMRI knee single-coil data: the official ``.h5`` volumes, slice by slice.

On disk, as the reference reads it: ``DATA_DIR/knee_singlecoil_train/*.h5``
(973 volumes, 34,742 slices) and ``DATA_DIR/knee_singlecoil_val/*.h5`` (199
volumes). Each file is one volume: the dataset ``kspace`` (slices, 640, W)
complex64, the target ``reconstruction_esc`` (slices, 320, 320) float32 and
the attribute ``max`` (the volume's largest target value). As in the
reference, the official validation volumes are split by sorted file name: the
first 100 are the ``validation`` split (3,554 slices), the other 99 the
``test`` split (3,581 slices). ``eval_train`` is the first slices of the
train volumes in sorted order.

Preprocessing (:func:`preprocess`) is the reference's, op for op in
TensorFlow, so a slice comes out as the reference makes it: a random
column mask (the central 8% of columns plus random ones, 4x acceleration)
on the k-space, the centred orthonormal inverse 2-D FFT, the centre crop
to the target's shape, the magnitude, normalisation by the magnitude's mean
and standard deviation (the target with the same two numbers), both clipped
to [-6, 6]. Batches hold ``inputs`` and ``targets`` (rows, H, W) float32 and
``mean``, ``std``, ``volume_max`` (rows,) float32; eval batches add
``weights``. Masks: a train slice's mask is drawn from (data seed, slice), so
it is the same every epoch, as in the reference; validation and test use
the reference's fixed key for every slice, ``eval_train`` a fixed key per
slice.

Train order, chosen so that a resume can jump to any batch: each process
reads only its share of the train volumes (volume ``i`` goes to process
``i % process_count``). Epoch ``e`` of a process reads its volumes in a
permutation drawn from (seed, process, e), slices in file order, and
permutes each block of ``16 L`` consecutive slices (``L`` rows a process,
as many as the reference's shuffle buffer holds) by a permutation drawn from
(seed, process, e, block). Local batch ``n`` is stream positions
``[n L, (n + 1) L)``. Where position ``n L`` lies is arithmetic on the slice
counts (read from the files' shapes once), so a resume reads nothing it does
not yield.

Eval splits are read in file order: each process a contiguous share of the
split's first ``num_examples`` slices, its last batches padded with rows of
zeros and weight 0, so every process yields the same number of batches and
every slice counts once. An eval source keeps its batches after its first
full pass (about 0.8 MB a slice), as the reference caches its eval data.

Slices are read (h5py) and preprocessed (one traced TF function) by a pool
of Python threads, in order, a few batches ahead; the runner's prefetcher
overlaps the batches with the steps. TensorFlow and h5py are imported on
first use (TF kept off the GPUs).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import math
import os
import threading
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import jax
import numpy as np

from algoperf.errors import ConfigError

TRAIN_DIR = 'knee_singlecoil_train'
VAL_DIR = 'knee_singlecoil_val'
# The reference's split of the official validation volumes (sorted by name).
NUM_VALIDATION_VOLUMES = 100
# Slices of a complete copy, per split.
COUNTS = {'train': 34_742, 'validation': 3_554, 'test': 3_581}
CENTER_FRACTION = 0.08
ACCELERATION = 4.0
CLIP = 6.0
# Slices in a shuffle block, in local batches (the reference's buffer: 16).
BLOCK_BATCHES = 16
# The data seed of eval_train's masks.
EVAL_SEED = 0
_SPLIT_SOURCES = {'train': 'train', 'eval_train': 'train', 'validation': 'validation',
                  'test': 'test'}
# Tags of the independent random streams drawn from one seed.
_VOLUMES, _BLOCKS, _MASKS = 1, 2, 3
_OPEN_FILES = 32

INSTRUCTIONS = """\
fastMRI knee single-coil (NYU Langone): 973 train and 199 validation \
volumes as .h5 files; the validation volumes become the validation (first 100 \
by name) and test (the other 99) splits.
1. fastMRI is a manual download: fill in the data sharing agreement at \
https://fastmri.med.nyu.edu/ and use the links it e-mails you to download \
knee_singlecoil_train.tar.xz and knee_singlecoil_val.tar.xz (about 90 GB; \
allow about 110 GB unpacked). knee_singlecoil_test is not needed (it has no targets).
2. Unpack both into {data_dir}/ and name the folders knee_singlecoil_train and \
knee_singlecoil_val (the archives unpack to singlecoil_train/ and singlecoil_val/): \
`tar -xJf knee_singlecoil_train.tar.xz -C {data_dir} && mv {data_dir}/singlecoil_train \
{data_dir}/knee_singlecoil_train`, and the same for val. Nothing else needs preparing.
3. `algoperf datasets fastmri --data_dir {data_dir}` verifies the slice counts; run \
with `--data_dir {data_dir}`."""


def instructions(data_dir: str) -> str:
  """:data:`INSTRUCTIONS` for ``data_dir`` (its one placeholder)."""
  return INSTRUCTIONS.format(data_dir=data_dir)


class DatasetMissingError(ConfigError):
  """The fastMRI volumes are not where the run looks for them."""


# --- libraries -------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _tf() -> Any:
  """``tensorflow``, imported once and kept off the GPUs (JAX holds them)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass  # TF was already initialised by the caller; its choice stands.
  return tf


def _h5py() -> Any:
  import h5py  # pylint: disable=import-outside-toplevel

  return h5py


# --- the volumes ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Volumes:
  """The volumes of one split, in sorted order, and their slice counts."""

  paths: Tuple[str, ...]
  lengths: Tuple[int, ...]

  @property
  def num_slices(self) -> int:
    return sum(self.lengths)

  @property
  def offsets(self) -> np.ndarray:
    """The split-wide index of each volume's first slice."""
    return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)


def _missing(message: str) -> DatasetMissingError:
  return DatasetMissingError(
      f'{message}. Run `algoperf datasets fastmri --data_dir DIR` for how to get '
      'the fastMRI knee single-coil volumes and pass --data_dir DIR (or '
      '--synthetic_data for random slices of the real shapes).')


def _volume_paths(data_dir: Optional[str], folder: str) -> List[str]:
  if not data_dir:
    raise _missing('No data folder given for fastmri')
  directory = Path(data_dir).expanduser() / folder
  if not directory.is_dir():
    raise _missing(f'The fastMRI folder {directory} is missing')
  paths = sorted(str(p) for p in directory.glob('*.h5'))
  if not paths:
    raise _missing(f'The fastMRI folder {directory} has no .h5 files')
  return paths


def _num_slices(path: str) -> int:
  """The slice count of a volume, from its shape (nothing is decoded)."""
  with _h5py().File(path, 'r') as f:
    return int(f['kspace'].shape[0])


@functools.lru_cache(maxsize=None)
def _folder_volumes(data_dir: str, folder: str) -> Volumes:
  paths = _volume_paths(data_dir, folder)
  return Volumes(tuple(paths), tuple(_num_slices(p) for p in paths))


def volumes(data_dir: Optional[str], split: str) -> Volumes:
  """The volumes of ``split`` (``train``, ``eval_train``, ``validation``, ``test``).

  Raises:
    DatasetMissingError: the split's folder is missing or holds no volumes.
  """
  if split not in _SPLIT_SOURCES:
    raise ValueError(f'Unknown fastmri split {split!r}; use one of '
                     f'{tuple(_SPLIT_SOURCES)}.')
  source = _SPLIT_SOURCES[split]
  if not data_dir:
    raise _missing('No data folder given for fastmri')
  data_dir = str(Path(data_dir).expanduser())
  if source == 'train':
    return _folder_volumes(data_dir, TRAIN_DIR)
  found = _folder_volumes(data_dir, VAL_DIR)
  part = (slice(None, NUM_VALIDATION_VOLUMES) if source == 'validation'
          else slice(NUM_VALIDATION_VOLUMES, None))
  return Volumes(found.paths[part], found.lengths[part])


def split_counts(data_dir: Optional[str]) -> Dict[str, int]:
  """Slices of ``train``, ``validation`` and ``test``, from the files' shapes.

  Raises:
    DatasetMissingError: a folder is missing or empty.
  """
  return {split: volumes(data_dir, split).num_slices
          for split in ('train', 'validation', 'test')}


def image_shape(found: Volumes) -> Tuple[int, int]:
  """The target shape of the split's slices (320 x 320 in the real data)."""
  with _h5py().File(found.paths[0], 'r') as f:
    return tuple(int(n) for n in f['reconstruction_esc'].shape[1:])


class SliceReader:
  """Reads slices of volumes, keeping the most recently used files open.

  Thread-safe: slices are loaded from several threads (h5py serialises the
  reads themselves anyway).
  """

  def __init__(self, paths: Sequence[str], max_open: int = _OPEN_FILES) -> None:
    self._paths = tuple(paths)
    self._max_open = max_open
    self._open: 'collections.OrderedDict[int, Any]' = collections.OrderedDict()
    self._lock = threading.Lock()

  def _file(self, volume: int) -> Any:
    if volume in self._open:
      self._open.move_to_end(volume)
      return self._open[volume]
    if len(self._open) >= self._max_open:
      _, oldest = self._open.popitem(last=False)
      oldest.close()
    handle = _h5py().File(self._paths[volume], 'r')
    self._open[volume] = handle
    return handle

  def read(self, volume: Any, index: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(kspace complex64 (rows, W), target float32 (H, W), volume max float32)``."""
    with self._lock:
      f = self._file(int(volume))
      index = int(index)
      return (np.asarray(f['kspace'][index], np.complex64),
              np.asarray(f['reconstruction_esc'][index], np.float32),
              np.float32(f.attrs.get('max', 0.0)))

  def close(self) -> None:
    with self._lock:
      while self._open:
        self._open.popitem()[1].close()


# --- preprocessing -------------------------------------------------------------------


def sampling_mask(num_cols: Any, seed: Any) -> Any:
  """The reference's column mask, float32 ``(num_cols,)``: centre band plus random.

  The central ``int(0.08 * W)`` columns always; every other column with the
  probability that makes 1/4 of all columns kept on average, drawn by
  ``stateless_uniform`` from ``seed``.
  """
  tf = _tf()
  cols = tf.cast(num_cols, tf.float32)
  num_low = tf.cast(cols * CENTER_FRACTION, tf.int32)
  start = (num_cols - num_low + 1) // 2
  index = tf.range(num_cols)
  center = tf.cast((index >= start) & (index < start + num_low), tf.float32)
  low = tf.cast(num_low, tf.float32)
  prob = (cols / ACCELERATION - low) / (cols - low)
  drawn = tf.cast(tf.random.stateless_uniform((num_cols,), seed) < prob, tf.float32)
  return tf.maximum(center, drawn)


def preprocess(kspace: Any, target: Any, volume_max: Any, seed: Any) -> Dict[str, Any]:
  """One slice as the model sees it; TF ops, the reference's, in its order.

  Args:
    kspace: complex64 ``(rows, cols)``.
    target: float32 ``(H, W)``, the reconstruction to learn.
    volume_max: the volume's ``max`` attribute.
    seed: a (2,) int stateless seed for the mask.
  """
  tf = _tf()
  shape = tf.shape(kspace)
  mask = sampling_mask(shape[1], seed)
  masked = kspace * tf.cast(mask[None, :], tf.complex64)
  image = tf.signal.fftshift(
      tf.signal.ifft2d(tf.signal.ifftshift(masked, axes=(0, 1))), axes=(0, 1))
  # Orthonormal scaling: tf's ifft2d divides by rows * cols.
  image = image * tf.cast(tf.sqrt(tf.cast(shape[0] * shape[1], tf.float32)),
                          tf.complex64)
  height, width = tf.shape(target)[0], tf.shape(target)[1]
  top, left = (shape[0] - height) // 2, (shape[1] - width) // 2
  image = image[top:top + height, left:left + width]
  real, imag = tf.math.real(image), tf.math.imag(image)
  magnitude = tf.sqrt(real**2 + imag**2)
  mean = tf.reduce_mean(magnitude)
  std = tf.math.reduce_std(magnitude)
  return {
      'inputs': tf.clip_by_value((magnitude - mean) / std, -CLIP, CLIP),
      'targets': tf.clip_by_value((target - mean) / std, -CLIP, CLIP),
      'mean': mean,
      'std': std,
      'volume_max': tf.cast(volume_max, tf.float32),
  }


# --- loading slices -------------------------------------------------------------


def _root_key(seed: Sequence[int]) -> np.ndarray:
  """A (2,) int64 TF seed from any sequence of non-negative integers."""
  words = np.random.SeedSequence([int(w) % 2**64 for w in seed]).generate_state(
      2, np.uint64)
  return words.view(np.int64)


def mask_seed(split: str, seed: Sequence[int], slice_id: int) -> np.ndarray:
  """The (2,) int64 seed of a slice's mask.

  ``validation`` and ``test``: the reference's fixed key
  (``jax.random.PRNGKey(0)`` as int64) for every slice; ``train``: one per
  (data seed, slice), the same every epoch; ``eval_train``: one per slice
  from the fixed :data:`EVAL_SEED`.
  """
  if split in ('validation', 'test'):
    return np.zeros((2,), np.int64)
  if split == 'eval_train':
    seed = (EVAL_SEED,)
  return _root_key((*seed, _MASKS, slice_id))


@functools.lru_cache(maxsize=None)
def _preprocess_function() -> Callable[..., Dict[str, Any]]:
  """:func:`preprocess` as one traced TF graph (safe to call from many threads)."""
  tf = _tf()
  return tf.function(preprocess, input_signature=[
      tf.TensorSpec([None, None], tf.complex64), tf.TensorSpec([None, None], tf.float32),
      tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int64)])


class SliceLoader:
  """``record -> one preprocessed slice`` (numpy) for one split and data seed.

  A record is ``(volume, slice, slice id)``: the volume's index in the
  split, the slice within it, the slice's split-wide index.
  """

  def __init__(self, found: Volumes, split: str, seed: Sequence[int] = ()) -> None:
    self.reader = SliceReader(found.paths)
    self.split = split
    self.seed = tuple(int(w) for w in seed)
    self.shape = image_shape(found)

  def __call__(self, record: Sequence[int]) -> Dict[str, np.ndarray]:
    volume, index, slice_id = (int(v) for v in record)
    kspace, target, volume_max = self.reader.read(volume, index)
    out = _preprocess_function()(kspace, target, volume_max,
                                 mask_seed(self.split, self.seed, slice_id))
    return {k: v.numpy() for k, v in out.items()}

  def padding(self) -> Dict[str, np.ndarray]:
    """A padding row: zeros of a slice's shapes and dtypes, weight 0."""
    zero = np.float32(0.0)
    return {'inputs': np.zeros(self.shape, np.float32),
            'targets': np.zeros(self.shape, np.float32),
            'mean': zero, 'std': zero, 'volume_max': zero, 'weights': zero}


def _num_workers() -> int:
  return max(2, min(16, os.cpu_count() or 1))


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any],
                ahead: int) -> Iterator[Any]:
  """``fn`` of each item in a thread pool, yielded in order, ``ahead`` at most in flight.

  The threads are Python's: unlike a tf.data map over a Python function,
  nothing keeps calling into the interpreter while it shuts down, so a
  process that drops an endless stream still exits. Closing the generator
  cancels the work not started.
  """
  executor = concurrent.futures.ThreadPoolExecutor(
      _num_workers(), thread_name_prefix='fastmri')
  pending: Deque[concurrent.futures.Future] = collections.deque()
  try:
    for item in items:
      pending.append(executor.submit(fn, item))
      if len(pending) >= ahead:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()
  finally:
    for future in pending:
      future.cancel()
    executor.shutdown(wait=False, cancel_futures=True)


def _stack(rows: Sequence[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
  return {k: np.stack([row[k] for row in rows]) for k in rows[0]}


def _local_rows(global_batch_size: int) -> int:
  count = jax.process_count()
  if global_batch_size <= 0 or global_batch_size % count:
    raise ValueError(f'global_batch_size {global_batch_size} must be a positive '
                     f'multiple of the process count ({count}).')
  return global_batch_size // count


# --- train ----------------------------------------------------------------------------


class TrainOrder:
  """The seekable slice order of one process (see the module docstring).

  Records are :class:`SliceLoader`'s: ``(volume, slice, slice id)``.
  """

  def __init__(self, found: Volumes, seed: Sequence[int], block_size: int,
               process_index: int = 0, process_count: int = 1) -> None:
    if len(found.paths) < process_count:
      raise ValueError(
          f'{len(found.paths)} train volumes cannot be shared by {process_count} '
          'processes: every process needs at least one.')
    self.seed = tuple(int(w) for w in seed)
    self.process_index = process_index
    self.volume_ids = np.arange(len(found.paths))[process_index::process_count]
    self.lengths = np.asarray(found.lengths, np.int64)[self.volume_ids]
    self.offsets = found.offsets[self.volume_ids]
    self.epoch_length = int(self.lengths.sum())
    self.block_size = int(block_size)

  def _generator(self, *tags: int) -> np.random.Generator:
    return np.random.default_rng([*self.seed, self.process_index, *tags])

  def epoch_records(self, epoch: int) -> np.ndarray:
    """Epoch ``epoch``'s records in reading order, before the block shuffle."""
    order = self._generator(_VOLUMES, epoch).permutation(len(self.volume_ids))
    lengths = self.lengths[order]
    local = np.repeat(order, lengths)
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    slices = np.arange(self.epoch_length) - first
    return np.stack([self.volume_ids[local], slices, self.offsets[local] + slices], 1)

  def records(self, position: int) -> Iterator[Tuple[int, int, int]]:
    """Endless records from stream position ``position`` on (nothing before it is made)."""
    epoch, within = divmod(int(position), self.epoch_length)
    block, drop = divmod(within, self.block_size)
    while True:
      table = self.epoch_records(epoch)
      for start in range(block * self.block_size, self.epoch_length, self.block_size):
        rows = table[start:start + self.block_size]
        rows = rows[self._generator(_BLOCKS, epoch, block).permutation(len(rows))]
        for record in rows[drop:]:
          yield tuple(int(v) for v in record)
        block, drop = block + 1, 0
      epoch, block = epoch + 1, 0


def train_batches(data_dir: str, seed: Sequence[int], global_batch_size: int,
                  start: int = 0, *,
                  block_batches: int = BLOCK_BATCHES) -> Iterator[Dict[str, np.ndarray]]:
  """This process's rows of global train batches ``start``, ``start + 1``, ... (endless).

  ``global_batch_size // jax.process_count()`` rows a batch, with the keys
  the reference's train batches have (no ``weights``). A pure function of
  ``seed`` and the batch index: ``start=n`` yields what ``start=0`` yields
  from its ``n``-th batch on, reading only the slices it yields.
  """
  rows = _local_rows(global_batch_size)
  # Looked up now, not at the first batch: missing data fails here.
  found = volumes(data_dir, 'train')
  order = TrainOrder(found, seed, block_batches * rows, jax.process_index(),
                     jax.process_count())
  loader = SliceLoader(found, 'train', seed)

  def batches() -> Iterator[Dict[str, np.ndarray]]:
    examples = ordered_map(loader, order.records(int(start) * rows),
                           ahead=max(2 * rows, 2 * _num_workers()))
    try:
      while True:
        yield _stack([next(examples) for _ in range(rows)])
    finally:
      examples.close()

  return batches()


# --- eval ----------------------------------------------------------------------------------


def process_share(num_examples: int, process_index: int,
                  process_count: int) -> Tuple[int, int]:
  """``[begin, end)``: the contiguous part of ``num_examples`` a process evaluates."""
  per_process = math.ceil(num_examples / process_count)
  begin = min(process_index * per_process, num_examples)
  return begin, min(begin + per_process, num_examples)


def _slice_records(found: Volumes, begin: int, end: int) -> np.ndarray:
  """Records of the split's slices ``[begin, end)`` in file order."""
  ids = np.arange(begin, end, dtype=np.int64)
  ends = np.cumsum(found.lengths)
  volume = np.searchsorted(ends, ids, side='right')
  return np.stack([volume, ids - found.offsets[volume], ids], 1).reshape(-1, 3)


class EvalBatches:
  """This process's padded eval batches of one split; each ``iter`` is a pass.

  Every pass yields ``len(self)`` batches of ``rows`` rows; padding rows
  are zeros with weight 0. With ``cache`` the batches of the first full
  pass are kept and replayed.
  """

  def __init__(self, data_dir: str, split: str, num_examples: int,
               global_batch_size: int, cache: bool = True) -> None:
    found = volumes(data_dir, split)
    if num_examples > found.num_slices:
      raise ValueError(f'Cannot evaluate on {num_examples} slices: {split} has '
                       f'{found.num_slices}.')
    self.rows = _local_rows(global_batch_size)
    count = jax.process_count()
    begin, end = process_share(num_examples, jax.process_index(), count)
    self.num_batches = math.ceil(math.ceil(num_examples / count) / self.rows)
    self._records = _slice_records(found, begin, end)
    self._loader = SliceLoader(found, split)
    self._cache = cache
    self._batches: Optional[List[Dict[str, np.ndarray]]] = None

  def __len__(self) -> int:
    return self.num_batches

  def _weighted(self, record: Sequence[int]) -> Dict[str, np.ndarray]:
    return {**self._loader(record), 'weights': np.float32(1.0)}

  def _read(self) -> Iterator[Dict[str, np.ndarray]]:
    examples = ordered_map(self._weighted, self._records,
                           ahead=max(2 * self.rows, 2 * _num_workers()))
    padding = self._loader.padding()
    try:
      for _ in range(self.num_batches):
        yield _stack([next(examples, padding) for _ in range(self.rows)])
    finally:
      examples.close()

  def __iter__(self) -> Iterator[Dict[str, np.ndarray]]:
    if self._batches is not None:
      yield from self._batches
      return
    seen = []
    for batch in self._read():
      if self._cache:
        seen.append(batch)
      yield batch
    if self._cache:
      self._batches = seen


def eval_batches(data_dir: str, split: str, num_examples: int, global_batch_size: int,
                 cache: bool = True) -> Iterable[Dict[str, np.ndarray]]:
  """This process's rows of the padded eval batches of ``split`` (re-iterable).

  ``split``: ``eval_train`` (the first ``num_examples`` train slices in
  sorted file order), ``validation`` or ``test``. Every process yields the
  same number of batches of ``global_batch_size // process_count`` rows;
  across processes each of the ``num_examples`` slices appears once with
  weight 1.
  """
  return EvalBatches(data_dir, split, int(num_examples), int(global_batch_size), cache)


__all__ = ['COUNTS', 'DatasetMissingError', 'EvalBatches', 'INSTRUCTIONS', 'SliceLoader',
           'SliceReader', 'TrainOrder', 'Volumes', 'eval_batches', 'image_shape',
           'instructions', 'mask_seed', 'ordered_map', 'preprocess', 'process_share',
           'sampling_mask', 'split_counts', 'train_batches', 'volumes']
