"""WMT German-English on the prepared tfds datasets: tokens, packed train batches, eval.

What is read, as the reference reads it: the tfds datasets
``wmt17_translate/de-en`` 1.0.0 (``train``: training and ``eval_train``) and
``wmt14_translate/de-en`` 1.0.0 (``validation``, ``test``) as tfds prepared
them under ``data_dir``, and the SentencePiece model ``wmt_sentencepiece_model``
in ``data_dir`` (32,000 pieces, trained on the first 10^7 characters of the
train split; ``algoperf datasets wmt --data_dir DIR`` prepares all three).
German is the input, English the target. Each sentence is tokenized with EOS
(id 2) appended; pairs with either side longer than 256 tokens are dropped,
as the reference's length filter does; 0 is padding.

Train batches are packed as the reference packs them: consecutive pairs go
into one row of 256 tokens per side while both sides fit, with
``*_position`` (0, 1, ... within each pair) and ``*_segmentation`` (1, 2, ...
within each row, 0 on padding). The order is ours, chosen so that a resume
can start at any batch without replaying the ones before:

* Each process reads only its share of the train files (file ``i`` goes to
  process ``i % process_count``) and makes its ``L`` rows of every global
  batch from them.
* Its stream of sentence pairs is a sequence of epochs over its files.
  Epoch ``e`` reads the files in a permutation drawn from (seed, process,
  e), records in file order, and permutes each block of ``BLOCK_SIZE``
  consecutive records by a permutation drawn from (seed, process, e, block)
  (the reference shuffles through a 1024-pair buffer).
* Local batch ``n`` packs the pairs at stream positions ``[n W, (n + 1) W)``
  (a fixed window) greedily into its ``L`` rows. ``W`` is ``L`` times the
  pairs per packed row that the reference's packing (groups of 256 pairs)
  gives on the first train records, so a batch holds as many pairs as the
  reference's on average; the few pairs of a window that do not fit are
  dropped, and a window that does not fill its rows leaves rows of padding
  (weight 0).

Starting at batch ``n`` is therefore arithmetic: position ``n W`` gives the
epoch, the block and the offset in it; the reader skips to the block's
first record without parsing and tokenizes nothing before the window.

Eval splits are read in file order: each process tokenizes a contiguous
share of the first ``num_examples`` pairs, pads each side to 256 tokens and
its last batches with rows of zeros, so every process yields the same number
of batches and every pair counts once. ``eval_train`` is the first train
pairs (the reference draws them through its shuffle buffer).

TensorFlow is imported on first use (and kept off the GPUs, which JAX uses).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import jax
import numpy as np

from algoperf.errors import ConfigError
from workloads.batching import local_positions

WMT17 = 'wmt17_translate/de-en'  # train, eval_train.
WMT14 = 'wmt14_translate/de-en'  # validation, test.
VERSION = '1.0.0'
TOKENIZER_FILE = 'wmt_sentencepiece_model'
VOCAB_SIZE = 32_000
# The reference's tokenizer training: this many characters of the train split.
TOKENIZER_TRAINING_CHARS = 10**7
MAX_LENGTH = 256
EOS_ID = 2
PAD_ID = 0
# The reference packs groups of this many pairs (its padded_batch).
PACKING_GROUP = 256
# Records permuted together in the train order.
BLOCK_SIZE = 16_384
# Train records the window size is calibrated on (from the first file).
CALIBRATION_RECORDS = 4_096

# The reference's counts (wmt17 de-en train; wmt14 de-en validation and test).
NUM_TRAIN_EXAMPLES = 5_906_184
NUM_VALIDATION_EXAMPLES = 3_000
NUM_TEST_EXAMPLES = 3_003

_SOURCES = {'train': (WMT17, 'train'), 'eval_train': (WMT17, 'train'),
            'validation': (WMT14, 'validation'), 'test': (WMT14, 'test')}
# Tags of the independent random streams drawn from one seed.
_FILES, _BLOCKS = 1, 2
_READ_BUFFER_BYTES = 8 << 20

PACKED_KEYS = ('inputs', 'inputs_position', 'inputs_segmentation',
               'targets', 'targets_position', 'targets_segmentation')

INSTRUCTIONS = (
    'WMT (German to English): tfds `{wmt17}` {version} (train, 5,906,184 '
    'sentence pairs) and `{wmt14}` {version} (validation 3,000 and test 3,003 '
    'pairs), and the SentencePiece model `{tokenizer}` ({vocab:,} pieces) '
    'trained on the first 10^7 characters of the train split, as the '
    'reference prepares them.\n'
    '1. `algoperf datasets wmt --data_dir {data_dir} --prepare` downloads about '
    '3 GB (needs the internet), prepares both datasets with tensorflow-datasets '
    'and trains the tokenizer into {data_dir}/{tokenizer} (about an hour in all), '
    'then verifies every split.\n'
    '2. Run with `--data_dir {data_dir}`.')


class DatasetMissingError(ConfigError):
  """A prepared WMT dataset, or the tokenizer, is not where the run looks."""


def instructions(data_dir: str) -> str:
  """What ``algoperf datasets wmt`` prints: where the data comes from, how to prepare it."""
  return INSTRUCTIONS.format(wmt17=WMT17, wmt14=WMT14, version=VERSION,
                             tokenizer=TOKENIZER_FILE, vocab=VOCAB_SIZE,
                             data_dir=data_dir)


def _prepare_hint(data_dir: Optional[str]) -> str:
  return (f'Run `algoperf datasets wmt --data_dir {data_dir or "DIR"}` to '
          'prepare it (or pass --synthetic_data for random sentences of the '
          'real shapes).')


# --- TensorFlow ----------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _tf() -> Any:
  """``tensorflow``, imported once and kept off the GPUs (JAX holds them)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass  # TF was already initialised by the caller; its choice stands.
  return tf


