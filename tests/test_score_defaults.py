"""`algoperf score` defaults from the logs: version, rulesets, discovery, meta-data checks.

Hand-made trial folders (CSV and meta_data_0.json), no training. mnist1d's
target is validation/accuracy >= 0.97 within MNIST1D_BUDGET seconds (small
benchmark; x 1.5 under self-tuning); the times below are set relative to it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Optional, Sequence, Tuple

import pytest

from algoperf import benchmarks, cli
from scoring import command, extract, leaderboard, loading, rules

REPO = Path(__file__).resolve().parents[1]
MNIST1D_BUDGET = benchmarks.load('small').workload('mnist1d').max_allowed_runtime_sec
SELF_MULTIPLIER = benchmarks.load('small').self_budget_multiplier
# Past the external budget, within the self-tuning one.
SELF_HIT = MNIST1D_BUDGET * 1.25

# (global_step, score, validation accuracy)
Rows = Sequence[Tuple[int, float, float]]


def reach_at(seconds: float) -> Rows:
  """Evals that first meet mnist1d's target at ``seconds`` (raw clock)."""
  return [(1, 0.5, 0.1), (50, seconds / 2, 0.9), (100, seconds, 0.98)]


def trial(root: Path, rel: str, rows: Rows = None, *, workload: str = 'mnist1d',
          metric: str = 'validation/accuracy', meta: Optional[dict] = None,
          meta_text: Optional[str] = None) -> Path:
  """Writes ``root/rel/<workload>_jax/trial_1`` (rel: '<submission>/study_<n>', or
  a path ending in trial_<k>) with an eval CSV and, if given, meta data."""
  folder = root / rel
  if not folder.name.startswith('trial_'):
    folder = folder / f'{workload}_jax' / 'trial_1'
  folder.mkdir(parents=True)
  rows = reach_at(5.0) if rows is None else rows
  (folder / 'eval_measurements.csv').write_text(
      f'global_step,score,{metric}\n'
      + ''.join(f'{s},{t!r},{v!r}\n' for s, t, v in rows))
  if meta is not None:
    (folder / 'meta_data_0.json').write_text(json.dumps(meta))
  if meta_text is not None:
    (folder / 'meta_data_0.json').write_text(meta_text)
  return folder


def meta(benchmark: str = 'small', ruleset: str = 'external', **more) -> dict:
  """What our runner writes (the keys scoring reads, and a few it does not)."""
  return {'benchmark': benchmark, 'tuning_ruleset': ruleset,
          'budget_sec': MNIST1D_BUDGET,
          'hostname': 'laptop', 'rng_seed': 0, **more}


def score(capsys, *args: str) -> Tuple[int, str, str]:
  rc = cli.main(['score', *map(str, args)])
  captured = capsys.readouterr()
  return rc, captured.out, captured.err


def error_line(err: str) -> str:
  lines = err.strip().splitlines()
  assert lines[-1].startswith('algoperf score: error: '), err
  return lines[-1]


# --- 1. The benchmark version ------------------------------------------------


def test_version_is_inferred_from_meta_data(tmp_path, capsys):
  trial(tmp_path, 'nadamw/study_0', meta=meta('small'))
  out_json = tmp_path / 'out.json'
  rc, out, err = score(capsys, tmp_path, '--json', out_json)
  assert rc == 0, err
  assert out.splitlines()[0] == "benchmark small (from the logs' meta_data)"
  data = json.loads(out_json.read_text())
  # Fastest on mnist1d, no fashion_mnist logs: half the base workloads.
  assert data['benchmark'] == 'small' and data['scores'] == {'nadamw': 0.5}
  assert err == ''


def test_version_is_inferred_from_small_workload_folders_without_meta(tmp_path, capsys):
  trial(tmp_path, 'nadamw/study_0')
  trial(tmp_path, 'nadamw/study_0', workload='fashion_mnist')
  rc, out, _ = score(capsys, tmp_path)
  assert rc == 0
  assert out.splitlines()[0] == 'benchmark small (from the workload folder names)'
  assert 'Benchmark small, external tuning ruleset: 1 submission, 2 trials' in out


