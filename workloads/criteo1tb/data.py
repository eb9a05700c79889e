"""The Criteo 1TB click logs, read as the reference reads them, in a seekable order.

The data folder holds the day files split as the reference's setup script
splits them: ``day_0`` .. ``day_23`` (one decompressed TSV a day), each cut
into 5,000,000-line pieces ``day_D_00``, ``day_D_01``, ... (``split -a 2 -d
-l 5000000``): 885 files, 1.1 TB. A line is a click label, 13 integer
features and 26 categorical features (8-digit hex hashes), tab-separated;
missing values are empty.

Splits, as the reference's: ``train`` is days 0-22 (4,195,197,692 lines);
day 23's first 19 pieces (``day_23_00`` .. ``day_23_18``, 95,000,000 lines)
are ``test`` and its last 17 (``day_23_19`` .. ``day_23_35``, 83,274,637)
``validation``. ``eval_train`` is the first examples of the train files in
their natural order (day, then piece).

Preprocessing, as the reference's (``parse_lines``): a missing value or
``-1`` is 0 for an integer feature and ``00000000`` for a categorical one;
integer features become ``log(max(x, 0) + 1)``; categorical feature ``i``
(0-25) becomes ``farmhash64(value + str(i)) % VOCAB_SIZES[i]`` (TensorFlow's
``to_hash_bucket_fast``), stored as float32 (so ids above 2**24 are rounded,
as in the reference); ``inputs`` are the 13 + 26 floats, ``targets`` the
float32 label.

Train order: the reference reads whole files in a shuffled order and the
lines of each file in order (no example shuffling), batching across file
ends and dropping each epoch's incomplete last batch. Here:

* Process ``p`` of ``P`` trains on the train files ``p, p + P, ...`` (in
  natural order) and makes its ``L = global_batch_size / P`` rows of every
  global batch from them.
* Epoch ``e`` of a process reads its files in a permutation drawn from
  (seed, process, e), lines in file order, in batches of ``L`` lines; the
  epoch's last incomplete batch is dropped.

So local batch ``n`` is lines ``[j L, (j + 1) L)`` of epoch ``n // B``'s
reading order (``B`` batches an epoch, ``j = n % B``): a resume at batch
``n`` computes that epoch's permutation, opens the file holding line
``j L`` and skips the lines before it in that one file (without parsing
them); it never reads the batches before ``n``.

Line counts (needed for that arithmetic) come without reading the data:
from ``line_counts.json`` in the folder if present (written by
:func:`write_line_counts`, which reads everything), else from the
reference's layout, which fixes them (every piece has 5,000,000 lines but
each day's last, and the days' totals are known: ``ROWS_PER_DAY``).

Eval splits are read in file order: each process parses a contiguous share
of the first ``num_examples`` lines and pads to whole batches with weight-0
rows, so every process yields the same number of batches and every
example counts once.

TensorFlow is imported on first use (and kept off the GPUs, which JAX uses).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import jax
import numpy as np

from algoperf.errors import ConfigError

NUM_DENSE_FEATURES = 13
NUM_CATEGORICAL_FEATURES = 26
# Buckets of each categorical feature's hash (the reference's raw vocabulary
# sizes); the model then folds every id into its one table.
VOCAB_SIZES = (
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546,
    403346, 10, 2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984,
    585935, 12972, 108, 36)
# Lines of day_0 .. day_23 (days 0-22 add up to the reference's train count).
ROWS_PER_DAY = (
    195841983, 199563535, 196792019, 181115208, 152115810, 172548507, 204846845,
    200801003, 193772492, 198424372, 185778055, 153588700, 169003364, 194216520,
    194081279, 187154596, 177984934, 163382602, 142061091, 156534237, 193627464,
    192215183, 189747893, 178274637)
SPLIT_LINES = 5_000_000  # Lines a piece: `split -l 5000000`.
NUM_DAYS = 24
EVAL_DAY = 23
NUM_TEST_FILES = 19  # day_23_00 .. day_23_18; validation is the rest of day 23.
SPLITS = ('train', 'validation', 'test')
EVAL_SPLITS = ('eval_train', 'validation', 'test')
LINE_COUNTS_FILE = 'line_counts.json'

_FILE_NAME = re.compile(r'^day_(\d+)_(\d+)$')
_READ_BUFFER_BYTES = 8 << 20
_COUNT_CHUNK_BYTES = 16 << 20
# Tag of the file-order stream drawn from a seed.
_FILES = 1

INSTRUCTIONS = """\
Criteo 1TB click logs: 24 days (day_0 .. day_23) of ad clicks, about 342 GB
compressed and 1.1 TB decompressed.
1. Download the 24 files day_0.gz .. day_23.gz from Criteo's AI Lab page
   "Download Criteo 1TB Click Logs dataset"
   (https://ailab.criteo.com/download-criteo-1tb-click-logs-dataset/; the
   AlgoPerf setup script fetches them as one all_days.zip from Criteo's
   WeTransfer link: `unzip all_days.zip` gives the .gz files).
