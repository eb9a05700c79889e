"""The timed train/eval loop: stop conditions, eval schedule, clock rules."""

import collections.abc
import dataclasses
import math
import threading
import time

import jax
import jax.numpy as jnp
import pytest

from algoperf import spec
from algoperf.runner import SubmissionFailure, TrialConfig, train_once
from tests.fakes import ToyWorkload, make_submission


class FakeTime:
  """A controllable clock: time moves only when a test says so."""

  def __init__(self):
    self.t = 100.0

  def __call__(self):
    return self.t

  def advance(self, dt):
    self.t += dt


def _config(**kw):
  base = dict(global_batch_size=8, hyperparameters=None, rng_seed=0,
              budget_sec=1e9)
  base.update(kw)
  return TrialConfig(**base)


def _run(workload, submission, fake=None, **config):
  return train_once(workload, submission, _config(**config),
                    now=fake or time.perf_counter)


def test_stops_when_both_targets_reached():
  workload = ToyWorkload(validation_target=0.3, test_target=0.5)
  result = _run(workload, make_submission())
  assert result.stop_reason == 'targets'
  assert result.global_step == 5  # accuracy = step / 10 reaches 0.5 at step 5
  assert result.validation_goal_reached and result.test_goal_reached
  assert [s for s, _ in result.eval_results] == [1, 2, 3, 4, 5]


def test_validation_target_alone_does_not_stop():
  workload = ToyWorkload(validation_target=0.1, test_target=2.0)
  result = _run(workload, make_submission(), max_global_steps=7)
  assert result.stop_reason == 'max_global_steps'
  assert result.validation_goal_reached and not result.test_goal_reached
  assert result.global_step == 7


def test_time_to_target_is_submission_time_of_first_hit():
  fake = FakeTime()
  workload = ToyWorkload(validation_target=0.3, test_target=0.3)
  sub = make_submission(update_hook=lambda **kw: fake.advance(2.0))
  result = _run(workload, sub, fake)
  assert result.time_to_validation_target == pytest.approx(6.0)
  first_hit = [r for s, r in result.eval_results if s == 3][0]
  assert first_hit['score'] == pytest.approx(6.0)
  assert first_hit['accumulated_submission_time'] == pytest.approx(6.0)


def test_budget_stops_and_no_eval_is_recorded_past_it():
  fake = FakeTime()
  workload = ToyWorkload(validation_target=2.0, test_target=2.0)
  sub = make_submission(update_hook=lambda **kw: fake.advance(1.0))
  result = _run(workload, sub, fake, budget_sec=3.5)
  assert result.stop_reason == 'budget'
  assert result.global_step == 4
  assert [s for s, _ in result.eval_results] == [1, 2, 3]
  assert workload.eval_calls == [1, 2, 3]
  assert all(r['score'] < 3.5 for _, r in result.eval_results)


def test_max_global_steps_ends_with_a_final_eval():
  fake = FakeTime()
  workload = ToyWorkload(validation_target=2.0, test_target=2.0,
                         eval_period=100.0)
  sub = make_submission(update_hook=lambda **kw: fake.advance(1.0))
  result = _run(workload, sub, fake, max_global_steps=6)
  assert result.stop_reason == 'max_global_steps'
  assert result.global_step == 6
  # First step always evaluates; the period (100 s) is never reached; the
  # last step evaluates because training is complete.
  assert [s for s, _ in result.eval_results] == [1, 6]


def test_eval_period_is_wall_time_since_end_of_previous_eval():
  fake = FakeTime()
  workload = ToyWorkload(validation_target=2.0, test_target=2.0,
                         eval_period=3.0)

  class SlowEval(ToyWorkload):
    def eval_model(self, *args, **kwargs):
      fake.advance(10.0)  # Long evals must not eat into the period.
      return super().eval_model(*args, **kwargs)

  workload = SlowEval(validation_target=2.0, test_target=2.0, eval_period=3.0)
  sub = make_submission(update_hook=lambda **kw: fake.advance(1.0))
  result = _run(workload, sub, fake, max_global_steps=9)
  assert [s for s, _ in result.eval_results] == [1, 4, 7, 9]
  # Eval time is off the submission clock.
  assert result.accumulated_submission_time == pytest.approx(9.0)
  assert result.accumulated_eval_time == pytest.approx(40.0)


def test_training_complete_error_drops_state_and_evaluates_once_more():
  seen_counts = []

  def hook(**kw):
    seen_counts.append(kw['optimizer_state']['count'])
    if kw['global_step'] == 3:
      raise spec.TrainingCompleteError()

  workload = ToyWorkload(validation_target=2.0, test_target=2.0,
                         eval_period=1e9)
  result = _run(workload, make_submission(update_hook=hook))
  assert result.stop_reason == 'training_complete'
  assert result.global_step == 4
  assert [s for s, _ in result.eval_results] == [1, 4]
  assert seen_counts == [0, 1, 2, 3]


