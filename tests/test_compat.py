"""Submissions written for older references run unchanged.

One test per compatibility path, on the fixtures in ``tests/fixtures``: a
package with relative imports, ``get_eval_batch_size``, a ``KeyError`` from
``get_batch_size``, the v0.5 package name with ``jax.tree_map``, and a
``jax.pmap`` submission (which must train as its jit twin does, under the
same clock, logs and checkpoints).
"""

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import workloads
from algoperf import checkpoints, cli, compat
from algoperf.runner import SubmissionFailure, TrialConfig, train_once
from algoperf.submission import (SubmissionError, load_submission,
                                 resolve_eval_batch_size,
                                 resolve_global_batch_size)

FIXTURES = Path(__file__).parent / 'fixtures'
REPO = Path(__file__).resolve().parents[1]


def _run(tmp_path, fixture, *extra):
  return cli.main(['run', '--workload=mnist1d', f'--experiment_dir={tmp_path}',
                   f'--submission_path={FIXTURES / fixture}', '--rng_seed=0',
                   '--noprogress', '--speed_factor=1', *extra])


def _trial(tmp_path, fixture):
  return tmp_path / fixture / 'study_0' / 'mnist1d_jax' / 'trial_1'


def _eval_rows(trial):
  with open(trial / 'eval_measurements.csv', newline='') as f:
    return list(csv.DictReader(f))


# --- packages -----------------------------------------------------------------


def test_a_package_submission_imports_relatively_as_the_reference_does(tmp_path):
  submission = load_submission(FIXTURES / 'relative_import')
  # The dotted name of its path in its package tree.
  assert submission.module.__name__ == 'relative_import.submission'
  assert _run(tmp_path, 'relative_import', '--max_global_steps=3') == 0
  assert _eval_rows(_trial(tmp_path, 'relative_import'))


def test_a_package_whose_top_name_is_taken_imports_under_a_private_name(tmp_path):
  # ``submissions`` is this repo's own package; the v0.5 leaderboard's tree
  # has a top package of the same name.
  tree = tmp_path / 'submissions' / 'self_tuning' / 'entry'
  tree.mkdir(parents=True)
  for folder in (tree, tree.parent, tree.parent.parent):
    (folder / '__init__.py').write_text('')
  (tree / 'helper.py').write_text('LEARNING_RATE = 0.25\n')
  source = (FIXTURES / 'jit_sgd' / 'submission.py').read_text()
  (tree / 'submission.py').write_text(
      'from .helper import LEARNING_RATE\n' + source)
  import submissions  # pylint: disable=import-outside-toplevel,unused-import
  submission = load_submission(tree)
  assert submission.module.__name__.endswith('.self_tuning.entry.submission')
  assert submission.module.LEARNING_RATE == 0.25
  assert 'nadamw' in os.listdir(Path(sys.modules['submissions'].__file__).parent)


# --- batch sizes --------------------------------------------------------------


def test_get_eval_batch_size_and_a_key_error_fallback(tmp_path, capsys):
  submission = load_submission(FIXTURES / 'v05_names')
  try:
    # get_batch_size raises KeyError for mnist1d: the flag decides ...
    assert resolve_global_batch_size(submission, 'mnist1d', 'mnist1d', 32) == 32
    assert resolve_eval_batch_size(submission, 'mnist1d', 1000) == 250
    with pytest.raises(SubmissionError, match='--global_batch_size'):
      resolve_global_batch_size(submission, 'mnist1d', 'mnist1d', None)
  finally:
    submission.close()
  # ... and the run uses both sizes.
  assert _run(tmp_path, 'v05_names', '--max_global_steps=3',
              '--global_batch_size=32') == 0
  meta = json.loads((_trial(tmp_path, 'v05_names') / 'meta_data_0.json').read_text())
  assert meta['global_batch_size'] == 32 and meta['eval_batch_size'] == 250
  capsys.readouterr()
  assert _run(tmp_path / 'b', 'v05_names', '--max_global_steps=3') == 2
  err = capsys.readouterr().err
  assert '--global_batch_size' in err and 'Traceback' not in err


