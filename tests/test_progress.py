"""Tests of algoperf.progress: the live line (terminal and piped) and the summary."""

import io
import math
import os
import re
import time
import types

import pytest

from algoperf import progress

WORKLOAD = types.SimpleNamespace(target_metric_name='accuracy',
                                 validation_target_value=0.97,
                                 test_target_value=0.96)
CONFIG = types.SimpleNamespace(budget_sec=7703.0)


class FakeStream(io.StringIO):

  def __init__(self, tty):
    super().__init__()
    self._tty = tty

  def isatty(self):
    return self._tty

  def fileno(self):
    raise io.UnsupportedOperation('no file descriptor')


class FakeClock:

  def __init__(self):
    self.now = 1000.0

  def perf_counter(self):
    return self.now


@pytest.fixture(name='clock')
def fixture_clock(monkeypatch):
  clock = FakeClock()
  monkeypatch.setattr(progress, 'time', clock)
  return clock


def _terminal(monkeypatch, columns):
  calls = []

  def get_terminal_size(fallback=(80, 24)):
    calls.append(fallback)
    return os.terminal_size((columns[0], 24))

  monkeypatch.setattr(progress.shutil, 'get_terminal_size', get_terminal_size)
  return calls


def _result(stop_reason='budget', global_step=120, eval_results=(), **extra):
  fields = dict(stop_reason=stop_reason, global_step=global_step,
                accumulated_submission_time=12.5, accumulated_eval_time=1.0,
                accumulated_logging_time=0.1, total_duration=14.0,
                validation_goal_reached=False, test_goal_reached=False,
                time_to_validation_target=None,
                eval_results=list(eval_results))
  fields.update(extra)
  return types.SimpleNamespace(**fields)


def _eval(accuracy, loss=0.5):
  return {'validation/accuracy': accuracy, 'test/accuracy': accuracy,
          'validation/loss': loss, 'train/loss': loss, 'test/loss': loss}


def _drive(printer, clock, evals=(1, 8), steps=12, label_steps_apart=11.0):
  """Runs a fake trial: a step every 0.1 s, 11 s jumps at steps 5 and 8."""
  printer.on_start(WORKLOAD, CONFIG)
  results = []
  for step in range(1, steps + 1):
    clock.now += label_steps_apart if step in (5, 8) else 0.1
    state = {'accumulated_submission_time': 0.5 * step}
    printer.on_step(step, state)
    if step in evals:
      result = _eval(0.5 + step / 100)
      results.append((step, result))
      printer.on_eval(step, result, state)
  printer.on_end(_result(global_step=steps, eval_results=results))


def _screen_lines(text):
  """What a terminal shows: every redraw (after '\\r') and every line."""
  return [part.replace('\x1b[K', '') for part in re.split(r'[\r\n]', text)
          if part.replace('\x1b[K', '')]


# --- terminal ----------------------------------------------------------------------


@pytest.mark.parametrize('width', [200, 80, 60, 40, 24, 12, 5])
def test_terminal_line_never_reaches_the_width(monkeypatch, clock, width):
  _terminal(monkeypatch, [width])
  stream = FakeStream(tty=True)
  _drive(progress.ProgressPrinter(stream, interval=0.0, label='trial_12 '), clock)
  live, _, _ = stream.getvalue().partition('Stopped at step')
  lines = _screen_lines(live)
  assert lines
  for line in lines:
    assert len(line) < width, line
    assert not line.rstrip().endswith('|')
  if width >= 24:
    assert all('step' in line for line in lines)


def test_wide_terminal_shows_every_field(monkeypatch, clock):
  _terminal(monkeypatch, [200])
  stream = FakeStream(tty=True)
  _drive(progress.ProgressPrinter(stream, interval=0.0, label='trial_1 '), clock)
  lines = _screen_lines(stream.getvalue())
  last_live = [line for line in lines if line.startswith('trial_1 step')][-1]
  assert 'steps/s' in last_live and 'submission time' in last_live
  assert 'validation/accuracy 0.5800 (target 0.97)' in last_live
  assert '/ 7703 s' in last_live


def test_narrow_terminal_drops_the_rate_before_the_metric(monkeypatch, clock):
  _terminal(monkeypatch, [60])
  stream = FakeStream(tty=True)
  _drive(progress.ProgressPrinter(stream, interval=0.0), clock)
  lines = _screen_lines(stream.getvalue())
  after_eval = [line for line in lines if 'accuracy' in line and 'step' in line]
  assert after_eval
  assert all('steps/s' not in line for line in after_eval)


