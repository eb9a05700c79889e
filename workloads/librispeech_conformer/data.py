"""LibriSpeech on disk: preparing the reference's format, and reading it.

The prepared folder (``--data_dir``) is what the reference's
``datasets/librispeech_preprocess.py`` writes::

  DIR/spm_model.vocab                    the SentencePiece tokenizer
  DIR/<split>.csv                        ",id" then "<row>,<utterance id>"
  DIR/<split>/<utterance id>_audio.npy   int64 samples at 16 kHz
  DIR/<split>/<utterance id>_targets.npy int32 token ids, end of sentence last

for the splits train-clean-100, train-clean-360, train-other-500 (together
the ``train`` split, also read for ``eval_train``), dev-clean and dev-other
(``validation``) and test-clean (``test``). Utterances with transcripts of
more than 256 characters or more than 320,000 samples (20 s) are left out,
as the reference does: 263,840 train, 5,348 validation, 2,472 test.

Batches are the reference's: ``inputs`` = (audio, paddings), both float32
``(batch, 320000)``; ``targets`` = (ids, paddings), both float32 ``(batch,
256)``; paddings are 1.0 past the end. Eval batches add ``weights`` (1 for
an utterance, 0 for a padding row).

Train order, so that a resume can start at any batch: epoch ``e`` is a
permutation of all train utterances drawn from (seed, e); global batch
``n`` of an epoch holds positions ``[n B, (n + 1) B)`` of it and the
incomplete last batch is dropped (as the reference's loader, which drops
it). Batch ``n`` is thus a pure function of the seed and ``n``; each
process loads only the rows of it that its devices hold
(``workloads.batching.local_positions``). Eval splits are read in file
order, each process a contiguous share padded to whole batches, so every
utterance is counted once.

``prepare`` converts the OpenSLR archives' flac files (read with
soundfile) and transcripts into this format and trains the tokenizer.
"""

from __future__ import annotations

import concurrent.futures
import csv
import functools
import math
import os
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import jax
import numpy as np

from algoperf.errors import ConfigError
from workloads.batching import local_positions
from workloads.librispeech_conformer import tokenizer as tokenizers

AUDIO_LENGTH = 320_000
TARGET_LENGTH = 256
MAX_TRANSCRIPT_CHARS = 256
SAMPLE_RATE = 16_000

TRAIN_SPLITS = ('train-clean-100', 'train-clean-360', 'train-other-500')
SPLITS: Dict[str, Tuple[str, ...]] = {
    'train': TRAIN_SPLITS,
    'eval_train': TRAIN_SPLITS,
    'validation': ('dev-clean', 'dev-other'),
    'test': ('test-clean',),
}
ALL_SPLITS = (*TRAIN_SPLITS, 'dev-clean', 'dev-other', 'test-clean')
# Utterances in each OpenSLR archive (tfds' counts, which the reference
# checks its conversion against), and what the filters keep.
ARCHIVE_EXAMPLES = {
    'train-clean-100': 28_539, 'train-clean-360': 104_014, 'train-other-500': 148_688,
    'dev-clean': 2_703, 'dev-other': 2_864, 'test-clean': 2_620,
}
PREPARED_EXAMPLES = {'train': 263_840, 'validation': 5_348, 'test': 2_472}
OPENSLR_URL = 'https://www.openslr.org/resources/12'
RAW_FOLDER = 'LibriSpeech'  # What extracting the archives creates.

INSTRUCTIONS = """\
LibriSpeech (OpenSLR 12), prepared as the AlgoPerf reference prepares it.
1. Download these archives from {url}/ (about 60 GB):
   {archives}
2. Extract them in {data_dir} (`tar xzf ARCHIVE -C {data_dir}` each), which makes
   {raw}/<split>/<speaker>/<chapter>/ folders of .flac files and transcripts.
3. `algoperf datasets librispeech --data_dir {data_dir} --prepare` trains the
   SentencePiece tokenizer ({tokenizer}) on train-clean-100's transcripts and
   converts every split to .npy arrays and a .csv list (hours; about 350 GB
   more). {raw} can be deleted afterwards.
4. Run with `--data_dir {data_dir}`."""


class LibriSpeechDataMissingError(ConfigError):
  """The prepared LibriSpeech (or its tokenizer) is not where the run looks."""


def instructions(data_dir: str) -> str:
  """``INSTRUCTIONS`` for ``data_dir``."""
  return INSTRUCTIONS.format(
      url=OPENSLR_URL, data_dir=data_dir, raw=Path(data_dir) / RAW_FOLDER,
      tokenizer=tokenizers.TOKENIZER_FILE,
      archives=' '.join(f'{split}.tar.gz' for split in ALL_SPLITS))