2. Decompress each day into the data folder: `pigz -d -c day_D.gz > DIR/day_D`
   (or gunzip).
3. Split each day into 5,000,000-line pieces as the reference does:
   `split -a 2 -d -l 5000000 DIR/day_D DIR/day_D_` gives day_D_00, day_D_01,
   ... (885 pieces in all, 36 of them for day 23); then delete DIR/day_D.
The reference's splits: train = days 0-22 (4,195,197,692 examples); day 23's
pieces 00-18 are the test split (95,000,000) and 19-35 the validation split
(83,274,637). Run with --data_dir DIR. Pieces cut differently are fine once
their lines were counted (write_line_counts in workloads/criteo1tb/data.py
writes DIR/line_counts.json; it reads all 1.1 TB once).
"""


def instructions(data_dir: str) -> str:
  """:data:`INSTRUCTIONS` for the folder ``data_dir`` (``algoperf datasets``)."""
  return INSTRUCTIONS.replace('DIR', str(data_dir))


class DatasetMissingError(ConfigError):
  """The Criteo 1TB day files are missing or not laid out as expected."""


# --- TensorFlow ----------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _tf() -> Any:
  """``tensorflow``, imported once and kept off the GPUs (JAX holds them)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass  # TF was already initialised by the caller; its choice stands.
  return tf


def _deterministic(dataset: Any) -> Any:
  options = _tf().data.Options()
  options.deterministic = True
  return dataset.with_options(options)


# --- preprocessing ------------------------------------------------------------------


def parse_lines(lines: Any) -> Dict[str, Any]:
  """TSV lines (a 1-D string tensor) as ``{'inputs', 'targets'}`` float32 tensors.

  ``inputs``: (n, 39), 13 log-transformed integer features then 26 hashed
  categorical ids; ``targets``: (n,) click labels. See the module docstring.
  """
  tf = _tf()
  defaults = ([[0.0]] * (1 + NUM_DENSE_FEATURES)
              + [['00000000']] * NUM_CATEGORICAL_FEATURES)
  fields = tf.io.decode_csv(lines, defaults, field_delim='\t', na_value='-1')
  dense = tf.stack([tf.math.log(tf.nn.relu(f) + 1.0)
                    for f in fields[1:1 + NUM_DENSE_FEATURES]], axis=1)
  # The column index joins the value before hashing, so one hex value in
  # two columns gets two ids.
  ids = tf.stack([tf.strings.to_hash_bucket_fast(f + str(i), VOCAB_SIZES[i])
                  for i, f in enumerate(fields[1 + NUM_DENSE_FEATURES:])], axis=1)
  inputs = tf.concat([dense, tf.cast(ids, tf.float32)], axis=1)
  return {'inputs': inputs, 'targets': tf.reshape(fields[0], [-1])}


