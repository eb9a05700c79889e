"""Beam search and greedy decoding (workloads/wmt/decode.py).

First on hand-made "models" whose next-token distribution depends only on
the last token, where the best answer is known; then on a tiny Transformer
trained in the test (a few hundred steps, seconds) to copy its input, decoded
through the same cache path as the workload's eval.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from workloads.wmt import decode
from workloads.wmt.model import Transformer

EOS = decode.EOS_ID


def _markov(probabilities: np.ndarray):
  """``tokens_to_logits`` of a model whose next token depends on the last one."""
  log_probs = jnp.log(jnp.asarray(probabilities, jnp.float32) + 1e-30)

  def tokens_to_logits(ids, cache):
    return log_probs[ids[:, 0]], {'steps': cache['steps'] + 1}

  return tokens_to_logits


def _cache(batch: int):
  return {'steps': jnp.zeros((batch,), jnp.int32)}


def _trap() -> np.ndarray:
  """Start (0): 3 at 0.6, 4 at 0.4. After 3: nothing likely. After 4: EOS at 0.99."""
  table = np.full((8, 8), 1e-3)
  table[0, 3], table[0, 4] = 0.6, 0.4
  table[3, 5:] = 0.33
  table[4, EOS] = 0.99
  table[5:, EOS] = 0.5
  table[EOS, 5] = 1.0  # Never used: nothing is read after EOS.
  return table / table.sum(axis=1, keepdims=True)


def _score(log_prob: float, length: int, alpha: float = decode.ALPHA) -> float:
  return log_prob / ((5 + length) / 6) ** alpha


def test_the_length_penalty_is_the_reference_formula():
  assert float(decode.length_penalty(0.6, 1)) == pytest.approx(1.0)
  assert float(decode.length_penalty(0.6, 10)) == pytest.approx((15 / 6) ** 0.6)


def test_beams_find_what_greedy_misses():
  table = _trap()
  fn = _markov(table)
  inputs = jnp.zeros((2, 6), jnp.int32)
  beams, scores = jax.jit(lambda i, c: decode.beam_search(i, c, fn, beam_size=4))(
      inputs, _cache(2))
  assert beams.shape == (2, 4, 6) and scores.shape == (2, 4)
  np.testing.assert_array_equal(beams[:, 0], [[0, 4, EOS, 0, 0, 0]] * 2)
  want = _score(math.log(table[0, 4] * table[4, EOS]), 2)
  np.testing.assert_allclose(scores[:, 0], want, rtol=1e-5)
  assert bool(jnp.all(scores[:, :-1] >= scores[:, 1:]))  # Best first.

  greedy, greedy_scores = decode.beam_search(inputs, _cache(2), fn, beam_size=1)
  assert greedy.shape == (2, 1, 6)
  np.testing.assert_array_equal(greedy[:, 0], [[0, 3, 5, EOS, 0, 0]] * 2)
  want = _score(math.log(table[0, 3] * table[3, 5] * table[5, EOS]), 3)
  np.testing.assert_allclose(greedy_scores[:, 0], want, rtol=1e-5)
  assert bool(jnp.all(scores[:, 0] > greedy_scores[:, 0]))


def test_a_row_that_never_ends_returns_its_live_beams():
  # EOS impossible (and never among the 2k best extensions of 12 tokens).
  table = np.full((12, 12), 1.0)
  table[:, EOS] = 0.0
  table[:, 4] = 3.0
  table /= table.sum(axis=1, keepdims=True)
  fn = _markov(table)
  inputs = jnp.zeros((1, 5), jnp.int32)
  beams, scores = decode.beam_search(inputs, _cache(1), fn, beam_size=3)
  np.testing.assert_array_equal(beams[0, 0], [0, 4, 4, 4, 4])  # Every slot used.
  # Unfinished: the plain log-probability, no length penalty.
  np.testing.assert_allclose(scores[0, 0], 4 * math.log(table[0, 4]), rtol=1e-5)
  greedy, greedy_scores = decode.greedy_search(inputs, _cache(1), fn)
  np.testing.assert_array_equal(greedy[0, 0], [0, 4, 4, 4, 4])
  np.testing.assert_allclose(greedy_scores[0, 0], scores[0, 0], rtol=1e-5)


def test_rows_decode_independently_and_pad_after_eos():
  table = _trap()
  fn = _markov(table)
  inputs = jnp.zeros((3, 8), jnp.int32)
  beams, _ = decode.beam_search(inputs, _cache(3), fn, beam_size=2, max_decode_len=8)
  for row in np.asarray(beams[:, 0]):
    end = int(np.argmax(row == EOS))
    assert end > 0 and not row[end + 1:].any()


def test_expand_to_beams_repeats_each_row_in_place():
  x = jnp.arange(6).reshape(3, 2)
  np.testing.assert_array_equal(decode.expand_to_beams(x, 2),
                                [[0, 1], [0, 1], [2, 3], [2, 3], [4, 5], [4, 5]])
  assert decode.expand_to_beams(jnp.array(7), 2) == 7  # Scalars are shared.


# --- a tiny trained model ---------------------------------------------------------

LENGTH = 12
TINY = dict(vocab_size=12, emb_dim=32, num_heads=2, num_layers=1, qkv_dim=32,
            mlp_dim=64, max_len=LENGTH)


def _copy_batch(rng: np.random.Generator, batch: int) -> np.ndarray:
  rows = np.zeros((batch, LENGTH), np.int32)
  for row in rows:
    n = int(rng.integers(2, 7))
    row[:n] = rng.integers(3, TINY['vocab_size'], n)
    row[n] = EOS
  return rows


@pytest.fixture(scope='module')
def trained():
  """A tiny Transformer that learnt to copy its input (~300 Adam steps)."""
  model = Transformer(**TINY)
  rng = np.random.default_rng(0)
  sample = jnp.asarray(_copy_batch(rng, 2))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), sample, sample)['params']
  optimizer = optax.adam(3e-3)

  @jax.jit
  def step(params, state, rows):
    def loss(p):
      logits = model.apply({'params': p}, rows, rows)
      per_token = optax.softmax_cross_entropy_with_integer_labels(logits, rows)
      weights = (rows > 0).astype(jnp.float32)
      return jnp.sum(per_token * weights) / jnp.sum(weights)

    value, grads = jax.value_and_grad(loss)(params)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state, value

  def body(carry, rows):
    params, state, value = step(*carry, rows)
    return (params, state), value

  batches = jnp.asarray(np.stack([_copy_batch(rng, 64) for _ in range(300)]))
  (params, _), losses = jax.lax.scan(body, (params, optimizer.init(params)), batches)
  assert float(losses[-1]) < 0.2 * float(losses[0]), losses[::50]
  return model, params


def _decoder_fn(model, params, inputs, beams):
  """The workload's decoding path: encode once, a cache, one token per call."""
  decoder = Transformer(**TINY, decoding=True)
  encoded = decode.expand_to_beams(
      model.apply({'params': params}, inputs, method='encode'), beams)
  source = decode.expand_to_beams(inputs, beams)
  shapes = jax.eval_shape(decoder.init, jax.random.PRNGKey(0), inputs,
                          jnp.ones((inputs.shape[0], LENGTH), jnp.int32))
  cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes['cache'])

  def tokens_to_logits(ids, cache):
    logits, variables = decoder.apply({'params': params, 'cache': cache}, encoded,
                                      source, ids, mutable=['cache'],
                                      method='decode')
    return logits[:, 0], variables['cache']

  return cache, tokens_to_logits


