"""Beam search (and greedy decoding) for the wmt Transformer, in pure JAX.

The beam search is the reference's algorithm (itself the Flax WMT example's):

* every step extends each of the ``beam_size`` live sequences by every
  token, keeps the ``2 * beam_size`` best extensions by log-probability (so
  that enough stay live if the best ones end), moves those that end in EOS
  to the finished set, and keeps the best ``beam_size`` others live;
* a finished sequence scores ``log_prob / ((5 + length) / 6) ** alpha``
  (``length`` counts the tokens including EOS), the best ``beam_size``
  finished sequences are kept;
* the search stops at ``max_decode_len - 1`` tokens, or once every finished
  slot is filled and the worst finished score beats the best live
  log-probability divided by the penalty of the longest length (no live
  sequence can then overtake it);
* a batch row that finished nothing returns its live sequences and their
  (unnormalised) log-probabilities.

Sequences are ``(batch, beam, max_decode_len)`` int32 with a dummy 0 first
(the start token fed to the decoder), then the tokens, EOS, and zeros. The
beams come best first (the reference returns them in increasing order).

``beam_size == 1`` is plain greedy decoding: the most likely token each
step until EOS, scored as above. (The reference's search with one beam is
not greedy: it keeps extending the best non-EOS sequence after one ended.)

``tokens_to_logits(ids, cache)`` is the model's one-step decoder: ids
``(batch * beam, 1)`` and a cache pytree whose arrays have a leading batch
axis (scalars, e.g. cache indices, are shared) to next-token logits
``(batch * beam, vocab)`` and the updated cache.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import flax
import jax
import jax.numpy as jnp

# SentencePiece's default id of the end-of-sentence token, as the reference.
EOS_ID = 2
# Scores no real sequence reaches, used to mask (as the reference's -1e7).
NEG_INF = -1.0e7
# The reference's brevity-penalty exponent and beam width.
ALPHA = 0.6
BEAM_SIZE = 4

Cache = Any
TokensToLogits = Callable[[jax.Array, Cache], Tuple[jax.Array, Cache]]


def length_penalty(alpha: float, length: Any) -> jax.Array:
  """The divisor of a finished sequence's log-probability: ((5 + length) / 6) ** alpha."""
  return jnp.power((5.0 + length) / 6.0, alpha)


# --- beam axis helpers ---------------------------------------------------------


def _is_batched(x: jax.Array) -> bool:
  # Scalars (the cache's position counters) are shared by every row.
  return x.ndim >= 1


def expand_to_beams(x: jax.Array, beam_size: int) -> jax.Array:
  """``(batch, ...)`` to ``(batch * beam_size, ...)``, each row repeated in place."""
  if not _is_batched(x):
    return x
  return jnp.repeat(x, beam_size, axis=0)


def _add_beam_axis(x: jax.Array, beam_size: int) -> jax.Array:
  if not _is_batched(x):
    return x
  return jnp.broadcast_to(x[:, None], (x.shape[0], beam_size, *x.shape[1:]))


def _merge_beams(x: jax.Array) -> jax.Array:
  if not _is_batched(x):
    return x
  return x.reshape((x.shape[0] * x.shape[1], *x.shape[2:]))


