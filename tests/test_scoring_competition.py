"""Scoring the first competition's real logs reproduces the published v0.5 leaderboard."""

import dataclasses
import json
from pathlib import Path

import pytest

from algoperf import benchmarks, cli
from scoring import published
from scoring.leaderboard import score_logs

COMPETITION = Path(__file__).resolve().parents[2] / 'shared' / 'competition'
needs_logs = pytest.mark.skipif(
    not (COMPETITION / 'external_tuning').is_dir(),
    reason=f'the competition logs are not at {COMPETITION} (shared/ beside the checkout)')

# The published v0.5 leaderboard (scoring/data/published_v0.5.json).
PUBLISHED = published.load('v0.5').scores


@needs_logs
@pytest.mark.parametrize('ruleset', ['external', 'self'])
def test_published_v05_scores_to_4_decimals(ruleset):
  board = score_logs(COMPETITION / f'{ruleset}_tuning', 'v0.5', ruleset)
  assert set(board.scores) == set(PUBLISHED[ruleset])
  got = {s: round(v, 4) for s, v in board.scores.items()}
  assert got == PUBLISHED[ruleset]


@needs_logs
def test_v06_trial_rule_changes_lawa_ema_as_documented():
  # docs/RULES.md, Scoring rules: under the v0.6 (smallest time) trial rule,
  # LAWA EMA would read 0.3434 instead of 0.3384. Same workloads and budgets;
  # only the rule that picks a study's trial differs.
  v05 = benchmarks.load('v0.5')
  assert v05.trial_rule == 'smallest_eval_index'
  by_time = dataclasses.replace(v05, trial_rule='smallest_time')
  board = score_logs(COMPETITION / 'external_tuning', by_time, 'external')
  assert round(board.scores['lawa_ema'], 4) == 0.3434


@needs_logs
def test_cli_writes_json_and_report(tmp_path, capsys):
  out_json = tmp_path / 'out.json'
  rc = cli.main(['score', str(COMPETITION / 'self_tuning'), '--benchmark', 'v0.5',
                 '--ruleset', 'self', '--json', str(out_json),
                 '--output_dir', str(tmp_path / 'report'), '--baseline', 'baseline'])
  assert rc == 0
  data = json.loads(out_json.read_text())
  assert data['benchmark'] == 'v0.5' and data['ruleset'] == 'self'
  assert {s: round(v, 4) for s, v in data['scores'].items()} == PUBLISHED['self']
  assert data['speedups']['baseline'] == pytest.approx(1.0)
  for name in ('scores.csv', 'time_to_target.csv', 'performance_profiles.png',
               'performance_profiles.svg', 'report.md', 'report.html'):
    assert (tmp_path / 'report' / name).stat().st_size > 0
  out = capsys.readouterr().out
  assert 'schedule_free_adamw' in out and '0.8542' in out


_BAD_LOGS = {
    'empty': lambda p: p.write_text(''),
    'truncated': lambda p: p.write_text(p.read_text()[:len(p.read_text()) // 2]),
    'missing_column': lambda p: p.write_text(
        p.read_text().replace('validation/accuracy', 'validation/acc', 1)),
    'text_in_number': lambda p: p.write_text(
        p.read_text().replace('\n', '\n' + 'oops,' * 3, 2)),
    'nan_time': lambda p: _set_first_score(p, 'nan'),
    'inf_time': lambda p: _set_first_score(p, 'inf'),
}


def _set_first_score(path, value):
  lines = path.read_text().splitlines(keepends=True)
  col = lines[0].rstrip('\n').split(',').index('score')
  cells = lines[1].rstrip('\n').split(',')
  cells[col] = value
  lines[1] = ','.join(cells) + '\n'
  path.write_text(''.join(lines))


@needs_logs
@pytest.mark.parametrize('case', sorted(_BAD_LOGS))
def test_a_bad_log_is_a_warning_and_leaves_other_scores_alone(tmp_path, case):
  import shutil
  root = tmp_path / 'self_tuning'
  shutil.copytree(COMPETITION / 'self_tuning', root)
  bad = root / 'adamg' / 'study_1' / 'imagenet_vit_pytorch' / 'trial_1' / 'eval_measurements.csv'
  _BAD_LOGS[case](bad)
  board = score_logs(root, 'v0.5', 'self')
  assert len(board.warnings) == 1 and str(bad) in board.warnings[0]
  assert {s: round(v, 4) for s, v in board.scores.items()} == PUBLISHED['self']


@needs_logs
def test_stray_files_and_folders_do_not_crash(tmp_path):
  import shutil
  root = tmp_path / 'self_tuning'
  shutil.copytree(COMPETITION / 'self_tuning', root)
  (root / 'baseline' / 'notes.txt').write_text('hello')
  (root / 'baseline' / 'not_a_study').mkdir()
  (root / 'adamg' / 'study_0' / 'wmt_pytorch' / 'trial_9').mkdir()  # no CSV
  board = score_logs(root, 'v0.5', 'self')
  assert len(board.warnings) == 3
  assert any('trial_9' in w for w in board.warnings)
  assert any('notes.txt' in w for w in board.warnings)
  assert any('not_a_study' in w for w in board.warnings)
  assert {s: round(v, 4) for s, v in board.scores.items()} == PUBLISHED['self']


@needs_logs
def test_strict_fails_on_missing_studies_and_bad_logs(tmp_path, capsys):
  # The real self-tuning logs miss studies (MANIFEST: sinv6, sinv6_75 and
  # caspr lack workloads; adamg has 4 studies of one workload).
  rc = cli.main(['score', str(COMPETITION / 'self_tuning'), '--benchmark', 'v0.5',
                 '--ruleset', 'self', '--strict'])
  assert rc == 2
  err = capsys.readouterr().err
  assert '--strict' in err and 'adamg' in err


@needs_logs
def test_exclude_and_steps_to_target(capsys):
  board = score_logs(COMPETITION / 'self_tuning', 'v0.5', 'self',
                     exclude=['adamg', 'sinv6'])
  assert set(board.scores) == set(PUBLISHED['self']) - {'adamg', 'sinv6'}
  steps = score_logs(COMPETITION / 'self_tuning', 'v0.5', 'self',
                     time_column='global_step')
  t = steps.time_to_target['baseline']['ogbg']
  assert t == int(t) and t > 1000  # a step count, not seconds
