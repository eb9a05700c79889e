"""`algoperf run` end to end: studies, resume, refusals, failures, hung and diverged trials."""

import json
from pathlib import Path

import pytest

from algoperf import cli, experiment

FIXTURES = Path(__file__).parent / 'fixtures'


def _run(tmp_path, *extra):
  return cli.main(['run', '--workload=mnist1d', f'--experiment_dir={tmp_path}',
                   '--rng_seed=0', '--noprogress', '--speed_factor=1', *extra])


def _trial(tmp_path, study='nadamw/study_0', k=1):
  return tmp_path / study / 'mnist1d_jax' / f'trial_{k}'


def test_resume_of_a_default_named_run_continues_its_study(tmp_path, capsys):
  assert _run(tmp_path, '--max_global_steps=40') == 0
  trial = _trial(tmp_path)
  # As if the run had been killed before its end: no summary.
  (trial / 'trial_summary.json').unlink()
  capsys.readouterr()
  assert _run(tmp_path, '--max_global_steps=40', '--resume_last_run') == 0
  out = capsys.readouterr().out
  assert 'resuming from the checkpoint at step' in out
  assert sorted(p.name for p in (tmp_path / 'nadamw').iterdir()) == ['study_0']
  assert (trial / 'meta_data_1.json').exists()
  assert (trial / 'trial_summary.json').exists()
  # Finished: a resume skips it and still makes no new study.
  assert _run(tmp_path, '--max_global_steps=40', '--resume_last_run') == 0
  assert 'already finished' in capsys.readouterr().out
  assert sorted(p.name for p in (tmp_path / 'nadamw').iterdir()) == ['study_0']
  # A plain run adds the next study.
  assert _run(tmp_path, '--max_global_steps=2') == 0
  assert sorted(p.name for p in (tmp_path / 'nadamw').iterdir()) == ['study_0', 'study_1']


def test_a_run_that_fails_before_its_first_log_leaves_no_study(tmp_path, monkeypatch, capsys):
  def broken(self):
    raise experiment.ConfigError('the speed check failed (a test)')

  monkeypatch.setattr(experiment._SpeedFactor, 'get', broken)  # pylint: disable=protected-access
  assert cli.main(['run', '--workload=mnist1d', f'--experiment_dir={tmp_path}',
                   '--max_global_steps=2', '--noprogress']) == 2
  assert 'speed check failed' in capsys.readouterr().err
  assert not (tmp_path / 'nadamw').exists()
  monkeypatch.undo()
  assert _run(tmp_path, '--max_global_steps=2') == 0
  assert sorted(p.name for p in (tmp_path / 'nadamw').iterdir()) == ['study_0']


def test_empty_trial_folders_do_not_take_a_study_number(tmp_path):
  (tmp_path / 'nadamw' / 'study_0' / 'mnist1d_jax' / 'trial_1' / 'checkpoints').mkdir(parents=True)
  started = tmp_path / 'nadamw' / 'study_1' / 'mnist1d_jax' / 'trial_1'
  started.mkdir(parents=True)
  (started / 'meta_data_0.json').write_text('{}')
  options = experiment.RunOptions(workload='mnist1d', submission_path='x',
                                  experiment_dir=str(tmp_path))
  assert experiment._default_experiment_name(options, 'nadamw', [1]) == 'nadamw/study_0'  # pylint: disable=protected-access
  options.resume_last_run = True
  assert experiment._default_experiment_name(options, 'nadamw', [1]) == 'nadamw/study_1'  # pylint: disable=protected-access


def test_resuming_another_submissions_folder_is_refused_and_writes_nothing(tmp_path, capsys):
  assert _run(tmp_path, '--max_global_steps=2', '--experiment_name=shared') == 0
  trial = _trial(tmp_path, 'shared')
  before = sorted(p.name for p in trial.iterdir())
  capsys.readouterr()
  assert _run(tmp_path, '--max_global_steps=2', '--experiment_name=shared',
              '--submission_path=adamw', '--resume_last_run') == 2
  err = capsys.readouterr().err
  assert 'Cannot resume' in err and 'adamw' in err and 'Traceback' not in err
  assert sorted(p.name for p in trial.iterdir()) == before  # No flags_1, meta_data_1.


def test_resuming_with_another_search_space_is_refused(tmp_path, capsys):
  space = tmp_path / 'space.json'
  space.write_text(json.dumps([{'learning_rate': 0.01, 'one_minus_beta1': 0.1,
                                'beta2': 0.99, 'weight_decay': 0.0,
                                'warmup_factor': 0.05}]))
  assert _run(tmp_path, '--max_global_steps=2', '--experiment_name=e') == 0
  capsys.readouterr()
  assert _run(tmp_path, '--max_global_steps=2', '--experiment_name=e',
              f'--tuning_search_space={space}', '--resume_last_run') == 2
  assert 'search space' in capsys.readouterr().err


def test_no_compilation_cache_by_default_and_only_submission_folders(tmp_path):
  assert _run(tmp_path, '--max_global_steps=2') == 0
  assert [p.name for p in tmp_path.iterdir()] == ['nadamw']
  meta = json.loads((_trial(tmp_path) / 'meta_data_0.json').read_text())
  assert meta['compilation_cache_used'] is False
  assert meta['compilation_cache_dir'] is None
  assert meta['speed_factor'] == 1.0