def test_a_small_run_made_under_the_default_v06_is_scored_as_small(tmp_path, capsys):
  # `algoperf run --workload mnist1d` without --benchmark records v0.6, which
  # scores no small workload: the folder names decide, and the line says so.
  trial(tmp_path, 'nadamw/study_0', meta=meta('v0.6'))
  rc, out, _ = score(capsys, tmp_path)
  assert rc == 0
  assert out.splitlines()[0] == (
      'benchmark small (from the workload folder names; the meta_data name '
      'v0.6, which scores none of them)')
  assert '1 submission, 1 trial scored' in out


def test_several_versions_in_the_meta_data_are_an_error(tmp_path, capsys):
  trial(tmp_path, 'nadamw/study_0', meta=meta('small'))
  trial(tmp_path, 'nadamw/study_1', [(1, 10.0, 0.2)], workload='criteo1tb',
        metric='validation/loss', meta=meta('v0.6'))
  rc, _, err = score(capsys, tmp_path)
  assert rc == 2
  line = error_line(err)
  assert 'small (1 trial)' in line and 'v0.6 (1 trial)' in line
  assert '`--benchmark small` or `--benchmark v0.6`' in line
  # An explicit version settles it.
  rc, out, _ = score(capsys, tmp_path, '--benchmark', 'small')
  assert rc == 0 and not out.startswith('benchmark ')


def test_algoperf_workloads_without_meta_data_need_benchmark(tmp_path, capsys):
  trial(tmp_path, 'adamw/study_0', [(1, 10.0, 0.2)], workload='criteo1tb',
        metric='validation/loss')
  rc, _, err = score(capsys, tmp_path)
  assert rc == 2
  line = error_line(err)
  assert len(err.strip().splitlines()) == 1
  assert 'criteo1tb' in line
  assert 'pass `--benchmark v0.5` or `--benchmark v0.6`' in line
  rc, out, _ = score(capsys, tmp_path, '--benchmark', 'v0.6')
  assert rc == 0 and 'Benchmark v0.6' in out


def test_an_explicit_version_that_scores_nothing_found_is_an_error(tmp_path, capsys):
  trial(tmp_path, 'nadamw/study_0')
  rc, _, err = score(capsys, tmp_path, '--benchmark', 'v0.6')
  assert rc == 2
  line = error_line(err)
  assert 'v0.6 scores none of the workloads found (mnist1d)' in line
  assert 'pass `--benchmark small`' in line


def test_benchmark_help_lists_every_version():
  parser = argparse.ArgumentParser()
  sub = parser.add_subparsers()
  help_text = command.add_parser(sub).format_help()
  for version in benchmarks.available_versions():
    assert version in help_text
  assert 'auto' in help_text


# --- 2. Missing, empty or unrelated folders -----------------------------------


def test_missing_folder_is_a_user_error(tmp_path, capsys):
  rc, _, err = score(capsys, tmp_path / 'nope')
  assert rc == 2
  line = error_line(err)
  assert 'no such folder' in line
  assert '<submission>/study_<n>/<workload>_<jax|pytorch>/trial_<k>' in line


def test_empty_folder_is_a_user_error(tmp_path, capsys):
  rc, out, err = score(capsys, tmp_path)
  assert rc == 2 and out == ''
  line = error_line(err)
  assert 'no trial logs found' in line and 'study_<n>' in line


def test_unrelated_folder_warns_then_fails(tmp_path, capsys):
  (tmp_path / 'photos' / '2024').mkdir(parents=True)
  (tmp_path / 'notes.txt').write_text('hello')
  rc, _, err = score(capsys, tmp_path)
  assert rc == 2
  # The warnings about what was found come first, as for any folder.
  assert f'warning: {tmp_path / "photos"}: no study_<n> folders' in err
  assert 'no trial logs found' in error_line(err)


