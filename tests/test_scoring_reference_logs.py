"""Scoring what either side writes: the trial rule, timestamped studies, old columns.

`algoperf score --trial_rule`, study folders made by `algoperf run
--append_timestamp` (``study_0-2026-12-02-10-11-12``), and eval CSVs of an
older column set (``accumulated_submission_time`` but no ``score``). Hand-made
mnist1d trials under the ``small`` benchmark (target: validation/accuracy
>= 0.97, budget MNIST1D_BUDGET seconds), no meta data, so no speed factor:
every expected number below is worked out by hand from the rows.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence, Tuple

import pytest

from algoperf import benchmarks, cli
from scoring import leaderboard, loading, rules

SMALL = benchmarks.load('small')
MNIST1D_BUDGET = SMALL.workload('mnist1d').max_allowed_runtime_sec
STAMP = '-2026-12-02-10-11-12'
LATER = '-2026-12-03-08-00-00'

# (global_step, seconds, validation accuracy)
Rows = Sequence[Tuple[int, float, float]]


def write_trial(root: Path, study: str, trial: int, rows: Rows, *,
                submission: str = 'nadamw',
                time_column: str = 'score') -> Path:
  """``root/<submission>/<study>/mnist1d_jax/trial_<trial>/eval_measurements.csv``."""
  folder = root / submission / study / 'mnist1d_jax' / f'trial_{trial}'
  folder.mkdir(parents=True)
  (folder / 'eval_measurements.csv').write_text(
      f'global_step,{time_column},validation/accuracy\n'
      + ''.join(f'{s},{t!r},{v!r}\n' for s, t, v in rows))
  return folder


def score(capsys, *args) -> Tuple[int, str, str]:
  rc = cli.main(['score', *map(str, args)])
  captured = capsys.readouterr()
  return rc, captured.out, captured.err


# Study 0: the rules disagree. trial_1 evaluates rarely and first meets the
# target at its eval 1, at 10 s; trial_2 evaluates often and meets it at its
# eval 3, at 6 s. Smallest eval index: trial_1 (10 s); smallest time:
# trial_2 (6 s).
STUDY_0 = {1: [(1, 0.5, 0.1), (400, 10.0, 0.975)],
           2: [(1, 0.5, 0.1), (100, 2.0, 0.8), (200, 4.0, 0.9), (300, 6.0, 0.971)]}
# Study 1: they agree. trial_1 meets it at eval 1, 5 s; trial_2 at eval 2, 8 s:
# both rules pick trial_1 (5 s).
STUDY_1 = {1: [(1, 0.5, 0.1), (250, 5.0, 0.98)],
           2: [(1, 0.5, 0.1), (200, 4.0, 0.9), (400, 8.0, 0.99)]}
# Medians over the two studies: eval index (10 + 5) / 2 = 7.5; time
# (6 + 5) / 2 = 5.5.
BY_EVAL_INDEX, BY_TIME = 7.5, 5.5


def two_studies(root: Path, suffix: str = '') -> None:
  for study, trials in (('study_0', STUDY_0), ('study_1', STUDY_1)):
    for number, rows in trials.items():
      write_trial(root, study + suffix, number, rows)


# --- 1. The trial rule ------------------------------------------------------


def test_a_version_takes_the_other_trial_rule_by_dataclasses_replace():
  by_index = dataclasses.replace(SMALL, trial_rule='smallest_eval_index')
  assert by_index.trial_rule == 'smallest_eval_index'
  assert SMALL.trial_rule == 'smallest_time'  # the loaded one is unchanged
  assert by_index.workloads == SMALL.workloads and by_index.name == 'small'
  with pytest.raises(ValueError, match='trial_rule must be one of'):
    dataclasses.replace(SMALL, trial_rule='fastest')


def test_chosen_trial_breaks_ties_so_the_rules_differ_only_in_time():
  hit = rules.TrialHit
  # Equal times: smallest_time takes the smaller eval index, as the other does.
  hits = [hit(10.0, 3.0), hit(10.0, 2.0)]
  assert rules.chosen_trial(hits, 'smallest_time') == 1
  assert rules.chosen_trial(hits, 'smallest_eval_index') == 1
  # Equal eval indexes: the first trial (the reference's idxmin) vs the fastest.
  hits = [hit(12.0, 2.0), hit(10.0, 2.0)]
  assert rules.chosen_trial(hits, 'smallest_eval_index') == 0
  assert rules.chosen_trial(hits, 'smallest_time') == 1
  assert rules.chosen_trial([rules.MISS, rules.MISS], 'smallest_time') is None
  with pytest.raises(ValueError, match='Unknown trial rule'):
    rules.chosen_trial(hits, 'fastest')


def test_score_logs_and_a_replaced_version_give_the_hand_worked_medians(tmp_path):
  two_studies(tmp_path)
  by_time = leaderboard.score_logs(tmp_path, 'small', 'external')
  assert by_time.time_to_target['nadamw']['mnist1d'] == BY_TIME
  by_index = leaderboard.score_logs(
      tmp_path, dataclasses.replace(SMALL, trial_rule='smallest_eval_index'),
      'external')
  assert by_index.time_to_target['nadamw']['mnist1d'] == BY_EVAL_INDEX
  same = leaderboard.score_logs(tmp_path, 'small', 'external',
                                trial_rule='smallest_eval_index')
  assert same.time_to_target == by_index.time_to_target
  assert by_index.study_times['nadamw']['mnist1d'] == {0: 10.0, 1: 5.0}
  assert by_time.study_times['nadamw']['mnist1d'] == {0: 6.0, 1: 5.0}
  assert by_time.trial_times['nadamw']['mnist1d'] == {
      0: {'trial_1': 10.0, 'trial_2': 6.0}, 1: {'trial_1': 5.0, 'trial_2': 8.0}}


@pytest.mark.parametrize('flag, expected', [
    (None, BY_TIME), ('time', BY_TIME), ('eval_index', BY_EVAL_INDEX)])
def test_trial_rule_flag_and_the_note_under_either_rule(tmp_path, capsys, flag,
                                                         expected):
  two_studies(tmp_path)
  out_json = tmp_path / 'out.json'
  args = [tmp_path, '--json', out_json]
  if flag:
    args += ['--trial_rule', flag]
  rc, out, err = score(capsys, *args)
  assert rc == 0, err
  data = json.loads(out_json.read_text())
  assert data['time_to_target'] == {'nadamw': {'fashion_mnist': None,
                                               'mnist1d': expected}}
  rule = 'smallest_eval_index' if flag == 'eval_index' else 'smallest_time'
  assert (data['trial_rule'], data['version_trial_rule']) == (rule, 'smallest_time')
  # Study 0 only; named with both rules' trials and times, whichever is used.
  assert data['trial_rule_differences'] == [{
      'submission': 'nadamw', 'workload': 'mnist1d', 'study': 0,
      'smallest_eval_index': {'trial': 'trial_1', 'time': 10.0},
      'smallest_time': {'trial': 'trial_2', 'time': 6.0}}]
  notes = [line for line in out.splitlines() if line.startswith('Trial rules differ')]
  assert len(notes) == 1
  assert notes[0].startswith(
      'Trial rules differ in 1 study: nadamw/mnist1d/study_0 (trial_1 10.0 s by '
      'smallest eval index, trial_2 6.0 s by smallest time); scored by ')
  if flag == 'eval_index':
    assert notes[0].endswith("scored by smallest eval index (as asked; small's "
                             'rule is smallest time).')
    assert ('the one with the smallest eval index (--trial_rule; small\'s own '
            'rule is the smallest time)') in out
  else:
    assert notes[0].endswith("scored by smallest time (the version's rule).")
    assert '--trial_rule' not in out
  assert f'{expected:.1f} (' in out  # the table's mnist1d cell


def test_no_note_where_the_rules_agree(tmp_path, capsys):
  for number, rows in STUDY_1.items():
    write_trial(tmp_path, 'study_0', number, rows)
  rc, out, _ = score(capsys, tmp_path, '--trial_rule', 'eval_index')
  assert rc == 0
  assert 'Trial rules differ' not in out
  assert '5.0 (' in out


def test_the_note_names_a_few_studies_and_counts_the_rest(tmp_path, capsys):
  for study in range(7):
    for number, rows in STUDY_0.items():
      write_trial(tmp_path, f'study_{study}', number, rows)
  out_json = tmp_path / 'out.json'
  rc, out, _ = score(capsys, tmp_path, '--json', out_json)
  assert rc == 0
  note = [line for line in out.splitlines() if line.startswith('Trial rules differ')]
  assert len(note) == 1
  assert note[0].startswith('Trial rules differ in 7 studies: nadamw/mnist1d/study_0 (')
  assert 'nadamw/mnist1d/study_4 (' in note[0] and 'study_5' not in note[0]
  assert '; and 2 more (all in --json);' in note[0]
  assert len(json.loads(out_json.read_text())['trial_rule_differences']) == 7


def test_the_note_counts_in_steps_with_global_step(tmp_path, capsys):
  two_studies(tmp_path)
  rc, out, _ = score(capsys, tmp_path, '--time_column', 'global_step')
  assert rc == 0
  # Study 0 in steps: trial_1 at step 400 (eval 1), trial_2 at step 300 (eval 3).
  assert ('nadamw/mnist1d/study_0 (trial_1 400 steps by smallest eval index, '
          'trial_2 300 steps by smallest time)') in out


def test_unknown_trial_rule_value_is_a_usage_error(tmp_path, capsys):
  two_studies(tmp_path)
  rc, out, err = score(capsys, tmp_path, '--trial_rule', 'fastest')
  assert rc == 2 and out == ''
  assert "argument --trial_rule: invalid choice: 'fastest'" in err
  with pytest.raises(ValueError, match='trial_rule must be one of'):
    leaderboard.score_root(tmp_path, trial_rule='fastest')


# --- 2. Timestamped study folders (--append_timestamp) ----------------------


def test_study_number_is_the_part_before_the_timestamp():
  assert loading.study_number('study_3') == 3
  assert loading.study_number(f'study_3{STAMP}') == 3
  assert loading.study_number('study_12-2026-01-31-23-59-59') == 12
  for name in ('study_3-yesterday', 'study_3-2026-12-02', 'study_x', 'studies_3'):
    with pytest.raises(ValueError):
      loading.study_number(name)


def test_timestamped_study_folders_are_scored(tmp_path, capsys):
  two_studies(tmp_path, STAMP)
  rc, out, err = score(capsys, tmp_path, '--json', tmp_path / 'out.json')
  assert rc == 0, err
  assert err == ''
  data = json.loads((tmp_path / 'out.json').read_text())
  assert data['time_to_target']['nadamw']['mnist1d'] == BY_TIME
  assert data['study_times']['nadamw']['mnist1d'] == {'study_0': 6.0, 'study_1': 5.0}
  assert 'nadamw/mnist1d/study_0 (trial_1' in out  # named by study number


def test_a_name_that_only_looks_like_a_timestamp_is_not_a_study(tmp_path):
  write_trial(tmp_path, 'study_0', 1, STUDY_1[1])
  write_trial(tmp_path, 'study_1-old', 1, STUDY_1[1])
  result = loading.load_logs(tmp_path, SMALL)
  assert [t.study for t in result.trials] == ['study_0']
  assert result.warnings == [
      f'{tmp_path / "nadamw" / "study_1-old"}: not a study_<n> folder; left out.']


def test_one_study_spread_over_timestamped_folders_is_one_study(tmp_path):
  # Study 0's two trials were run by two commands, each with its own stamp.
  write_trial(tmp_path, f'study_0{STAMP}', 1, STUDY_0[1])
  write_trial(tmp_path, f'study_0{LATER}', 2, STUDY_0[2])
  result = loading.load_logs(tmp_path, SMALL)
  assert [(t.study_number, t.trial) for t in result.trials] == [
      (0, 'trial_1'), (0, 'trial_2')]
  assert result.warnings == [
      f'{tmp_path / "nadamw"}: study 0 of mnist1d is in 2 folders '
      f'(study_0{STAMP}, study_0{LATER}); scored as one study (the reference '
      'scorer counts each folder as a study of its own).']
  board = leaderboard.score_logs(tmp_path, 'small', 'external')
  assert board.study_times['nadamw']['mnist1d'] == {0: 6.0}  # trial_2, fastest
  by_index = leaderboard.score_logs(tmp_path, 'small', 'external',
                                    trial_rule='smallest_eval_index')
  assert by_index.time_to_target['nadamw']['mnist1d'] == 10.0  # trial_1


def test_a_trial_in_several_folders_is_scored_from_the_newest(tmp_path):
  # trial_1 of study 0 ran three times: without a stamp (oldest), at STAMP and
  # at LATER; LATER's run (5 s) is scored, the others (10 s, 8 s) are not.
  write_trial(tmp_path, 'study_0', 1, STUDY_0[1])
  write_trial(tmp_path, f'study_0{LATER}', 1, STUDY_1[1])
  write_trial(tmp_path, f'study_0{STAMP}', 1, STUDY_1[2])
  result = loading.load_logs(tmp_path, SMALL)
  assert [(t.study, t.times) for t in result.trials] == [
      (f'study_0{LATER}', (0.5, 5.0))]
  assert result.warnings == [
      f'{tmp_path / "nadamw"}: study 0 of mnist1d is in 3 folders (study_0, '
      f'study_0{STAMP}, study_0{LATER}); scored as one study (the reference '
      'scorer counts each folder as a study of its own); trial_1 is in more '
      "than one of them: the newest folder's scored."]
  board = leaderboard.score_logs(tmp_path, 'small', 'external')
  assert board.time_to_target['nadamw']['mnist1d'] == 5.0


def test_strict_counts_studies_by_number(tmp_path, capsys):
  for study in range(3):
    for trial in range(1, 6):
      stamp = STAMP if trial < 3 else LATER  # each study in two folders
      write_trial(tmp_path, f'study_{study}{stamp}', trial, STUDY_1[1])
  result = loading.load_logs(tmp_path, SMALL, workloads={'mnist1d'})
  assert loading.expected_counts_problems(result, SMALL, 'external') == []
  (tmp_path / 'nadamw' / f'study_2{LATER}' / 'mnist1d_jax' / 'trial_5' /
   'eval_measurements.csv').unlink()
  rc, _, err = score(capsys, tmp_path, '--strict')
  assert rc == 2
  assert 'nadamw/study_2/mnist1d: 4 trials with logs, expected 5' in err


# --- 3. Eval CSVs without `score` (an older column set) ----------------------


def test_accumulated_submission_time_stands_in_for_score(tmp_path, capsys):
  old = 'accumulated_submission_time'
  for number, rows in STUDY_0.items():
    write_trial(tmp_path, 'study_0', number, rows, time_column=old)
  # A quoted header takes the careful parser, not the fast one: same result.
  quoted = write_trial(tmp_path, 'study_1', 1, STUDY_1[1], time_column=old)
  csv = quoted / 'eval_measurements.csv'
  csv.write_text(csv.read_text().replace(old, f'"{old}"', 1))
  write_trial(tmp_path, 'study_1', 2, STUDY_1[2])  # a current one: score
  rc, out, err = score(capsys, tmp_path, '--json', tmp_path / 'out.json')
  assert rc == 0
  data = json.loads((tmp_path / 'out.json').read_text())
  assert data['time_to_target']['nadamw']['mnist1d'] == BY_TIME
  assert data['trial_times']['nadamw']['mnist1d'] == {
      'study_0': {'trial_1': 10.0, 'trial_2': 6.0},
      'study_1': {'trial_1': 5.0, 'trial_2': 8.0}}
  first = tmp_path / 'nadamw' / 'study_0' / 'mnist1d_jax' / 'trial_1' / 'eval_measurements.csv'
  # One line for the three old files of the submission folder.
  assert err.splitlines() == [
      f'warning: {tmp_path / "nadamw"}: 3 trials have no \'score\' column in '
      f'eval_measurements.csv (an older column set; e.g. {first}): scored from '
      "'accumulated_submission_time', the same submission time."]
  assert '1 warning(s) about the logs' in out


def test_the_old_column_is_not_read_when_score_is_there_or_for_steps(tmp_path):
  text = ('global_step,accumulated_submission_time,score,validation/accuracy\n'
          '1,99.0,1.0,0.5\n2,99.5,2.0,0.98\n')
  assert loading.parse_evals(text, 'score', 'validation/accuracy') == (
      (1.0, 2.0), (0.5, 0.98), None, None, 'score')
  old = text.replace(',score', ',other')
  assert loading.parse_evals(old, 'score', 'validation/accuracy') == (
      (99.0, 99.5), (0.5, 0.98), None, None, 'accumulated_submission_time')
  times, _, problem, note = loading.parse_eval_csv(old, 'score', 'validation/accuracy')
  assert times == (99.0, 99.5) and problem is None
  assert note == ("no 'score' column; the times are its older name "
                  "'accumulated_submission_time'")
  assert loading.parse_evals(old, 'global_step', 'validation/accuracy')[0] == (1.0, 2.0)
  neither = old.replace('accumulated_submission_time', 'elapsed')
  assert loading.parse_evals(neither, 'score', 'validation/accuracy').problem == (
      "no column 'score'")
