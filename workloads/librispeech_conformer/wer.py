"""Word error rate of decoded ids against target ids, on the host.

As the reference's ``metrics.py``: each hypothesis and target is cut to its
unpadded ids and detokenised; the errors are the word-level edit distance
(substitutions, insertions, deletions, words split on whitespace) and the
word count is the target's (whitespace normalised, split on single spaces,
so an empty target counts one word). WER is total errors over total words.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np


def edit_distance(hypothesis: Sequence[str], reference: Sequence[str]) -> int:
  """Levenshtein distance between two word sequences (unit costs).

  One numpy pass per hypothesis word: insertions along a row are a running
  minimum (``min_k d[k] + (j - k)``), so no inner Python loop.
  """
  if not hypothesis:
    return len(reference)
  if not reference:
    return len(hypothesis)
  vocab = {}
  ref = np.asarray([vocab.setdefault(w, len(vocab)) for w in reference])
  offsets = np.arange(len(reference) + 1)
  row = offsets.copy()  # Distances from the empty hypothesis prefix.
  for i, word in enumerate(hypothesis, start=1):
    differs = ref != vocab.get(word, -1)
    best = np.empty_like(row)
    best[0] = i
    # Deletion (from the row above) or substitution/match (diagonal).
    best[1:] = np.minimum(row[1:] + 1, row[:-1] + differs)
    # Insertions: d[j] = min over k <= j of best[k] + (j - k).
    row = np.minimum.accumulate(best - offsets) + offsets
  return int(row[-1])


def word_errors(hypothesis: str, reference: str) -> Tuple[int, int]:
  """``(errors, reference words)`` of one utterance, counted as the reference does."""
  reference = ' '.join(reference.split())
  return (edit_distance(hypothesis.split(), reference.split()),
          len(reference.split(' ')))


def _unpadded(ids: np.ndarray, paddings: np.ndarray) -> np.ndarray:
  # The reference keeps the first (number of unpadded positions) ids.
  return ids[:int(np.sum(paddings == 0))].astype(np.int64)


def wer_counts(decoded: np.ndarray, decoded_paddings: np.ndarray, targets: np.ndarray,
               target_paddings: np.ndarray, tokenizer) -> Tuple[int, int]:
  """Total word errors and target words over a batch of rows.

  ``tokenizer`` has ``detokenize(ids) -> str``; ids may be floats (the
  reference's target batches are float32).
  """
  errors = words = 0
  for i in range(len(targets)):
    hypothesis = tokenizer.detokenize(_unpadded(decoded[i], decoded_paddings[i]))
    reference = tokenizer.detokenize(
        _unpadded(np.rint(targets[i]), target_paddings[i]))
    e, n = word_errors(hypothesis, reference)
    errors += e
    words += n
  return errors, words


def wer(decoded: np.ndarray, decoded_paddings: np.ndarray, targets: np.ndarray,
        target_paddings: np.ndarray, tokenizer) -> float:
  """Word error rate: total errors over total target words."""
  errors, words = wer_counts(decoded, decoded_paddings, targets, target_paddings,
                             tokenizer)
  if words == 0:
    raise ValueError('A word error rate over no utterances.')
  return errors / words