def test_terminal_width_is_asked_at_most_every_second(monkeypatch, clock):
  width = [100]
  calls = _terminal(monkeypatch, width)
  stream = FakeStream(tty=True)
  printer = progress.ProgressPrinter(stream, interval=0.0)
  printer.on_start(WORKLOAD, CONFIG)
  for step in range(1, 101):
    clock.now += 0.001
    printer.on_step(step, {'accumulated_submission_time': step * 0.001})
  assert len(calls) == 1
  width[0] = 30  # The window shrinks; noticed within a second.
  clock.now += 1.0
  printer.on_step(101, {'accumulated_submission_time': 0.2})
  assert len(calls) == 2
  assert len(_screen_lines(stream.getvalue())[-1]) < 30


def test_terminal_redraws_in_place_and_ends_with_a_newline(monkeypatch, clock):
  _terminal(monkeypatch, [80])
  stream = FakeStream(tty=True)
  _drive(progress.ProgressPrinter(stream, interval=0.0), clock)
  live, _, summary = stream.getvalue().partition('Stopped at step')
  assert live.count('\n') == 1 and live.endswith('\n')
  assert live.count('\r\x1b[K') >= 12
  assert summary.startswith(' 12: time budget spent.')


# --- piped output -------------------------------------------------------------------


def _piped_lines(printer_kwargs, clock, **drive_kwargs):
  stream = FakeStream(tty=False)
  _drive(progress.ProgressPrinter(stream, **printer_kwargs), clock, **drive_kwargs)
  live, _, _ = stream.getvalue().partition('Stopped at step')
  assert '\r' not in live and '\x1b' not in live
  return live.splitlines()


def test_piped_output_prints_each_eval_line_once(clock):
  lines = _piped_lines({'label': 'trial_1 '}, clock)
  steps = [int(re.match(r'trial_1 step +(\d+)', line).group(1)) for line in lines]
  # Step 1 (first step, then its eval), step 5 (10 s passed, no eval), step 8
  # (10 s passed and an eval): one line each.
  assert steps == [1, 5, 8]
  assert 'validation/accuracy 0.5100' in lines[0]
  assert 'validation/accuracy 0.5100' in lines[1]
  assert 'validation/accuracy 0.5800' in lines[2]


def test_piped_lines_have_no_dangling_separator(clock):
  lines = _piped_lines({}, clock, evals=())
  assert lines and all('accuracy' not in line for line in lines)
  for line in lines:
    assert not line.rstrip().endswith('|'), line
    assert ' |  | ' not in line


def test_piped_line_due_at_the_last_step_is_printed_before_the_summary(clock):
  stream = FakeStream(tty=False)
  printer = progress.ProgressPrinter(stream)
  printer.on_start(WORKLOAD, CONFIG)
  printer.on_step(1, {'accumulated_submission_time': 0.5})
  printer.on_end(_result(global_step=1))
  text = stream.getvalue()
  assert text.index('step       1') < text.index('Stopped at step 1:')
  assert text.count('step       1') == 1


def test_not_live_prints_only_the_summary(monkeypatch, clock):
  _terminal(monkeypatch, [80])
  for tty in (True, False):
    stream = FakeStream(tty=tty)
    _drive(progress.ProgressPrinter(stream, live=False), clock)
    assert stream.getvalue().startswith('Stopped at step 12:')


def test_a_quiet_step_is_cheap():
  printer = progress.ProgressPrinter(FakeStream(tty=False))
  printer.on_start(WORKLOAD, CONFIG)
  state = {'accumulated_submission_time': 0.0}
  printer.on_step(1, state)
  printer.on_step(2, state)  # Prints the held line of step 1.
  n = 100_000
  start = time.perf_counter()
  for step in range(3, n + 3):
    printer.on_step(step, state)
  per_step = (time.perf_counter() - start) / n
  assert per_step < 20e-6  # About 0.2 us on a laptop; generous for busy CI.


# --- line fitting ---------------------------------------------------------------------