# --- the tokenizer -----------------------------------------------------------------


class Tokenizer:
  """The SentencePiece model: sentences to ids (EOS appended) and back."""

  def __init__(self, model_file: str) -> None:
    import sentencepiece  # pylint: disable=import-outside-toplevel

    self.path = model_file
    self._processor = sentencepiece.SentencePieceProcessor(model_file=model_file)
    if self._processor.eos_id() != EOS_ID:
      raise ConfigError(f'{model_file}: EOS is id {self._processor.eos_id()}, '
                        f'the workload expects {EOS_ID}.')

  @property
  def vocab_size(self) -> int:
    return int(self._processor.get_piece_size())

  def encode(self, sentences: Sequence[str]) -> List[np.ndarray]:
    """Each sentence's ids, EOS last, as int32 arrays."""
    ids = self._processor.encode(list(sentences), out_type=int, add_eos=True)
    return [np.asarray(row, np.int32) for row in ids]

  def decode(self, ids: np.ndarray) -> str:
    """The text of ``ids`` up to and including the first EOS, as the reference.

    Without an EOS the reference keeps only the first token (its cut is at
    ``argmax(ids == EOS) + 1``); so does this.
    """
    ids = np.asarray(ids)
    cut = int(np.argmax(ids == EOS_ID)) + 1
    return self._processor.decode([int(i) for i in ids[:cut]])


def tokenizer_path(data_dir: str) -> Path:
  return Path(data_dir) / TOKENIZER_FILE


@functools.lru_cache(maxsize=8)
def _load_tokenizer(path: str) -> Tokenizer:
  return Tokenizer(path)


def load_tokenizer(data_dir: Optional[str]) -> Tokenizer:
  """The tokenizer in ``data_dir``, or a one-line error naming the command."""
  if not data_dir:
    raise DatasetMissingError('No data folder given for WMT. ' + _prepare_hint(None))
  path = tokenizer_path(data_dir)
  if not path.is_file():
    raise DatasetMissingError(
        f'The WMT tokenizer is missing: {path} does not exist. '
        + _prepare_hint(data_dir))
  return _load_tokenizer(str(path))


