"""Loading trial logs for scoring: layout, parsing, bad logs, strict counts, real logs."""

from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter
from pathlib import Path
from typing import List, Sequence, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algoperf import benchmarks
from scoring import loading

V05 = benchmarks.load('v0.5')
COMPETITION = Path(__file__).resolve().parents[2] / 'shared' / 'competition'

# The header of a real v0.5 imagenet_vit eval_measurements.csv (sorted columns,
# as the reference writes them).
VIT_HEADER = (
    'accumulated_eval_time,accumulated_logging_time,accumulated_submission_time,'
    'global_step,preemption_count,score,test/accuracy,test/loss,test/num_examples,'
    'total_duration,train/accuracy,train/loss,validation/accuracy,validation/loss,'
    'validation/num_examples')
# And of a real ogbg one (target metric: validation/mean_average_precision).
OGBG_HEADER = (
    'accumulated_eval_time,accumulated_logging_time,accumulated_submission_time,'
    'global_step,preemption_count,score,test/accuracy,test/loss,'
    'test/mean_average_precision,test/num_examples,total_duration,train/accuracy,'
    'train/loss,train/mean_average_precision,validation/accuracy,validation/loss,'
    'validation/mean_average_precision,validation/num_examples')

Row = Tuple[int, float, str]  # (global_step, score, target metric cell)


def vit_csv(rows: Sequence[Row]) -> str:
  """An imagenet_vit CSV in the real format; the metric is validation/accuracy."""
  lines = [VIT_HEADER]
  for step, score, acc in rows:
    lines.append(f'40.3,0.0,{score},{step},0,{score},0.1,6.9,10000,{score + 40.3},'
                 f'0.2,6.8,{acc},6.9,50000')
  return '\n'.join(lines) + '\n'


def ogbg_csv(rows: Sequence[Row]) -> str:
  """An ogbg CSV in the real format; the metric is validation/mean_average_precision."""
  lines = [OGBG_HEADER]
  for step, score, mean_ap in rows:
    lines.append(f'304.7,0.0,{score},{step},0,{score},0.5,0.74,0.02,43793,'
                 f'{score + 304.7},0.5,0.73,0.02,0.5,0.74,{mean_ap},43793')
  return '\n'.join(lines) + '\n'


GOOD_ROWS: List[Row] = [(1, 42.5, '0.001'), (2401, 877.25, '0.41'), (4801, 1717.0, '0.78')]


def write(root: Path, rel: str, content: str | bytes) -> Path:
  """Writes ``content`` to ``root/rel``, making folders; returns the path."""
  path = root / rel
  path.parent.mkdir(parents=True, exist_ok=True)
  if isinstance(content, bytes):
    path.write_bytes(content)
  else:
    path.write_text(content)
  return path


def trial_csv(submission: str, study: int, folder: str, trial: int) -> str:
  return f'{submission}/study_{study}/{folder}/trial_{trial}/eval_measurements.csv'


def good_tree(root: Path) -> None:
  """Three good trials of two workloads, frameworks and submissions."""
  write(root, trial_csv('alpha', 0, 'imagenet_vit_jax', 1), vit_csv(GOOD_ROWS))
  write(root, trial_csv('alpha', 0, 'imagenet_vit_jax', 2), vit_csv(GOOD_ROWS[:2]))
  write(root, trial_csv('beta', 1, 'ogbg_pytorch', 1), ogbg_csv(GOOD_ROWS))


def key(trial: loading.TrialLog) -> tuple:
  return (trial.submission, trial.study, trial.workload, trial.trial)


def same_trials(a: Sequence[loading.TrialLog], b: Sequence[loading.TrialLog]) -> bool:
  """Equal field by field, NaN equal to NaN."""
  def norm(t: loading.TrialLog) -> tuple:
    return (dataclasses.replace(t, values=()), t.times,
            tuple('nan' if math.isnan(v) else v for v in t.values))
  return [norm(t) for t in a] == [norm(t) for t in b]


# --- Parsing and layout -----------------------------------------------------