def _split_beams(x: jax.Array, batch_size: int) -> jax.Array:
  if not _is_batched(x):
    return x
  return x.reshape((batch_size, x.shape[0] // batch_size, *x.shape[1:]))


def _take_beams(tree: Any, indices: jax.Array) -> Any:
  """Each batch row's beams ``indices[b]`` of every ``(batch, beam, ...)`` array."""
  batch = jnp.arange(indices.shape[0])[:, None]

  def take(x):
    return x[batch, indices] if _is_batched(x) else x

  return jax.tree.map(take, tree)


def _best(tree: Any, scores: jax.Array, k: int) -> Any:
  """The ``k`` beams of ``tree`` with the highest ``scores``, best first."""
  _, indices = jax.lax.top_k(scores, k)
  return _take_beams(tree, indices)


# --- beam search -----------------------------------------------------------------


@flax.struct.dataclass
class _Beams:
  step: jax.Array  # Tokens decoded so far (the next one goes to step + 1).
  live_seqs: jax.Array  # (batch, beam, max_len) int32.
  live_log_probs: jax.Array  # (batch, beam), best first.
  done_seqs: jax.Array  # (batch, beam, max_len) int32.
  done_scores: jax.Array  # (batch, beam), best first.
  done_flags: jax.Array  # (batch, beam) bool: a slot that holds a sequence.
  cache: Cache  # Arrays (batch, beam, ...).


def beam_search(inputs: jax.Array, cache: Cache, tokens_to_logits: TokensToLogits,
                beam_size: int = BEAM_SIZE, alpha: float = ALPHA,
                eos_id: int = EOS_ID, max_decode_len: Optional[int] = None
                ) -> Tuple[jax.Array, jax.Array]:
  """The ``beam_size`` best translations of each row of ``inputs`` (see module doc).

  Args:
    inputs: ``(batch, length)`` source ids (only its batch size is used).
    cache: the decoder's cache for ``batch`` rows (no beam axis yet).
    tokens_to_logits: the one-step decoder.
    beam_size: beams; 1 decodes greedily.
    alpha: the length-penalty exponent.
    eos_id: the token that ends a sequence.
    max_decode_len: length of the returned sequences (the dummy start token
      included); ``inputs``' length by default.

  Returns:
    ``(sequences (batch, beam, max_decode_len), scores (batch, beam))``,
    best first.
  """
  if beam_size == 1:
    return greedy_search(inputs, cache, tokens_to_logits, alpha=alpha,
                         eos_id=eos_id, max_decode_len=max_decode_len)
  batch_size = inputs.shape[0]
  max_len = int(max_decode_len or inputs.shape[1])
  seqs = jnp.zeros((batch_size, beam_size, max_len), jnp.int32)
  # Only beam 0 is live at first: the others would duplicate it.
  first = jnp.full((beam_size,), NEG_INF, jnp.float32).at[0].set(0.0)
  start = _Beams(
      step=jnp.array(0, jnp.int32),
      live_seqs=seqs,
      live_log_probs=jnp.broadcast_to(first, (batch_size, beam_size)),
      done_seqs=seqs,
      done_scores=jnp.full((batch_size, beam_size), NEG_INF, jnp.float32),
      done_flags=jnp.zeros((batch_size, beam_size), jnp.bool_),
      cache=jax.tree.map(lambda x: _add_beam_axis(x, beam_size), cache))
  # No sequence scores better than its log-probability over this penalty.
  best_possible_divisor = length_penalty(alpha, max_len)

  def keep_going(state: _Beams) -> jax.Array:
    best_live = state.live_log_probs[:, :1] / best_possible_divisor
    worst_done = jnp.min(state.done_scores, axis=1, keepdims=True)
    worst_done = jnp.where(state.done_flags, worst_done, NEG_INF)
    settled = jnp.all(worst_done > best_live)
    return (state.step < max_len - 1) & ~settled

  def advance(state: _Beams) -> _Beams:
    step = state.step
    last = jax.lax.dynamic_slice_in_dim(state.live_seqs, step, 1, axis=2)
    logits, new_cache = tokens_to_logits(
        _merge_beams(last), jax.tree.map(_merge_beams, state.cache))
    new_cache = jax.tree.map(lambda x: _split_beams(x, batch_size), new_cache)
    vocab = logits.shape[-1]
    log_probs = jax.nn.log_softmax(_split_beams(logits, batch_size))
    log_probs = log_probs + state.live_log_probs[:, :, None]

    # The 2k best extensions over all beams and tokens.
    candidates = 2 * beam_size
    top_log_probs, flat = jax.lax.top_k(
        log_probs.reshape(batch_size, beam_size * vocab), candidates)
    parents, tokens = flat // vocab, flat % vocab
    extended = _take_beams(state.live_seqs, parents)
    extended = jax.lax.dynamic_update_slice(
        extended, tokens[:, :, None].astype(jnp.int32), (0, 0, step + 1))
    ended = tokens == eos_id

    # Live: the k best extensions that did not end.
    live_scores = top_log_probs + ended * NEG_INF
    _, chosen = jax.lax.top_k(live_scores, beam_size)
    live_seqs, live_log_probs, live_parents = _take_beams(
        (extended, live_scores, parents), chosen)
    cache = _take_beams(new_cache, live_parents)

    # Finished: the k best of those kept so far and those that just ended.
    ended_scores = top_log_probs / length_penalty(alpha, step + 1)
    ended_scores = ended_scores + (~ended) * NEG_INF
    done_seqs, done_scores, done_flags = _best(
        (jnp.concatenate([state.done_seqs, extended], axis=1),
         jnp.concatenate([state.done_scores, ended_scores], axis=1),
         jnp.concatenate([state.done_flags, ended], axis=1)),
        jnp.concatenate([state.done_scores, ended_scores], axis=1), beam_size)

    return _Beams(step=step + 1, live_seqs=live_seqs,
                  live_log_probs=live_log_probs, done_seqs=done_seqs,
                  done_scores=done_scores, done_flags=done_flags, cache=cache)

  final = jax.lax.while_loop(keep_going, advance, start)
  any_done = jnp.any(final.done_flags, axis=1)
  sequences = jnp.where(any_done[:, None, None], final.done_seqs, final.live_seqs)
  scores = jnp.where(any_done[:, None], final.done_scores, final.live_log_probs)
  return sequences, scores


# --- greedy ----------------------------------------------------------------------


@flax.struct.dataclass
class _Greedy:
  step: jax.Array
  seqs: jax.Array  # (batch, max_len) int32.
  log_probs: jax.Array  # (batch,): of the tokens up to EOS.
  lengths: jax.Array  # (batch,): tokens up to and including EOS, once ended.
  ended: jax.Array  # (batch,) bool.
  cache: Cache


def greedy_search(inputs: jax.Array, cache: Cache, tokens_to_logits: TokensToLogits,
                  alpha: float = ALPHA, eos_id: int = EOS_ID,
                  max_decode_len: Optional[int] = None
                  ) -> Tuple[jax.Array, jax.Array]:
  """The arg-max token each step until EOS: ``beam_search``'s layout, one beam.

  A row that never ends keeps ``max_decode_len - 1`` tokens and scores its
  unnormalised log-probability, as the beam search's unfinished rows do.
  """
  batch_size = inputs.shape[0]
  max_len = int(max_decode_len or inputs.shape[1])
  start = _Greedy(
      step=jnp.array(0, jnp.int32),
      seqs=jnp.zeros((batch_size, max_len), jnp.int32),
      log_probs=jnp.zeros((batch_size,), jnp.float32),
      lengths=jnp.zeros((batch_size,), jnp.int32),
      ended=jnp.zeros((batch_size,), jnp.bool_),
      cache=cache)

  def keep_going(state: _Greedy) -> jax.Array:
    return (state.step < max_len - 1) & ~jnp.all(state.ended)

  def advance(state: _Greedy) -> _Greedy:
    last = jax.lax.dynamic_slice_in_dim(state.seqs, state.step, 1, axis=1)
    logits, cache = tokens_to_logits(last, state.cache)
    log_probs = jax.nn.log_softmax(logits)
    token = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
    gained = jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]
    # Rows that already ended emit padding and keep their score.
    token = jnp.where(state.ended, 0, token)
    seqs = jax.lax.dynamic_update_slice(state.seqs, token[:, None],
                                        (0, state.step + 1))
    now_ended = ~state.ended & (token == eos_id)
    return _Greedy(
        step=state.step + 1, seqs=seqs,
        log_probs=state.log_probs + jnp.where(state.ended, 0.0, gained),
        lengths=jnp.where(now_ended, state.step + 1, state.lengths),
        ended=state.ended | now_ended, cache=cache)

  final = jax.lax.while_loop(keep_going, advance, start)
  scores = jnp.where(final.ended,
                     final.log_probs / length_penalty(alpha, final.lengths),
                     final.log_probs)
  return final.seqs[:, None], scores[:, None]
