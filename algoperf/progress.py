"""Live progress line and end-of-trial summary (a runner ``Listener``)."""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from typing import Any, List, Mapping, Optional, Sequence, TextIO, Tuple

from algoperf import spec
from algoperf.runner import Listener, TrialConfig, TrialResult

_SEPARATOR = ' | '
# How often (seconds) a terminal's width is asked again: a resized window is
# noticed within a second, and no step pays for the query.
_WIDTH_REFRESH_SEC = 1.0
# Every field of the line has a list of forms, longest first, '' meaning
# dropped. When the line does not fit the terminal, these (field, form) steps
# are taken in order until it does: least important information goes first.
_SHRINK_STEPS: Tuple[Tuple[str, int], ...] = (
    ('rate', 1),    # '  123.4 steps/s' -> '123.4/s'
    ('time', 1),    # 'submission time ...' -> 'time 12.3/100 s'
    ('metric', 1),  # 'validation/accuracy ...' -> 'accuracy ...'
    ('rate', 2),    # rate dropped
    ('head', 1),    # 'step       7' -> 'step 7'
    ('metric', 2),  # target dropped
    ('time', 2),    # '12/100 s'
    ('head', 2),    # label dropped
    ('metric', 3),  # metric dropped
    ('time', 3),    # time dropped: only the step is left
)
_FIELDS = ('head', 'rate', 'time', 'metric')


def _terminal_width(stream: TextIO) -> int:
  """Columns of the terminal ``stream`` writes to (80 if unknown)."""
  # shutil honours $COLUMNS and asks stdout; stdout may be redirected while
  # stderr (our usual stream) is still the terminal, so ask the stream then.
  columns = shutil.get_terminal_size((0, 0)).columns
  if columns <= 0:
    try:
      columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
      columns = 0
  return columns if columns > 0 else 80


def fit_line(forms: Mapping[str, Sequence[str]], width: int) -> str:
  """Joins the fields' forms with ``' | '`` so that the line has < ``width`` chars.

  ``forms[field]`` lists a field's texts from longest to shortest (an empty
  text drops the field). The fields are shrunk in ``_SHRINK_STEPS`` order;
  if even the shortest line is too long it is cut. Empty fields never leave a
  separator behind.
  """
  limit = max(width - 1, 1)  # The last column would make some terminals wrap.
  chosen = {field: 0 for field in _FIELDS}

  def render() -> str:
    parts = []
    for field in _FIELDS:
      options = forms.get(field, ())
      if options:
        text = options[min(chosen[field], len(options) - 1)]
        if text:
          parts.append(text)
    return _SEPARATOR.join(parts)

  line = render()
  for field, level in _SHRINK_STEPS:
    if len(line) <= limit:
      return line
    chosen[field] = level
    line = render()
  return line[:limit]


class ProgressPrinter(Listener):
  """Prints step, steps/s, submission time vs budget and the target metric.

  With ``live=False`` only the end-of-trial summary is printed.

  On a terminal the line is redrawn in place at most every ``interval`` seconds
  and after every eval, shortened to fit the terminal's width (it never
  wraps). Otherwise (CI, log files) a full line is printed every ``interval``
  seconds (at least 10) and at every eval, each line once: a line due at a step
  that is then evaluated is replaced by the eval's line. Printing happens
  between steps, off the submission clock; a step that prints nothing costs a
  clock read and a comparison.
  """

  def __init__(self, stream: Optional[TextIO] = None, interval: float = 0.5,
               label: str = '', live: bool = True):
    self._live = live
    # Resolved now, not at import: sys.stderr may have been replaced since.
    self._stream = stream or sys.stderr
    self._tty = bool(getattr(self._stream, 'isatty', lambda: False)())
    self._interval = interval if self._tty else max(interval, 10.0)
    self._label = label
    self._workload: Optional[spec.Workload] = None
    self._config: Optional[TrialConfig] = None
    self._last_print = 0.0
    # (name, value, target) of the latest eval's validation target metric.
    self._metric: Optional[Tuple[str, float, float]] = None
    self._rate_mark = (0, 0.0)
    self._step_end = 0.0
    self._rate = 0.0
    # Piped output: (step, rate, submission time) of a line that is due but
    # held until the next step, because an eval of the same step replaces it.
    self._pending: Optional[Tuple[int, float, float]] = None
    self._width = 80
    self._width_checked = -math.inf
    self._drawn = False  # A live line is on the terminal, without newline.

  def on_start(self, workload: spec.Workload, config: TrialConfig) -> None:
    self._workload, self._config = workload, config
    self._rate_mark = (0, time.perf_counter())
    self._step_end = self._rate_mark[1]
    self._last_print = 0.0
    self._metric = None
    self._pending = None

  # --- the line ----------------------------------------------------------------

  def _forms(self, global_step: int, rate: float,
             submission_time: float) -> dict:
    budget = self._config.budget_sec if self._config is not None else math.nan
    forms = {
        'head': (f'{self._label}step {global_step:>7d}',
                 f'{self._label}step {global_step}', f'step {global_step}'),
        'rate': (f'{rate:7.1f} steps/s', f'{rate:.1f}/s', ''),
        'time': (f'submission time {submission_time:7.1f} / {budget:.0f} s',
                 f'time {submission_time:.1f}/{budget:.0f} s',
                 f'{submission_time:.0f}/{budget:.0f} s', ''),
    }
    if self._metric is not None:
      name, value, target = self._metric
      forms['metric'] = (f'validation/{name} {value:.4f} (target {target:g})',
                         f'{name} {value:.4f} (target {target:g})',
                         f'{name} {value:.4f}', '')
    return forms

  def _line(self, global_step: int, rate: float, submission_time: float,
            width: Optional[int] = None) -> str:
    forms = self._forms(global_step, rate, submission_time)
    if width is None:
      return _SEPARATOR.join(f[0] for f in (forms.get(k) for k in _FIELDS)
                             if f and f[0])
    return fit_line(forms, width)

  def _emit_now(self, global_step: int, rate: float, submission_time: float,
                now: float) -> None:
    if self._tty:
      if now - self._width_checked >= _WIDTH_REFRESH_SEC:
        self._width = _terminal_width(self._stream)
        self._width_checked = now
      text = self._line(global_step, rate, submission_time, self._width)
      self._stream.write('\r\x1b[K' + text)
      self._drawn = True
    else:
      self._stream.write(self._line(global_step, rate, submission_time) + '\n')
    self._stream.flush()

  def _write_pending(self) -> None:
    pending, self._pending = self._pending, None
    if pending is not None:
      self._emit_now(*pending, now=time.perf_counter())

  def _update_rate(self, global_step: int, now: float) -> None:
    step0, t0 = self._rate_mark
    if global_step > step0 and now > t0:
      self._rate = (global_step - step0) / (now - t0)
      self._rate_mark = (global_step, now)

  # --- listener hooks ----------------------------------------------------------

  def on_step(self, global_step: int, train_state: Mapping[str, Any]) -> None:
    now = self._step_end = time.perf_counter()
    if self._pending is not None:
      # The previous step's line was not replaced by an eval: print it now.
      self._write_pending()
    if not self._live or now - self._last_print < self._interval:
      return
    self._update_rate(global_step, now)
    self._last_print = now
    submission_time = float(train_state['accumulated_submission_time'])
    if self._tty:
      self._emit_now(global_step, self._rate, submission_time, now)
    else:
      self._pending = (global_step, self._rate, submission_time)

  def on_eval(self, global_step: int, result: Mapping[str, Any],
              train_state: Mapping[str, Any]) -> None:
    assert self._workload is not None
    name = self._workload.target_metric_name
    value = result.get(f'validation/{name}')
    if value is not None:
      self._metric = (name, float(value),
                      float(self._workload.validation_target_value))
    if self._live:
      if self._pending is not None and self._pending[0] != global_step:
        self._write_pending()
      # A line held for this very step would repeat this one with a stale metric.
      self._pending = None
      now = time.perf_counter()
      # The rate up to the end of the step, not of the eval after it.
      self._update_rate(global_step, self._step_end)
      self._emit_now(global_step, self._rate,
                     float(train_state['accumulated_submission_time']), now)
      self._last_print = now
    # Evals are off the training clock: restart the rate measurement after them.
    self._rate_mark = (global_step, time.perf_counter())

  def on_end(self, result: TrialResult) -> None:
    if self._live:
      self._write_pending()
    if self._drawn:
      self._stream.write('\n')
      self._drawn = False
    self._stream.write(format_summary(result, self._workload, self._config))
    self._stream.flush()