def test_a_none_batch_size_falls_back_to_the_flag(tmp_path):
  path = tmp_path / 'none_size.py'
  path.write_text((FIXTURES / 'jit_sgd' / 'submission.py').read_text().replace(
      '  return 128\n', '  return None\n', 1))
  submission = load_submission(path)
  assert resolve_global_batch_size(submission, 'mnist1d', 'mnist1d', 16) == 16


def test_check_honours_the_flag_over_the_submissions_own_size(caplog):
  submission = load_submission(FIXTURES / 'jit_sgd')
  assert resolve_global_batch_size(submission, 'mnist1d', 'mnist1d', 16) == 128
  assert resolve_global_batch_size(submission, 'mnist1d', 'mnist1d', 16,
                                   force=True) == 16
  assert 'using --global_batch_size=16 instead' in caplog.text


# --- the v0.5 package name and removed jax aliases ----------------------------


def test_old_package_name_and_tree_map_are_shimmed_only_while_it_runs(tmp_path, caplog):
  assert not hasattr(jax, 'tree_map')
  assert compat.shims_for([FIXTURES / 'v05_names']) == [
      'algorithmic_efficiency', 'jax.tree_map']
  assert compat.shims_for([FIXTURES / 'jit_sgd']) == []
  assert _run(tmp_path, 'v05_names', '--max_global_steps=3',
              '--global_batch_size=32') == 0
  shim_lines = [r.getMessage() for r in caplog.records if 'shimmed' in r.getMessage()]
  assert len(shim_lines) == 1, shim_lines
  assert 'algorithmic_efficiency -> algoperf' in shim_lines[0]
  assert 'jax.tree_map -> jax.tree_util.tree_map' in shim_lines[0]
  # Gone again after the run.
  assert not hasattr(jax, 'tree_map')
  assert 'algorithmic_efficiency' not in sys.modules
  with pytest.raises(ImportError):
    __import__('algorithmic_efficiency')


def test_uses_pmap_reads_code_not_comments():
  assert compat.uses_pmap('import jax\nf = jax.pmap(lambda x: x)\n')
  assert compat.uses_pmap('from jax import pmap\n')
  assert not compat.uses_pmap('# jax.pmap is not used here\nx = "pmap"\n')
  assert load_submission(FIXTURES / 'pmap_sgd').api == 'pmap'
  assert load_submission(FIXTURES / 'jit_sgd').api == 'jit'
  assert load_submission(FIXTURES / 'pmap_sgd', api='jit').api == 'jit'


# --- pmap-era submissions -----------------------------------------------------


def _columns_and_losses(trial):
  rows = _eval_rows(trial)
  return set(rows[0]), [(int(r['global_step']), float(r['train/loss'])) for r in rows]


def test_a_pmap_submission_trains_like_its_jit_twin_under_the_same_rules(tmp_path):
  assert _run(tmp_path, 'pmap_sgd', '--max_global_steps=60') == 0
  assert _run(tmp_path, 'jit_sgd', '--max_global_steps=60') == 0
  pmap_trial, jit_trial = _trial(tmp_path, 'pmap_sgd'), _trial(tmp_path, 'jit_sgd')
  pmap_columns, pmap_losses = _columns_and_losses(pmap_trial)
  jit_columns, jit_losses = _columns_and_losses(jit_trial)
  assert pmap_columns == jit_columns  # The same log format.
  # The same seed and batches: the same final training loss (one device).
  assert pmap_losses[-1][0] == jit_losses[-1][0] == 60
  np.testing.assert_allclose(pmap_losses[-1][1], jit_losses[-1][1], rtol=1e-5)
  assert pmap_losses[-1][1] < pmap_losses[0][1] - 0.1  # It trained.
  # The submission's own logging reached the metrics logger.
  with open(pmap_trial / 'measurements.csv', newline='') as f:
    assert any(row.get('loss') for row in csv.DictReader(f))
  summary = json.loads((pmap_trial / 'trial_summary.json').read_text())
  assert summary['stop_reason'] == 'max_global_steps'
  meta = json.loads((pmap_trial / 'meta_data_0.json').read_text())
  assert meta['submission_api'] == 'pmap'
  # The clock: submission time grows, and eval time is not part of it.
  rows = _eval_rows(pmap_trial)
  times = [float(r['accumulated_submission_time']) for r in rows]
  assert times == sorted(times) and times[0] > 0
  assert float(rows[-1]['total_duration']) > times[-1] + float(
      rows[-1]['accumulated_eval_time']) * 0.99


