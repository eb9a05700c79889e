"""Checkpoints: save/restore round trip, keep-last-N, bad checkpoints, and resume.

The acceptance tests run ``algoperf run`` in subprocesses, SIGKILL them (once
in the middle of training, once while a checkpoint is being written), resume
them with ``--resume_last_run`` and compare with an uninterrupted run.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algoperf import checkpoints, jax_sharding_utils
from algoperf.runner import Listener, SubmissionFailure, TrialConfig, train_once
from tests.fakes import ToyWorkload, make_submission

REPO = Path(__file__).resolve().parents[1]


def _state(step, params, optimizer_state, model_state=None, **kw):
  base = dict(
      global_step=step, params=params, optimizer_state=optimizer_state,
      model_state=model_state if model_state is not None else {}, rng_seed=0,
      rng_key=[0, 1], submission_time=1.5 * step,
      eval_time=0.25, logging_time=0.125,
      total_duration=2.0 * step,
      eval_results=[(1, {'validation/accuracy': np.float32(0.5), 'note': 'x'})],
      time_to_target=None,
      preemption_count=0, input_position=3 * step,
      log_rows={'measurements': step, 'eval_measurements': 1})
  base.update(kw)
  return checkpoints.TrialState(**base)


def _trees(seed):
  """params, a reference-style optimizer state (optax state, update function), model state."""
  sharding = jax_sharding_utils.get_replicate_sharding()
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  params = jax.device_put({'dense': {'kernel': jax.random.normal(k1, (3, 4)),
                                     'bias': jnp.zeros((4,))}}, sharding)
  optimizer = optax.adam(1e-3)
  optimizer_state = (jax.device_put(optimizer.init(params), sharding),
                     optimizer.update)
  model_state = {'batch_stats': {'mean': np.full((4,), float(seed), np.float32)},
                 'count': seed, 'key': jax.random.key(seed),
                 'scale': np.float32(seed)}
  return params, optimizer_state, model_state


def test_round_trip_restores_every_leaf_with_the_template_placement(tmp_path):
  params, opt, model_state = _trees(1)
  params = jax.tree.map(lambda x: x + 1.0, params)
  with checkpoints.TrialCheckpointer(tmp_path) as ckpt:
    assert ckpt.save(_state(7, params, opt, model_state))
  # A new process would start from fresh trees: other values, same structure.
  fresh_params, fresh_opt, fresh_model = _trees(2)
  with checkpoints.TrialCheckpointer(tmp_path) as ckpt:
    info = ckpt.latest()
    assert (info.step, info.rng_seed, info.submission_time) == (7, 0, 10.5)
    got = ckpt.restore(7, params=fresh_params, optimizer_state=fresh_opt,
                       model_state=fresh_model, rng_seed=0)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(got.params)):
    np.testing.assert_array_equal(a, b)
  assert all(a.sharding == b.sharding for a, b in zip(
      jax.tree.leaves(fresh_params), jax.tree.leaves(got.params)))
  assert got.optimizer_state[1] is fresh_opt[1]  # functions come from the template
  np.testing.assert_array_equal(got.optimizer_state[0][0].count, opt[0][0].count)
  assert got.model_state['count'] == 1 and type(got.model_state['count']) is int
  assert isinstance(got.model_state['batch_stats']['mean'], np.ndarray)
  np.testing.assert_array_equal(got.model_state['batch_stats']['mean'], 1.0)
  assert got.model_state['scale'] == np.float32(1)
  assert jax.random.key_data(got.model_state['key']).tolist() == (
      jax.random.key_data(jax.random.key(1)).tolist())
  assert got.global_step == 7 and got.input_position == 21
  assert got.submission_time == 10.5
  assert got.eval_results == [(1, {'validation/accuracy': 0.5, 'note': 'x'})]
  assert got.log_rows == {'measurements': 7, 'eval_measurements': 1}


def test_keeps_the_newest_n(tmp_path):
  params, opt, _ = _trees(0)
  with checkpoints.TrialCheckpointer(tmp_path, max_to_keep=2) as ckpt:
    for step in range(1, 6):
      ckpt.save(_state(step, params, opt))
    assert ckpt.all_steps() == [4, 5]
  with checkpoints.TrialCheckpointer(tmp_path, save=False) as ckpt:
    assert not ckpt.save(_state(6, params, opt))
    assert ckpt.latest().step == 5


def test_unfinished_and_unreadable_checkpoints_are_never_restored(tmp_path):
  params, opt, _ = _trees(0)
  with checkpoints.TrialCheckpointer(tmp_path) as ckpt:
    ckpt.save(_state(1, params, opt))
    ckpt.save(_state(2, params, opt))
  # What a process killed mid-save leaves: data in orbax's temporary folder.
  partial = tmp_path / '3.orbax-checkpoint-tmp-1234'
  partial.mkdir()
  (partial / 'meta').mkdir()
  # A complete checkpoint whose files were damaged afterwards.
  meta = next((tmp_path / '2' / 'meta').iterdir())
  meta.write_text('{not json')
  with checkpoints.TrialCheckpointer(tmp_path) as ckpt:
    assert ckpt.latest().step == 1
    assert ckpt.all_steps() == [1]
    # Saving at the set-aside step works again.
    ckpt.save(_state(2, params, opt))
    assert ckpt.latest().step == 2
  assert not partial.exists()
  assert (tmp_path / 'unreadable_2').is_dir()


# A failed tensorstore read leaves a callback for orbax's closed event loop.
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_damaged_array_files_are_skipped_or_a_clear_error(tmp_path):
  params, opt, _ = _trees(0)
  with checkpoints.TrialCheckpointer(tmp_path) as ckpt:
    ckpt.save(_state(1, params, opt))
    ckpt.save(_state(2, params, opt))
  data = [p for p in (tmp_path / '2' / 'arrays').rglob('*')
          if p.is_file() and p.parent.name == 'd']
  assert data
  for path in data:
    path.write_bytes(b'')
  with checkpoints.TrialCheckpointer(tmp_path) as ckpt:
    with pytest.raises(checkpoints.ConfigError, match='unreadable_2.*--overwrite'):
      ckpt.restore(2, params=params, optimizer_state=opt, model_state={},
                   rng_seed=0)
    assert ckpt.latest().step == 1


def test_restore_refuses_another_model_or_seed(tmp_path):
  params, opt, _ = _trees(0)
  with checkpoints.TrialCheckpointer(tmp_path) as ckpt:
    ckpt.save(_state(1, params, opt))
    other = {'dense': {'kernel': jnp.zeros((5, 4)), 'bias': jnp.zeros((4,))}}
    with pytest.raises(checkpoints.CheckpointMismatchError, match='kernel'):
      ckpt.restore(1, params=other, optimizer_state=opt, model_state={},
                   rng_seed=0)
    with pytest.raises(checkpoints.CheckpointMismatchError, match='rng_seed'):
      ckpt.restore(1, params=params, optimizer_state=opt, model_state={},
                   rng_seed=1)


def test_counting_iterator_replays_to_a_position():
  queue = checkpoints.CountingIterator(iter(range(10)))
  assert [next(queue), next(queue)] == [0, 1] and queue.consumed == 2
  replay = checkpoints.CountingIterator(iter(range(10)))
  replay.skip(queue.consumed)
  assert next(replay) == 2 and replay.consumed == 3
  with pytest.raises(checkpoints.ConfigError, match='--overwrite'):
    checkpoints.CountingIterator(iter(range(2))).skip(3)


def test_rewind_logs_drops_rows_past_the_checkpoint_and_keeps_a_copy(tmp_path):
  (tmp_path / 'eval_measurements.csv').write_text('global_step,x\n1,"a,b"\n5,c\n9,d\n')
  (tmp_path / 'measurements.csv').write_text('global_step,x\n1,a\n')
  archive = tmp_path / 'attempt_0'
  assert checkpoints.rewind_logs(
      tmp_path, {'measurements': 1, 'eval_measurements': 2}, archive)
  assert (tmp_path / 'eval_measurements.csv').read_text() == (
      'global_step,x\n1,"a,b"\n5,c\n')
  assert (archive / 'eval_measurements.csv').read_text().endswith('9,d\n')
  assert (archive / 'measurements.csv').exists()
  assert not checkpoints.rewind_logs(
      tmp_path, {'measurements': 1, 'eval_measurements': 2}, archive)


class _Crash(Exception):
  pass


class _CompileCounter(Listener):
  """Counts XLA compilations between the start and the end of a trial."""

  def __init__(self):
    self.during_training = 0
    self._active = False
    jax.monitoring.register_event_duration_secs_listener(self._on_event)

  def _on_event(self, event, duration, **kwargs):
    if self._active and event == '/jax/core/compile/backend_compile_duration':
      self.during_training += 1

  def on_start(self, workload, config):
    self._active = True

  def on_end(self, result):
    self._active = False


def test_runner_resume_matches_an_uninterrupted_trial(tmp_path):
  """In process: a trial stopped by an exception and resumed ends like one never stopped."""
  config = TrialConfig(global_batch_size=8, hyperparameters=None, rng_seed=3,
                       budget_sec=1e9, max_global_steps=9)
  workload = ToyWorkload(validation_target=2.0, test_target=2.0)
  with checkpoints.TrialCheckpointer(tmp_path / 'a') as ckpt:
    reference = train_once(workload, make_submission(), config, checkpointer=ckpt)
  finals = checkpoints.TrialCheckpointer(tmp_path / 'a').read_arrays(9)['params']

  def crash_at_six(**kw):
    if kw['global_step'] == 6:
      raise _Crash()

  # eval_period 0: every step is evaluated and checkpointed (steps 1..6).
  with checkpoints.TrialCheckpointer(tmp_path / 'b') as ckpt:
    with pytest.raises(SubmissionFailure):
      train_once(ToyWorkload(validation_target=2.0, test_target=2.0),
                 make_submission(update_hook=crash_at_six), config,
                 checkpointer=ckpt)
    assert ckpt.latest().step == 6
  resumed_config = TrialConfig(**{**config.__dict__, 'resume_from_step': 6,
                                  'preemption_count': 1})
  workload = ToyWorkload(validation_target=2.0, test_target=2.0)
  compiles = _CompileCounter()
  with checkpoints.TrialCheckpointer(tmp_path / 'b') as ckpt:
    resumed = train_once(workload, make_submission(), resumed_config,
                         checkpointer=ckpt, listener=compiles)
    got = ckpt.read_arrays(9)['params']
  assert workload.eval_calls == [7, 8, 9]  # evals carry on, none repeated
  # The queue started at the checkpoint's position: no batch was replayed.
  assert workload.queue_starts == [6]
  # Restored arrays have the placement the jitted step was compiled for.
  assert compiles.during_training == 0
  assert resumed.global_step == reference.global_step == 9
  assert resumed.stop_reason == reference.stop_reason == 'max_global_steps'
  assert [s for s, _ in resumed.eval_results] == list(range(1, 10))
  for path, value in finals.items():
    np.testing.assert_array_equal(got[path], value)
  # Resuming a trial whose last checkpoint is its final state trains no more.
  with checkpoints.TrialCheckpointer(tmp_path / 'b') as ckpt:
    again = train_once(ToyWorkload(validation_target=2.0, test_target=2.0),
                       make_submission(update_hook=crash_at_six),
                       TrialConfig(**{**config.__dict__, 'resume_from_step': 9}),
                       checkpointer=ckpt)
  assert again.global_step == 9 and again.stop_reason == 'max_global_steps'


class _ReplayOnlyWorkload(ToyWorkload):
  """A workload whose queue cannot start at a position (a third-party one)."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.batches_built = 0

  def _build_input_queue(self, data_rng, split, data_dir, global_batch_size,
                         cache=None, repeat_final_dataset=None, num_batches=None):
    for batch in super()._build_input_queue(data_rng, split, data_dir,
                                            global_batch_size):
      self.batches_built += 1
      yield batch


