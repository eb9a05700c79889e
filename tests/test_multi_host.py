"""Multi-host runs: two processes on localhost train together (CPU, gloo).

Also the pieces without a second process: the single-process fast paths of
``algoperf.distributed`` and the runner obeying process 0's decisions.
"""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from algoperf import distributed, experiment
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


@pytest.mark.slow
def test_two_processes_train_as_one(tmp_path):
  port, steps = _free_port(), 5
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  for name in _LAUNCH_ENV:
    env.pop(name, None)
  procs, outputs = [], []
  for i in range(2):
    # Same experiment dir, a name per process: a folder of process 1 would
    # show it wrote something (in one shared folder, who wrote what is moot).
    # No --rng_seed: process 0's fresh seed must reach process 1.
    out = open(tmp_path / f'stderr_{i}.txt', 'w+', encoding='utf-8')
    outputs.append(out)
    procs.append(subprocess.Popen(
        [sys.executable, '-m', 'algoperf.cli', 'run', '--workload=mnist1d',
         f'--submission_path={LOSS_EVERY_STEP}', '--tuning_ruleset=self',
         f'--experiment_dir={tmp_path}', f'--experiment_name=host_{i}',
         f'--max_global_steps={steps}', '--noprogress',
         f'--coordinator_address=localhost:{port}', '--num_processes=2',
         f'--process_id={i}'],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=out))
  try:
    for p in procs:
      # A hung collective fails the test instead of hanging CI.
      p.wait(timeout=TIMEOUT_SEC)
  finally:
    for p in procs:
      p.kill()
  stderr = []
  for out in outputs:
    out.seek(0)
    stderr.append(out.read())
    out.close()
  assert [p.returncode for p in procs] == [0, 0], stderr

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