def train_tokenizer(pairs: Iterator[Tuple[str, str]], path: str,
                    vocab_size: int = VOCAB_SIZE,
                    max_chars: int = TOKENIZER_TRAINING_CHARS) -> None:
  """Trains the reference's SentencePiece model on sentence ``pairs`` into ``path``.

  As the reference: both sentences of each pair become lines of the corpus
  until it holds ``max_chars`` bytes (newlines counted, checked after each
  pair); a unigram model with full character coverage, SentencePiece's
  defaults otherwise. The model is written beside ``path`` and renamed
  into place, so a reader never sees half a file.
  """
  import sentencepiece  # pylint: disable=import-outside-toplevel

  with tempfile.TemporaryDirectory(prefix='wmt_tokenizer_') as scratch:
    corpus = os.path.join(scratch, 'corpus.txt')
    written = 0
    with open(corpus, 'wb') as out:
      for pair in pairs:
        for sentence in pair:
          line = sentence.encode('utf-8') + b'\n'
          out.write(line)
          written += len(line)
        if written >= max_chars:
          break
    prefix = os.path.join(scratch, 'model')
    sentencepiece.SentencePieceTrainer.train(
        input=corpus, vocab_size=vocab_size, character_coverage=1.0,
        model_prefix=prefix, model_type='unigram', minloglevel=2)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + '.partial')
    with open(prefix + '.model', 'rb') as src, open(partial, 'wb') as dst:
      dst.write(src.read())
    os.replace(partial, target)


# --- the prepared datasets ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SplitFiles:
  """The shards of one prepared split, in the metadata's order."""

  paths: Tuple[str, ...]
  lengths: Tuple[int, ...]
  languages: Tuple[str, str]  # (input, target): the supervised keys.

  @property
  def num_examples(self) -> int:
    return sum(self.lengths)


def dataset_dir(data_dir: str, name: str) -> Path:
  """Where tfds prepares ``name`` (``dataset/config``) at the workload's version."""
  return Path(data_dir) / name / VERSION


@functools.lru_cache(maxsize=None)
def _info(directory: str) -> Any:
  """The tfds ``DatasetInfo`` of a prepared dataset folder (read once)."""
  _tf()
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  return tfds.builder_from_directory(directory).info


def split_files(data_dir: Optional[str], split: str) -> SplitFiles:
  """The shard paths and pair counts of workload split ``split`` (train, eval_train,
  validation, test).

  Raises:
    DatasetMissingError: the prepared dataset (or split) is not there.
  """
  if split not in _SOURCES:
    raise ValueError(f'Unknown split {split!r}; use one of {tuple(_SOURCES)}.')
  name, tfds_split = _SOURCES[split]
  if not data_dir:
    raise DatasetMissingError(f'No data folder given for {name}:{VERSION}. '
                              + _prepare_hint(None))
  directory = dataset_dir(data_dir, name)
  if not (directory / 'dataset_info.json').is_file():
    raise DatasetMissingError(
        f'The prepared dataset {name}:{VERSION} is missing: {directory} has no '
        'dataset_info.json. ' + _prepare_hint(data_dir))
  info = _info(str(directory))
  if tfds_split not in info.splits:
    raise DatasetMissingError(f'{directory} has no {tfds_split!r} split. '
                              + _prepare_hint(data_dir))
  found = info.splits[tfds_split]
  return SplitFiles(tuple(str(directory / f) for f in found.filenames),
                    tuple(int(n) for n in found.shard_lengths),
                    tuple(info.supervised_keys))


def split_counts(data_dir: str) -> Dict[str, int]:
  """Pair counts of ``train``, ``validation`` and ``test`` from the metadata.

  Raises:
    DatasetMissingError: a prepared dataset, split or the tokenizer is missing.
  """
  counts = {split: split_files(data_dir, split).num_examples
            for split in ('train', 'validation', 'test')}
  load_tokenizer(data_dir)
  return counts


def _records(files: SplitFiles, order: Sequence[int], skip: int, count: int
             ) -> Tuple[List[str], List[str]]:
  """(inputs, targets) of ``count`` records after ``skip`` of the files in ``order``."""
  tf = _tf()
  paths = [files.paths[i] for i in order]
  source, target = files.languages
  features = _info(str(Path(files.paths[0]).parent)).features
  records = tf.data.TFRecordDataset(paths, buffer_size=_READ_BUFFER_BYTES)
  records = records.skip(skip).take(count).map(
      features.deserialize_example, num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True).batch(4096)
  inputs: List[str] = []
  targets: List[str] = []
  for batch in records.as_numpy_iterator():
    inputs.extend(s.decode('utf-8') for s in batch[source])
    targets.extend(s.decode('utf-8') for s in batch[target])
  return inputs, targets