def test_folder_one_level_too_deep_gets_a_hint(tmp_path, capsys):
  trial(tmp_path, 'nadamw/study_0')
  rc, _, err = score(capsys, tmp_path / 'nadamw')
  assert rc == 2
  assert 'a study folder where a submission folder is expected' in err
  assert 'pass its parent folder' in error_line(err)


def test_experiment_name_without_study_folder_gets_a_hint(tmp_path):
  trial(tmp_path, 'nadamw/study_0')
  trial(tmp_path, 'my_run/mnist1d_jax/trial_1')
  result = loading.load_logs(tmp_path, benchmarks.load('small'))
  assert result.warnings == [
      f'{tmp_path / "my_run"}: holds <workload>_<jax|pytorch> folders but no '
      'study_<n> folders; move them into a study_0 folder (an --experiment_name '
      'should end in /study_<n>); left out.']


# --- 3. Submission folders at any depth --------------------------------------


def test_nested_experiment_names_are_found_and_named_by_path(tmp_path, capsys):
  trial(tmp_path, 'x/y/study_0', reach_at(4.0))
  trial(tmp_path, 'my_sweep/nadamw/study_0', reach_at(8.0))
  trial(tmp_path, 'nadamw/study_0', reach_at(6.0))
  (tmp_path / 'x' / 'README.md').write_text('files on the way are fine')
  (tmp_path / '.cache' / 'a' / 'study_0').mkdir(parents=True)  # dot-folders skipped
  out_json = tmp_path / 'out.json'
  rc, out, err = score(capsys, tmp_path, '--json', out_json)
  assert rc == 0
  assert err == ''  # no warning for the plain folders x and my_sweep
  data = json.loads(out_json.read_text())
  assert data['time_to_target'] == {
      'x/y': {'fashion_mnist': None, 'mnist1d': 4.0},
      'nadamw': {'fashion_mnist': None, 'mnist1d': 6.0},
      'my_sweep/nadamw': {'fashion_mnist': None, 'mnist1d': 8.0}}
  assert 'x/y' in out and 'my_sweep/nadamw' in out


def test_a_branch_leading_nowhere_warns_once_at_its_top(tmp_path):
  trial(tmp_path, 'x/y/study_0')
  (tmp_path / 'x' / 'junk' / 'deeper' / 'still').mkdir(parents=True)
  (tmp_path / 'gamma' / 'notes').mkdir(parents=True)
  result = loading.load_logs(tmp_path, benchmarks.load('small'))
  assert result.submissions == ['x/y']
  assert sorted(result.warnings) == [
      f'{tmp_path / "gamma"}: no study_<n> folders; not a submission folder, left out.',
      f'{tmp_path / "x/junk"}: no study_<n> folders; not a submission folder, left out.']
  assert [t.submission for t in result.trials] == ['x/y']


def test_nested_submissions_inside_a_log_extract(tmp_path):
  csv_text = 'global_step,score,validation/accuracy\n1,0.5,0.1\n100,5.0,0.98\n'
  files = {'logs/x/y/study_0/mnist1d_jax/trial_1/eval_measurements.csv': csv_text,
           'logs/nadamw/study_0/mnist1d_jax/trial_1/eval_measurements.csv': csv_text}
  xz = tmp_path / 'logs.json.xz'
  extract.write(xz, files, {'note': 'test'})
  result = loading.load_logs(xz / 'logs', benchmarks.load('small'))
  assert result.warnings == []
  assert result.submissions == ['nadamw', 'x/y']
  assert all(t.meta is None for t in result.trials)
  board = leaderboard.score_logs(xz / 'logs', 'small', 'external')
  assert board.submissions == ['nadamw', 'x/y']


def test_exclude_leaves_out_the_submissions_below_a_name(tmp_path, capsys):
  trial(tmp_path, 'x/y/study_0')
  trial(tmp_path, 'x/z/study_0')
  trial(tmp_path, 'nadamw/study_0')
  board = leaderboard.score_logs(tmp_path, 'small', 'external', exclude=['x'])
  assert board.submissions == ['nadamw']
  board = leaderboard.score_logs(tmp_path, 'small', 'external', exclude=['x/y'])
  assert board.submissions == ['nadamw', 'x/z']