def test_training_complete_without_time_left_has_no_final_eval():
  fake = FakeTime()

  def hook(**kw):
    fake.advance(1.0)
    if kw['global_step'] == 2:
      raise spec.TrainingCompleteError()

  workload = ToyWorkload(validation_target=2.0, test_target=2.0,
                         eval_period=1e9)
  result = _run(workload, make_submission(update_hook=hook), fake,
                budget_sec=2.5)
  assert result.stop_reason == 'budget'
  assert [s for s, _ in result.eval_results] == [1]


def test_train_state_passed_only_when_named_and_read_only():
  seen = []

  def hook(**kw):
    seen.append(kw.get('train_state'))

  workload = ToyWorkload(validation_target=2.0, test_target=2.0)
  _run(workload, make_submission(update_hook=hook), max_global_steps=2)
  assert seen == [None, None]

  seen.clear()
  _run(workload, make_submission(update_hook=hook, with_train_state=True),
       max_global_steps=3)
  assert len(seen) == 3
  state = seen[-1]
  assert isinstance(state, collections.abc.Mapping)
  assert set(state) == {
      'validation_goal_reached', 'test_goal_reached', 'is_time_remaining',
      'last_eval_time', 'training_complete', 'accumulated_submission_time',
      'accumulated_eval_time', 'accumulated_logging_time',
      'last_step_end_time'}
  with pytest.raises(TypeError):
    state['training_complete'] = True  # type: ignore[index]


def test_prepare_for_eval_runs_before_each_eval_on_the_clock():
  fake = FakeTime()
  calls = []

  def prepare_for_eval(**kw):
    calls.append(kw['global_step'])
    fake.advance(0.5)
    return kw['optimizer_state'], kw['current_param_container'], kw['model_state']

  workload = ToyWorkload(validation_target=2.0, test_target=2.0,
                         eval_period=0.0)
  sub = make_submission(update_hook=lambda **kw: fake.advance(1.0),
                        prepare_for_eval=prepare_for_eval)
  result = _run(workload, sub, fake, max_global_steps=3)
  assert calls == [1, 2, 3]
  assert result.accumulated_submission_time == pytest.approx(3 * 1.5)
  assert result.eval_results[0][1]['score'] == pytest.approx(1.5)


def test_prepare_for_eval_that_spends_the_budget_blocks_the_eval():
  fake = FakeTime()

  def prepare_for_eval(**kw):
    fake.advance(5.0)
    return kw['optimizer_state'], kw['current_param_container'], kw['model_state']

  workload = ToyWorkload(validation_target=2.0, test_target=2.0)
  sub = make_submission(update_hook=lambda **kw: fake.advance(1.0),
                        prepare_for_eval=prepare_for_eval)
  result = _run(workload, sub, fake, budget_sec=4.0)
  assert result.stop_reason == 'budget'
  assert result.eval_results == []


def test_runner_never_touches_donated_inputs():
  """A submission that donates its inputs must still work (no reuse of old arrays)."""
  step = jax.jit(lambda p: jax.tree.map(lambda x: x + 1.0, p), donate_argnums=0)

  def update_params(**kw):
    return kw['optimizer_state'], step(kw['current_param_container']), kw['model_state']

  sub = dataclasses.replace(make_submission(),
                            update_params=lambda **kw: update_params(**kw))
  workload = ToyWorkload(validation_target=2.0, test_target=2.0)
  result = _run(workload, sub, max_global_steps=3)
  assert result.global_step == 3


class FakeDevice:
  """Fake time with an asynchronous device: work queues up and runs in order.

  ``host(dt)`` is host work (time passes at once); ``dispatch(dt)`` queues
  ``dt`` seconds of device work behind what is already queued and returns at
  once, as a JAX dispatch does; ``sync`` (the clock's wait for the device)
  moves time to when the queue is empty. ``syncs`` counts the waits.
  """

  def __init__(self):
    self.t = 100.0
    self.busy_until = 100.0
    self.syncs = 0

  def now(self):
    return self.t

  def host(self, dt):
    self.t += dt

  def dispatch(self, dt):
    self.busy_until = max(self.t, self.busy_until) + dt

  def sync(self, tree):
    del tree
    self.syncs += 1
    self.t = max(self.t, self.busy_until)


def _device_submission(device, host_sec, device_sec, **kwargs):
  def hook(**kw):
    device.host(host_sec)
    device.dispatch(device_sec)
  return make_submission(update_hook=hook, **kwargs)


