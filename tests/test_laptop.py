"""`algoperf reproduce mini`: the settings, the orchestration, and a real --quick run."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from algoperf import benchmarks, cli, laptop, sweep, tuning
from algoperf.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


# --- the settings ----------------------------------------------------------------


def test_quick_is_a_smaller_subset_of_full():
  full, quick = laptop.FULL, laptop.QUICK
  assert set(quick.submissions) <= set(full.submissions)
  assert set(quick.workloads) <= set(full.workloads)
  assert quick.num_studies <= full.num_studies
  assert quick.num_trials <= full.num_trials
  assert (full.num_runs, quick.num_runs) == (4 * 2 * 2 * 2, 4 * 1 * 1 * 2)
  assert laptop.SETTINGS == {'full': full, 'quick': quick}


def test_full_runs_the_small_benchmark_and_fits_the_time_it_promises():
  version = benchmarks.load(laptop.BENCHMARK)
  assert set(laptop.FULL.workloads) == set(version.base_workloads)
  assert {'nadamw', 'adamw', 'momentum', 'schedule_free_adamw'} <= set(
      laptop.FULL.submissions)
  # Upper bounds on the reference machine, every run using its whole budget.
  assert laptop.FULL.upper_bound_sec(version) <= 55 * 60
  assert laptop.QUICK.upper_bound_sec(version) <= 5 * 60


def test_every_setting_submission_is_bundled_with_a_search_space():
  for name in set(laptop.FULL.submissions) | set(laptop.QUICK.submissions):
    path = Path(laptop.resolve_submission(name))
    space = tuning.load_search_space(str(path.parent / 'tuning_search_space.json'))
    assert tuning.generate_points(space, laptop.FULL.num_trials, seed=0)


def test_scoring_version_restricts_the_small_rules_to_what_ran():
  quick = laptop.scoring_version(laptop.QUICK)
  assert quick.base_workloads == ('mnist1d',)
  assert (quick.external_num_studies, quick.external_num_trials) == (1, 2)
  assert 'mnist1d only' in quick.name
  full = laptop.scoring_version(laptop.FULL)
  small = benchmarks.load('small')
  assert full.name == 'small'
  assert (full.trial_rule, full.workloads) == (small.trial_rule, small.workloads)


def test_unknown_submission_is_a_config_error(tmp_path):
  with pytest.raises(ConfigError, match='algoperf list'):
    laptop.run_mini(quick=True, experiment_dir=str(tmp_path / 'exp'),
                    submissions=['no_such_submission'], out=io.StringIO())


def test_cli_refuses_flags_of_the_competition_targets(capsys):
  assert cli.main(['reproduce', 'mini', '--ruleset', 'self']) == 2
  assert 'external tuning' in capsys.readouterr().err


def test_planning_imports_no_jax():
  # The runs are subprocesses; the orchestrating process stays light.
  code = ('import sys; from algoperf import laptop, sweep; '
          'o = laptop._sweep_options(laptop.FULL, laptop.resolve_submission("nadamw"), '
          '"/tmp/x", 1, False); sweep.make_plan(sweep.settings(o), "/tmp/x"); '
          'print(sorted({m.split(".")[0] for m in sys.modules} & {"jax", "flax", "optax"}))')
  done = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                        text=True, check=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert done.stdout.strip() == '[]'


# --- orchestration, with the runs faked --------------------------------------------

# Seconds to target on mnist1d per submission, written as fake logs.
_FAKE_TIMES = {'nadamw': 4.0, 'adamw': 6.0, 'momentum': 2.0, 'schedule_free_adamw': 3.0}


def _fake_run_sweep(fail=()):
  """A run_sweep that writes one eval per planned trial instead of training."""

  def run_sweep(options, out=None):
    del out
    config = sweep.settings(options)
    runs = sweep.make_plan(config, options.experiment_dir)
    failed = []
    for run in runs:
      if (config['submission'], run.trial) in fail:
        failed.append(run)
        continue
      run.trial_dir.mkdir(parents=True, exist_ok=True)
      time_to_target = _FAKE_TIMES[config['submission']] + run.trial
      (run.trial_dir / 'eval_measurements.csv').write_text(
          'global_step,score,validation/accuracy\n'
          f'1,0.5,0.1\n100,{time_to_target},0.99\n')
    return sweep.SweepResult(total=len(runs), skipped=0, resumed=0, new=len(runs),
                             done=len(runs) - len(failed), failed=failed,
                             status_file=Path(options.experiment_dir) / 'none.json')

  return run_sweep


def test_scores_reports_and_plots_every_submission(tmp_path, monkeypatch):
  monkeypatch.setattr(laptop.sweep, 'run_sweep', _fake_run_sweep())
  exp, report = tmp_path / 'exp', tmp_path / 'report'
  # Another submission's logs in the same folder are not part of the mini run.
  stranger = exp / 'stranger' / 'study_0' / 'mnist1d_jax' / 'trial_1'
  stranger.mkdir(parents=True)
  (stranger / 'eval_measurements.csv').write_text(
      'global_step,score,validation/accuracy\n1,0.1,0.99\n')
  out = io.StringIO()
  code = laptop.run_mini(quick=True, experiment_dir=str(exp),
                         output_dir=str(report), out=out)
  assert code == 0, out.getvalue()
  summary = json.loads((report / laptop.SUMMARY_FILE).read_text())
  assert set(summary['profiles']) == set(_FAKE_TIMES)
  scores = summary['leaderboard']['scores']
  # Trial 1 is each study's fastest: momentum 3 s is best, adamw 7 s is 2.33x.
  assert scores['momentum'] == 1.0
  assert list(scores) == ['momentum', 'schedule_free_adamw', 'nadamw', 'adamw']
  assert summary['leaderboard']['time_to_target']['adamw'] == {'mnist1d': 7.0}
  assert summary['runs']['failed'] == [] and summary['runs']['total'] == 8
  assert (report / summary['plot']).stat().st_size > 0
  assert (report / 'report.md').is_file()
  text = out.getvalue()
  assert 'schedule_free_adamw' in text and '0 failed' in text


def test_a_failed_run_still_reports_but_exits_1(tmp_path, monkeypatch):
  monkeypatch.setattr(laptop.sweep, 'run_sweep', _fake_run_sweep(fail={('adamw', 2)}))
  out = io.StringIO()
  code = laptop.run_mini(quick=True, experiment_dir=str(tmp_path / 'exp'), out=out)
  assert code == 1
  report = Path(laptop.default_output_dir(str(tmp_path / 'exp')))
  summary = json.loads((report / laptop.SUMMARY_FILE).read_text())
  assert len(summary['runs']['failed']) == 1
  assert 'adamw' in summary['runs']['failed'][0]
  assert set(summary['profiles']) == set(_FAKE_TIMES)
  assert 'error: run failed: adamw mnist1d study_0 trial_2' in out.getvalue()


# --- the real thing ---------------------------------------------------------------


def _reproduce_mini(exp: Path, report: Path) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run(
      [sys.executable, '-m', 'algoperf.cli', 'reproduce', 'mini', '--quick',
       f'--experiment_dir={exp}', f'--output_dir={report}', '--noprogress'],
      env=env, capture_output=True, text=True, check=False, timeout=600)


@pytest.mark.slow
def test_reproduce_mini_quick_trains_scores_and_plots(tmp_path):
  exp, report = tmp_path / 'exp', tmp_path / 'report'
  proc = _reproduce_mini(exp, report)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  summary = json.loads((report / laptop.SUMMARY_FILE).read_text())
  names = set(laptop.QUICK.submissions)
  assert summary['runs']['total'] == laptop.QUICK.num_runs
  assert summary['runs']['done'] == laptop.QUICK.num_runs
  assert summary['runs']['failed'] == []
  # One curve per submission in the plot, and a score for each.
  assert set(summary['profiles']) == names
  assert all(len(p) == len(summary['taus']) for p in summary['profiles'].values())
  scores = summary['leaderboard']['scores']
  assert set(scores) == names and all(0.0 <= s <= 1.0 for s in scores.values())
  # mnist1d's target is reachable in its budget: someone is the fastest.
  assert max(scores.values()) == 1.0
  assert (report / 'performance_profiles.png').stat().st_size > 0
  scores_csv = (report / 'scores.csv').read_text().splitlines()
  assert len(scores_csv) == 1 + len(names)
  for name in names:
    assert name in proc.stdout
  # The logs are the cache: a second call runs nothing and scores the same.
  again = _reproduce_mini(exp, report)
  assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
  second = json.loads((report / laptop.SUMMARY_FILE).read_text())
  assert second['runs']['skipped_finished'] == laptop.QUICK.num_runs
  assert second['leaderboard']['scores'] == scores
