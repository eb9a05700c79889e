"""The state of one trial: what the runner carries from step to step and checkpoints.

One object, ``TrialState``, holds everything a trial needs to continue where
it stopped: the submission's three trees, the step, the clock totals, the
eval results and the stop flags. The runner updates it in place, checkpoints
save it, a resume loads it. The ``train_state`` mapping that submissions and
listeners see is a read-only view of it (``TrainStateView``), so the same
fact never lives in two places.

This module imports no JAX.
"""

from __future__ import annotations

import collections.abc
import dataclasses
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

EvalResult = Dict[str, Any]

# The flags a checkpoint stores under ``train_state`` (the reference's names).
STOP_FLAGS = ('validation_goal_reached', 'test_goal_reached',
              'is_time_remaining', 'training_complete')


@dataclasses.dataclass
class TrialState:
  """Everything a trial needs to continue where it stopped.

  ``submission_time``, ``eval_time`` and ``logging_time`` are the clocks'
  totals as of the last time they were read with the device synchronised;
  ``total_duration`` is the wall time since the trial started, downtime
  excluded, as of the last checkpoint. ``last_eval_time`` and
  ``last_step_end_time`` are wall-clock readings of this process (not saved:
  they mean nothing in another process).
  """

  params: Any
  optimizer_state: Any
  model_state: Any
  rng_seed: int
  rng_key: List[int]
  preemption_count: int = 0
  global_step: int = 0
  submission_time: float = 0.0
  eval_time: float = 0.0
  logging_time: float = 0.0
  total_duration: float = 0.0
  eval_results: List[Tuple[int, EvalResult]] = dataclasses.field(
      default_factory=list)
  time_to_target: Optional[float] = None
  validation_goal_reached: bool = False
  test_goal_reached: bool = False
  is_time_remaining: bool = True
  training_complete: bool = False
  input_position: int = 0
  # Rows the CSV logs held when this state was checkpointed (to cut them
  # back on resume); None when nothing is logged.
  log_rows: Optional[Dict[str, int]] = None
  last_eval_time: float = 0.0
  last_step_end_time: float = 0.0

  def stop_flags(self) -> Dict[str, bool]:
    return {name: bool(getattr(self, name)) for name in STOP_FLAGS}

  def load_stop_flags(self, flags: Dict[str, bool]) -> None:
    for name in STOP_FLAGS:
      if name in flags:
        setattr(self, name, bool(flags[name]))


class TrainStateView(collections.abc.Mapping):
  """The read-only ``train_state`` mapping of the reference runner, over a ``TrialState``.

  Keys: ``validation_goal_reached``, ``test_goal_reached``,
  ``is_time_remaining``, ``last_eval_time``, ``training_complete``,
  ``accumulated_submission_time``, ``accumulated_eval_time``,
  ``accumulated_logging_time``, ``last_step_end_time``. Values are read when
  asked for: ``accumulated_submission_time`` comes from ``submission_time``
  (a callable giving the running clock's current reading), so it is never
  stale. Assigning to it raises ``TypeError``, as a ``MappingProxyType`` does.
  """

  KEYS = ('validation_goal_reached', 'test_goal_reached', 'is_time_remaining',
          'last_eval_time', 'training_complete', 'accumulated_submission_time',
          'accumulated_eval_time', 'accumulated_logging_time',
          'last_step_end_time')
  _ATTRIBUTES = {
      'validation_goal_reached': 'validation_goal_reached',
      'test_goal_reached': 'test_goal_reached',
      'is_time_remaining': 'is_time_remaining',
      'last_eval_time': 'last_eval_time',
      'training_complete': 'training_complete',
      'accumulated_eval_time': 'eval_time',
      'accumulated_logging_time': 'logging_time',
      'last_step_end_time': 'last_step_end_time',
  }

  def __init__(self, state: TrialState,
               submission_time: Optional[Callable[[], float]] = None):
    self._state = state
    self._submission_time = submission_time

  def __getitem__(self, key: str) -> Any:
    if key == 'accumulated_submission_time':
      if self._submission_time is not None:
        return self._submission_time()
      return self._state.submission_time
    try:
      return getattr(self._state, self._ATTRIBUTES[key])
    except KeyError:
      raise KeyError(key) from None

  def __iter__(self) -> Iterator[str]:
    return iter(self.KEYS)

  def __len__(self) -> int:
    return len(self.KEYS)

  def __repr__(self) -> str:
    return f'TrainStateView({dict(self)!r})'


__all__ = ['EvalResult', 'STOP_FLAGS', 'TrainStateView', 'TrialState']