def test_compilation_cache_on_request_lives_outside_the_experiment_dir(tmp_path):
  cache = tmp_path / 'cache'
  experiments = tmp_path / 'experiments'
  assert _run(experiments, '--max_global_steps=2', '--compilation_cache',
              f'--compilation_cache_dir={cache}') == 0
  assert any(cache.iterdir())
  assert [p.name for p in experiments.iterdir()] == ['nadamw']
  meta = json.loads((_trial(experiments) / 'meta_data_0.json').read_text())
  assert meta['compilation_cache_used'] is True
  assert meta['compilation_cache_dir'] == str(cache.resolve())


def test_compilation_cache_inside_the_experiment_dir_is_refused(tmp_path, capsys):
  assert _run(tmp_path, '--max_global_steps=2',
              f'--compilation_cache_dir={tmp_path / ".jax_cache"}') == 2
  assert 'inside --experiment_dir' in capsys.readouterr().err


def test_speed_factor_scales_small_budgets_and_is_recorded(tmp_path):
  assert _run(tmp_path, '--max_global_steps=2', '--speed_factor=2.5') == 0
  meta = json.loads((_trial(tmp_path) / 'meta_data_0.json').read_text())
  assert meta['speed_factor'] == 2.5
  assert meta['budget_sec'] == pytest.approx(2.5 * meta['workload.max_allowed_runtime_sec'])


def test_a_raising_submission_ends_its_trial_with_one_line_and_the_next_runs(tmp_path, capsys):
  sub = FIXTURES / 'raises_at_step_3'
  code = _run(tmp_path, f'--submission_path={sub}', '--num_tuning_trials=2',
              '--max_global_steps=10')
  err = capsys.readouterr().err
  assert code == 1
  lines = [l for l in err.splitlines() if 'failed at step' in l]
  assert len(lines) == 1, err
  assert lines[0].startswith('trial_1 failed at step 3: update_params raised '
                             'RuntimeError: a bug in the submission at step 3. Logs: ')
  assert str(tmp_path) in lines[0]
  # The submission's own frames are shown; the harness's are not.
  assert 'raises_at_step_3/submission.py' in err and '_check_step' in err
  assert 'algoperf/runner.py' not in err and 'algoperf/experiment.py' not in err
  first = _trial(tmp_path, 'raises_at_step_3/study_0', 1)
  second = _trial(tmp_path, 'raises_at_step_3/study_0', 2)
  assert (first / 'eval_measurements.csv').exists()
  assert not (first / 'trial_summary.json').exists()  # A resume retries it.
  summary = json.loads((second / 'trial_summary.json').read_text())
  assert summary['stop_reason'] == 'max_global_steps'


def test_a_diverging_trial_stops_at_its_first_non_finite_eval(tmp_path, capsys):
  assert _run(tmp_path, f'--submission_path={FIXTURES / "diverging"}') == 0
  err = capsys.readouterr().err
  assert 'training diverged' in err
  trial = _trial(tmp_path, 'diverging/study_0')
  summary = json.loads((trial / 'trial_summary.json').read_text())
  assert summary['stop_reason'] == 'diverged'
  assert 'is nan' in summary['message']
  # It stopped at the first eval after step 20, long before the budget.
  assert summary['global_step'] > 20
  assert summary['accumulated_submission_time'] < 11.0


@pytest.mark.slow
def test_a_hung_hook_ends_after_its_budget_and_the_next_trial_runs(tmp_path, capsys):
  # Budget 16 s, grace 2 s: each trial ends ~18 s in (step 0, compiled on
  # the clock, must fit in the budget even on a busy machine).
  code = cli.main(['run', '--workload=mnist1d', f'--experiment_dir={tmp_path}',
                   f'--submission_path={FIXTURES / "hung_hook"}',
                   '--num_tuning_trials=2', '--rng_seed=0', '--noprogress',
                   '--speed_factor=1'])
  assert code == 0
  err = capsys.readouterr().err
  for k in (1, 2):
    trial = _trial(tmp_path, 'hung_hook/study_0', k)
    summary = json.loads((trial / 'trial_summary.json').read_text())
    assert summary['stop_reason'] == 'budget'
    assert 'data_selection did not return' in summary['message']
    assert summary['global_step'] == 1
    budget = summary['budget_sec']
    assert budget <= summary['accumulated_submission_time'] < budget + 2.0 + 1.5
    assert (trial / 'eval_measurements.csv').exists()
  assert err.count('data_selection did not return') == 2


@pytest.mark.slow
def test_a_hook_stuck_in_native_code_ends_the_process_with_its_logs_kept(tmp_path):
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel

  repo = Path(__file__).resolve().parents[1]
  done = subprocess.run(
      [sys.executable, '-m', 'algoperf.cli', 'run', '--workload=mnist1d',
       f'--submission_path={FIXTURES / "stuck_in_native_code"}',
       f'--experiment_dir={tmp_path}', '--rng_seed=0', '--noprogress',
       '--speed_factor=1'],
      cwd=repo, capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 3, done.stdout + done.stderr
  assert 'update_params did not return' in done.stderr
  assert 'cannot be interrupted' in done.stderr
  trial = _trial(tmp_path, 'stuck_in_native_code/study_0')
  summary = json.loads((trial / 'trial_summary.json').read_text())
  assert summary['stop_reason'] == 'budget'
  assert (trial / 'eval_measurements.csv').exists()
