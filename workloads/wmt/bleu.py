"""Corpus BLEU as the wmt reference computes it, through sacrebleu.

The reference scores with its own copy of sacrebleu 1.3.1's ``corpus_bleu``
at that function's defaults: one reference per sentence, the ``13a``
tokenizer, case-sensitive, ``exp`` smoothing, no effective order. sacrebleu
2.x computes the same statistics and the same score with those settings but
for one case: when not a single n-gram matches, it returns 0 where the
reference's smoothing still gives a small positive score. That case is
finished here with the reference's formula, so the two agree everywhere.
"""

from __future__ import annotations

import math
from typing import Sequence

import sacrebleu

# The reference's settings (sacrebleu 1.3.1's corpus_bleu defaults).
SETTINGS = dict(smooth_method='exp', tokenize='13a', lowercase=False,
                use_effective_order=False, force=True)


def _smoothed_without_matches(totals: Sequence[int], brevity_penalty: float) -> float:
  """The reference's ``exp``-smoothed score when no n-gram of any order matched.

  Each order with n-grams gets precision ``100 / (2^k * total)`` (``k``
  counting those orders); from the first order without n-grams on, the
  precision is 0, whose floored log makes the score 0.
  """
  logs = []
  halvings = 1
  for total in totals:
    if total == 0:
      break
    halvings *= 2
    logs.append(math.log(100.0 / (halvings * total)))
  if len(logs) < len(totals):
    return 0.0
  return brevity_penalty * math.exp(sum(logs) / len(totals))


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
  """BLEU (0..100) of ``predictions`` against one reference each, as the reference.

  Raises:
    ValueError: the two lists differ in length.
  """
  predictions, references = list(predictions), list(references)
  if len(predictions) != len(references):
    raise ValueError(f'{len(predictions)} predictions for {len(references)} '
                     'references.')
  result = sacrebleu.corpus_bleu(predictions, [references], **SETTINGS)
  if not any(result.counts):
    return _smoothed_without_matches(result.totals, result.bp)
  return float(result.score)
