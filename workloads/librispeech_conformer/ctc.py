"""CTC on the device: the per-utterance loss and greedy decoding (blank id 0)."""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
import optax

BLANK_ID = 0


def ctc_losses(logits: jax.Array, logit_paddings: jax.Array, labels: jax.Array,
               label_paddings: jax.Array) -> jax.Array:
  """``(batch,)`` CTC negative log-likelihoods of the labels (optax.ctc_loss).

  ``labels`` may be float (the reference's batches hold float32 ids).
  """
  log_probs = jax.nn.log_softmax(logits)
  return optax.ctc_loss(log_probs, logit_paddings, jnp.round(labels).astype(jnp.int32),
                        label_paddings, blank_id=BLANK_ID)


def greedy_decode(logits: jax.Array,
                  logit_paddings: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """Best path decoding: per-frame arg-max, repeats merged, blanks dropped.

  Returns ``(ids, paddings)`` of shape ``(batch, frames)``: each row's ids
  packed at the start, 0 after them, and paddings 1 where the id is 0 (int32,
  as the reference). Frames past ``sum(1 - logit_paddings)`` are ignored.
  """
  best = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  batch, frames = best.shape
  length = jnp.sum(1.0 - logit_paddings, axis=-1)
  in_length = jnp.arange(frames)[None, :] < length[:, None]
  previous = jnp.concatenate([jnp.full((batch, 1), -1, jnp.int32), best[:, :-1]], axis=1)
  # A blank between two equal ids separates them; only a direct repeat merges.
  emitted = (best != BLANK_ID) & (best != previous) & in_length
  slot = jnp.where(emitted, jnp.cumsum(emitted, axis=1) - 1, frames)
  rows = jnp.broadcast_to(jnp.arange(batch)[:, None], slot.shape)
  ids = jnp.zeros_like(best).at[rows, slot].set(best, mode='drop')
  return ids, (ids == BLANK_ID).astype(jnp.int32)