def test_parses_real_format_and_strips_framework_suffix(tmp_path):
  good_tree(tmp_path)
  write(tmp_path, trial_csv('beta', 1, 'criteo1tb_embed_init_jax', 3),
        'accumulated_eval_time,accumulated_logging_time,accumulated_submission_time,'
        'global_step,preemption_count,score,test/loss,test/num_examples,'
        'total_duration,train/loss,validation/loss,validation/num_examples\n'
        '813.1,0.0,20.9,1,0,20.9,0.45,95000000,834.1,0.45,0.4571,83274637\n'
        '900.0,0.0,500.5,800,0,500.5,0.13,95000000,1400.5,0.12,0.1237,83274637\n')
  result = loading.load_logs(tmp_path, V05)
  assert result.warnings == []
  assert result.files_read == 4
  assert result.submissions == ['alpha', 'beta']
  vit1, vit2, criteo, ogbg = result.trials
  assert (vit1.submission, vit1.study, vit1.workload, vit1.framework, vit1.trial,
          vit1.trial_number) == ('alpha', 'study_0', 'imagenet_vit', 'jax', 'trial_1', 1)
  assert vit1.path == tmp_path / trial_csv('alpha', 0, 'imagenet_vit_jax', 1)
  assert vit1.times == (42.5, 877.25, 1717.0)
  assert vit1.values == (0.001, 0.41, 0.78)
  assert vit2.values == (0.001, 0.41)
  assert (criteo.workload, criteo.framework, criteo.trial_number) == (
      'criteo1tb_embed_init', 'jax', 3)
  assert criteo.values == (0.4571, 0.1237) and criteo.times == (20.9, 500.5)
  assert (ogbg.workload, ogbg.framework, ogbg.study_number) == ('ogbg', 'pytorch', 1)
  assert ogbg.values == (0.001, 0.41, 0.78)
  assert all(isinstance(x, float) for t in result.trials for x in t.times + t.values)


def test_global_step_time_column(tmp_path):
  good_tree(tmp_path)
  result = loading.load_logs(tmp_path, V05, time_column='global_step')
  assert result.warnings == []
  assert result.trials[0].times == (1.0, 2401.0, 4801.0)
  assert result.trials[0].values == (0.001, 0.41, 0.78)


def test_sorted_by_submission_workload_study_and_trial_numbers(tmp_path):
  for sub, study, folder, trial in [
      ('zeta', 0, 'wmt_jax', 1), ('alpha', 10, 'imagenet_vit_jax', 1),
      ('alpha', 2, 'imagenet_vit_jax', 10), ('alpha', 2, 'imagenet_vit_jax', 2),
      ('alpha', 0, 'ogbg_jax', 1), ('alpha', 2, 'imagenet_vit_jax', 9)]:
    text = ogbg_csv(GOOD_ROWS) if 'ogbg' in folder else vit_csv(GOOD_ROWS)
    if folder == 'wmt_jax':
      text = text.replace('validation/accuracy', 'validation/bleu')
    write(tmp_path, trial_csv(sub, study, folder, trial), text)
  result = loading.load_logs(tmp_path, V05)
  assert result.warnings == []
  assert [(t.submission, t.workload, t.study, t.trial) for t in result.trials] == [
      ('alpha', 'imagenet_vit', 'study_2', 'trial_2'),
      ('alpha', 'imagenet_vit', 'study_2', 'trial_9'),
      ('alpha', 'imagenet_vit', 'study_2', 'trial_10'),
      ('alpha', 'imagenet_vit', 'study_10', 'trial_1'),
      ('alpha', 'ogbg', 'study_0', 'trial_1'),
      ('zeta', 'wmt', 'study_0', 'trial_1'),
  ]


def test_reads_only_needed_workloads(tmp_path):
  good_tree(tmp_path)
  # Known workloads that are not scored (the baseline's non-sampled variants
  # in v0.5) are never opened: even a broken file there stays silent.
  write(tmp_path, trial_csv('alpha', 0, 'imagenet_resnet_silu_jax', 1), b'\xff\xfe')
  write(tmp_path, trial_csv('alpha', 1, 'ogbg_gelu_pytorch', 1), '')
  # A name that is no workload of the version at all is reported.
  write(tmp_path, trial_csv('alpha', 0, 'mystery_net_jax', 1), vit_csv(GOOD_ROWS))
  result = loading.load_logs(tmp_path, V05)
  assert result.files_read == 3
  assert result.folders_skipped == 2
  assert len(result.warnings) == 1
  assert 'mystery_net_jax' in result.warnings[0]
  assert "'mystery_net' is not a workload of benchmark v0.5" in result.warnings[0]
  # `workloads` narrows it further; the variant, now asked for, is read.
  only = loading.load_logs(tmp_path, V05, workloads={'ogbg', 'imagenet_resnet_silu'})
  assert only.workloads == ('imagenet_resnet_silu', 'ogbg')
  assert only.files_read == 2
  assert [t.workload for t in only.trials] == ['ogbg']
  assert any('imagenet_resnet_silu_jax' in w and 'UTF-8' in w for w in only.warnings)
  with pytest.raises(KeyError):
    loading.load_logs(tmp_path, V05, workloads={'not_a_workload'})


