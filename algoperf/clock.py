"""The submission clock: monotonic, pausable, device-aware, checkpointable.

JAX dispatches work asynchronously: ``update_params`` returns before the
device has finished. A reading that decides something (an eval is due, the
budget is spent, the trial stops, a checkpoint) must first wait for the
arrays the submission returned, or training time would leak into whatever
runs next (evaluation, which is untimed). Between such readings the clock
keeps running and the device may run ahead of the host, as in a bare
training loop: ``read()`` is then a lower bound of the true total, and
``sync(outputs)`` makes it exact.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Dict, Optional


def block_until_ready(tree: Any) -> None:
  """Waits for every array in ``tree``; non-array leaves (functions, ints) are skipped.

  Every leaf is waited on, not a sample: leaves that come from one jitted call
  become ready together, but a submission may return a tree mixing outputs of
  several calls (e.g. params from its step and a buffer from another jit), and
  waiting on one of them would let the others' device time leak past the
  clock. ``jax.block_until_ready`` waits for all the JAX arrays in one C++
  call (one GIL release) instead of one Python call per leaf, whose cost grew
  with the number of parameter arrays (27 leaves: 17 us -> 10 us a sync on
  this 2-core CPU). Other leaves with a ``block_until_ready`` method are
  called one by one; the rest are skipped.
  """
  import jax  # pylint: disable=import-outside-toplevel

  jax.block_until_ready(tree)


@dataclasses.dataclass
class SubmissionClock:
  """Accumulates time spent in submission code, excluding everything else.

  The runner starts it after initialisation and lets it run through the
  steps; before an eval (or a checkpoint, or the end) it calls
  ``pause(outputs)``, which waits for ``outputs`` on the device before
  reading the time, and ``start()`` again afterwards. While it runs,
  ``read()`` is the total so far without waiting (never more than the
  truth, since device work may still be queued) and ``sync(outputs)`` the
  exact total. ``accumulated`` is what the benchmark scores once paused.
  ``state_dict``/``load_state_dict`` carry the totals across preemptions: a
  restored clock continues from its saved total, and downtime never counts.
  """

  now: Callable[[], float] = time.perf_counter
  sync_fn: Callable[[Any], None] = block_until_ready
  accumulated: float = 0.0
  _started_at: Optional[float] = None

  @property
  def running(self) -> bool:
    return self._started_at is not None

  def start(self) -> float:
    """Starts timing now; the caller knows no earlier device work is pending."""
    if self._started_at is not None:
      raise RuntimeError('SubmissionClock.start() called while running.')
    self._started_at = self.now()
    return self._started_at

  def resume(self, pending: Any = None) -> float:
    """Starts timing; first waits for ``pending`` so earlier work is not counted."""
    if self._started_at is not None:
      raise RuntimeError('SubmissionClock.resume() called while running.')
    if pending is not None:
      self.sync_fn(pending)
    return self.start()

  def read(self) -> float:
    """The total so far without waiting for the device (a lower bound while running)."""
    started = self._started_at
    if started is None:
      return self.accumulated
    return self.accumulated + (self.now() - started)

  def sync(self, outputs: Any) -> float:
    """Waits for ``outputs`` on the device; returns the exact total (the clock keeps running)."""
    if outputs is not None:
      self.sync_fn(outputs)
    return self.read()

  def pause(self, outputs: Any = None) -> float:
    """Waits for ``outputs`` on the device, then stops timing; returns the interval."""
    if self._started_at is None:
      raise RuntimeError('SubmissionClock.pause() called while paused.')
    if outputs is not None:
      self.sync_fn(outputs)
    interval = self.now() - self._started_at
    self.accumulated += interval
    self._started_at = None
    return interval

  def state_dict(self) -> Dict[str, float]:
    return {'accumulated': self.read()}

  def load_state_dict(self, state: Dict[str, float]) -> None:
    self.accumulated = float(state['accumulated'])
    self._started_at = None


@dataclasses.dataclass
class Stopwatch:
  """An untimed-side accumulator (eval, logging) with the same sync discipline."""

  now: Callable[[], float] = time.perf_counter
  accumulated: float = 0.0

  def measure(self) -> '_Interval':
    return _Interval(self)


class _Interval:

  def __init__(self, watch: Stopwatch):
    self._watch = watch
    self._start = 0.0

  def __enter__(self) -> '_Interval':
    self._start = self._watch.now()
    return self

  def __exit__(self, *exc: Any) -> None:
    self._watch.accumulated += self._watch.now() - self._start