def _missing(data_dir: Optional[str], what: str) -> LibriSpeechDataMissingError:
  where = data_dir or 'DIR'
  return LibriSpeechDataMissingError(
      f'{what}; run `algoperf datasets librispeech --data_dir {where}` for how '
      'to prepare LibriSpeech (or pass --synthetic_data for random audio of the '
      'real shapes).')


# --- the prepared folder ------------------------------------------------------------


def _csv_path(data_dir: str, split: str) -> Path:
  return Path(data_dir) / f'{split}.csv'


@functools.lru_cache(maxsize=32)
def _read_ids(csv_path: str, mtime: float) -> Tuple[str, ...]:
  del mtime  # Part of the cache key: a rewritten list is read again.
  with open(csv_path, newline='', encoding='utf-8') as f:
    rows = list(csv.reader(f))
  return tuple(row[1] for row in rows[1:])


def split_ids(data_dir: Optional[str], split: str) -> List[str]:
  """``'<split>/<utterance id>'`` of every prepared utterance of a workload split."""
  if not data_dir:
    raise _missing(data_dir, 'No LibriSpeech folder given')
  ids: List[str] = []
  for name in SPLITS[split]:
    path = _csv_path(data_dir, name)
    if not path.is_file():
      raise _missing(data_dir, f'The prepared LibriSpeech is missing: {path} not found')
    ids.extend(f'{name}/{utterance}'
               for utterance in _read_ids(str(path), path.stat().st_mtime))
  return ids


def tokenizer_path(data_dir: Optional[str], explicit: Optional[str] = None) -> Path:
  """Where the tokenizer is read from: ``explicit``, else ``DIR/spm_model.vocab``."""
  if explicit:
    return Path(explicit).expanduser()
  if not data_dir:
    raise _missing(data_dir, 'No LibriSpeech folder given (for its tokenizer)')
  return Path(data_dir) / tokenizers.TOKENIZER_FILE


def load_tokenizer(data_dir: Optional[str],
                   explicit: Optional[str] = None) -> tokenizers.Tokenizer:
  """The prepared tokenizer; a one-line error if it is missing or unreadable."""
  path = tokenizer_path(data_dir, explicit)
  if not path.is_file():
    raise _missing(data_dir, f'The LibriSpeech tokenizer {path} is missing (without '
                   'it the word error rate cannot be computed)')
  try:
    return tokenizers.Tokenizer.load(path)
  except (OSError, RuntimeError) as e:
    raise _missing(data_dir, f'The LibriSpeech tokenizer {path} is unreadable '
                   f'({type(e).__name__})') from e


def split_counts(data_dir: Optional[str]) -> Dict[str, int]:
  """Prepared utterances of ``train``, ``validation`` and ``test``.

  Raises:
    LibriSpeechDataMissingError: a split's list or the tokenizer is missing.
  """
  counts = {split: len(split_ids(data_dir, split))
            for split in ('train', 'validation', 'test')}
  if not tokenizer_path(data_dir).is_file():
    raise _missing(data_dir, f'The LibriSpeech tokenizer {tokenizer_path(data_dir)} '
                   'is missing')
  return counts


# --- reading utterances ---------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _pool() -> concurrent.futures.ThreadPoolExecutor:
  # np.load spends its time in file reads, which release the GIL.
  return concurrent.futures.ThreadPoolExecutor(
      max_workers=min(32, 2 * (os.cpu_count() or 1)), thread_name_prefix='librispeech')


def load_utterance(data_dir: str, example_id: str, audio_length: int = AUDIO_LENGTH,
                   target_length: int = TARGET_LENGTH) -> Tuple[np.ndarray, np.ndarray]:
  """One prepared utterance's samples and target ids, unpadded."""
  base = Path(data_dir) / example_id
  audio = np.load(f'{base}_audio.npy')
  targets = np.load(f'{base}_targets.npy')
  if len(audio) > audio_length or len(targets) > target_length:
    raise ValueError(f'{example_id}: {len(audio)} samples and {len(targets)} ids, more '
                     f'than the {audio_length} and {target_length} a batch holds.')
  return audio, targets


def batch_of(utterances: Sequence[Tuple[np.ndarray, np.ndarray]],
             audio_length: int = AUDIO_LENGTH,
             target_length: int = TARGET_LENGTH) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """Padded float32 arrays of the reference's batch format."""
  rows = len(utterances)
  audio = np.zeros((rows, audio_length), np.float32)
  audio_paddings = np.ones((rows, audio_length), np.float32)
  targets = np.zeros((rows, target_length), np.float32)
  target_paddings = np.ones((rows, target_length), np.float32)
  for i, (samples, ids) in enumerate(utterances):
    audio[i, :len(samples)] = samples
    audio_paddings[i, :len(samples)] = 0.0
    targets[i, :len(ids)] = ids
    target_paddings[i, :len(ids)] = 0.0
  return {'inputs': (audio, audio_paddings), 'targets': (targets, target_paddings)}