def test_nan_and_empty_metric_cells_are_kept_without_warning(tmp_path):
  good_tree(tmp_path)
  rows = [(1, 10.0, ''), (2, 20.0, 'nan'), (3, 30.0, 'NaN'), (4, 40.0, 'NA'),
          (5, 50.0, '0.8')]
  write(tmp_path, trial_csv('alpha', 0, 'imagenet_vit_jax', 3), vit_csv(rows))
  result = loading.load_logs(tmp_path, V05)
  assert result.warnings == []
  trial = [t for t in result.trials if t.trial == 'trial_3'][0]
  assert trial.times == (10.0, 20.0, 30.0, 40.0, 50.0)
  assert [math.isnan(v) for v in trial.values] == [True, True, True, True, False]
  assert trial.values[-1] == 0.8


def test_quoted_cells_crlf_and_bom_are_read(tmp_path):
  text = vit_csv(GOOD_ROWS)
  lines = text.splitlines()
  # A quoted header name and a quoted string cell holding a comma.
  lines[0] = lines[0].replace('score', '"score"') + ',note'
  lines[1:] = [line + ',"diverged, restarted"' for line in lines[1:]]
  write(tmp_path, trial_csv('alpha', 0, 'imagenet_vit_jax', 1),
        ('\ufeff' + '\r\n'.join(lines) + '\r\n').encode('utf-8'))
  result = loading.load_logs(tmp_path, V05)
  assert result.warnings == []
  assert result.trials[0].times == (42.5, 877.25, 1717.0)
  assert result.trials[0].values == (0.001, 0.41, 0.78)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(
    st.floats(0, 1e9, allow_nan=False),
    st.one_of(st.floats(allow_nan=True, allow_infinity=False), st.none())),
    max_size=20))
def test_parse_round_trips_what_the_recorder_writes(rows):
  # repr() is how algoperf.recorder formats floats; None is an empty cell.
  text = 'global_step,score,validation/loss\n' + ''.join(
      f'{i},{t!r},{"" if v is None else repr(v)}\n' for i, (t, v) in enumerate(rows))
  times, values, problem, note = loading.parse_eval_csv(text, 'score', 'validation/loss')
  assert problem is None
  assert (note is None) == bool(rows)  # no rows: kept, with a note
  assert times == tuple(t for t, _ in rows)
  assert [('nan' if math.isnan(x) else x) for x in values] == [
      'nan' if v is None or math.isnan(v) else v for _, v in rows]


# --- Bad logs: one warning naming the file, the trial left out ---------------

BAD_TRIAL = trial_csv('alpha', 0, 'imagenet_vit_jax', 5)


def _replace_cell(text: str, line: int, column: str, cell: str) -> str:
  lines = text.splitlines()
  idx = lines[0].split(',').index(column)
  cells = lines[line].split(',')
  cells[idx] = cell
  lines[line] = ','.join(cells)
  return '\n'.join(lines) + '\n'


GOOD = vit_csv(GOOD_ROWS)
BAD_LOGS = {
    'empty file': ('', 'empty file'),
    'blank lines only': ('\n\n', 'empty file'),
    'no metric column': (GOOD.replace('validation/accuracy', 'validation/acc'),
                         "no column 'validation/accuracy'"),
    'no time column': (GOOD.replace(',score,', ',scor,').replace(
        'accumulated_submission_time', 'accumulated_submission_tim'),
                       "no column 'score'"),
    'text in time cell': (_replace_cell(GOOD, 2, 'score', 'soon'),
                          "line 3: 'score' is 'soon', not a number"),
    'text in metric cell': (_replace_cell(GOOD, 2, 'validation/accuracy', '0.4x'),
                            "line 3: 'validation/accuracy' is '0.4x', not a number"),
    'nan time': (_replace_cell(GOOD, 1, 'score', 'nan'), 'not a finite time'),
    'inf time': (_replace_cell(GOOD, 3, 'score', 'inf'), 'not a finite time'),
    'empty time cell': (_replace_cell(GOOD, 2, 'score', ''), 'not a finite time'),
    '+inf metric': (_replace_cell(GOOD, 2, 'validation/accuracy', 'inf'),
                    'must be finite or NaN'),
    '-inf metric': (_replace_cell(GOOD, 1, 'validation/accuracy', '-Infinity'),
                    'must be finite or NaN'),
    'extra cells in a row': (GOOD.replace(',50000\n', ',50000,7\n', 1),
                             'line 2 has 16 cells but the header has 15'),
    'short middle row': (GOOD.replace(',6.9,50000\n', '\n', 1),
                         'line 2 has 13 cells but the header has 15'),
    'undecodable bytes': (GOOD.encode() + b'\xff\xfe\n', 'not UTF-8 text'),
}