# --- the files ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SplitFiles:
  """The files of one split in reading order, with their line counts."""

  paths: Tuple[str, ...]
  lengths: Tuple[int, ...]

  @property
  def num_examples(self) -> int:
    return sum(self.lengths)


def _folder(data_dir: Optional[str]) -> Path:
  """The folder holding the day files: ``data_dir``, or its ``criteo1tb/``."""
  if not data_dir:
    raise DatasetMissingError(
        'No data folder given for criteo1tb; run `algoperf datasets criteo1tb '
        '--data_dir DIR` and pass --data_dir DIR (or --synthetic_data for '
        'random examples of the real shapes).')
  folder = Path(data_dir).expanduser()
  if not _day_files(folder) and _day_files(folder / 'criteo1tb'):
    return folder / 'criteo1tb'
  return folder


def _day_files(folder: Path) -> Dict[Tuple[int, int], str]:
  """``(day, piece) -> file name`` of the ``day_D_NN`` files in ``folder``."""
  if not folder.is_dir():
    return {}
  found = {}
  for name in os.listdir(folder):
    match = _FILE_NAME.match(name)
    if match:
      found[(int(match.group(1)), int(match.group(2)))] = name
  return found


def layout_line_counts(names: Iterable[str],
                       rows_per_day: Sequence[int] = ROWS_PER_DAY,
                       split_lines: int = SPLIT_LINES) -> Dict[str, int]:
  """Line counts of the reference's layout, or ValueError naming what differs.

  The layout: day ``d`` is cut into ``ceil(rows_per_day[d] / split_lines)``
  pieces ``day_d_00``, ... of ``split_lines`` lines, the last one shorter.
  ``names`` must be exactly those files.
  """
  expected: Dict[str, int] = {}
  for day, rows in enumerate(rows_per_day):
    pieces = math.ceil(rows / split_lines)
    for piece in range(pieces):
      last = piece == pieces - 1
      expected[f'day_{day}_{piece:02d}'] = (rows - split_lines * (pieces - 1)
                                            if last else split_lines)
  names = set(names)
  missing = sorted(set(expected) - names)
  extra = sorted(names - set(expected))
  if missing or extra:
    parts = []
    if missing:
      parts.append(f'{len(missing)} missing ({", ".join(missing[:3])}'
                   f'{", ..." if len(missing) > 3 else ""})')
    if extra:
      parts.append(f'{len(extra)} unexpected ({", ".join(extra[:3])}'
                   f'{", ..." if len(extra) > 3 else ""})')
    raise ValueError(' and '.join(parts))
  return expected


def count_file_lines(path: str | os.PathLike) -> int:
  """Lines of one file as TextLineDataset reads them (a last unterminated one counts)."""
  lines, last = 0, b'\n'
  with open(path, 'rb') as f:
    while True:
      chunk = f.read(_COUNT_CHUNK_BYTES)
      if not chunk:
        break
      lines += chunk.count(b'\n')
      last = chunk[-1:]
  return lines + (last != b'\n')


def write_line_counts(data_dir: str, workers: int = 8) -> Dict[str, int]:
  """Counts every day file's lines and writes them to ``line_counts.json``.

  Reads the whole dataset (1.1 TB: about an hour at 300 MB/s); only needed
  when the files are not cut as the reference cuts them.
  """
  folder = _folder(data_dir)
  names = sorted(_day_files(folder).values())
  if not names:
    raise DatasetMissingError(f'No day_D_NN files in {folder}.')
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    counts = dict(zip(names, pool.map(lambda n: count_file_lines(folder / n), names)))
  (folder / LINE_COUNTS_FILE).write_text(json.dumps(counts, indent=0, sort_keys=True))
  return counts


