"""Eval metrics as states that merge batch by batch and finish on the host.

An eval runs a jitted step over padded batches; each step returns metric
*states*, not numbers. States of one kind merge (``a.merge(b)``), and
``compute()`` turns the merged state into the metric's value on the host. Two
kinds cover the benchmark's metrics:

- ``Average`` (and ``Accuracy``): weighted sums. They merge on the device (so
  dispatch stays asynchronous until the end of the split) and, being outputs
  of a step on global arrays, already hold every process's examples.
- ``Collected``: the per-example values a metric needs whole (mean average
  precision, BLEU, WER, SSIM per volume). They move to the host batch by
  batch, each process keeping the rows of its own devices, and are gathered
  across processes once, at ``compute()``, where a host function (numpy,
  scikit-learn, sacrebleu) finishes them.

The interface is CLU's ``metrics`` idea kept to what the workloads use; CLU
itself is not a dependency (DESIGN_NOTES.md says why).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Average:
  """A weighted mean: ``total / count``; weight 0 (padding) counts nothing."""

  total: jax.Array
  count: jax.Array

  @classmethod
  def from_values(cls, values: jax.Array,
                  weights: Optional[jax.Array] = None) -> 'Average':
    """The state of one batch of per-example ``values`` (inside a jitted step)."""
    values = jnp.asarray(values, jnp.float32)
    if weights is None:
      weights = jnp.ones_like(values)
    weights = jnp.asarray(weights, jnp.float32)
    # where(): a padded row's NaN or inf never reaches the sum.
    total = jnp.sum(jnp.where(weights > 0, values * weights, 0.0))
    return cls(total=total, count=jnp.sum(weights))

  @classmethod
  def from_sum(cls, total: jax.Array, count: jax.Array) -> 'Average':
    """The state of an already summed batch (e.g. a loss_fn's ``summed``)."""
    return cls(total=jnp.asarray(total, jnp.float32),
               count=jnp.asarray(count, jnp.float32))

  def merge(self, other: 'Average') -> 'Average':
    return Average(total=self.total + other.total,
                   count=self.count + other.count)

  def compute(self) -> float:
    count = float(jax.device_get(self.count))
    if count == 0:
      raise ValueError('An average over no examples (every weight was 0).')
    return float(jax.device_get(self.total)) / count


class Accuracy(Average):
  """The fraction of examples whose arg-max logit is the label."""

  @classmethod
  def from_logits(cls, logits: jax.Array, labels: jax.Array,
                  weights: Optional[jax.Array] = None) -> 'Accuracy':
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    state = Average.from_values(correct, weights)
    return cls(total=state.total, count=state.count)

  def merge(self, other: 'Average') -> 'Accuracy':
    merged = Average.merge(self, other)
    return Accuracy(total=merged.total, count=merged.count)


jax.tree_util.register_dataclass(Accuracy, data_fields=['total', 'count'],
                                 meta_fields=[])


def _local_rows(array: jax.Array) -> np.ndarray:
  """This process's rows of a batch-sharded global array, in device order."""
  if not isinstance(array, jax.Array) or jax.process_count() == 1:
    return np.asarray(jax.device_get(array))
  shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
  rows, seen = [], set()
  for shard in shards:
    start = shard.index[0].start or 0
    if start in seen:  # A replicated copy of rows already taken.
      continue
    seen.add(start)
    rows.append(np.asarray(shard.data))
  return np.concatenate(rows)


class Collected:
  """Per-example arrays kept on the host, finished by ``fn`` at ``compute()``.

  ``fn(**arrays)`` receives every example's rows whose weight is positive
  (``weights`` itself is dropped), gathered from every process: the order
  across processes is by process index, which metrics that are sums or
  per-example means do not depend on.
  """

  def __init__(self, fn: Callable[..., Any],
               parts: Optional[List[Dict[str, np.ndarray]]] = None):
    self.fn = fn
    self.parts: List[Dict[str, np.ndarray]] = list(parts or [])

  def add(self, weights: jax.Array, **arrays: jax.Array) -> 'Collected':
    """Keeps this batch's rows whose weight is positive (off the device)."""
    keep = _local_rows(weights) > 0
    self.parts.append({k: _local_rows(v)[keep] for k, v in arrays.items()})
    return self

  def merge(self, other: 'Collected') -> 'Collected':
    return Collected(self.fn, self.parts + other.parts)

  def arrays(self) -> Dict[str, np.ndarray]:
    """Every process's kept rows, concatenated."""
    if not self.parts:
      return {}
    names = list(self.parts[0])
    local = {k: np.concatenate([p[k] for p in self.parts]) for k in names}
    if jax.process_count() == 1:
      return local
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    out = {}
    for k, v in local.items():
      # Processes may hold different row counts: pad to the largest, then cut.
      counts = multihost_utils.process_allgather(np.asarray([len(v)]))
      most = int(np.max(counts))
      padded = np.zeros((most, *v.shape[1:]), v.dtype)
      padded[:len(v)] = v
      gathered = multihost_utils.process_allgather(padded)
      out[k] = np.concatenate([gathered[i][:int(counts[i][0])]
                               for i in range(len(gathered))])
    return out

  def compute(self) -> Any:
    return self.fn(**self.arrays())


def merge_all(states: Iterable[Mapping[str, Any]]) -> Dict[str, Any]:
  """Merges a stream of ``{name: state}`` dicts key by key."""
  merged: Dict[str, Any] = {}
  for batch_states in states:
    for name, state in batch_states.items():
      merged[name] = state if name not in merged else merged[name].merge(state)
  return merged


def compute_all(states: Mapping[str, Any]) -> Dict[str, float]:
  """``{name: state.compute()}``."""
  return {name: state.compute() for name, state in states.items()}