@pytest.mark.parametrize('case', sorted(BAD_LOGS))
def test_bad_log_gives_one_warning_and_leaves_the_trial_out(tmp_path, case):
  good_tree(tmp_path)
  expected = loading.load_logs(tmp_path, V05).trials
  content, message = BAD_LOGS[case]
  bad = write(tmp_path, BAD_TRIAL, content)
  result = loading.load_logs(tmp_path, V05)
  assert len(result.warnings) == 1, result.warnings
  warning = result.warnings[0]
  assert warning.startswith(f'{bad}: ') and message in warning, warning
  assert warning.endswith('trial left out.') and '\n' not in warning
  assert same_trials(result.trials, expected)


def test_trial_folder_without_csv_or_with_a_folder_for_it(tmp_path):
  good_tree(tmp_path)
  expected = loading.load_logs(tmp_path, V05).trials
  no_csv = tmp_path / 'alpha/study_0/imagenet_vit_jax/trial_4'
  write(no_csv.parent, 'trial_4/hparams.json', '{}')
  (tmp_path / BAD_TRIAL).mkdir(parents=True)  # a folder named eval_measurements.csv
  result = loading.load_logs(tmp_path, V05)
  assert result.warnings == [
      f'{no_csv}: no eval_measurements.csv; trial left out.',
      f'{tmp_path / BAD_TRIAL}: a folder, not a file; trial left out.',
  ]
  assert same_trials(result.trials, expected)


def test_unreadable_file_simulated(tmp_path, monkeypatch):
  # Root reads everything, so also simulate the error where the module opens files.
  good_tree(tmp_path)
  bad = write(tmp_path, BAD_TRIAL, GOOD)

  def fake_open(path, *args, **kwargs):
    if Path(path) == bad:
      raise PermissionError(13, 'Permission denied', str(path))
    return open(path, *args, **kwargs)

  monkeypatch.setattr(loading, 'open', fake_open, raising=False)
  result = loading.load_logs(tmp_path, V05)
  assert result.warnings == [
      f'{bad}: cannot read (PermissionError: Permission denied); trial left out.']
  assert len(result.trials) == 3


@pytest.mark.skipif(os.name != 'posix' or os.geteuid() == 0,
                    reason='file permissions do not stop root (or non-POSIX)')
def test_unreadable_file(tmp_path):
  good_tree(tmp_path)
  bad = write(tmp_path, BAD_TRIAL, GOOD)
  bad.chmod(0)
  try:
    result = loading.load_logs(tmp_path, V05)
  finally:
    bad.chmod(0o644)
  assert len(result.warnings) == 1
  assert result.warnings[0].startswith(f'{bad}: cannot read (PermissionError')
  assert len(result.trials) == 3


def test_cut_off_last_line_drops_only_that_row(tmp_path):
  good_tree(tmp_path)
  text = GOOD + '5000.1,0.1,2600.0,7203,0,2600.0,0.6,2.3'  # cut mid-row
  bad = write(tmp_path, BAD_TRIAL, text)
  result = loading.load_logs(tmp_path, V05)
  assert result.warnings == [
      f'{bad}: line 5 is cut off (8 of 15 cells); that row is dropped, the 3 '
      'eval(s) before it are kept.']
  kept = [t for t in result.trials if t.trial == 'trial_5'][0]
  assert kept.times == (42.5, 877.25, 1717.0)
  assert len(result.trials) == 4


def test_header_only_is_kept_as_a_trial_with_no_evals(tmp_path):
  # The reference scorer (pandas) reads such a file as zero evals: the trial
  # exists and never reaches the target. It gets a warning all the same.
  good_tree(tmp_path)
  bad = write(tmp_path, BAD_TRIAL, VIT_HEADER + '\n')
  result = loading.load_logs(tmp_path, V05)
  assert len(result.warnings) == 1
  assert result.warnings[0].startswith(f'{bad}: header but no eval rows')
  kept = [t for t in result.trials if t.trial == 'trial_5'][0]
  assert kept.times == () and kept.values == ()
  assert len(result.trials) == 4


