"""Word error rate, greedy CTC decoding and the tokenizer, on hand-worked examples."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from workloads.librispeech_conformer import ctc
from workloads.librispeech_conformer import tokenizer as tokenizers
from workloads.librispeech_conformer import wer


def _slow_distance(a, b):
  """The textbook dynamic programme, for comparison."""
  d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
  for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
    d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
  return d[-1][-1]


@pytest.mark.parametrize('hypothesis, reference, distance', [
    ('the cat sat', 'the cat sat', 0),
    ('', 'the cat', 2),                          # Two deletions.
    ('the cat', '', 2),                          # Two insertions.
    ('the cat sat on mat', 'the cat sat on the mat', 1),
    ('a x c', 'a b c', 1),                       # One substitution.
    ('b c d', 'a b c', 2),                       # Insert a, delete d.
    ('b a', 'a b', 2),                           # No transpositions.
    ('a a a', 'a', 2),
    ('one two three four', 'four three two one', 4),
])
def test_edit_distance_by_hand(hypothesis, reference, distance):
  assert wer.edit_distance(hypothesis.split(), reference.split()) == distance


def test_edit_distance_equals_the_textbook_programme():
  rng = np.random.default_rng(0)
  for _ in range(200):
    a = list(rng.integers(0, 4, rng.integers(0, 9)).astype(str))
    b = list(rng.integers(0, 4, rng.integers(0, 9)).astype(str))
    assert wer.edit_distance(a, b) == _slow_distance(a, b), (a, b)


def test_word_counts_follow_the_reference():
  assert wer.word_errors('hello world', '  hello   world ') == (0, 2)
  assert wer.word_errors('hello there world', 'hello world') == (1, 2)
  # The reference counts an empty target as one word ('' split on ' ').
  assert wer.word_errors('', '') == (0, 1)
  assert wer.word_errors('noise', '') == (1, 1)


class _Words:
  """Id i (from 1) is the word ``w<i>``; 0 vanishes."""

  def detokenize(self, ids):
    return ' '.join(f'w{int(i)}' for i in ids if int(i))


def test_wer_cuts_each_row_to_its_unpadded_ids():
  decoded = np.array([[1, 2, 3, 0], [5, 6, 0, 0]])
  decoded_paddings = (decoded == 0).astype(np.int32)
  targets = np.array([[1, 2, 4, 9], [5, 6, 7, 9]], np.float32)  # 9: beyond the length.
  target_paddings = np.array([[0, 0, 0, 1], [0, 0, 0, 1]], np.float32)
  # Row 0: one substitution of 3 words; row 1: one deletion of 3 words.
  assert wer.wer_counts(decoded, decoded_paddings, targets, target_paddings,
                        _Words()) == (2, 6)
  assert wer.wer(decoded, decoded_paddings, targets, target_paddings,
                 _Words()) == pytest.approx(2 / 6)


def _one_hot_logits(best_ids, vocab=8):
  return jnp.asarray(np.eye(vocab, dtype=np.float32)[np.asarray(best_ids)] * 5.0)


def test_greedy_decoding_merges_repeats_and_drops_blanks():
  best = [[1, 1, 0, 1, 2, 2, 0, 3],    # a a _ a b b _ c -> a a b c
          [0, 0, 4, 4, 4, 0, 5, 6]]    # padded after 5 frames -> d
  paddings = jnp.array([[0.0] * 8, [0.0] * 5 + [1.0] * 3])
  ids, id_paddings = ctc.greedy_decode(_one_hot_logits(best), paddings)
  np.testing.assert_array_equal(ids, [[1, 1, 2, 3, 0, 0, 0, 0], [4, 0, 0, 0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(id_paddings, (np.asarray(ids) == 0).astype(np.int32))
  assert id_paddings.dtype == jnp.int32


def test_ctc_losses_accept_float_ids_and_favour_the_right_path():
  logits = _one_hot_logits([[1, 0, 2, 0]])
  paddings = jnp.zeros((1, 4))
  right = ctc.ctc_losses(logits, paddings, jnp.array([[1.0, 2.0]]), jnp.zeros((1, 2)))
  wrong = ctc.ctc_losses(logits, paddings, jnp.array([[2.0, 1.0]]), jnp.zeros((1, 2)))
  assert float(right[0]) < 1.0 < float(wrong[0])


@pytest.fixture(scope='module')
def sentencepiece_model(tmp_path_factory):
  pytest.importorskip('sentencepiece')
  words = ['THE', 'CAT', 'SAT', 'ON', 'A', 'MAT', 'DOG', 'RAN', 'TO', 'HOUSE', 'RED',
           'BIG', 'SMALL', 'TREE', 'UNDER', 'OVER']
  rng = np.random.default_rng(0)
  lines = [' '.join(rng.choice(words, rng.integers(3, 9))) for _ in range(300)]
  path = tmp_path_factory.mktemp('spm') / tokenizers.TOKENIZER_FILE
  return tokenizers.train(lines, path, vocab_size=32), path


def test_sentencepiece_round_trip_and_end_of_sentence(sentencepiece_model):
  trained, path = sentencepiece_model
  loaded = tokenizers.Tokenizer.load(path)
  assert loaded.vocab_size == trained.vocab_size == 32
  ids = loaded.tokenize('THE CAT SAT ON A MAT')
  assert ids.dtype == np.int32 and ids[-1] == loaded.eos_id == 2
  assert loaded.detokenize(ids) == 'THE CAT SAT ON A MAT'  # EOS vanishes.
  # An id past the vocabulary reads as the unknown piece: a wrong word, no crash.
  assert loaded.detokenize([5000]).strip() == loaded.detokenize([0]).strip() != ''


def test_wer_with_a_real_tokenizer(sentencepiece_model):
  tokenizer, _ = sentencepiece_model
  target = tokenizer.tokenize('THE BIG DOG RAN UNDER THE TREE')
  hypothesis = tokenizer.tokenize('THE DOG RAN OVER THE TREE')  # One deletion, one substitution.
  width = 32
  decoded = np.zeros((1, width), np.int64)
  decoded[0, :len(hypothesis)] = hypothesis
  targets = np.zeros((1, width), np.float32)
  targets[0, :len(target)] = target
  target_paddings = np.ones((1, width), np.float32)
  target_paddings[0, :len(target)] = 0
  assert wer.wer(decoded, (decoded == 0).astype(np.int32), targets, target_paddings,
                 tokenizer) == pytest.approx(2 / 7)


def test_synthetic_tokenizer_reads_each_id_as_a_word():
  assert tokenizers.SyntheticTokenizer().detokenize([0, 7, 1, 7, 2, 900]) == 'w7 w7 w900'