def test_clock_counts_queued_device_work_exactly_with_fake_time():
  """The accounting rule, exact: device work is counted, evals are not.

  Host work 0.1 s and device work 0.3 s a step, pipelined as JAX does:
  after step 1 (eval due) the device is waited for: 0.1 + 0.3 = 0.4 s. Steps
  2..10 overlap host and device: 0.1 + 9 x 0.3 = 2.8 s, counted when the
  final eval waits for them. Evals (5 s each) are on no clock.
  """
  device = FakeDevice()

  class SlowEval(ToyWorkload):
    def eval_model(self, *args, **kwargs):
      device.host(5.0)
      return super().eval_model(*args, **kwargs)

  workload = SlowEval(validation_target=2.0, test_target=2.0, eval_period=1e9)
  result = train_once(workload, _device_submission(device, 0.1, 0.3),
                      _config(max_global_steps=10, sync_interval_sec=1e9),
                      now=device.now, sync=device.sync)
  assert [s for s, _ in result.eval_results] == [1, 10]
  assert result.eval_results[0][1]['score'] == pytest.approx(0.4)
  assert result.eval_results[1][1]['score'] == pytest.approx(3.2)
  assert result.accumulated_submission_time == pytest.approx(3.2)
  assert result.accumulated_eval_time == pytest.approx(10.0)
  # Waits: before the clock starts, before each eval, at the end; never per step.
  assert device.syncs <= 4


def test_host_bound_steps_count_host_time_plus_the_last_device_step():
  device = FakeDevice()
  workload = ToyWorkload(validation_target=2.0, test_target=2.0, eval_period=1e9)
  result = train_once(workload, _device_submission(device, 0.3, 0.1),
                      _config(max_global_steps=5, sync_interval_sec=1e9),
                      now=device.now, sync=device.sync)
  # Step 1: 0.3 + 0.1 (eval waits); steps 2-5: 4 x 0.3 host + the last 0.1.
  assert result.accumulated_submission_time == pytest.approx(0.4 + 1.2 + 0.1)


def test_device_is_synced_at_least_every_sync_interval():
  device = FakeDevice()
  workload = ToyWorkload(validation_target=2.0, test_target=2.0, eval_period=1e9)
  result = train_once(workload, _device_submission(device, 0.01, 0.02),
                      _config(max_global_steps=201, sync_interval_sec=0.5),
                      now=device.now, sync=device.sync)
  assert result.global_step == 201
  # ~4 s of device work, a sync per 0.5 s of host time: 2 s of host time
  # between step 1 and step 201 -> about 4 interval syncs, not 200.
  assert 4 <= device.syncs <= 12


def test_budget_is_confirmed_on_a_synced_reading_and_never_overshot_far():
  """The unsynced reading lags the device; a spent budget is decided synced."""
  device = FakeDevice()
  workload = ToyWorkload(validation_target=2.0, test_target=2.0, eval_period=0.5)
  result = train_once(workload, _device_submission(device, 0.05, 0.2),
                      _config(budget_sec=3.0, sync_interval_sec=1.0),
                      now=device.now, sync=device.sync)
  assert result.stop_reason == 'budget'
  assert all(r['score'] < 3.0 for _, r in result.eval_results)
  assert result.accumulated_submission_time >= 3.0
  # The device never ran more than a sync interval of host time (20 steps
  # of 0.2 s queued per 1 s) past the budget.
  assert result.accumulated_submission_time < 3.0 + 20 * 0.2 + 0.2


def _device_work(x):
  def body(_, y):
    return jnp.tanh(y @ y) * 0.5 + 0.5
  return jax.lax.fori_loop(0, 6, body, x)


_jitted_device_work = jax.jit(_device_work)


