"""The LibriSpeech SentencePiece tokenizer: training, loading, (de)tokenising.

As the reference (``datasets/librispeech_tokenizer.py``): a unigram model of
1024 pieces with full character coverage, trained on the transcripts of
``train-clean-100`` (at most 10 million characters, one transcript a line),
saved as ``spm_model.vocab`` (despite the name, a SentencePiece model
file). Transcripts become ids with an end-of-sentence id appended, no
beginning one. Id 0 (SentencePiece's unknown piece) doubles as the CTC blank.

``SyntheticTokenizer`` stands in for synthetic data only, where targets are
random ids: every id from 3 up is one word.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

TOKENIZER_FILE = 'spm_model.vocab'
VOCAB_SIZE = 1024
MAX_TRAINING_CHARS = 10_000_000


class Tokenizer:
  """A SentencePiece model: text to ids (plus end of sentence) and back."""

  def __init__(self, model_proto: bytes) -> None:
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel

    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self.vocab_size = int(self._sp.get_piece_size())
    self.eos_id = int(self._sp.eos_id())

  @classmethod
  def load(cls, path: str | os.PathLike) -> 'Tokenizer':
    """The model in file ``path`` (``OSError`` if unreadable)."""
    return cls(Path(path).read_bytes())

  def tokenize(self, text: str) -> np.ndarray:
    """int32 ids of ``text`` followed by the end-of-sentence id."""
    ids = list(self._sp.encode(text)) + [self.eos_id]
    return np.asarray(ids, np.int32)

  def detokenize(self, ids: Sequence[int]) -> str:
    """The text of ``ids``; control ids vanish, ids past the vocabulary read as unknown."""
    ids = [int(i) if 0 <= int(i) < self.vocab_size else self._sp.unk_id() for i in ids]
    return self._sp.decode(ids)


class SyntheticTokenizer:
  """For synthetic targets: ids 0-2 (blank/unknown, BOS, EOS) vanish, others are words."""

  vocab_size = VOCAB_SIZE
  eos_id = 2

  def detokenize(self, ids: Sequence[int]) -> str:
    return ' '.join(f'w{int(i)}' for i in ids if int(i) > 2)


def training_text(transcripts: Iterable[str],
                  max_chars: int = MAX_TRAINING_CHARS) -> Iterable[str]:
  """The transcripts the tokenizer trains on: whole lines up to ``max_chars``.

  Characters are counted with each line's newline, as the reference does.
  """
  count = 0
  for line in transcripts:
    count += len(line) + 1
    if count > max_chars:
      return
    yield line


def train(transcripts: Iterable[str], path: str | os.PathLike,
          vocab_size: int = VOCAB_SIZE) -> Tokenizer:
  """Trains the reference's unigram model on ``transcripts``; writes it to ``path``.

  The file appears whole or not at all (written beside it, then renamed).
  """
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel

  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(list(training_text(transcripts))), model_writer=model,
      vocab_size=vocab_size, character_coverage=1.0, model_type='unigram',
      minloglevel=2)
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix='.tmp',
                                   delete=False) as f:
    f.write(model.getvalue())
  os.replace(f.name, path)
  return Tokenizer(model.getvalue())
