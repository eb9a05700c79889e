"""Synthetic WMT batches: random sentence pairs of the real shapes, no data needed.

A pair is a random run of ids in ``[3, vocab_size)`` ending in EOS, and its
target is a copy of its input (a task a model can learn, so a few steps on
synthetic data still show progress). Train rows are packed exactly as real
ones (``data.pack``); each row is drawn from its own generator (seed, batch
index, row), so a process that builds some rows of a batch gets exactly the
rows a single process would, and batch ``n`` costs the same whatever ``n``.
Eval examples are one pair a row, a fixed set per split. The "tokenizer"
writes ids as words, so BLEU works on them like on text.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from workloads.wmt import data

# Lengths (EOS included) of synthetic sentences.
MIN_LENGTH, MAX_LENGTH = 4, 48
# Pairs drawn for one packed row: more than ever fit in 256 tokens.
PAIRS_PER_ROW = 256 // MIN_LENGTH + 1


def _sentence(generator: np.random.Generator, vocab_size: int) -> np.ndarray:
  length = int(generator.integers(MIN_LENGTH, MAX_LENGTH + 1))
  ids = generator.integers(data.EOS_ID + 1, vocab_size, length).astype(np.int32)
  ids[-1] = data.EOS_ID
  return ids


def _pair(generator: np.random.Generator, vocab_size: int) -> data.Pair:
  ids = _sentence(generator, vocab_size)
  return ids, ids.copy()


def train_rows(seed: Tuple[int, ...], index: int, rows: np.ndarray,
               vocab_size: int) -> Dict[str, np.ndarray]:
  """Rows ``rows`` of packed synthetic train batch ``index`` (``data.pack``'s keys)."""
  packed: List[Dict[str, np.ndarray]] = []
  for row in rows:
    generator = np.random.default_rng([*seed, index, int(row)])
    pairs = [_pair(generator, vocab_size) for _ in range(PAIRS_PER_ROW)]
    packed.append(data.pack(pairs, 1))  # Greedy: fills the row, drops the rest.
  return {key: np.concatenate([p[key] for p in packed]) for key in packed[0]}


def eval_pairs(split_index: int, num_examples: int, vocab_size: int) -> List[data.Pair]:
  """The ``num_examples`` fixed pairs of eval split number ``split_index``."""
  return [_pair(np.random.default_rng([split_index, i]), vocab_size)
          for i in range(num_examples)]


class IdTokenizer:
  """Ids as text: each id a word, up to the first EOS (the reference's cut)."""

  def decode(self, ids: Sequence[int]) -> str:
    ids = np.asarray(ids)
    cut = int(np.argmax(ids == data.EOS_ID)) + 1
    return ' '.join(str(int(i)) for i in ids[:cut] if i not in (data.EOS_ID, data.PAD_ID))