def test_a_pmap_trial_resumes_from_its_checkpoint_as_if_never_stopped(tmp_path, monkeypatch):
  # Every step evaluated (and so checkpointed): a crash at step 6 resumes there.
  workload_class = type(workloads.get_workload('mnist1d'))
  monkeypatch.setattr(workload_class, 'eval_period_time_sec', property(lambda self: 0.0))
  config = TrialConfig(global_batch_size=128, hyperparameters=None, rng_seed=3,
                       budget_sec=1e9, max_global_steps=9)

  def submission(crash_at=None):
    sub = load_submission(FIXTURES / 'pmap_sgd')
    if crash_at is None:
      return sub

    def update_params(**kwargs):
      if kwargs['global_step'] == crash_at:
        raise RuntimeError('preempted (a test)')
      return sub.update_params(**kwargs)

    return dataclasses.replace(sub, update_params=update_params)

  with checkpoints.TrialCheckpointer(tmp_path / 'a') as ckpt:
    reference = train_once(workloads.get_workload('mnist1d'), submission(), config,
                           checkpointer=ckpt)
  finals = checkpoints.TrialCheckpointer(tmp_path / 'a').read_arrays(9)
  with checkpoints.TrialCheckpointer(tmp_path / 'b') as ckpt:
    with pytest.raises(SubmissionFailure):
      train_once(workloads.get_workload('mnist1d'), submission(crash_at=6), config,
                 checkpointer=ckpt)
    assert ckpt.latest().step == 6
  resumed_config = TrialConfig(**{**config.__dict__, 'resume_from_step': 6,
                                  'preemption_count': 1})
  with checkpoints.TrialCheckpointer(tmp_path / 'b') as ckpt:
    resumed = train_once(workloads.get_workload('mnist1d'), submission(),
                         resumed_config, checkpointer=ckpt)
    got = ckpt.read_arrays(9)
  assert resumed.global_step == reference.global_step == 9
  assert [s for s, _ in resumed.eval_results] == list(range(1, 10))
  for group in ('params', 'optimizer_state'):
    for path, value in finals[group].items():
      np.testing.assert_allclose(got[group][path], value, rtol=1e-6, atol=1e-7)
  assert (resumed.eval_results[-1][1]['validation/loss']
          == pytest.approx(reference.eval_results[-1][1]['validation/loss'], rel=1e-6))


_EIGHT_DEVICES = r'''
import json, sys
from algoperf import cli
out = {}
for name in ('pmap_sgd', 'jit_sgd'):
  code = cli.main(['run', '--workload=mnist1d', '--experiment_dir=' + sys.argv[1],
                   '--submission_path=' + sys.argv[2] + '/' + name, '--rng_seed=0',
                   '--noprogress', '--speed_factor=1', '--max_global_steps=40'])
  assert code == 0, code
'''


