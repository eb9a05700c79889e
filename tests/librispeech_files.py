"""A tiny LibriSpeech in the OpenSLR layout, written by the tests.

``<split>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac`` and
``<speaker>-<chapter>.trans.txt`` for the six splits the benchmark uses.
Each utterance's first sample is its own number (``marker``), so a test can
tell which utterance a batch row holds. Besides the utterances ``prepare``
keeps, three it must leave out: a transcript over 256 characters
(train-clean-100), audio over 320,000 samples (train-clean-360) and a
listed utterance without its flac file (test-clean).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

# Every letter appears in train-clean-100, which the tokenizer trains on.
WORDS = ('THE QUICK BROWN FOX JUMPS OVER A LAZY DOG WHILE SIX JOLLY VEXED '
         'ZEBRAS PACK MY BOX WITH FIVE DOZEN LIQUOR JUGS').split()
KEPT = {'train-clean-100': 5, 'train-clean-360': 3, 'train-other-500': 3,
        'dev-clean': 3, 'dev-other': 2, 'test-clean': 2}
LISTED = {'train-clean-100': 6, 'train-clean-360': 4, 'train-other-500': 3,
          'dev-clean': 3, 'dev-other': 2, 'test-clean': 3}
SAMPLE_RATE = 16_000


def _utterances(split: str) -> List[Tuple[str, str, str, str]]:
  """``(speaker, chapter, utterance id, why it is skipped or '')`` of a split."""
  first = 100 + 50 * list(KEPT).index(split)
  rows = []
  for n in range(LISTED[split]):
    speaker, chapter = str(first + n // 2), str(10 + n % 2)
    utterance = f'{speaker}-{chapter}-{n:04d}'
    skip = ''
    if split == 'train-clean-100' and n == 2:
      skip = 'long transcript'
    elif split == 'train-clean-360' and n == 1:
      skip = 'long audio'
    elif split == 'test-clean' and n == 0:
      skip = 'no flac'
    rows.append((speaker, chapter, utterance, skip))
  return rows


def write_tiny_librispeech(root: Path) -> Dict[str, Dict[str, Tuple[np.ndarray, str]]]:
  """Writes the archives' extracted folders under ``root/LibriSpeech``.

  Returns ``{split: {utterance id: (int16 samples, transcript)}}`` of the
  utterances ``prepare`` should keep.
  """
  import soundfile  # pylint: disable=import-outside-toplevel

  raw = root / 'LibriSpeech'
  kept: Dict[str, Dict[str, Tuple[np.ndarray, str]]] = {}
  marker = 1
  for split_index, split in enumerate(KEPT):
    kept[split] = {}
    listings: Dict[Path, List[str]] = {}
    for speaker, chapter, utterance, skip in _utterances(split):
      folder = raw / split / speaker / chapter
      folder.mkdir(parents=True, exist_ok=True)
      rng = np.random.default_rng([split_index, marker])
      words = list(WORDS) if split == 'train-clean-100' else list(
          rng.choice(WORDS, int(rng.integers(2, 6))))
      text = ' '.join(words * (8 if skip == 'long transcript' else 1))
      length = 320_001 if skip == 'long audio' else int(rng.integers(1600, 4000))
      samples = np.rint(rng.standard_normal(length) * 3000).clip(-32768, 32767)
      samples = samples.astype(np.int16)
      samples[0] = marker
      marker += 1
      if skip != 'no flac':
        soundfile.write(str(folder / f'{utterance}.flac'), samples, SAMPLE_RATE,
                        subtype='PCM_16')
      listings.setdefault(folder / f'{speaker}-{chapter}.trans.txt', []).append(
          f'{utterance} {text}')
      if not skip:
        kept[split][utterance] = (samples, text)
    for path, lines in listings.items():
      path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
  return kept