def test_excluding_every_submission_is_a_user_error(tmp_path, capsys):
  trial(tmp_path, 'x/y/study_0')
  rc, _, err = score(capsys, tmp_path, '--exclude', 'x')
  assert rc == 2 and '--exclude leaves out every submission' in error_line(err)


# --- 4. Rulesets ---------------------------------------------------------------


def quick_tour(root: Path) -> None:
  """The README's quick tour: external nadamw, and nadamw_self_tuning under self.

  The self-tuning run reaches the target at 1.25 x the external budget: a
  miss under the external budget, a hit under the self-tuning one (x 1.5).
  """
  trial(root, 'nadamw/study_0', reach_at(5.0), meta=meta('v0.6', 'external'))
  trial(root, 'momentum/study_0', reach_at(7.0), meta=meta('v0.6', 'external'))
  trial(root, 'nadamw_self_tuning/study_0', reach_at(SELF_HIT),
        meta=meta('v0.6', 'self'))


def test_auto_ruleset_scores_each_ruleset_as_its_own_leaderboard(tmp_path, capsys):
  quick_tour(tmp_path)
  out_json, out_dir = tmp_path / 'out.json', tmp_path / 'report'
  rc, out, err = score(capsys, tmp_path, '--json', out_json, '--output_dir', out_dir)
  assert rc == 0, err
  assert err == ''
  external = out.index('External tuning ruleset')
  self_ = out.index('Self tuning ruleset')
  assert external < self_
  assert 'Benchmark small, external tuning ruleset: 2 submissions, 2 trials' in out
  assert 'Benchmark small, self tuning ruleset: 1 submission, 1 trial' in out
  data = json.loads(out_json.read_text())
  assert list(data) == ['external', 'self']
  # momentum's ratio 1.4 gets credit from tau 1.4 on (on the 100-point grid).
  assert data['external']['scores'] == {
      'nadamw': 0.5, 'momentum': pytest.approx(0.5 * (4 - 1.4) / 3, abs=0.005)}
  assert data['self']['ruleset'] == 'self'
  assert data['self']['scores'] == {'nadamw_self_tuning': 0.5}
  assert data['self']['time_to_target']['nadamw_self_tuning']['mnist1d'] == SELF_HIT
  assert data['self']['budgets']['mnist1d'] == MNIST1D_BUDGET * SELF_MULTIPLIER
  for ruleset in ('external', 'self'):
    folder = out_dir / f'{ruleset}_tuning'
    assert (folder / 'scores.csv').is_file() and (folder / 'report.md').is_file()
  assert not (out_dir / 'scores.csv').exists()


def test_one_ruleset_gives_todays_outputs(tmp_path, capsys):
  trial(tmp_path, 'nadamw/study_0', meta=meta('small', 'self'))
  out_json, out_dir = tmp_path / 'out.json', tmp_path / 'report'
  rc, out, _ = score(capsys, tmp_path, '--json', out_json, '--output_dir', out_dir)
  assert rc == 0
  assert '=====' not in out
  data = json.loads(out_json.read_text())
  assert data['ruleset'] == 'self' and 'scores' in data
  assert (out_dir / 'scores.csv').is_file() and not (out_dir / 'self_tuning').exists()


def test_explicit_ruleset_scores_everyone_under_it_and_warns(tmp_path, capsys):
  quick_tour(tmp_path)
  out_json = tmp_path / 'out.json'
  rc, out, err = score(capsys, tmp_path, '--ruleset', 'external', '--json', out_json)
  assert rc == 0
  warnings = err.strip().splitlines()
  assert len(warnings) == 1
  assert warnings[0].startswith('warning: nadamw_self_tuning: its trials\' '
                                'meta_data say self tuning')
  assert '--ruleset external' in warnings[0]
  data = json.loads(out_json.read_text())
  assert data['ruleset'] == 'external'
  assert set(data['scores']) == {'nadamw', 'momentum', 'nadamw_self_tuning'}
  # SELF_HIT is past the external budget: a miss.
  assert data['time_to_target']['nadamw_self_tuning']['mnist1d'] == 'inf'
  assert data['scores']['nadamw_self_tuning'] == 0.0