@pytest.fixture(scope='module')
def decoded(trained):
  model, params = trained
  inputs = jnp.asarray(_copy_batch(np.random.default_rng(1), 16))

  def search(params, inputs, beams):
    cache, fn = _decoder_fn(model, params, inputs, beams)
    return decode.beam_search(inputs, cache, fn, beam_size=beams,
                              max_decode_len=LENGTH)

  run = jax.jit(search, static_argnums=2)
  return inputs, run(params, inputs, 1), run(params, inputs, 4)


def _rescore(model, params, inputs, sequences):
  """Each sequence's length-penalised log-probability under the full model."""
  tokens = sequences[:, 1:]
  targets = jnp.pad(tokens, ((0, 0), (0, 1)))
  log_probs = jax.nn.log_softmax(model.apply({'params': params}, inputs, targets))
  picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  lengths = np.argmax(np.asarray(tokens) == EOS, axis=1) + 1
  keep = np.arange(targets.shape[1])[None, :] < lengths[:, None]
  return np.sum(np.where(keep, picked, 0.0), axis=1) / (
      (5 + lengths) / 6) ** decode.ALPHA


def test_greedy_is_the_arg_max_path_of_the_full_model(trained, decoded):
  model, params = trained
  inputs, (greedy, _), _ = decoded
  # Without the cache: re-run the whole decoder on the prefix each step.
  prefix = np.zeros((inputs.shape[0], LENGTH), np.int32)
  done = np.zeros(inputs.shape[0], bool)
  forward = jax.jit(lambda t: model.apply({'params': params}, inputs, t))
  for t in range(LENGTH - 1):
    # Any non-zero id at t: the target padding mask would hide the query;
    # the causal mask keeps position t from seeing it.
    prefix[:, t] = 3
    token = np.asarray(jnp.argmax(forward(jnp.asarray(prefix)), axis=-1))[:, t]
    prefix[:, t] = np.where(done, 0, token)
    done |= prefix[:, t] == EOS
  np.testing.assert_array_equal(greedy[:, 0, 1:], prefix[:, :LENGTH - 1])


def test_it_learnt_to_copy(decoded):
  inputs, (greedy, _), (beams, _) = decoded
  for found in (greedy[:, 0, 1:], beams[:, 0, 1:]):
    right = np.mean(np.all(np.asarray(found) == np.asarray(inputs)[:, :LENGTH - 1],
                           axis=1))
    assert right >= 0.75, right


def test_four_beams_score_at_least_the_greedy_answer(trained, decoded):
  model, params = trained
  inputs, (greedy, greedy_scores), (beams, scores) = decoded
  ended = np.any(np.asarray(beams[:, 0]) == EOS, axis=1)
  assert ended.all()
  # The scores are what they claim: the model's log-probability, penalised.
  np.testing.assert_allclose(scores[:, 0], _rescore(model, params, inputs, beams[:, 0]),
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(greedy_scores[:, 0],
                             _rescore(model, params, inputs, greedy[:, 0]),
                             rtol=1e-4, atol=1e-4)
  assert bool(jnp.all(scores[:, 0] >= greedy_scores[:, 0] - 1e-5))
  assert bool(jnp.all(scores[:, :-1] >= scores[:, 1:]))