def test_stray_files_and_folders_never_crash(tmp_path):
  good_tree(tmp_path)
  expected = loading.load_logs(tmp_path, V05).trials
  silent = [
      'README.md',  # beside the submissions: expected in a logs folder
      '.DS_Store', 'alpha/.DS_Store', 'alpha/study_0/.DS_Store',
      'alpha/study_0/imagenet_vit_jax/.DS_Store',
      'alpha/study_0/imagenet_vit_jax/imagenet_vit_jax_03-02-2024-10-00-00.log',
      'alpha/study_0/imagenet_vit_jax/trial_1/hparams.json',
      'alpha/study_0/imagenet_vit_jax/trial_1/measurements.csv',
      '.git/study_0/imagenet_vit_jax/trial_1/eval_measurements.csv',
      'alpha/.hidden_study/x',
  ]
  for rel in silent:
    write(tmp_path, rel, 'x')
  loud = {  # file to write: (the path the warning names, what it says)
      'alpha/README.md': (
          'alpha/README.md', 'unexpected file in a submission folder'),
      'alpha/study_0/notes.txt': (
          'alpha/study_0/notes.txt', 'unexpected file in a study folder'),
      'alpha/old_runs/x': ('alpha/old_runs', 'not a study_<n> folder'),
      'alpha/study_0/imagenet_vit/trial_1/eval_measurements.csv': (
          'alpha/study_0/imagenet_vit', 'not a <workload>_<jax|pytorch> folder'),
      'alpha/study_0/imagenet_vit_jax/backup/eval_measurements.csv': (
          'alpha/study_0/imagenet_vit_jax/backup', 'not a trial_<n> folder'),
      'gamma/notes/x': ('gamma', 'no study_<n> folders'),
      'study_3/imagenet_vit_jax/trial_1/eval_measurements.csv': (
          'study_3', 'a study folder where a submission folder is expected'),
  }
  for rel in loud:
    write(tmp_path, rel, GOOD)
  result = loading.load_logs(tmp_path, V05)
  assert len(result.warnings) == len(loud), result.warnings
  for named, message in loud.values():
    hits = [w for w in result.warnings if w.startswith(f'{tmp_path / named}: ')]
    assert len(hits) == 1 and message in hits[0], (named, result.warnings)
  assert same_trials(result.trials, expected)
  assert result.submissions == ['alpha', 'beta']


def test_both_frameworks_in_one_study_are_flagged(tmp_path):
  good_tree(tmp_path)
  write(tmp_path, trial_csv('alpha', 0, 'imagenet_vit_pytorch', 1), GOOD)
  result = loading.load_logs(tmp_path, V05)
  assert result.warnings == [
      f'{tmp_path / "alpha/study_0"}: both imagenet_vit_jax and '
      'imagenet_vit_pytorch; the trials of both are loaded.']
  assert len(result.trials) == 4


def test_missing_root_is_a_warning_not_a_crash(tmp_path):
  result = loading.load_logs(tmp_path / 'nope', V05)
  assert result.trials == [] and len(result.warnings) == 1
  assert 'cannot list folder' in result.warnings[0]


# --- Strict counts ----------------------------------------------------------


def test_expected_counts_problems(tmp_path):
  version = dataclasses.replace(V05, external_num_studies=2, external_num_trials=2,
                                self_num_studies=2)
  for study in (0, 1):
    for trial in (1, 2):
      write(tmp_path, trial_csv('full', study, 'imagenet_vit_jax', trial), GOOD)
  write(tmp_path, trial_csv('gaps', 0, 'imagenet_vit_jax', 1), GOOD)
  write(tmp_path, trial_csv('gaps', 0, 'imagenet_vit_jax', 2), GOOD)
  write(tmp_path, trial_csv('gaps', 3, 'imagenet_vit_jax', 1), GOOD)
  write(tmp_path, trial_csv('gaps', 3, 'ogbg_jax', 1), ogbg_csv(GOOD_ROWS))
  write(tmp_path, trial_csv('gaps', 4, 'ogbg_jax', 1), ogbg_csv(GOOD_ROWS))
  # A study whose only trial is bad does not count as a study with logs.
  write(tmp_path, trial_csv('gaps', 5, 'ogbg_jax', 1), '')
  result = loading.load_logs(tmp_path, version, workloads={'imagenet_vit', 'ogbg'})
  assert len(result.warnings) == 1
  assert loading.expected_counts_problems(result, version, 'external') == [
      'full/ogbg: 0 studies with logs, expected 2 (external tuning, v0.5).',
      'gaps/study_3/imagenet_vit: 1 trial with logs, expected 2 (external tuning, v0.5).',
      'gaps/study_3/ogbg: 1 trial with logs, expected 2 (external tuning, v0.5).',
      'gaps/study_4/ogbg: 1 trial with logs, expected 2 (external tuning, v0.5).',
  ]
  assert loading.expected_counts_problems(result, version, 'self') == [
      'full/study_0/imagenet_vit: 2 trials with logs, expected 1 (self tuning, v0.5).',
      'full/study_1/imagenet_vit: 2 trials with logs, expected 1 (self tuning, v0.5).',
      'full/ogbg: 0 studies with logs, expected 2 (self tuning, v0.5).',
      'gaps/study_0/imagenet_vit: 2 trials with logs, expected 1 (self tuning, v0.5).',
  ]
  with pytest.raises(ValueError):
    loading.expected_counts_problems(result, version, 'internal')