def test_score_logs_keeps_its_signature_and_one_board(tmp_path):
  quick_tour(tmp_path)
  board = leaderboard.score_logs(tmp_path, 'small', 'self')
  assert board.ruleset == 'self'
  assert board.submissions == ['momentum', 'nadamw', 'nadamw_self_tuning']
  assert len(board.warnings) == 2  # the two external submissions
  assert all('say external tuning' in w for w in board.warnings)


def test_a_submission_with_both_rulesets_in_its_meta_data_warns(tmp_path, capsys):
  trial(tmp_path, 'mixed/study_0', meta=meta('small', 'self'))
  trial(tmp_path, 'mixed/study_1', meta=meta('small', 'self'))
  trial(tmp_path, 'mixed/study_2', meta=meta('small', 'external'))
  rc, out, err = score(capsys, tmp_path)
  assert rc == 0
  assert 'self tuning ruleset: 1 submission, 3 trials' in out
  assert 'mixed: its trials\' meta_data say external tuning (1 trial) and self ' \
         'tuning (2 trials); scored under self tuning' in err


def test_warnings_go_to_the_leaderboard_of_their_submission(tmp_path, capsys):
  quick_tour(tmp_path)
  (tmp_path / 'nadamw_self_tuning' / 'notes').mkdir()
  scoring = leaderboard.score_root(tmp_path)
  assert [len(b.warnings) for b in scoring.boards.values()] == [0, 1]
  assert len(scoring.warnings) == 1 and 'notes' in scoring.warnings[0]


def test_strict_counts_each_submission_under_its_own_ruleset(tmp_path, capsys):
  quick_tour(tmp_path)
  rc, _, err = score(capsys, tmp_path, '--strict')
  assert rc == 2
  # small: external tuning 3 studies of 5 trials, self-tuning 3 studies of 1.
  assert 'nadamw/mnist1d: 1 study with logs, expected 3 (external tuning, small)' in err
  assert ('nadamw_self_tuning/mnist1d: 1 study with logs, expected 3 (self '
          'tuning, small)') in err
  assert 'nadamw_self_tuning/study_0/mnist1d' not in err  # 1 trial is right


def test_baseline_applies_to_its_own_rulesets_leaderboard(tmp_path, capsys):
  quick_tour(tmp_path)
  out_json = tmp_path / 'out.json'
  rc, out, _ = score(capsys, tmp_path, '--baseline', 'nadamw', '--json', out_json)
  assert rc == 0
  data = json.loads(out_json.read_text())
  assert data['external']['speedups'] == {
      'nadamw': 1.0, 'momentum': pytest.approx(1.4 ** 0.5)}  # fashion_mnist: both miss
  assert data['self']['speedups'] is None
  rc, _, err = score(capsys, tmp_path, '--baseline', 'nobody')
  assert rc == 2 and "Unknown baseline 'nobody'" in error_line(err)


def test_score_root_rejects_an_unknown_ruleset(tmp_path):
  trial(tmp_path, 'nadamw/study_0')
  with pytest.raises(ValueError, match='ruleset must be'):
    leaderboard.score_root(tmp_path, ruleset='internal')
  assert list(leaderboard.score_root(tmp_path, ruleset='auto').boards) == ['external']


# --- 5. Compilation cache -----------------------------------------------------


def test_mixed_compilation_cache_warns_once_with_counts(tmp_path, capsys):
  trial(tmp_path, 'a/study_0', meta=meta(compilation_cache_used=True,
                                         compilation_cache_dir='/tmp/cache'))
  trial(tmp_path, 'a/study_1', meta=meta(compilation_cache_used=True,
                                         compilation_cache_dir='/tmp/cache'))
  trial(tmp_path, 'b/study_0', meta=meta(compilation_cache_used=False,
                                         compilation_cache_dir=None))
  trial(tmp_path, 'c/study_0', meta=meta())  # older logs: not counted
  trial(tmp_path, 'd/study_0')  # no meta data at all: not counted
  rc, _, err = score(capsys, tmp_path)
  assert rc == 0
  lines = err.strip().splitlines()
  assert len(lines) == 1
  assert lines[0].startswith('warning: 2 scored trials ran with JAX\'s persistent '
                             'compilation cache on and 1 with it off')