def test_a_queue_without_start_position_is_replayed_to_the_same_result(tmp_path):
  config = TrialConfig(global_batch_size=8, hyperparameters=None, rng_seed=3,
                       budget_sec=1e9, max_global_steps=9)
  with checkpoints.TrialCheckpointer(tmp_path / 'a') as ckpt:
    train_once(ToyWorkload(validation_target=2.0, test_target=2.0),
               make_submission(), config, checkpointer=ckpt)
  finals = checkpoints.TrialCheckpointer(tmp_path / 'a').read_arrays(9)['params']

  def crash_at_seven(**kw):
    if kw['global_step'] == 7:
      raise _Crash()

  with checkpoints.TrialCheckpointer(tmp_path / 'b') as ckpt:
    with pytest.raises(SubmissionFailure):
      train_once(_ReplayOnlyWorkload(validation_target=2.0, test_target=2.0),
                 make_submission(update_hook=crash_at_seven), config,
                 checkpointer=ckpt)
  workload = _ReplayOnlyWorkload(validation_target=2.0, test_target=2.0)
  with checkpoints.TrialCheckpointer(tmp_path / 'b') as ckpt:
    train_once(workload, make_submission(),
               TrialConfig(**{**config.__dict__, 'resume_from_step': 7,
                              'preemption_count': 1}), checkpointer=ckpt)
    got = ckpt.read_arrays(9)['params']
  # 7 batches discarded, 2 trained on (the prefetcher may have built more).
  assert workload.batches_built >= 9
  for path, value in finals.items():
    np.testing.assert_array_equal(got[path], value)