def read_split(data_dir: str, split: str, first: int = 0,
               count: Optional[int] = None) -> Tuple[List[str], List[str]]:
  """Sentences ``[first, first + count)`` of ``split`` in file order: (inputs, targets)."""
  files = split_files(data_dir, split)
  if count is None:
    count = files.num_examples - first
  ends = np.cumsum(files.lengths)
  opened = int(np.searchsorted(ends, first, side='right'))
  skip = first - (int(ends[opened - 1]) if opened else 0)
  if count <= 0 or opened >= len(files.paths):
    return [], []
  return _records(files, range(opened, len(files.paths)), skip, count)


# --- tokens and packing ------------------------------------------------------------


Pair = Tuple[np.ndarray, np.ndarray]


def tokenize_pairs(tokenizer: Any, inputs: Sequence[str], targets: Sequence[str],
                   max_length: int = MAX_LENGTH) -> List[Pair]:
  """The pairs whose two sides, EOS included, have at most ``max_length`` tokens."""
  pairs = zip(tokenizer.encode(inputs), tokenizer.encode(targets))
  return [(a, b) for a, b in pairs if max(len(a), len(b)) <= max_length]


def _unpadded(ids: np.ndarray) -> np.ndarray:
  # As the reference: a sequence keeps as many leading tokens as it has
  # non-zero ones (an unknown piece, id 0, shortens it).
  return ids[:int(np.count_nonzero(ids))]


def assign_rows(pairs: Sequence[Pair], length: int = MAX_LENGTH) -> np.ndarray:
  """The packed row of each pair: a new row whenever either side would overflow."""
  rows = np.empty((len(pairs),), np.int64)
  row, used_in, used_out = 0, 0, 0
  for i, (source, target) in enumerate(pairs):
    n_in, n_out = len(_unpadded(source)), len(_unpadded(target))
    if used_in + n_in > length or used_out + n_out > length:
      row, used_in, used_out = row + 1, 0, 0
    rows[i] = row
    used_in += n_in
    used_out += n_out
  return rows


def pack(pairs: Sequence[Pair], num_rows: int,
         length: int = MAX_LENGTH) -> Dict[str, np.ndarray]:
  """``pairs`` packed in order into ``num_rows`` rows; what does not fit is dropped.

  Returns the reference's packed batch: ``inputs``, ``targets``, their
  ``*_position`` and ``*_segmentation`` (int32 ``(num_rows, length)``), and
  ``weights`` (float32, 1 on target tokens).
  """
  out = {key: np.zeros((num_rows, length), np.int32) for key in PACKED_KEYS}
  rows = assign_rows(pairs, length)
  fill = {'inputs': np.zeros(num_rows, np.int64), 'targets': np.zeros(num_rows, np.int64)}
  segment = np.zeros(num_rows, np.int32)
  for (source, target), row in zip(pairs, rows):
    if row >= num_rows:
      break
    segment[row] += 1
    for key, ids in (('inputs', source), ('targets', target)):
      ids = _unpadded(ids)
      start = fill[key][row]
      span = slice(start, start + len(ids))
      out[key][row, span] = ids
      out[f'{key}_position'][row, span] = np.arange(len(ids))
      out[f'{key}_segmentation'][row, span] = segment[row]
      fill[key][row] = start + len(ids)
  out['weights'] = (out['targets'] > 0).astype(np.float32)
  return out


def pad_pairs(pairs: Sequence[Pair], num_rows: int,
              length: int = MAX_LENGTH) -> Dict[str, np.ndarray]:
  """One pair a row, zero-padded to ``length``; rows past the pairs are all zero."""
  inputs = np.zeros((num_rows, length), np.int32)
  targets = np.zeros((num_rows, length), np.int32)
  for i, (source, target) in enumerate(pairs):
    inputs[i, :len(source)] = source
    targets[i, :len(target)] = target
  return {'inputs': inputs, 'targets': targets,
          'weights': (targets > 0).astype(np.float32)}


def pairs_per_row(pairs: Sequence[Pair], group: int = PACKING_GROUP,
                  length: int = MAX_LENGTH) -> float:
  """Pairs per packed row when ``pairs`` are packed in groups of ``group``, as the reference."""
  if not pairs:
    raise ValueError('No sentence pairs to calibrate the packing on.')
  num_rows = sum(int(assign_rows(pairs[i:i + group], length)[-1]) + 1
                 for i in range(0, len(pairs), group))
  return len(pairs) / num_rows


