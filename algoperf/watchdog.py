"""Stops a trial whose submission hook never returns.

The runner checks the budget between hooks, so a ``data_selection`` or
``update_params`` that never returns (an endless loop, a deadlock, a wait on
a queue nobody fills) would keep a trial, and the sweep behind it, running
forever. A ``HookWatchdog`` thread watches the trial's deadline: the budget
on the submission clock plus a grace, or a wall-clock limit for hooks that
run off the clock (``init_optimizer_state``). When the deadline passes it
interrupts the main thread with ``SIGALRM``; the handler raises
``HookTimeout`` (a ``BaseException``, so a submission's ``except Exception``
cannot swallow it), which the runner turns into a trial ended by the budget.

A hook stuck inside native code that never returns to Python (e.g. an XLA
computation that never ends) cannot be interrupted that way. If the main
thread has not reacted ``hard_grace_sec`` after the signal, the watchdog
calls ``on_stuck`` (which writes what it can: logs, the trial summary) and
ends the process with ``EXIT_STUCK``; a sweep then goes on with its next run.

The grace: 10% of the budget, at least 2 s and at most 10 minutes
(``default_grace``). A step that legitimately straddles the end of the budget
is never cut short by it: by then the budget is spent anyway, and the trial
is recorded as ended by the budget either way.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Callable, Optional

# Exit code of a process ended because a hook was stuck in native code.
EXIT_STUCK = 3
_SIGNAL = signal.SIGALRM


def default_grace(budget_sec: float) -> float:
  """Seconds a hook may run past the budget before the trial is stopped."""
  return min(600.0, max(2.0, 0.1 * float(budget_sec)))


class HookTimeout(BaseException):
  """Raised in the main thread when a hook ran past its deadline."""

  def __init__(self, hook: str, message: str):
    super().__init__(message)
    self.hook = hook
    self.message = message


class HookWatchdog:
  """A daemon thread that interrupts the main thread once a deadline has passed.

  ``remaining()`` (set with ``watch``) returns the seconds left, or None
  while nothing is watched (e.g. the clock is paused for an eval). It is
  called from the watchdog thread at most about once a second and whenever
  ``poke()`` says the situation changed, never on the training hot path.
  ``hook()`` names the hook running when the deadline passed.
  """

  def __init__(self, hook: Callable[[], Optional[str]],
               on_stuck: Optional[Callable[[str], None]] = None,
               hard_grace_sec: float = 30.0, poll_sec: float = 1.0):
    self._hook = hook
    self._on_stuck = on_stuck
    self._hard_grace = hard_grace_sec
    self._poll = poll_sec
    self._remaining: Optional[Callable[[], Optional[float]]] = None
    self._describe: Callable[[str], str] = lambda hook: f'{hook} did not return'
    self._wake = threading.Event()
    self._stop = False
    self._fired: Optional[str] = None
    self._acknowledged = threading.Event()
    self._previous_handler = None
    self._thread: Optional[threading.Thread] = None
    self.enabled = threading.current_thread() is threading.main_thread()
    if not self.enabled:
      logging.debug('Hook watchdog off: the runner is not in the main thread.')

  # --- main thread --------------------------------------------------------------

  def __enter__(self) -> 'HookWatchdog':
    if self.enabled:
      self._previous_handler = signal.signal(_SIGNAL, self._handle)
      self._thread = threading.Thread(target=self._watch, name='algoperf-watchdog',
                                      daemon=True)
      self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    if not self.enabled:
      return
    self._stop = True
    self._wake.set()
    if self._thread is not None:
      self._thread.join(timeout=5.0)
    signal.signal(_SIGNAL, self._previous_handler or signal.SIG_DFL)

  def watch(self, remaining: Optional[Callable[[], Optional[float]]],
            describe: Optional[Callable[[str], str]] = None) -> None:
    """Watches ``remaining`` (seconds left, or None: nothing to watch now)."""
    self._remaining = remaining
    if describe is not None:
      self._describe = describe
    self._wake.set()

  def disarm(self) -> None:
    """From now on nothing fires, and a signal already on its way raises nothing."""
    self._stop = True
    self._wake.set()

  def poke(self) -> None:
    """Makes the thread look at the deadline again now (e.g. the clock restarted)."""
    self._wake.set()

  def _handle(self, signum, frame) -> None:
    del signum, frame
    hook = self._fired
    if hook is None or self._stop:
      return  # A stray SIGALRM: not ours.
    self._acknowledged.set()
    raise HookTimeout(hook, self._describe(hook))

  # --- watchdog thread -----------------------------------------------------------

  def _watch(self) -> None:
    main = threading.main_thread().ident
    while not self._stop:
      remaining_fn = self._remaining
      left = remaining_fn() if remaining_fn is not None else None
      if left is not None and left <= 0:
        self._fired = self._hook() or 'a submission hook'
        signal.pthread_kill(main, _SIGNAL)
        if not self._acknowledged.wait(self._hard_grace) and not self._stop:
          self._give_up(self._fired)
        return
      wait = self._poll if left is None else min(self._poll, max(left, 0.01))
      self._wake.wait(wait)
      self._wake.clear()

  def _give_up(self, hook: str) -> None:
    message = (f'{self._describe(hook)}, and it is stuck where it cannot be '
               f'interrupted (native code); ending the process.')
    print(f'algoperf: error: {message}', file=sys.stderr, flush=True)
    if self._on_stuck is not None:
      try:
        self._on_stuck(message)
      except Exception:  # pylint: disable=broad-except
        logging.exception('Could not save the logs of the stuck trial.')
    sys.stderr.flush()
    os._exit(EXIT_STUCK)  # pylint: disable=protected-access


def wall_deadline(seconds: float, now: Callable[[], float] = time.perf_counter
                  ) -> Callable[[], float]:
  """A ``remaining`` function for a wall-clock limit starting now."""
  end = now() + seconds
  return lambda: end - now()


__all__ = ['EXIT_STUCK', 'HookTimeout', 'HookWatchdog', 'default_grace',
           'wall_deadline']