# --- acceptance: SIGKILL and resume through the CLI ---------------------------------

_STEPS = 400
_HOLD_AT_STEP = 250
_DOWNTIME_SEC = 3.0

# nadamw, except that with HOLD_UPDATE_MARKER set, update_params at step
# HOLD_UPDATE_AT_STEP creates the marker and blocks: the test kills the
# process there, in the middle of training.
_HOLDING_SUBMISSION = '''
import os
import pathlib
import threading

from submissions.nadamw.submission import *  # noqa: F401,F403
from submissions.nadamw import submission as _base


def update_params(**kwargs):
  marker = os.environ.get('HOLD_UPDATE_MARKER')
  if marker and kwargs['global_step'] == int(os.environ['HOLD_UPDATE_AT_STEP']):
    pathlib.Path(marker).write_text('held')
    threading.Event().wait()
  return _base.update_params(**kwargs)
'''


def _command(tmp_path, name, *extra):
  submission = tmp_path / 'holding' / 'submission.py'
  if not submission.exists():
    submission.parent.mkdir(exist_ok=True)
    submission.write_text(_HOLDING_SUBMISSION)
  space = REPO / 'submissions' / 'nadamw' / 'tuning_search_space.json'
  return [sys.executable, '-m', 'algoperf.cli', 'run', '--workload=mnist1d',
          f'--submission_path={submission}', f'--tuning_search_space={space}',
          f'--max_global_steps={_STEPS}', '--rng_seed=0', '--save_checkpoints',
          '--noprogress', '--speed_factor=10', f'--experiment_dir={tmp_path}',
          f'--experiment_name={name}', *extra]