def test_real_device_work_is_counted_and_slow_evals_are_not():
  """On the real (CPU) device: async device work lands on the clock, evals off it.

  Each step sleeps 0.1 s on the host and dispatches ~10-40 ms of XLA work
  without waiting; an eval (0.3 s sleep) follows every step, so the runner
  waits for each step's work before it. The tolerance (25 %) survives a busy
  machine; a leak of the evals into the clock would add 4.5 s to ~2 s.
  """
  x = jnp.full((700, 700), 1e-3, dtype=jnp.float32)
  host_sleep = 0.1
  steps = 15
  _jitted_device_work(x).block_until_ready()  # compile outside the test.
  samples = []
  for _ in range(7):
    time.sleep(host_sleep)
    t0 = time.perf_counter()
    _jitted_device_work(x).block_until_ready()
    samples.append(time.perf_counter() - t0)
  device_time = sorted(samples)[len(samples) // 2]

  def update_params(**kw):
    time.sleep(host_sleep)
    params = dict(kw['current_param_container'])
    params['work'] = _jitted_device_work(x)  # Not blocked on here.
    return kw['optimizer_state'], params, kw['model_state']

  sub = dataclasses.replace(make_submission(),
                            update_params=lambda **kw: update_params(**kw))
  workload = ToyWorkload(validation_target=2.0, test_target=2.0,
                         eval_period=0.0, eval_sleep=0.3)
  result = _run(workload, sub, max_global_steps=steps)
  truth = steps * (host_sleep + device_time)
  assert result.accumulated_submission_time == pytest.approx(truth, rel=0.25)
  assert result.accumulated_submission_time >= steps * host_sleep
  assert result.accumulated_eval_time >= steps * 0.3
  assert len(result.eval_results) == steps


def test_a_hung_hook_is_stopped_after_budget_plus_grace():
  started = time.perf_counter()

  def data_selection(workload, input_queue, optimizer_state, params,
                     model_state, hyperparameters, global_step, rng):
    if global_step == 3:
      threading.Event().wait()  # Never returns.
    return next(input_queue)

  sub = dataclasses.replace(make_submission(), data_selection=data_selection)
  workload = ToyWorkload(validation_target=2.0, test_target=2.0, eval_period=0.0)
  result = _run(workload, sub, budget_sec=1.0, hook_grace_sec=0.5)
  elapsed = time.perf_counter() - started
  assert result.stop_reason == 'budget'
  assert 'data_selection' in result.message
  assert result.global_step == 3
  assert [s for s, _ in result.eval_results] == [1, 2, 3]
  assert elapsed < 5.0
  assert result.accumulated_submission_time >= 1.5


def test_a_hook_that_swallows_exceptions_is_still_stopped():
  def hook(**kw):
    if kw['global_step'] == 2:
      while True:
        try:
          time.sleep(0.05)
        except Exception:  # pylint: disable=broad-except
          pass

  workload = ToyWorkload(validation_target=2.0, test_target=2.0)
  result = _run(workload, make_submission(update_hook=hook), budget_sec=0.5,
                hook_grace_sec=0.3)
  assert result.stop_reason == 'budget'
  assert 'update_params' in result.message


def test_a_hung_init_optimizer_state_is_stopped_too():
  sub = make_submission()

  def init_optimizer_state(*args):
    time.sleep(60)

  sub = dataclasses.replace(sub, init_optimizer_state=init_optimizer_state)
  started = time.perf_counter()
  result = _run(ToyWorkload(), sub, budget_sec=0.5, hook_grace_sec=0.5)
  assert time.perf_counter() - started < 4.0
  assert result.stop_reason == 'budget'
  assert 'init_optimizer_state' in result.message
  assert result.global_step == 0 and result.eval_results == []


def test_a_non_finite_loss_stops_the_trial_at_that_eval():
  workload = ToyWorkload(validation_target=2.0, test_target=2.0,
                         eval_loss=lambda step: math.nan if step >= 4 else 1.0 / step)
  result = _run(workload, make_submission(), max_global_steps=50)
  assert result.stop_reason == 'diverged'
  assert result.global_step == 4
  assert [s for s, _ in result.eval_results] == [1, 2, 3, 4]
  assert 'train/loss is nan at step 4' in result.message


def test_an_infinite_loss_is_divergence_too():
  workload = ToyWorkload(validation_target=2.0, test_target=2.0,
                         eval_loss=lambda step: math.inf if step == 2 else 1.0)
  result = _run(workload, make_submission(), max_global_steps=50)
  assert result.stop_reason == 'diverged' and result.global_step == 2


def test_a_raising_hook_is_reported_with_hook_and_step():
  def hook(**kw):
    if kw['global_step'] == 3:
      raise RuntimeError('bug in the submission')

  workload = ToyWorkload(validation_target=2.0, test_target=2.0)
  with pytest.raises(SubmissionFailure) as info:
    _run(workload, make_submission(update_hook=hook))
  assert info.value.hook == 'update_params'
  assert info.value.global_step == 3
  assert isinstance(info.value.__cause__, RuntimeError)


def test_a_crashing_submission_loses_no_logged_rows(tmp_path):
  from algoperf.recorder import MetricsLogger, read_eval_measurements

  def hook(**kw):
    kw['workload'].metrics_logger.append_scalar_metrics(
        {'loss': 1.0 / (kw['global_step'] + 1)}, kw['global_step'])
    if kw['global_step'] == 3:
      raise RuntimeError('bug in the submission')

  workload = ToyWorkload(validation_target=2.0, test_target=2.0,
                         eval_period=1e9)
  logger = MetricsLogger(tmp_path)
  with pytest.raises(SubmissionFailure, match='bug in the submission'):
    train_once(workload, make_submission(update_hook=hook), _config(),
               logger=logger)
  rows = read_eval_measurements(tmp_path / 'measurements.csv')
  assert [r['global_step'] for r in rows if r.get('loss') is not None] == [0, 1, 2, 3]
