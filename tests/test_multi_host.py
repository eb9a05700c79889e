"""Multi-host runs: two processes on localhost train together (CPU, gloo), and
resume together from a shared checkpoint after both were killed.

Also the pieces without a second process: the single-process fast paths of
``algoperf.distributed`` and the runner obeying process 0's decisions.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from algoperf import checkpoints, distributed, experiment
from algoperf.errors import ConfigError
from algoperf.runner import TrialConfig, train_once
from tests.fakes import ToyWorkload, make_submission
from tests.test_multi_device import LOSS_EVERY_STEP, REPO, assert_losses_agree, step_losses

TIMEOUT_SEC = 300
_LAUNCH_ENV = ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID',
               'SLURM_JOB_ID', 'OMPI_MCA_orte_hnp_uri')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _final_step(stderr: str) -> int:
  found = re.findall(r'Stopped at step (\d+):', stderr)
  assert len(found) == 1, stderr
  return int(found[0])


def _launch(tmp_path, port, args_of, env_extra=None, tag=''):
  """Starts the two processes of a run; ``args_of(i)`` are process i's own flags."""
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  for name in _LAUNCH_ENV:
    env.pop(name, None)
  env.update(env_extra or {})
  procs = []
  for i in range(2):
    out = open(tmp_path / f'output{tag}_{i}.txt', 'w+', encoding='utf-8')
    procs.append((subprocess.Popen(
        [sys.executable, '-m', 'algoperf.cli', 'run', '--workload=mnist1d',
         f'--submission_path={LOSS_EVERY_STEP}', '--tuning_ruleset=self',
         f'--experiment_dir={tmp_path}', '--noprogress', '--speed_factor=10',
         f'--coordinator_address=localhost:{port}', '--num_processes=2',
         f'--process_id={i}', *args_of(i)],
        cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT), out))
  return procs


def _finish(procs):
  """Waits for both processes; returns their exit codes and outputs."""
  try:
    for p, _ in procs:
      # A hung collective fails the test instead of hanging CI.
      p.wait(timeout=TIMEOUT_SEC)
  finally:
    for p, _ in procs:
      p.kill()
  codes, stderr = [], []
  for p, out in procs:
    out.seek(0)
    stderr.append(out.read())
    out.close()
    codes.append(p.returncode)
  return codes, stderr


@pytest.mark.slow
def test_two_processes_train_as_one(tmp_path):
  steps = 5
  # Same experiment dir, a name per process: a folder of process 1 would
  # show it wrote something (in one shared folder, who wrote what is moot).
  # No --rng_seed: process 0's fresh seed must reach process 1.
  codes, stderr = _finish(_launch(
      tmp_path, _free_port(),
      lambda i: [f'--experiment_name=host_{i}', f'--max_global_steps={steps}']))
  assert codes == [0, 0], stderr

  assert [_final_step(e) for e in stderr] == [steps, steps]
  assert not (tmp_path / 'host_1').exists()  # Only process 0 writes logs.
  trial = tmp_path / 'host_0' / 'mnist1d_jax' / 'trial_1'
  meta = json.loads((trial / 'meta_data_0.json').read_text())
  assert (meta['process_count'], meta['process_index']) == (2, 0)
  assert (meta['global_device_count'], meta['local_device_count']) == (4, 2)

  # Each host read half of every batch; together they trained like one
  # process does on the whole batch.
  reference = experiment.run(experiment.RunOptions(
      workload='mnist1d', submission_path=str(LOSS_EVERY_STEP),
      tuning_ruleset='self', experiment_dir=str(tmp_path),
      experiment_name='one_process', rng_seed=meta['rng_seed'],
      max_global_steps=steps, progress=False), {})
  assert_losses_agree(step_losses(trial), step_losses(reference[0].trial_dir))