def test_same_compilation_cache_setting_is_quiet(tmp_path, capsys):
  trial(tmp_path, 'a/study_0', meta=meta(compilation_cache_used=False))
  trial(tmp_path, 'b/study_0', meta=meta(compilation_cache_used=False))
  trial(tmp_path, 'c/study_0', meta=meta())
  rc, _, err = score(capsys, tmp_path)
  assert rc == 0 and err == ''


# --- 6. Speed factor -----------------------------------------------------------


def test_speed_factor_rescales_times_to_the_nominal_budget(tmp_path, capsys):
  # Both reached the target at 1.25 x the budget on their own clocks. The
  # slow machine (factor 2.0, twice the budget) took 0.625 x the budget in
  # reference seconds; the other is past the nominal budget: a miss.
  raw = 1.25 * MNIST1D_BUDGET
  trial(tmp_path, 'slow_machine/study_0', reach_at(raw),
        meta=meta(speed_factor=2.0, budget_sec=2.0 * MNIST1D_BUDGET))
  trial(tmp_path, 'reference/study_0', reach_at(raw), meta=meta(speed_factor=1.0))
  out_dir = tmp_path / 'report'
  rc, out, err = score(capsys, tmp_path, '--output_dir', out_dir)
  assert rc == 0
  board = leaderboard.score_logs(tmp_path, 'small', 'external')
  assert board.time_to_target['slow_machine']['mnist1d'] == raw / 2
  assert board.time_to_target['reference']['mnist1d'] == math.inf
  assert board.scores == {'slow_machine': 0.5, 'reference': 0.0}
  assert board.speed_factor_range == (1.0, 2.0)
  # Every report says the times were rescaled.
  assert "divided by its meta_data speed_factor (1.0 to 2.0)" in out
  assert 'speed_factor' in (out_dir / 'report.md').read_text()
  header, *rows = (out_dir / 'time_to_target.csv').read_text().splitlines()
  assert header.endswith(',speed_factor_min,speed_factor_max')
  assert (f'slow_machine,mnist1d,{raw / 2!r},0.62,{raw / 2!r},'
          f'{MNIST1D_BUDGET!r},2.0,2.0') in rows
  # 2.0 / 1.0 is more than 1.5x apart.
  assert 'range from 1.0 to 2.0 (2.00x apart, more than 1.5x)' in err


def test_speed_factor_of_one_or_absent_changes_nothing(tmp_path, capsys):
  trial(tmp_path, 'a/study_0', reach_at(12.0), meta=meta(speed_factor=None))
  trial(tmp_path, 'b/study_0', reach_at(10.0), meta=meta())
  out_dir = tmp_path / 'report'
  rc, out, err = score(capsys, tmp_path, '--output_dir', out_dir)
  assert rc == 0 and err == ''
  assert 'divided by' not in out
  assert 'speed_factor' not in (out_dir / 'time_to_target.csv').read_text()
  assert 'divided by' not in (out_dir / 'report.md').read_text()


def test_close_speed_factors_do_not_warn(tmp_path, capsys):
  trial(tmp_path, 'a/study_0', reach_at(12.0), meta=meta(speed_factor=1.2))
  trial(tmp_path, 'b/study_0', reach_at(10.0), meta=meta(speed_factor=1.7))
  rc, out, err = score(capsys, tmp_path)
  assert rc == 0 and err == ''
  assert '(1.2 to 1.7)' in out


def test_speed_factor_does_not_apply_to_steps(tmp_path, capsys):
  trial(tmp_path, 'a/study_0', reach_at(12.0), meta=meta(speed_factor=2.0))
  trial(tmp_path, 'b/study_0', reach_at(12.0), meta=meta(speed_factor=1.0))
  board = leaderboard.score_logs(tmp_path, 'small', 'external',
                                 time_column='global_step')
  assert board.time_to_target['a']['mnist1d'] == 100.0
  assert board.speed_factor_range is None and board.warnings == []