def test_fit_line_shrinks_in_order_and_never_leaves_separators():
  forms = {'head': ('step       7', 'step 7', 'step 7'),
           'rate': ('  12.0 steps/s', '12.0/s', ''),
           'time': ('submission time 1.0 / 10 s', 'time 1.0/10 s', '1/10 s', ''),
           'metric': ()}
  assert progress.fit_line(forms, 200) == (
      'step       7 |   12.0 steps/s | submission time 1.0 / 10 s')
  assert progress.fit_line(forms, 40) == 'step       7 | 12.0/s | time 1.0/10 s'
  assert progress.fit_line(forms, 20) == 'step 7 | 1/10 s'
  assert progress.fit_line(forms, 8) == 'step 7'
  assert progress.fit_line(forms, 4) == 'ste'


# --- summary ----------------------------------------------------------------------------


def test_summary_of_existing_stop_reasons():
  text = progress.format_summary(_result('max_global_steps'), WORKLOAD, CONFIG)
  assert text.startswith('Stopped at step 120: max_global_steps reached.\n')
  assert 'Validation target reached: no (score: infinite).' in text
  text = progress.format_summary(
      _result('targets', time_to_validation_target=3.25), None, CONFIG)
  assert text.startswith('Stopped at step 120: validation and test targets reached.')
  assert 'time to target 3.25 s of 7703 s budget.' in text


def test_diverged_summary_names_the_loss():
  evals = [(60, _eval(0.6)), (120, _eval(0.1, loss=math.nan))]
  evals[-1][1]['train/loss'] = 2.0
  text = progress.format_summary(_result('diverged', eval_results=evals),
                                 WORKLOAD, CONFIG)
  first = text.splitlines()[0]
  assert first.startswith('Stopped at step 120: training diverged '
                          '(validation/loss is nan, test/loss is nan); ')
  assert 'Validation target reached: no (score: infinite).' in text
  assert 'Last eval: validation/accuracy 0.1000' in text


def test_diverged_summary_with_inf_and_without_evals():
  evals = [(7, {'train/loss': math.inf, 'validation/loss': 1.0})]
  text = progress.format_summary(_result('diverged', 7, evals), WORKLOAD, CONFIG)
  assert text.startswith('Stopped at step 7: training diverged (train/loss is inf); ')
  text = progress.format_summary(_result('diverged', 7), WORKLOAD, CONFIG)
  assert text.startswith('Stopped at step 7: training diverged (a loss is NaN or inf); ')


def test_summary_prints_the_message_once():
  message = 'validation/loss was nan at the eval of step 120; lower the learning rate?'
  evals = [(120, _eval(0.1, loss=math.nan))]
  text = progress.format_summary(
      _result('diverged', eval_results=evals, message=message), WORKLOAD, CONFIG)
  lines = text.splitlines()
  assert lines[1] == message and text.count(message) == 1
  text = progress.format_summary(
      _result('budget', message='budget of 7703 s spent'), WORKLOAD, CONFIG)
  assert text.splitlines()[:2] == ['Stopped at step 120: time budget spent.',
                                   'budget of 7703 s spent']
  # Empty message, or a result from before the field existed: no extra line.
  for result in (_result('budget', message=''), _result('budget')):
    lines = progress.format_summary(result, WORKLOAD, CONFIG).splitlines()
    assert lines[1].startswith('Validation target reached')


def test_printer_end_prints_the_diverged_summary(clock):
  stream = FakeStream(tty=False)
  printer = progress.ProgressPrinter(stream)
  printer.on_start(WORKLOAD, CONFIG)
  state = {'accumulated_submission_time': 1.0}
  printer.on_step(1, state)
  result = _eval(math.nan, loss=math.nan)
  printer.on_eval(1, result, state)
  printer.on_end(_result('diverged', 1, [(1, result)]))
  lines = stream.getvalue().splitlines()
  assert len(lines) == 5 and 'validation/accuracy nan' in lines[0]
  assert lines[1].startswith('Stopped at step 1: training diverged (')


def test_the_rate_after_an_eval_leaves_the_eval_out(clock):
  """Piped: the eval line's steps/s is the training rate, not steps over the eval too."""
  stream = FakeStream(tty=False)
  printer = progress.ProgressPrinter(stream=stream, interval=10.0)
  printer.on_start(WORKLOAD, CONFIG)
  for step in range(1, 101):  # 100 steps in 10 s: 10 steps/s.
    clock.now += 0.1
    printer.on_step(step, {'accumulated_submission_time': step * 0.1})
  clock.now += 30.0  # A 30 s eval.
  printer.on_eval(100, {'validation/accuracy': 0.5},
                  {'accumulated_submission_time': 10.0})
  last = stream.getvalue().splitlines()[-1]
  assert '10.0' in last and '2.5' not in last, last