def line_counts(data_dir: Optional[str]) -> Dict[str, int]:
  """``file name -> lines`` of every day file, without reading the data.

  From ``line_counts.json`` if the folder has one (it must list every day
  file), else from the reference's layout (``layout_line_counts``).

  Raises:
    DatasetMissingError: no day files, or files that neither source covers.
  """
  folder = _folder(data_dir)
  names = set(_day_files(folder).values())
  fix = (f'See `algoperf datasets criteo1tb --data_dir {data_dir}` for how to '
         'download and split them')
  if not names:
    raise DatasetMissingError(
        f'The Criteo 1TB day files are missing: {folder} has no day_D_NN '
        f'files. {fix} (or pass --synthetic_data for random examples of the '
        'real shapes).')
  index = folder / LINE_COUNTS_FILE
  if index.is_file():
    counts = {str(k): int(v) for k, v in json.loads(index.read_text()).items()}
    unknown = sorted(names - set(counts))
    if unknown:
      raise DatasetMissingError(
          f'{index} does not list {len(unknown)} day file(s) ({unknown[0]}, ...): '
          'it is stale; delete it, or count again with write_line_counts.')
    return {name: counts[name] for name in names}
  try:
    return layout_line_counts(names)
  except ValueError as e:
    raise DatasetMissingError(
        f'{folder} does not hold the reference\'s 885 day files: {e}. {fix} '
        '(files cut another way need their lines counted: write_line_counts).'
    ) from None


def _split_keys(split: str, keys: Iterable[Tuple[int, int]]) -> List[Tuple[int, int]]:
  keys = sorted(keys)
  if split in ('train', 'eval_train'):
    return [k for k in keys if k[0] < EVAL_DAY]
  if split == 'test':
    return [k for k in keys if k[0] == EVAL_DAY and k[1] < NUM_TEST_FILES]
  if split == 'validation':
    return [k for k in keys if k[0] == EVAL_DAY and k[1] >= NUM_TEST_FILES]
  raise ValueError(f'Unknown split {split!r}; use train, eval_train, validation '
                   'or test.')


def split_files(data_dir: Optional[str], split: str) -> SplitFiles:
  """The files of ``split`` in natural (day, piece) order, with line counts."""
  counts = line_counts(data_dir)
  folder = _folder(data_dir)
  by_key = {k: v for k, v in _day_files(folder).items() if v in counts}
  keys = _split_keys(split, by_key)
  if not keys:
    raise DatasetMissingError(f'{folder} has no files of the {split} split.')
  names = [by_key[k] for k in keys]
  return SplitFiles(tuple(str(folder / n) for n in names),
                    tuple(counts[n] for n in names))


def split_counts(data_dir: str, count_lines: bool = False) -> Dict[str, int]:
  """Examples of ``train``, ``validation`` and ``test`` in ``data_dir``.

  By default nothing is read: the counts come from ``line_counts.json`` or
  the reference's file layout (:func:`line_counts`), so a truncated file
  goes unnoticed. ``count_lines`` counts every line instead, reading the
  whole 1.1 TB (about an hour at 300 MB/s).

  Raises:
    DatasetMissingError: the files are missing or not as expected; the
      message names ``algoperf datasets criteo1tb --data_dir DIR``.
  """
  counts = {}
  for split in SPLITS:
    files = split_files(data_dir, split)
    if count_lines:
      with concurrent.futures.ThreadPoolExecutor(8) as pool:
        counts[split] = sum(pool.map(count_file_lines, files.paths))
    else:
      counts[split] = files.num_examples
  return counts


# --- train -------------------------------------------------------------------------------


def _local_rows(global_batch_size: int) -> int:
  count = jax.process_count()
  if global_batch_size <= 0 or global_batch_size % count:
    raise ValueError(f'global_batch_size {global_batch_size} must be a positive '
                     f'multiple of the process count ({count}).')
  return global_batch_size // count


@dataclasses.dataclass(frozen=True)
class EpochStart:
  """Where local batch ``n`` of a process begins."""

  epoch: int
  first_file: int  # Index into the epoch's file permutation.
  skip_lines: int  # Lines of that file before the batch.