@functools.lru_cache(maxsize=None)
def calibrated_pairs_per_row(data_dir: str) -> float:
  """:func:`pairs_per_row` of the first train records (the same for every process)."""
  inputs, targets = read_split(data_dir, 'train', 0, CALIBRATION_RECORDS)
  return pairs_per_row(tokenize_pairs(load_tokenizer(data_dir), inputs, targets))


def window_size(num_rows: int, per_row: float) -> int:
  """Pairs a local batch of ``num_rows`` rows packs: ``num_rows * per_row``, at least 1."""
  return max(1, int(round(num_rows * per_row)))


# --- the train order ------------------------------------------------------------------


class TrainOrder:
  """The seekable order of one process's train records (see the module docstring)."""

  def __init__(self, files: SplitFiles, seed: Sequence[int], process_index: int = 0,
               process_count: int = 1, block_size: int = BLOCK_SIZE) -> None:
    if len(files.paths) < process_count:
      raise ConfigError(
          f'{len(files.paths)} WMT train files cannot be shared by '
          f'{process_count} processes: every process needs at least one.')
    self.files = files
    self.file_indices = np.arange(len(files.paths))[process_index::process_count]
    self.lengths = np.asarray(files.lengths, np.int64)[self.file_indices]
    self.epoch_length = int(self.lengths.sum())
    self.block_size = int(block_size)
    self._seed = [int(w) for w in seed] + [process_index]

  def file_order(self, epoch: int) -> np.ndarray:
    """Indices into ``files`` of this process's files, in epoch ``epoch``'s order."""
    rng = np.random.default_rng([_FILES, epoch, *self._seed])
    return self.file_indices[rng.permutation(len(self.file_indices))]

  def block_permutation(self, epoch: int, block: int, size: int) -> np.ndarray:
    rng = np.random.default_rng([_BLOCKS, epoch, block, *self._seed])
    return rng.permutation(size)

  def _block(self, epoch: int, block: int) -> Tuple[List[str], List[str]]:
    """Block ``block`` of epoch ``epoch``: its records read, then permuted."""
    order = self.file_order(epoch)
    lengths = np.asarray(self.files.lengths, np.int64)[order]
    first = block * self.block_size
    size = min(self.block_size, self.epoch_length - first)
    ends = np.cumsum(lengths)
    opened = int(np.searchsorted(ends, first, side='right'))
    skip = first - (int(ends[opened - 1]) if opened else 0)
    inputs, targets = _records(self.files, order[opened:], skip, size)
    permutation = self.block_permutation(epoch, block, size)
    return [inputs[i] for i in permutation], [targets[i] for i in permutation]

  def pairs(self, position: int) -> Iterator[Tuple[str, str]]:
    """The endless (input, target) sentences of the stream from ``position`` on."""
    epoch, within = divmod(int(position), self.epoch_length)
    block, drop = divmod(within, self.block_size)
    blocks_per_epoch = math.ceil(self.epoch_length / self.block_size)
    while True:
      for b in range(block, blocks_per_epoch):
        inputs, targets = self._block(epoch, b)
        yield from zip(inputs[drop:], targets[drop:])
        drop = 0
      epoch, block = epoch + 1, 0


# --- train ----------------------------------------------------------------------------


def _local_rows(global_batch_size: int) -> int:
  count = jax.process_count()
  if global_batch_size <= 0 or global_batch_size % count:
    raise ValueError(f'global_batch_size {global_batch_size} must be a positive '
                     f'multiple of the process count ({count}).')
  return len(local_positions(global_batch_size))


