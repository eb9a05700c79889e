"""The README's main job: NadamW on the real Fashion-MNIST reaches its target."""

import csv
import json
from pathlib import Path

import pytest

from algoperf import benchmarks, cli

FASHION = Path('/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz')


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.exists(),
                    reason='needs Debian package dataset-fashion-mnist')
def test_default_run_reaches_the_fashion_mnist_target(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  assert cli.main(['run', '--rng_seed=0']) == 0  # the embedded default
  out = capsys.readouterr().out
  trial = tmp_path / 'experiments' / 'nadamw' / 'study_0' / 'fashion_mnist_jax' / 'trial_1'
  with open(trial / 'eval_measurements.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  facts = benchmarks.load().workload('fashion_mnist')
  meta = json.loads((trial / 'meta_data_0.json').read_text())
  last = rows[-1]
  assert float(last['validation/accuracy']) >= facts.validation_target_value
  # The budget is the nominal one scaled by this machine's measured speed.
  assert meta['budget_sec'] == pytest.approx(
      facts.max_allowed_runtime_sec * meta['speed_factor'])
  assert float(last['score']) <= meta['budget_sec']
  summary = json.loads((trial / 'trial_summary.json').read_text())
  assert summary['stop_reason'] == 'targets'
  assert 'Best time to target' in out