@pytest.mark.slow
def test_a_pmap_submission_on_eight_devices_matches_its_jit_twin(tmp_path):
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8',
         'PYTHONPATH': str(REPO)}
  subprocess.run([sys.executable, '-c', _EIGHT_DEVICES, str(tmp_path), str(FIXTURES)],
                 check=True, env=env, cwd=REPO, timeout=600)
  _, pmap_losses = _columns_and_losses(_trial(tmp_path, 'pmap_sgd'))
  _, jit_losses = _columns_and_losses(_trial(tmp_path, 'jit_sgd'))
  meta = json.loads((_trial(tmp_path, 'pmap_sgd') / 'meta_data_0.json').read_text())
  assert meta['global_device_count'] == 8
  assert pmap_losses[-1][0] == jit_losses[-1][0] == 40
  # Sums over 8 devices in another order: equal to float precision.
  np.testing.assert_allclose(pmap_losses[-1][1], jit_losses[-1][1], rtol=1e-4)


def test_clip_with_the_removed_keywords_is_shimmed_and_restored(tmp_path):
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  source = tmp_path / 'uses_clip.py'
  source.write_text('import jax.numpy as jnp\n'
                    'def f(x):\n    return jnp.clip(x, a_min=1e-3, a_max=2.0)\n')
  assert compat.shims_for([source]) == [compat.CLIP_SHIM]
  original = jnp.clip
  with pytest.raises(TypeError):
    jnp.clip(jnp.arange(3.0), a_min=1.0)
  with compat.Shims(compat.shims_for([source])):
    np.testing.assert_array_equal(
        jnp.clip(jnp.arange(4.0), a_min=1.0, a_max=2.0), [1.0, 1.0, 2.0, 2.0])
  assert jnp.clip is original


def test_a_pmap_in_axes_bug_is_the_submissions_own_with_a_plain_hint(tmp_path, capsys):
  folder = tmp_path / 'short_in_axes'
  folder.mkdir()
  source = (FIXTURES / 'pmap_sgd' / 'submission.py').read_text()
  assert 'in_axes=(None, None, 0, 0, 0, 0, 0)' in source
  (folder / 'submission.py').write_text(
      source.replace('in_axes=(None, None, 0, 0, 0, 0, 0)', 'in_axes=(None, None, 0, 0, 0, 0)'))
  (folder / 'tuning_search_space.json').write_text('{"learning_rate": {"feasible_points": [0.1]}}')
  code = cli.main(['run', '--workload=mnist1d', f'--experiment_dir={tmp_path / "exp"}',
                   f'--submission_path={folder}', '--rng_seed=0', '--noprogress',
                   '--speed_factor=1', '--max_global_steps=2'])
  err = capsys.readouterr().err
  assert code == 1
  (line,) = [l for l in err.splitlines() if 'failed at step 0' in l]
  assert 'update_params raised IndexError' in line
  assert 'in_axes' in line and 'more arguments than its in_axes has entries' in line


def test_check_attaches_a_metrics_logger_so_logging_code_runs_in_the_dry_run(tmp_path):
  from algoperf import check  # pylint: disable=import-outside-toplevel

  folder = tmp_path / 'logs_loss_of_0d'
  folder.mkdir()
  source = (FIXTURES / 'jit_sgd' / 'submission.py').read_text()
  old = '  state, params, model_state, _ = _train_step('
  assert old in source
  # The reference's ported baselines kept pmap's `loss[0]` under this guard.
  source = source.replace(old, '  state, params, model_state, loss = _train_step(').replace(
      '  return (state, update_fn), params, model_state\n',
      '  if workload.metrics_logger is not None:\n'
      "    workload.metrics_logger.append_scalar_metrics({'loss': loss[0]}, global_step)\n"
      '  return (state, update_fn), params, model_state\n', 1)
  (folder / 'submission.py').write_text(source.replace('  del global_step\n', ''))
  (folder / 'tuning_search_space.json').write_text('{"learning_rate": {"feasible_points": [0.1]}}')
  report = check.check_submission(folder, steps=2)
  (result,) = report.dry_run
  assert not result.ok and result.hook == 'update_params'
  assert 'IndexError' in result.message and 'submission.py' in result.message