def train_batches(data_dir: str, seed: Sequence[int], global_batch_size: int,
                  start: int = 0, *, block_size: int = BLOCK_SIZE,
                  per_row: Optional[float] = None) -> Iterator[Dict[str, np.ndarray]]:
  """This process's rows of packed global train batches ``start``, ``start + 1``, ...

  Endless; each batch holds :data:`PACKED_KEYS` (int32 ``(rows, 256)``) and
  ``weights``. A pure function of ``seed`` and the batch index: ``start=n``
  yields what ``start=0`` yields from its ``n``-th batch on, after reading
  (without parsing) up to the block that holds its first pair.
  ``per_row``: pairs per packed row (calibrated on the data by default).
  """
  # Checked now, not at the first batch: a missing dataset fails here.
  tokenizer = load_tokenizer(data_dir)
  files = split_files(data_dir, 'train')
  rows = _local_rows(global_batch_size)
  if per_row is None:
    per_row = calibrated_pairs_per_row(data_dir)
  window = window_size(rows, per_row)
  order = TrainOrder(files, seed, jax.process_index(), jax.process_count(),
                     block_size)

  def batches() -> Iterator[Dict[str, np.ndarray]]:
    stream = order.pairs(int(start) * window)
    while True:
      inputs, targets = zip(*itertools.islice(stream, window))
      yield pack(tokenize_pairs(tokenizer, inputs, targets), rows)

  return batches()


# --- eval -------------------------------------------------------------------------------


def process_share(num_examples: int, process_index: int,
                  process_count: int) -> Tuple[int, int]:
  """``[begin, end)``: the contiguous part of ``num_examples`` a process evaluates."""
  per_process = math.ceil(num_examples / process_count)
  begin = min(process_index * per_process, num_examples)
  return begin, min(begin + per_process, num_examples)


def eval_batches(data_dir: str, split: str, num_examples: int,
                 global_batch_size: int) -> List[Dict[str, np.ndarray]]:
  """This process's rows of the padded eval batches of ``split`` (a list, reusable).

  ``inputs``/``targets`` int32 ``(rows, 256)``, ``weights`` float32 (1 on
  target tokens): the first ``num_examples`` pairs of the split in file
  order, minus any longer than 256 tokens (as the reference drops them).
  Every process gets the same number of batches of
  ``global_batch_size // process_count`` rows.
  """
  files = split_files(data_dir, split)
  if num_examples > files.num_examples:
    raise ValueError(f'Cannot evaluate on {num_examples} pairs: {split} has '
                     f'{files.num_examples}.')
  tokenizer = load_tokenizer(data_dir)
  rows = _local_rows(global_batch_size)
  count = jax.process_count()
  begin, end = process_share(num_examples, jax.process_index(), count)
  inputs, targets = read_split(data_dir, split, begin, end - begin)
  pairs = tokenize_pairs(tokenizer, inputs, targets)
  num_batches = math.ceil(math.ceil(num_examples / count) / rows)
  return [pad_pairs(pairs[i * rows:(i + 1) * rows], rows)
          for i in range(num_batches)]


# --- preparing ----------------------------------------------------------------------------


def prepare_tokenizer(data_dir: str, vocab_size: int = VOCAB_SIZE,
                      max_chars: int = TOKENIZER_TRAINING_CHARS) -> Path:
  """Trains the tokenizer on the prepared train split, as the reference, if missing."""
  path = tokenizer_path(data_dir)
  if path.is_file():
    return path
  files = split_files(data_dir, 'train')
  tf = _tf()
  source, target = files.languages
  features = _info(str(Path(files.paths[0]).parent)).features
  records = tf.data.TFRecordDataset(list(files.paths)).map(
      features.deserialize_example).as_numpy_iterator()
  pairs = ((example[source].decode('utf-8'), example[target].decode('utf-8'))
           for example in records)
  train_tokenizer(pairs, str(path), vocab_size, max_chars)
  return path


def prepare(data_dir: str) -> None:
  """Downloads and prepares both tfds datasets in ``data_dir``, then the tokenizer."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise DatasetMissingError('Preparing WMT needs tensorflow-datasets: '
                              '`pip install -e ".[tf]"`.') from e
  _tf()
  for name in (WMT14, WMT17):
    print(f'Downloading and preparing {name} {VERSION} in {data_dir}...', flush=True)
    tfds.builder(f'{name}:{VERSION}', data_dir=data_dir).download_and_prepare()
  print(f'Training the tokenizer into {tokenizer_path(data_dir)}...', flush=True)
  prepare_tokenizer(data_dir)


__all__ = ['DatasetMissingError', 'EOS_ID', 'INSTRUCTIONS', 'MAX_LENGTH',
           'PACKED_KEYS', 'Tokenizer', 'TrainOrder', 'eval_batches', 'instructions',
           'load_tokenizer', 'pack', 'prepare', 'prepare_tokenizer', 'split_counts',
           'split_files', 'train_batches', 'train_tokenizer']