def _load_utterances(data_dir: str, ids: Sequence[str],
                     audio_length: int) -> List[Tuple[np.ndarray, np.ndarray]]:
  load = functools.partial(load_utterance, data_dir, audio_length=audio_length)
  return list(_pool().map(load, ids))


class TrainOrder:
  """Which utterances global batch ``n`` holds: a pure function of (seed, n)."""

  def __init__(self, num_examples: int, global_batch_size: int,
               seed: Sequence[int]) -> None:
    if global_batch_size > num_examples:
      raise ValueError(f'global_batch_size {global_batch_size} is larger than the '
                       f'{num_examples} training utterances.')
    self.num_examples = num_examples
    self.global_batch_size = global_batch_size
    self.batches_per_epoch = num_examples // global_batch_size
    self.seed = tuple(int(s) for s in seed)
    self._epoch: Optional[Tuple[int, np.ndarray]] = None

  def permutation(self, epoch: int) -> np.ndarray:
    """Epoch ``epoch``'s order of the utterances (the latest one is kept)."""
    if self._epoch is None or self._epoch[0] != epoch:
      generator = np.random.default_rng([*self.seed, int(epoch)])
      self._epoch = (epoch, generator.permutation(self.num_examples))
    return self._epoch[1]

  def rows(self, index: int, positions: np.ndarray) -> np.ndarray:
    """Utterance indices at ``positions`` of global batch ``index``."""
    epoch, batch = divmod(int(index), self.batches_per_epoch)
    return self.permutation(epoch)[batch * self.global_batch_size + positions]


def train_batches(data_dir: str, seed: Sequence[int], global_batch_size: int,
                  start_position: int = 0,
                  audio_length: int = AUDIO_LENGTH) -> Iterator[Dict[str, Tuple]]:
  """This process's rows of global train batches ``start_position`` on, endless."""
  ids = split_ids(data_dir, 'train')
  order = TrainOrder(len(ids), global_batch_size, seed)
  positions = local_positions(global_batch_size)
  index = start_position
  while True:
    chosen = order.rows(index, positions)
    yield batch_of(_load_utterances(data_dir, [ids[i] for i in chosen], audio_length),
                   audio_length)
    index += 1


def process_share(num_examples: int, process_index: int,
                  process_count: int) -> Tuple[int, int]:
  """``[begin, end)``: the contiguous part of ``num_examples`` a process evaluates."""
  per_process = math.ceil(num_examples / process_count)
  begin = min(process_index * per_process, num_examples)
  return begin, min(begin + per_process, num_examples)


class EvalBatches:
  """This process's padded eval batches of a split; each ``iter`` is a new pass.

  Every process yields ``len(self)`` batches of ``global_batch_size //
  process_count`` rows: its share of the first ``num_examples`` utterances,
  then padding rows (all padding, weight 0).
  """

  def __init__(self, data_dir: str, split: str, num_examples: int,
               global_batch_size: int, audio_length: int = AUDIO_LENGTH) -> None:
    ids = split_ids(data_dir, split)
    if num_examples > len(ids):
      raise ValueError(f'Cannot evaluate on {num_examples} utterances of {split}: '
                       f'{len(ids)} are prepared.')
    count = jax.process_count()
    if global_batch_size % count:
      raise ValueError(f'Eval batch size {global_batch_size} is not a multiple of '
                       f'the {count} processes.')
    self.rows = global_batch_size // count
    begin, end = process_share(num_examples, jax.process_index(), count)
    self._ids = ids[begin:end]
    self.num_batches = math.ceil(math.ceil(num_examples / count) / self.rows)
    self._data_dir = data_dir
    self._audio_length = audio_length

  def __len__(self) -> int:
    return self.num_batches

  def __iter__(self) -> Iterator[Dict[str, object]]:
    for b in range(self.num_batches):
      ids = self._ids[b * self.rows:(b + 1) * self.rows]
      utterances = _load_utterances(self._data_dir, ids, self._audio_length)
      empty = (np.zeros(0), np.zeros(0))
      batch = batch_of(utterances + [empty] * (self.rows - len(ids)), self._audio_length)
      weights = np.zeros((self.rows,), np.float32)
      weights[:len(ids)] = 1.0
      yield {**batch, 'weights': weights}


# --- preparing it from the OpenSLR archives ------------------------------------------------


def _transcripts(split_dir: Path) -> Iterator[Tuple[Path, str, str]]:
  """``(chapter folder, utterance id, transcript)`` in sorted folder order."""
  for speaker in sorted(p for p in split_dir.iterdir() if p.is_dir()):
    for chapter in sorted(p for p in speaker.iterdir() if p.is_dir()):
      listing = chapter / f'{speaker.name}-{chapter.name}.trans.txt'
      if not listing.is_file():
        continue
      for line in listing.read_text(encoding='utf-8').splitlines():
        if line.strip():
          utterance, text = line.strip().split(' ', maxsplit=1)
          yield chapter, utterance, text