def two_machine_study(root: Path) -> None:
  """nadamw on mnist1d (budget 16 s) from machines of speed factors 2.0, 1.25, 1.0.

  Raw times are each CSV's ``score``; scaled = raw / factor; each trial's own
  budget is 16 s x its factor.

  study trial factor hits at (eval index, raw s)  scaled s  unscaled s
  0     1     2.0    (2, 20.0)                    10.0      20.0 (< 32 s: a hit)
  0     2     1.25   (3, 15.0)                    12.0      15.0
  1     1     1.25   (2, 10.0)                     8.0      10.0
  1     2     1.0    (2, 17.0)                    inf       inf (> 16 s both ways)
  """
  def rows(hit_index: int, seconds: float) -> Rows:
    return ([(1, 0.5, 0.1)] + [(50 * i, seconds * i / hit_index, 0.9)
                               for i in range(1, hit_index)]
            + [(50 * hit_index, seconds, 0.98)])

  for rel, hit_index, seconds, factor in [
      ('study_0/mnist1d_jax/trial_1', 2, 20.0, 2.0),
      ('study_0/mnist1d_jax/trial_2', 3, 15.0, 1.25),
      ('study_1/mnist1d_jax/trial_1', 2, 10.0, 1.25),
      ('study_1/mnist1d_jax/trial_2', 2, 17.0, 1.0)]:
    trial(root, f'nadamw/{rel}', rows(hit_index, seconds),
          meta=meta(speed_factor=factor, budget_sec=factor * MNIST1D_BUDGET))


def test_nospeed_rescale_scores_the_logged_seconds(tmp_path, capsys):
  assert MNIST1D_BUDGET == 16.0  # the table in two_machine_study
  logs = tmp_path / 'logs'
  two_machine_study(logs)
  by_time = {}
  for rescale in (True, False):
    board = leaderboard.score_logs(logs, 'small', 'external',
                                   speed_rescale=rescale)
    by_time[rescale] = board
    assert board.speed_factor_range == (1.0, 2.0)
    assert board.trial_times['nadamw']['mnist1d'][1]['trial_2'] == math.inf
  scaled, unscaled = by_time[True], by_time[False]
  assert scaled.trial_times['nadamw']['mnist1d'] == {
      0: {'trial_1': 10.0, 'trial_2': 12.0}, 1: {'trial_1': 8.0, 'trial_2': math.inf}}
  assert unscaled.trial_times['nadamw']['mnist1d'] == {
      0: {'trial_1': 20.0, 'trial_2': 15.0}, 1: {'trial_1': 10.0, 'trial_2': math.inf}}
  # small's rule, the smallest time: study 0 is trial_1 scaled, trial_2 unscaled.
  assert scaled.study_times['nadamw']['mnist1d'] == {0: 10.0, 1: 8.0}
  assert unscaled.study_times['nadamw']['mnist1d'] == {0: 15.0, 1: 10.0}
  assert scaled.time_to_target['nadamw']['mnist1d'] == 9.0
  assert unscaled.time_to_target['nadamw']['mnist1d'] == 12.5
  assert scaled.rule_differences == []
  assert [(d.by_eval_index, d.by_time) for d in unscaled.rule_differences] == [
      ('trial_1', 'trial_2')]
  # The smallest eval index (the reference scorer's rule): trial_1 either way.
  by_index = leaderboard.score_logs(logs, 'small', 'external',
                                    trial_rule=rules.SMALLEST_EVAL_INDEX,
                                    speed_rescale=False)
  assert by_index.study_times['nadamw']['mnist1d'] == {0: 20.0, 1: 10.0}
  assert by_index.time_to_target['nadamw']['mnist1d'] == 15.0

  # The command line: both spellings, the note, no fractions, the warning.
  out_dir, out_json = tmp_path / 'report', tmp_path / 'out.json'
  rc, out, err = score(capsys, logs, '--trial_rule', 'eval_index',
                       '--nospeed_rescale', '--output_dir', out_dir,
                       '--json', out_json)
  assert rc == 0
  assert score(capsys, logs, '--trial_rule', 'eval_index',
               '--speed_rescale=false')[1] == out.split('Wrote')[0]
  assert ('Times are unscaled (--nospeed_rescale): the seconds each trial '
          'logged on its own machine, not divided by its meta_data '
          'speed_factor (1.0 to 2.0)') in out
  assert 'Time to target per workload (median over studies), s, unscaled:' in out
  row = out.split('Time to target per workload')[1].splitlines()[3]
  assert row.split() == ['nadamw', 'missing', '15.0']  # no fraction of the budget
  assert ('range from 1.0 to 2.0 (2.00x apart, more than 1.5x): the times are '
          'unscaled (--nospeed_rescale)') in err
  data = json.loads(out_json.read_text())
  assert data['speed_rescale'] is False and data['speed_factor_range'] == [1.0, 2.0]
  assert data['time_to_target'] == {'nadamw': {'mnist1d': 15.0, 'fashion_mnist': None}}
  header, *csv_rows = (out_dir / 'time_to_target.csv').read_text().splitlines()
  assert header.endswith(',speed_factor_min,speed_factor_max')
  assert f'nadamw,mnist1d,15.0,,15.0,{MNIST1D_BUDGET!r},1.0,2.0' in csv_rows
  assert 'fraction of the workload' not in (out_dir / 'report.md').read_text()
  # The default is unchanged: rescaled, with fractions of the budget.
  rc, out, err = score(capsys, logs, '--trial_rule', 'eval_index')
  row = out.split('Time to target per workload')[1].splitlines()[3]
  assert row.split() == ['nadamw', 'missing', '9.0', '(0.56)']  # 9.0 / 16 s
  assert 'each trial\'s times were divided by its factor' in err


