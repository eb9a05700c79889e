"""A mean over a whole eval split whose running sums keep float64-like precision.

The criteo1tb target is a mean loss to six digits over 83M (validation) or
95M (test) examples. A float32 running sum of hundreds of batch sums drifts
in its last digits, and a float32 count stops being exact past 2**24; the
reference adds its batch sums in float64 on the host. ``CompensatedAverage``
keeps each sum as a float32 pair (value, rounding error) merged by the
error-free TwoSum, so states still merge on the device (dispatch stays
asynchronous) and ``compute()`` finishes in float64.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import jax
import jax.numpy as jnp


def _two_sum(a: jax.Array, b: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth)."""
  s = a + b
  b_part = s - a
  a_part = s - b_part
  return s, (a - a_part) + (b - b_part)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CompensatedAverage:
  """``total / count`` with both sums compensated; same interface as ``Average``."""

  total: jax.Array
  total_error: jax.Array
  count: jax.Array
  count_error: jax.Array

  @classmethod
  def from_sum(cls, total: jax.Array, count: jax.Array) -> 'CompensatedAverage':
    """The state of one batch (inside a jitted step): its summed value and weight."""
    total = jnp.asarray(total, jnp.float32)
    count = jnp.asarray(count, jnp.float32)
    return cls(total, jnp.zeros_like(total), count, jnp.zeros_like(count))

  def merge(self, other: 'CompensatedAverage') -> 'CompensatedAverage':
    # Eager ops, one at a time: no compiler may reassociate the TwoSum.
    total, total_error = _two_sum(self.total, other.total)
    count, count_error = _two_sum(self.count, other.count)
    return CompensatedAverage(
        total, total_error + self.total_error + other.total_error,
        count, count_error + self.count_error + other.count_error)

  def compute(self) -> float:
    total, total_error, count, count_error = (
        float(x) for x in jax.device_get(
            (self.total, self.total_error, self.count, self.count_error)))
    weight = count + count_error
    if weight == 0:
      raise ValueError('An average over no examples (every weight was 0).')
    return (total + total_error) / weight