# --- The real v0.5 competition logs -----------------------------------------

needs_competition = pytest.mark.skipif(
    not COMPETITION.is_dir(),
    reason=f'the v0.5 competition logs are not at {COMPETITION} (shared/ beside the repo)')

# MANIFEST.md: CSV files per submission; all are of scored workloads except 46
# of the external baseline's (its 4 non-sampled variants).
EXTERNAL_FILES = {
    'amos': 310, 'baseline': 350, 'caspr_adaptive': 275, 'cyclic_lr': 350,
    'generalized_adam': 350, 'lawa_ema': 324, 'lawa_queue': 345, 'nadamp': 350,
    'schedule_free_adamw': 350, 'schedule_free_prodigy': 300,
    'shampoo_submission': 350,
}
SELF_FILES = {'adamg': 69, 'baseline': 70, 'nadamw_sequential': 70,
              'schedule_free_adamw': 70, 'sinv6': 60, 'sinv6_75': 60}


@needs_competition
def test_real_external_tuning_logs():
  result = loading.load_logs(COMPETITION / 'external_tuning', V05)
  assert result.warnings == []
  assert result.files_read == len(result.trials) == 3654
  assert result.folders_skipped == 13  # baseline's non-sampled variants
  assert result.submissions == sorted(EXTERNAL_FILES)
  assert Counter(t.submission for t in result.trials) == EXTERNAL_FILES
  workloads = {(t.submission, t.workload) for t in result.trials}
  assert Counter(s for s, _ in workloads) == {
      **{s: 14 for s in EXTERNAL_FILES}, 'caspr_adaptive': 11,
      'schedule_free_prodigy': 12}
  # Empty metric cells (diverged evals) load as NaN, silently.
  assert sum(math.isnan(v) for t in result.trials for v in t.values) == 647
  problems = loading.expected_counts_problems(result, V05, 'external')
  # MANIFEST's known gaps: missing workloads and short studies, and no more:
  # amos 10 studies, caspr 3 and prodigy 2 workloads, lawa_ema 1 + 3 + 4,
  # lawa_queue 5 studies.
  assert len(problems) == 28
  assert 'caspr_adaptive/criteo1tb: 0 studies with logs, expected 5 (external tuning, v0.5).' in problems
  assert 'amos/study_0/criteo1tb: 1 trial with logs, expected 5 (external tuning, v0.5).' in problems
  assert 'lawa_ema/librispeech_deepspeech: 3 studies with logs, expected 5 (external tuning, v0.5).' in problems
  assert not any(p.startswith(('shampoo_submission', 'nadamp', 'cyclic_lr'))
                 for p in problems)


@needs_competition
def test_real_self_tuning_logs():
  result = loading.load_logs(COMPETITION / 'self_tuning', V05, time_column='global_step')
  assert result.warnings == []
  assert result.files_read == len(result.trials) == 399
  assert Counter(t.submission for t in result.trials) == SELF_FILES
  assert all(t.trial == 'trial_1' for t in result.trials)
  assert all(t.times == tuple(sorted(t.times)) for t in result.trials)
  problems = loading.expected_counts_problems(result, V05, 'self')
  assert len(problems) == 5  # adamg's conformer_layernorm; sinv6(_75) criteo1tb(_embed_init)
  assert 'adamg/librispeech_conformer_layernorm: 4 studies with logs, expected 5 (self tuning, v0.5).' in problems
  assert not any(p.startswith(('baseline', 'nadamw_sequential')) for p in problems)
