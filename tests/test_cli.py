"""`algoperf run | list | describe` end to end on the file-free mnist1d workload."""

import csv
import json
from pathlib import Path

import pytest

from algoperf import cli, tuning

FIXTURES = Path(__file__).parent / 'fixtures'
REFERENCE_STYLE = FIXTURES / 'reference_style' / 'submission.py'
# docs/RULES.md, Logs: every eval row has these columns.
SECTION_8_COLUMNS = {
    'accumulated_eval_time', 'accumulated_logging_time',
    'accumulated_submission_time', 'global_step', 'preemption_count', 'score',
    'total_duration', 'validation/num_examples', 'test/num_examples'}


def _run(tmp_path, *extra, name='exp'):
  return cli.main(['run', '--workload=mnist1d', f'--experiment_dir={tmp_path}',
                   f'--experiment_name={name}', '--rng_seed=0',
                   '--noprogress', *extra])


def _eval_rows(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def test_reference_style_submission_runs_unchanged_with_global_batch_size(tmp_path, capsys):
  rc = _run(tmp_path, f'--submission_path={REFERENCE_STYLE}',
            f'--tuning_search_space={REFERENCE_STYLE.parent / "tuning_search_space.json"}',
            '--global_batch_size=64', '--max_global_steps=120')
  assert rc == 0
  trial = tmp_path / 'exp' / 'mnist1d_jax' / 'trial_1'
  rows = _eval_rows(trial / 'eval_measurements.csv')
  assert rows and SECTION_8_COLUMNS <= set(rows[0])
  assert {'train/accuracy', 'validation/accuracy', 'test/accuracy'} <= set(rows[0])
  assert rows[-1]['global_step'] == '120'
  # --noprogress drops the live line, never the summary.
  err = capsys.readouterr().err
  assert 'Stopped at step 120: max_global_steps reached.' in err
  assert 'trial_1 step' not in err
  flags = json.loads((trial / 'flags_0.json').read_text())
  meta = json.loads((trial / 'meta_data_0.json').read_text())
  assert flags['global_batch_size'] == 64
  assert meta['global_batch_size'] == 64 and meta['global_batch_size_from_flag']
  # The submission's own .item() logging reached measurements.csv.
  logged = _eval_rows(trial / 'measurements.csv')
  assert any(r.get('loss') for r in logged)


def test_unknown_workload_for_submission_needs_global_batch_size(tmp_path, capsys):
  rc = _run(tmp_path, f'--submission_path={REFERENCE_STYLE}',
            f'--tuning_search_space={REFERENCE_STYLE.parent / "tuning_search_space.json"}',
            '--max_global_steps=1')
  assert rc == 2
  assert '--global_batch_size' in capsys.readouterr().err


def test_overwrite_guard_and_resume(tmp_path, capsys):
  assert _run(tmp_path, '--max_global_steps=2') == 0
  trial = tmp_path / 'exp' / 'mnist1d_jax' / 'trial_1'
  first = (trial / 'eval_measurements.csv').read_text()
  # Same folder again: refused, nothing touched.
  assert _run(tmp_path, '--max_global_steps=2') == 2
  err = capsys.readouterr().err
  assert '--overwrite' in err and '--resume_last_run' in err
  assert (trial / 'eval_measurements.csv').read_text() == first
  # Resume: the finished trial is skipped, its logs kept.
  assert _run(tmp_path, '--max_global_steps=2', '--resume_last_run') == 0
  assert 'already finished' in capsys.readouterr().out
  assert (trial / 'eval_measurements.csv').read_text() == first
  # Overwrite: a fresh run.
  assert _run(tmp_path, '--max_global_steps=3', '--overwrite') == 0
  assert _eval_rows(trial / 'eval_measurements.csv')[-1]['global_step'] == '3'


def test_bad_search_space_is_a_clear_error(tmp_path, capsys):
  space = tmp_path / 'space.json'
  space.write_text(json.dumps({'learning_rate': {'min': 1e-3, 'max': 1e-1,
                                                 'scaling': 'cubic'}}))
  assert _run(tmp_path, f'--tuning_search_space={space}',
              '--max_global_steps=1') == 2
  err = capsys.readouterr().err
  assert 'learning_rate' in err and 'scaling' in err


def test_hparam_slices_follow_one_seeded_draw(tmp_path):
  """Slices of one study, run separately, get consecutive points of one draw."""
  space = tmp_path / 'space.json'
  space_obj = {
      'learning_rate': {'min': 1e-4, 'max': 1e-2, 'scaling': 'log'},
      'one_minus_beta1': {'min': 0.02, 'max': 0.1, 'scaling': 'linear'},
      'beta2': {'feasible_points': [0.999]},
      'weight_decay': {'feasible_points': [0.0, 0.1]},
      'warmup_factor': {'feasible_points': [0.05]},
  }
  space.write_text(json.dumps(space_obj))
  common = (f'--tuning_search_space={space}', '--num_tuning_trials=3',
            '--max_global_steps=1', '--tuning_seed=7')
  assert _run(tmp_path, *common, '--hparam_start_index=0',
              '--hparam_end_index=1') == 0
  assert _run(tmp_path, *common, '--hparam_start_index=1',
              '--hparam_end_index=3', '--resume_last_run') == 0
  expected = tuning.generate_points(tuning.parse_search_space(space_obj), 3, seed=7)
  folder = tmp_path / 'exp' / 'mnist1d_jax'
  for k, point in enumerate(expected, start=1):
    logged = json.loads((folder / f'trial_{k}' / 'hparams.json').read_text())
    assert logged == pytest.approx(tuning.hparams_to_dict(point))


def test_self_tuning_rejects_a_search_space_and_runs_without_one(tmp_path, capsys):
  space = Path(cli.__file__).parents[1] / 'submissions' / 'nadamw' / 'tuning_search_space.json'
  assert _run(tmp_path, '--tuning_ruleset=self', '--submission_path=nadamw_self_tuning',
              f'--tuning_search_space={space}', '--max_global_steps=1') == 2
  assert 'Self-tuning' in capsys.readouterr().err
  assert _run(tmp_path, '--tuning_ruleset=self', '--submission_path=nadamw_self_tuning',
              '--max_global_steps=2', name='self') == 0
  trial = tmp_path / 'self' / 'mnist1d_jax' / 'trial_1'
  meta = json.loads((trial / 'meta_data_0.json').read_text())
  assert not (trial / 'hparams.json').exists()
  # The self-tuning budget is 1.5x (times the machine's speed factor).
  assert meta['budget_sec'] == pytest.approx(
      1.5 * meta['workload.max_allowed_runtime_sec'] * meta['speed_factor'])


def test_describe_json_counts_params_without_data(capsys):
  assert cli.main(['describe', 'mnist1d', '--json']) == 0
  facts = json.loads(capsys.readouterr().out)
  for key in ('target_metric_name', 'validation_target_value',
              'test_target_value', 'max_allowed_runtime_sec',
              'eval_period_time_sec', 'step_hint', 'loss_type',
              'num_train_examples', 'benchmark', 'num_params', 'param_shapes'):
    assert key in facts
  total = 0
  for dims in facts['param_shapes'].values():
    n = 1
    for d in dims:
      n *= d
    total += n
  assert facts['num_params'] == total > 0
  assert all('/' in k for k in facts['param_shapes'])


def test_list_shows_workloads_and_submissions(capsys):
  assert cli.main(['list']) == 0
  out = capsys.readouterr().out
  assert 'fashion_mnist' in out and 'mnist1d' in out and 'nadamw' in out


def test_unknown_workload_and_benchmark_are_clear_errors(tmp_path, capsys):
  assert cli.main(['run', '--workload=nope', f'--experiment_dir={tmp_path}']) == 2
  assert 'nope' in capsys.readouterr().err
  assert cli.main(['run', '--benchmark=v9', f'--experiment_dir={tmp_path}']) == 2
  assert 'v0.6' in capsys.readouterr().err


def test_default_names_add_studies_that_score_reads(tmp_path, capsys):
  def run():
    return cli.main(['run', '--workload=mnist1d', f'--experiment_dir={tmp_path}',
                     '--max_global_steps=30', '--noprogress'])

  assert run() == 0 and run() == 0
  folder = tmp_path / 'nadamw'
  assert sorted(p.name for p in folder.iterdir()) == ['study_0', 'study_1']
  out_json = tmp_path / 'scores.json'
  assert cli.main(['score', str(tmp_path), '--benchmark=small',
                   f'--json={out_json}']) == 0
  data = json.loads(out_json.read_text())
  assert list(data['scores']) == ['nadamw']
  assert 0.0 <= data['scores']['nadamw'] <= 1.0
  assert 'mnist1d' in data['time_to_target']['nadamw']