def test_bad_meta_data_is_one_warning_and_the_trial_is_kept(tmp_path, capsys):
  trial(tmp_path, 'a/study_0', meta_text='{"benchmark": "small", ')
  trial(tmp_path, 'b/study_0', meta=meta(speed_factor=-3, tuning_ruleset='team'))
  board = leaderboard.score_logs(tmp_path, 'small', 'external')
  assert board.submissions == ['a', 'b']
  assert len(board.warnings) == 2
  bad_json, bad_facts = board.warnings
  assert 'a/study_0/mnist1d_jax/trial_1/meta_data_0.json: not valid JSON' in bad_json
  assert "tuning_ruleset is 'team'" in bad_facts and 'speed_factor is -3' in bad_facts


# --- Speed: meta data is looked for only in our own logs ---------------------


def test_meta_data_is_probed_only_a_few_times_in_other_tools_logs(tmp_path, monkeypatch):
  for study in range(3):
    for k in range(1, 5):
      trial(tmp_path, f'reference/study_{study}/mnist1d_jax/trial_{k}')
      trial(tmp_path, f'ours/study_{study}/mnist1d_jax/trial_{k}',
            meta=meta(speed_factor=2.0) if (study, k) != (0, 1) else None)
  opened = []
  real = loading.read_meta
  monkeypatch.setattr(loading, 'read_meta',
                      lambda folder: opened.append(folder) or real(folder))
  found = loading.discover(tmp_path)
  assert sum('reference' in f for f in opened) == loading._MetaProbe.MISSES
  assert sum('ours' in f for f in opened) == 12  # every trial, once one had meta data
  ours = [t for t in found.trials if t.submission == 'ours']
  assert sum(t.meta is not None for t in ours) == 11


# --- 7. No pointers to files that are not in the repository -------------------


def test_scoring_points_at_the_repository_docs():
  for path in sorted((REPO / 'scoring').glob('*.py')):
    text = path.read_text()
    assert 'BENCHMARK.md' not in text, path
    assert '../shared' not in text and 'shared/competition' not in text, path