class TrainOrder:
  """The seekable line order of one process (see the module docstring)."""

  def __init__(self, files: SplitFiles, seed: Sequence[int], rows: int,
               process_index: int = 0, process_count: int = 1) -> None:
    if len(files.paths) < process_count:
      raise ValueError(
          f'{len(files.paths)} train files cannot be shared by {process_count} '
          'processes: every process needs at least one.')
    self.paths = files.paths[process_index::process_count]
    self.lengths = np.asarray(files.lengths[process_index::process_count], np.int64)
    self.rows = int(rows)
    self.epoch_length = int(self.lengths.sum())
    self.batches_per_epoch = self.epoch_length // self.rows
    if not self.batches_per_epoch:
      raise ValueError(f'{self.epoch_length} train lines make no batch of '
                       f'{self.rows} rows.')
    self._seed = [int(w) % 2**32 for w in seed]
    self._process = int(process_index)

  def file_order(self, epoch: int) -> np.ndarray:
    """The permutation of this process's files that epoch ``epoch`` reads."""
    words = np.random.SeedSequence([*self._seed, _FILES, self._process, int(epoch)])
    return np.random.default_rng(words).permutation(len(self.paths))

  def locate(self, batch: int) -> EpochStart:
    """The epoch, file and line where local batch ``batch`` starts."""
    epoch, within = divmod(int(batch), self.batches_per_epoch)
    line = within * self.rows
    ends = np.cumsum(self.lengths[self.file_order(epoch)])
    first = int(np.searchsorted(ends, line, side='right'))
    return EpochStart(epoch, first, line - (int(ends[first - 1]) if first else 0))

  def epoch_lines(self, start: EpochStart) -> Any:
    """The lines of ``start.epoch`` from ``start`` on (a tf.data dataset)."""
    tf = _tf()
    order = self.file_order(start.epoch)[start.first_file:]
    paths = [self.paths[i] for i in order]
    return tf.data.TextLineDataset(paths, buffer_size=_READ_BUFFER_BYTES).skip(
        start.skip_lines)


def _parsed_batches(lines: Any, rows: int, drop_remainder: bool) -> Any:
  tf = _tf()
  return _deterministic(lines.batch(rows, drop_remainder=drop_remainder).map(
      parse_lines, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))


def train_batches(data_dir: str, seed: Sequence[int], global_batch_size: int,
                  start: int = 0) -> Iterator[Dict[str, np.ndarray]]:
  """This process's rows of global train batches ``start``, ``start + 1``, ... (endless).

  Each batch: ``inputs`` float32 ``[rows, 39]``, ``targets`` float32
  ``[rows]``, ``weights`` float32 ones; ``rows`` is ``global_batch_size //
  jax.process_count()``. A pure function of ``seed`` and the batch index:
  ``start=n`` yields what ``start=0`` yields from its ``n``-th batch on,
  reading only from the file that holds batch ``n`` onwards.
  """
  tf = _tf()
  rows = _local_rows(global_batch_size)
  # Built now, not at the first batch: missing files fail here.
  order = TrainOrder(split_files(data_dir, 'train'), seed, rows,
                     jax.process_index(), jax.process_count())
  first = order.locate(start)
  weights = np.ones((rows,), np.float32)

  def generate() -> Iterator[Dict[str, np.ndarray]]:
    epoch_start = first
    while True:
      batches = _parsed_batches(order.epoch_lines(epoch_start), rows, True)
      for batch in batches.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
        batch['weights'] = weights
        yield batch
      epoch_start = EpochStart(epoch_start.epoch + 1, 0, 0)

  return generate()


# --- eval -----------------------------------------------------------------------------


def process_share(num_examples: int, process_index: int,
                  process_count: int) -> Tuple[int, int]:
  """``[begin, end)``: the contiguous part of ``num_examples`` a process evaluates."""
  per_process = math.ceil(num_examples / process_count)
  begin = min(process_index * per_process, num_examples)
  return begin, min(begin + per_process, num_examples)


