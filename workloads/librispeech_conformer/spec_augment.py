"""SpecAugment (Park et al., 2019) as the reference applies it to log-mel features.

Time masks, then frequency masks, zeroing blocks of the ``(batch, frames,
bins)`` features; the paddings are unchanged. Per example:

* ``time_mask_count`` time masks, each at most ``time_mask_max_ratio`` of the
  utterance's unpadded frames long (at least one frame), placed inside them;
* ``freq_mask_count`` frequency masks of at most ``freq_mask_max_bins`` bins.

A mask's length is a uniform fraction of its maximum, rounded down, and its
start is uniform over the positions where it fits. The random numbers come
from the ``dropout`` rng stream, two draws per kind of mask (lengths, then
starts), time first.
"""

from __future__ import annotations

from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp


def _block_mask(lengths: jax.Array, fractions: jax.Array, starts: jax.Array,
                size: int, max_size: Optional[int], max_ratio: float) -> jax.Array:
  """``(batch, size)`` 1.0 where no mask covers a position, else 0.0.

  ``lengths``: ``(batch,)`` int32, the range masks are placed in;
  ``fractions`` and ``starts``: ``(batch, count)`` uniform [0, 1) draws.
  """
  range_ = lengths[:, None]
  if max_size is None:  # As long as max_ratio of the range allows.
    limit = range_.astype(jnp.float32) * max_ratio
  else:
    limit = jnp.full_like(range_, max_size).astype(jnp.float32)
  mask_size = (limit * fractions).astype(jnp.int32)
  bound = (max_ratio * range_).astype(jnp.int32)
  mask_size = jnp.minimum(mask_size, jnp.maximum(bound, 1))
  first = (starts * (range_ - mask_size + 1)).astype(jnp.int32)
  positions = jnp.arange(size)[None, None, :]
  covered = ((positions >= first[..., None])
             & (positions < (first + mask_size)[..., None]))
  return 1.0 - jnp.any(covered, axis=1).astype(jnp.float32)


class SpecAug(nn.Module):
  """Masks random time and frequency blocks of ``(batch, frames, bins)`` features."""

  freq_mask_count: int = 2
  freq_mask_max_bins: int = 27
  time_mask_count: int = 10
  time_mask_max_ratio: float = 0.05

  def _draws(self, batch: int, count: int) -> Tuple[jax.Array, jax.Array]:
    fractions = jax.random.uniform(self.make_rng('dropout'), (batch, count))
    starts = jax.random.uniform(self.make_rng('dropout'), (batch, count))
    return fractions, starts

  @nn.compact
  def __call__(self, features: jax.Array,
               paddings: jax.Array) -> Tuple[jax.Array, jax.Array]:
    batch, frames, bins = features.shape
    if self.time_mask_count > 0 and self.time_mask_max_ratio > 0:
      lengths = jnp.sum(1.0 - paddings, axis=-1).astype(jnp.int32)
      fractions, starts = self._draws(batch, self.time_mask_count)
      keep = _block_mask(lengths, fractions, starts, frames, None,
                         self.time_mask_max_ratio)
      features = features * keep[:, :, None]
    if self.freq_mask_count > 0 and self.freq_mask_max_bins > 0:
      lengths = jnp.full((batch,), bins, jnp.int32)
      fractions, starts = self._draws(batch, self.freq_mask_count)
      keep = _block_mask(lengths, fractions, starts, bins, self.freq_mask_max_bins,
                         1.0)
      features = features * keep[:, None, :]
    return features, paddings