# --- the summary -------------------------------------------------------------------

_REASONS = {
    'targets': 'validation and test targets reached',
    'budget': 'time budget spent',
    'max_global_steps': 'max_global_steps reached',
    'training_complete': 'submission raised TrainingCompleteError',
}


def _non_finite_losses(eval_result: Mapping[str, Any]) -> List[str]:
  """'validation/loss is nan'-style notes for the losses that are NaN or inf."""
  notes = []
  for split in ('train', 'validation', 'test'):
    value = eval_result.get(f'{split}/loss')
    try:
      value = float(value)
    except (TypeError, ValueError):
      continue
    if not math.isfinite(value):
      notes.append(f'{split}/loss is {value}')
  return notes


def _diverged_line(result: TrialResult) -> str:
  notes: List[str] = []
  if result.eval_results:
    notes = _non_finite_losses(result.eval_results[-1][1])
  detail = ', '.join(notes) if notes else 'a loss is NaN or inf'
  return (f'Stopped at step {result.global_step}: training diverged ({detail}); '
          'the trial stopped at that eval.')


def format_summary(result: TrialResult, workload: Optional[spec.Workload],
                   config: Optional[TrialConfig]) -> str:
  """A few lines saying how the trial stopped and whether and when the target was reached."""
  lines = []
  if result.stop_reason == 'diverged':
    lines.append(_diverged_line(result))
  else:
    reason = _REASONS.get(result.stop_reason, result.stop_reason)
    lines.append(f'Stopped at step {result.global_step}: {reason}.')
  # TrialResult.message (one line, '' if none) is newer than some runners.
  message = ' '.join(str(getattr(result, 'message', '') or '').split())
  if message and message not in lines[0]:
    lines.append(message)
  budget = f' of {config.budget_sec:.0f} s budget' if config else ''
  if result.time_to_validation_target is not None:
    lines.append('Validation target reached: yes, time to target '
                 f'{result.time_to_validation_target:.2f} s{budget}.')
  else:
    lines.append('Validation target reached: no (score: infinite).')
  if result.eval_results and workload is not None:
    name = workload.target_metric_name
    last = result.eval_results[-1][1]
    lines.append(
        f'Last eval: validation/{name} {last.get(f"validation/{name}", float("nan")):.4f}'
        f' (target {workload.validation_target_value:g}), '
        f'test/{name} {last.get(f"test/{name}", float("nan")):.4f}'
        f' (target {workload.test_target_value:g}).')
  lines.append(
      f'Submission time {result.accumulated_submission_time:.2f} s, eval time '
      f'{result.accumulated_eval_time:.2f} s, logging time '
      f'{result.accumulated_logging_time:.2f} s, total {result.total_duration:.2f} s, '
      f'{len(result.eval_results)} evals.')
  return '\n'.join(lines) + '\n'