def _env(**extra):
  env = dict(os.environ, PYTHONPATH=str(REPO), **extra)
  for key in ('HOLD_UPDATE_MARKER', checkpoints.TEST_HOLD_MARKER_ENV):
    if key not in extra:
      env.pop(key, None)
  return env


def _run_to_end(command, env):
  done = subprocess.run(command, cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stdout + done.stderr
  return done.stdout


def _run_until_marker(command, env, marker, timeout=300.0):
  """Starts ``command``, waits for it to create ``marker``, then SIGKILLs it."""
  process = subprocess.Popen(command, cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  deadline = time.monotonic() + timeout
  try:
    while not marker.exists():
      if process.poll() is not None:
        raise AssertionError('exited before the marker: '
                             + process.stdout.read().decode())
      assert time.monotonic() < deadline, 'marker never appeared'
      time.sleep(0.05)
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()


def _trial(tmp_path, name):
  return tmp_path / name / 'mnist1d_jax' / 'trial_1'


def _eval_rows(trial):
  with open(trial / 'eval_measurements.csv', newline='') as f:
    return list(csv.DictReader(f))


@pytest.mark.slow
def test_killed_trials_resume_to_the_uninterrupted_result(tmp_path):
  _run_to_end(_command(tmp_path, 'straight'), _env())
  straight = _trial(tmp_path, 'straight')

  # 1. SIGKILL in the middle of training (blocked inside update_params).
  marker = tmp_path / 'update.marker'
  _run_until_marker(_command(tmp_path, 'killed'),
                    _env(HOLD_UPDATE_MARKER=str(marker),
                         HOLD_UPDATE_AT_STEP=str(_HOLD_AT_STEP)), marker)
  killed = _trial(tmp_path, 'killed')
  first_good = checkpoints.TrialCheckpointer(
      killed / 'checkpoints', save=False).latest().step
  assert 1 <= first_good < _HOLD_AT_STEP
  time.sleep(_DOWNTIME_SEC)  # Downtime that must not reach any clock.

  # 2. Resumed, then SIGKILLed while writing its next checkpoint.
  marker = tmp_path / 'checkpoint.marker'
  _run_until_marker(
      _command(tmp_path, 'killed', '--resume_last_run'),
      _env(**{checkpoints.TEST_HOLD_MARKER_ENV: str(marker),
              checkpoints.TEST_HOLD_FROM_STEP_ENV: str(first_good + 1)}),
      marker)
  held = Path(marker.read_text())
  assert held.parent == killed / 'checkpoints' and held.is_dir()
  held_step = int(held.name.split('.')[0])
  # The half-committed checkpoint's eval row was already logged.
  assert int(_eval_rows(killed)[-1]['global_step']) == held_step
  time.sleep(_DOWNTIME_SEC)

  # 3. Resumed to the end: from the last good checkpoint, not the held one.
  out = _run_to_end(_command(tmp_path, 'killed', '--resume_last_run'), _env())
  assert f'resuming from the checkpoint at step {first_good} ' in out

  summaries = [json.loads((t / 'trial_summary.json').read_text())
               for t in (straight, killed)]
  assert summaries[0]['stop_reason'] == 'max_global_steps', summaries[0]
  assert summaries[1]['global_step'] == summaries[0]['global_step'] == _STEPS
  with checkpoints.TrialCheckpointer(straight / 'checkpoints', save=False) as a, \
      checkpoints.TrialCheckpointer(killed / 'checkpoints', save=False) as b:
    want, got = a.read_arrays(_STEPS), b.read_arrays(_STEPS)
  for tree in ('params', 'optimizer_state'):
    assert want[tree].keys() == got[tree].keys()
    for path in want[tree]:
      np.testing.assert_allclose(got[tree][path], want[tree][path], rtol=0,
                                 atol=1e-6, err_msg=f'{tree}{path}')

  rows = {'straight': _eval_rows(straight), 'killed': _eval_rows(killed)}
  metrics = [k for k in rows['straight'][-1]
             if k.startswith(('train/', 'validation/', 'test/'))]
  for key in metrics:
    assert float(rows['killed'][-1][key]) == pytest.approx(
        float(rows['straight'][-1][key]), abs=1e-6), key
  # One history in the main log: steps increase, the lost future is gone, and
  # every row says which attempt wrote it.
  steps = [int(r['global_step']) for r in rows['killed']]
  assert steps == sorted(set(steps)) and steps[-1] == _STEPS
  # Attempt 1 logged only the eval of its unfinished checkpoint: that row is
  # gone from the main log (the resumed run may evaluate that step again).
  assert {r['preemption_count'] for r in rows['killed']} == {'0', '2'}
  archived = _eval_rows(killed / 'attempt_1')
  assert int(archived[-1]['global_step']) == held_step
  for p in range(3):
    assert (killed / f'meta_data_{p}.json').exists()
    flags = json.loads((killed / f'flags_{p}.json').read_text())
    assert flags['rng_seed'] == 0
  # Downtime (two pauses, process start-ups, replayed steps) is on no clock;
  # the resumed trial only pays compiling its step once more per resume.
  times = [s['accumulated_submission_time'] for s in summaries]
  assert times[1] < times[0] + 2 * _DOWNTIME_SEC, times
  assert float(rows['killed'][-1]['score']) == pytest.approx(times[1])
