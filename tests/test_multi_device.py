"""`algoperf run` on 8 virtual CPU devices equals the run on 1 device.

Each configuration runs in its own subprocess: XLA_FLAGS must be set before
JAX loads.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / 'tests' / 'fixtures'
REFERENCE_STYLE = FIXTURES / 'reference_style'
LOSS_EVERY_STEP = FIXTURES / 'loss_every_step' / 'submission.py'
TIMEOUT_SEC = 300


def _env(num_devices: int) -> Dict[str, str]:
  return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={num_devices}')


def _algoperf(*args, cwd, num_devices=8):
  return subprocess.run([sys.executable, '-m', 'algoperf.cli', *args],
                        cwd=cwd, env=_env(num_devices), capture_output=True,
                        text=True, timeout=TIMEOUT_SEC)


def step_losses(trial_dir: Path) -> Dict[int, float]:
  """``global_step -> loss`` from the rows the submission logged."""
  with open(trial_dir / 'measurements.csv', newline='', encoding='utf-8') as f:
    return {int(row['global_step']): float(row['loss'])
            for row in csv.DictReader(f) if row.get('loss')}


def assert_losses_agree(got: Dict[int, float], expected: Dict[int, float],
                        rel: float = 1e-5) -> None:
  assert sorted(got) == sorted(expected)
  worst = max(abs(got[s] - expected[s]) / abs(expected[s]) for s in expected)
  assert worst <= rel, {s: (got[s], expected[s]) for s in expected}


@pytest.mark.slow
def test_eight_devices_train_like_one(tmp_path):
  steps = 20
  runs = {}
  for n in (1, 8):
    # Both at once: each is mostly JAX start-up and compilation.
    runs[n] = subprocess.Popen(
        [sys.executable, '-m', 'algoperf.cli', 'run', '--workload=mnist1d',
         f'--submission_path={LOSS_EVERY_STEP}', '--tuning_ruleset=self',
         f'--experiment_dir={tmp_path}', f'--experiment_name=devices_{n}',
         f'--max_global_steps={steps}', '--rng_seed=0', '--noprogress', '--speed_factor=1'],
        cwd=tmp_path, env=_env(n), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
  try:
    errors = {n: p.communicate(timeout=TIMEOUT_SEC)[1] for n, p in runs.items()}
  finally:
    for p in runs.values():
      p.kill()
  losses = {}
  for n, p in runs.items():
    assert p.returncode == 0, errors[n]
    trial = tmp_path / f'devices_{n}' / 'mnist1d_jax' / 'trial_1'
    meta = json.loads((trial / 'meta_data_0.json').read_text())
    assert meta['global_device_count'] == meta['local_device_count'] == n
    assert (trial / 'eval_measurements.csv').read_text().count('\n') >= 2
    losses[n] = step_losses(trial)
  assert sorted(losses[1]) == list(range(steps))
  # Same seed, same batches: only the order of float sums differs.
  assert_losses_agree(losses[8], losses[1])
  assert losses[1][steps - 1] < losses[1][0]  # It trained.


def test_batch_size_not_divisible_by_devices_is_an_error_at_start(tmp_path):
  bad = _algoperf('run', '--workload=mnist1d', f'--experiment_dir={tmp_path}',
                  '--experiment_name=bad', '--max_global_steps=1',
                  f'--submission_path={REFERENCE_STYLE / "submission.py"}',
                  f'--tuning_search_space={REFERENCE_STYLE / "tuning_search_space.json"}',
                  '--global_batch_size=12', cwd=tmp_path)
  assert bad.returncode == 2
  assert 'global batch size (12)' in bad.stderr and 'devices (8)' in bad.stderr