@pytest.mark.slow
def test_two_processes_resume_from_a_shared_checkpoint(tmp_path):
  """Both processes save each checkpoint together and resume from it after a kill."""
  steps, hold_from = 400, 150
  marker = tmp_path / 'holding'
  args = lambda i: ['--experiment_name=shared', f'--max_global_steps={steps}',
                    '--rng_seed=3']
  # The first save at step >= hold_from blocks before its commit (the test
  # hook of algoperf/checkpoints.py): both processes are killed while a
  # checkpoint is being written, after earlier ones completed.
  procs = _launch(tmp_path, _free_port(), args, tag='_killed', env_extra={
      checkpoints.TEST_HOLD_MARKER_ENV: str(marker),
      checkpoints.TEST_HOLD_FROM_STEP_ENV: str(hold_from)})
  deadline = time.monotonic() + TIMEOUT_SEC
  try:
    while not marker.exists():
      exited = [p.poll() for p, _ in procs]
      assert exited == [None, None], f'a process exited before the hold: {exited}'
      assert time.monotonic() < deadline, 'the held checkpoint never started'
      time.sleep(0.05)
  finally:
    for p, _ in procs:
      p.send_signal(signal.SIGKILL)
    _finish(procs)

  codes, stderr = _finish(_launch(
      tmp_path, _free_port(), lambda i: [*args(i), '--resume_last_run']))
  assert codes == [0, 0], stderr
  resumed = [re.findall(r'resuming from the checkpoint at step (\d+)', e)
             for e in stderr]
  assert resumed[0] == resumed[1] and len(resumed[0]) == 1, stderr
  assert 1 <= int(resumed[0][0]) < hold_from
  assert [_final_step(e) for e in stderr] == [steps, steps]

  trial = tmp_path / 'shared' / 'mnist1d_jax' / 'trial_1'
  meta = json.loads((trial / 'meta_data_1.json').read_text())
  assert meta['preemption_count'] == 1 and meta['process_count'] == 2
  # The logs were cut back to the checkpoint and continued: every step's loss
  # is there once, and equal to an uninterrupted two-process run's. (Not a
  # one-process run's: float noise of the other reduction order grows over
  # hundreds of steps.)
  codes, stderr = _finish(_launch(
      tmp_path, _free_port(),
      lambda i: ['--experiment_name=uninterrupted', f'--max_global_steps={steps}',
                 '--rng_seed=3'], tag='_uninterrupted'))
  assert codes == [0, 0], stderr
  assert_losses_agree(
      step_losses(trial),
      step_losses(tmp_path / 'uninterrupted' / 'mnist1d_jax' / 'trial_1'),
      rel=1e-6)


def test_runner_follows_process_zero(monkeypatch):
  """A process whose own clock says "go on" stops and evaluates when process 0 says so."""
  # Process 0's answers, per step: (eval due, time remaining, training complete).
  decisions = iter([(True, True, False), (False, True, False),
                    (True, True, False), (False, False, False)])
  asked = []

  def agree(value):
    asked.append(value)
    return next(decisions) if isinstance(value, tuple) else value

  monkeypatch.setattr(distributed, 'agree', agree)

  workload = ToyWorkload(validation_target=2.0, test_target=2.0, eval_period=0.0)
  result = train_once(workload, make_submission(), TrialConfig(
      global_batch_size=8, hyperparameters=None, rng_seed=0, budget_sec=1e9))
  # Locally every step is due for an eval and the budget is huge.
  assert asked[0] == (True, True, False)
  assert result.stop_reason == 'budget' and result.global_step == 4
  assert [s for s, _ in result.eval_results] == [1, 3]


def test_single_process_helpers_are_plain_calls(monkeypatch):
  for name in _LAUNCH_ENV:
    monkeypatch.delenv(name, raising=False)
  assert distributed.initialize() is False
  assert distributed.initialize(num_processes=1, process_id=0) is False
  # A single-task SLURM job (one run of a sweep) stays single-process.
  for name, value in {'SLURM_JOB_ID': '7', 'SLURM_STEP_NODELIST': 'node1',
                      'SLURM_NTASKS': '1', 'SLURM_PROCID': '0',
                      'SLURM_LOCALID': '0'}.items():
    monkeypatch.setenv(name, value)
  assert distributed.initialize() is False
  assert distributed.process_count() == 1 and distributed.is_primary()
  value = {'stop': True, 'clock': 1234.5678901234567, 'step': 7}
  assert distributed.agree(value) is value
  assert distributed.agree_text('/shared/ckpt') == '/shared/ckpt'
  assert distributed.agree_text(None) == ''
  assert distributed.everywhere(True) and not distributed.everywhere(0)
  assert distributed.on_primary(lambda x: x + 1, 1) == 2
  with pytest.raises(KeyError):
    distributed.on_primary({}.__getitem__, 'missing')


def test_bad_launch_settings_are_config_errors(monkeypatch):
  for name in _LAUNCH_ENV:
    monkeypatch.delenv(name, raising=False)
  with pytest.raises(ConfigError, match='outside'):
    distributed.initialize('localhost:1234', num_processes=2, process_id=2)
  monkeypatch.setenv('JAX_NUM_PROCESSES', 'two')
  with pytest.raises(ConfigError, match='JAX_NUM_PROCESSES'):
    distributed.initialize()


def test_checkpoints_are_off_where_a_host_cannot_see_the_folder(
    tmp_path, monkeypatch, caplog):
  """Two processes, no shared file system: a warning and no checkpoints, not a hang."""
  import jax  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  monkeypatch.setattr(distributed, 'agree', lambda value: value)
  monkeypatch.setattr(distributed, 'agree_text', lambda text: text or '')
  monkeypatch.setattr(distributed, 'everywhere', lambda flag: False)
  options = experiment.RunOptions(workload='mnist1d', submission_path='nadamw',
                                  experiment_dir=str(tmp_path))
  trial_dir = tmp_path / 'trial_1'
  trial_dir.mkdir()
  with caplog.at_level('WARNING'):
    got = experiment._open_checkpoints(trial_dir, options, 0)  # pylint: disable=protected-access
  assert got == (None, None, 0)
  assert 'not every host sees' in caplog.text
  assert (trial_dir / 'checkpoints').is_dir()  # Process 0 made it; others did not see it.