def read_flac(path: Path) -> np.ndarray:
  """The int16 samples of a flac file, as int64 (the reference's dtype)."""
  import soundfile  # pylint: disable=import-outside-toplevel

  samples, rate = soundfile.read(str(path), dtype='int16', always_2d=False)
  if rate != SAMPLE_RATE or samples.ndim != 1:
    raise ValueError(f'{path}: expected mono {SAMPLE_RATE} Hz audio, got {rate} Hz '
                     f'with shape {samples.shape}.')
  return samples.astype(np.int64)


def _convert_split(raw_dir: Path, data_dir: Path, split: str,
                   tokenizer: tokenizers.Tokenizer,
                   expected: Optional[int], log: Callable[[str], None]) -> int:
  """Writes one split's arrays, then its list; returns the utterances kept."""
  entries = list(_transcripts(raw_dir / split))
  if expected is not None and len(entries) != expected:
    raise LibriSpeechDataMissingError(
        f'{raw_dir / split} lists {len(entries)} utterances, expected {expected}: '
        f'the archive {split}.tar.gz is incomplete; extract it again.')
  out = data_dir / split
  out.mkdir(parents=True, exist_ok=True)

  def convert(entry: Tuple[Path, str, str]) -> Optional[str]:
    chapter, utterance, text = entry
    flac = chapter / f'{utterance}.flac'
    if not flac.is_file() or len(text) > MAX_TRANSCRIPT_CHARS:
      return None
    samples = read_flac(flac)
    if len(samples) > AUDIO_LENGTH:
      return None
    np.save(out / f'{utterance}_audio.npy', samples)
    np.save(out / f'{utterance}_targets.npy', tokenizer.tokenize(text))
    return utterance

  kept = [u for u in _pool().map(convert, entries) if u is not None]
  partial = _csv_path(str(data_dir), split).with_suffix('.csv.tmp')
  with open(partial, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f, lineterminator='\n')
    writer.writerow(['', 'id'])
    writer.writerows([i, u] for i, u in enumerate(kept))
  os.replace(partial, _csv_path(str(data_dir), split))
  log(f'{split}: kept {len(kept)} of {len(entries)} utterances.')
  return len(kept)


def prepare(data_dir: str, raw_dir: Optional[str] = None, *,
            vocab_size: int = tokenizers.VOCAB_SIZE,
            expected_counts: Optional[Dict[str, int]] = None,
            log: Callable[[str], None] = print) -> Dict[str, int]:
  """Converts extracted OpenSLR LibriSpeech into the prepared format in ``data_dir``.

  Args:
    data_dir: where the prepared files go.
    raw_dir: the extracted ``LibriSpeech`` folder (default ``DIR/LibriSpeech``).
    vocab_size: of the tokenizer (1024; smaller only for tiny test corpora).
    expected_counts: utterances each split's transcripts must list
      (default :data:`ARCHIVE_EXAMPLES`, the complete archives).
    log: where progress lines go.

  Splits already prepared (their ``.csv`` exists) are kept, and an existing
  tokenizer is used rather than retrained, so an interrupted run resumes.
  Returns the utterances kept per split.
  """
  data_dir_path = Path(data_dir).expanduser()
  raw = Path(raw_dir).expanduser() if raw_dir else data_dir_path / RAW_FOLDER
  expected = ARCHIVE_EXAMPLES if expected_counts is None else expected_counts
  missing = [s for s in ALL_SPLITS if not (raw / s).is_dir()]
  if missing:
    raise _missing(str(data_dir_path), f'{raw} lacks {", ".join(missing)}: download '
                   f'and extract {", ".join(f"{s}.tar.gz" for s in missing)} first')
  path = data_dir_path / tokenizers.TOKENIZER_FILE
  if path.is_file():
    tokenizer = tokenizers.Tokenizer.load(path)
  else:
    log(f'Training the tokenizer on {raw / TRAIN_SPLITS[0]} transcripts...')
    text = (t for _, _, t in _transcripts(raw / TRAIN_SPLITS[0]))
    tokenizer = tokenizers.train(text, path, vocab_size)
  kept = {}
  for split in ALL_SPLITS:
    listing = _csv_path(str(data_dir_path), split)
    if listing.is_file():
      kept[split] = len(_read_ids(str(listing), listing.stat().st_mtime))
      log(f'{split}: already prepared.')
      continue
    log(f'Converting {split}...')
    kept[split] = _convert_split(raw, data_dir_path, split, tokenizer,
                                 expected.get(split), log)
  return kept