def _line_range(files: SplitFiles, first: int, count: int) -> Any:
  """Lines ``[first, first + count)`` of ``files`` read in order (unparsed)."""
  tf = _tf()
  if count == 0:
    return tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string))
  ends = np.cumsum(files.lengths)
  opened = int(np.searchsorted(ends, first, side='right'))
  skip = first - (int(ends[opened - 1]) if opened else 0)
  last = int(np.searchsorted(ends, first + count, side='left'))
  return tf.data.TextLineDataset(list(files.paths[opened:last + 1]),
                                 buffer_size=_READ_BUFFER_BYTES).skip(skip).take(count)


class EvalBatches:
  """This process's padded eval batches of one split; each ``iter`` is a new pass.

  The tf.data graph is built once; every pass yields ``len(self)`` batches
  of ``rows`` rows, padding rows (inputs 0, target 0) with weight 0.
  """

  def __init__(self, files: SplitFiles, num_examples: int,
               global_batch_size: int) -> None:
    tf = _tf()
    if num_examples > files.num_examples:
      raise ValueError(f'Cannot evaluate on {num_examples} examples: the split '
                       f'has {files.num_examples}.')
    self.rows = rows = _local_rows(global_batch_size)
    count = jax.process_count()
    begin, end = process_share(num_examples, jax.process_index(), count)
    self.num_batches = math.ceil(math.ceil(num_examples / count) / rows)
    width = NUM_DENSE_FEATURES + NUM_CATEGORICAL_FEATURES

    def pad(batch: Dict[str, Any]) -> Dict[str, Any]:
      missing = rows - tf.shape(batch['targets'])[0]
      return {'inputs': tf.pad(batch['inputs'], [[0, missing], [0, 0]]),
              'targets': tf.pad(batch['targets'], [[0, missing]]),
              'weights': tf.pad(tf.ones_like(batch['targets']), [[0, missing]])}

    parsed = _parsed_batches(_line_range(files, begin, end - begin), rows, False)
    filled = math.ceil((end - begin) / rows)
    padding = tf.data.Dataset.from_tensors({
        'inputs': tf.zeros([rows, width], tf.float32),
        'targets': tf.zeros([rows], tf.float32),
        'weights': tf.zeros([rows], tf.float32)}).repeat(self.num_batches - filled)
    self._dataset = _deterministic(
        parsed.map(pad).concatenate(padding).prefetch(tf.data.AUTOTUNE))

  def __len__(self) -> int:
    return self.num_batches

  def __iter__(self) -> Iterator[Dict[str, np.ndarray]]:
    return self._dataset.as_numpy_iterator()


def eval_batches(data_dir: str, split: str, num_examples: int,
                 global_batch_size: int) -> EvalBatches:
  """This process's rows of the padded eval batches of ``split`` (re-iterable).

  ``split``: ``eval_train`` (the first ``num_examples`` train lines in
  natural file order), ``validation`` or ``test``. Every process yields the
  same number of batches of ``global_batch_size // process_count`` rows;
  across processes each of the ``num_examples`` examples appears once with
  weight 1.
  """
  if split not in EVAL_SPLITS:
    raise ValueError(f'Unknown eval split {split!r}; use one of {EVAL_SPLITS}.')
  return EvalBatches(split_files(data_dir, split), int(num_examples),
                     int(global_batch_size))


__all__ = ['DatasetMissingError', 'EvalBatches', 'INSTRUCTIONS', 'ROWS_PER_DAY',
           'SplitFiles', 'TrainOrder', 'VOCAB_SIZES', 'count_file_lines',
           'eval_batches', 'instructions', 'layout_line_counts', 'line_counts', 'parse_lines',
           'process_share', 'split_counts', 'split_files', 'train_batches',
           'write_line_counts']
