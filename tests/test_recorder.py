"""Tests of algoperf.recorder (layout, atomic writes, CSV logs) and system_info."""

import collections
import csv
import enum
import json
import os
import pathlib

import numpy as np
import pytest

from algoperf import recorder
from algoperf import system_info


def _read_header(path):
  with open(path, newline='') as f:
    return next(csv.reader(f))


def _tmp_files(folder):
  return [p.name for p in pathlib.Path(folder).iterdir() if p.name.endswith('.tmp')]


# --- layout and the overwrite guard -------------------------------------------


def test_log_dir_layout(tmp_path):
  log_dir = recorder.get_log_dir(tmp_path, 'exp/study_0', 'mnist')
  assert log_dir == tmp_path / 'exp' / 'study_0' / 'mnist_jax'
  assert log_dir.is_dir()
  trial = recorder.trial_dir(log_dir, 3)
  assert trial == log_dir / 'trial_3' and trial.is_dir()


def test_log_dir_without_experiment_name(tmp_path):
  assert recorder.get_log_dir(tmp_path, None, 'wmt', 'jax') == tmp_path / 'wmt_jax'


def test_log_dir_rejects_escaping_names(tmp_path):
  with pytest.raises(ValueError):
    recorder.get_log_dir(tmp_path, '../elsewhere', 'mnist')
  with pytest.raises(ValueError):
    recorder.get_log_dir(tmp_path, '/abs', 'mnist')


def _previous_run(tmp_path):
  log_dir = recorder.get_log_dir(tmp_path, 'exp', 'mnist')
  trial = recorder.trial_dir(log_dir, 1)
  recorder.write_json(trial / 'flags_0.json', {'a': 1})
  return log_dir, trial


def test_existing_run_raises_naming_folder_and_flags(tmp_path):
  log_dir, _ = _previous_run(tmp_path)
  with pytest.raises(recorder.ExistingRunError) as info:
    recorder.get_log_dir(tmp_path, 'exp', 'mnist')
  message = str(info.value)
  assert str(log_dir) in message
  assert '--overwrite' in message and '--resume_last_run' in message


def test_empty_trial_folder_is_not_a_run(tmp_path):
  log_dir = recorder.get_log_dir(tmp_path, 'exp', 'mnist')
  recorder.trial_dir(log_dir, 1)
  assert recorder.get_log_dir(tmp_path, 'exp', 'mnist') == log_dir


def test_overwrite_replaces_previous_run(tmp_path):
  log_dir, trial = _previous_run(tmp_path)
  again = recorder.get_log_dir(tmp_path, 'exp', 'mnist', overwrite=True)
  assert again == log_dir and again.is_dir()
  assert not trial.exists()
  assert list(again.iterdir()) == []


def test_resume_keeps_previous_run(tmp_path):
  log_dir, trial = _previous_run(tmp_path)
  again = recorder.get_log_dir(tmp_path, 'exp', 'mnist', resume_last_run=True)
  assert again == log_dir
  assert json.loads((trial / 'flags_0.json').read_text()) == {'a': 1}


def test_both_flags_is_an_error(tmp_path):
  with pytest.raises(ValueError):
    recorder.get_log_dir(tmp_path, 'exp', 'mnist', overwrite=True, resume_last_run=True)


# --- atomic writes -------------------------------------------------------------


def test_atomic_write_and_json(tmp_path):
  path = tmp_path / 'a.json'
  recorder.write_json(
      path, {'x': np.float32(0.5), 'n': np.int64(3), 'e': pathlib.Path('p')})
  assert json.loads(path.read_text()) == {'x': 0.5, 'n': 3, 'e': 'p'}
  recorder.atomic_write_text(path, 'new')
  assert path.read_text() == 'new'
  assert _tmp_files(tmp_path) == []


def test_crash_during_replace_keeps_original(tmp_path, monkeypatch):
  path = tmp_path / 'log.csv'
  recorder.atomic_write_text(path, 'original\n')

  def crash(*args, **kwargs):
    raise KeyboardInterrupt('preempted')

  monkeypatch.setattr(recorder.os, 'replace', crash)
  with pytest.raises(KeyboardInterrupt):
    recorder.atomic_write_text(path, 'half-written replacement\n')
  assert path.read_text() == 'original\n'
  assert _tmp_files(tmp_path) == []


def test_crash_during_write_keeps_original(tmp_path, monkeypatch):
  path = tmp_path / 'log.csv'
  recorder.atomic_write_text(path, 'original\n')

  def crash(fd):
    raise OSError('disk full')

  monkeypatch.setattr(recorder.os, 'fsync', crash)
  with pytest.raises(OSError):
    recorder.atomic_write_text(path, 'x' * 100_000)
  assert path.read_text() == 'original\n'
  assert _tmp_files(tmp_path) == []


def test_unserialisable_json_touches_nothing(tmp_path):
  path = tmp_path / 'a.json'
  recorder.write_json(path, {'ok': 1})
  with pytest.raises(TypeError):
    recorder.write_json(path, {'bad': object()})
  assert json.loads(path.read_text()) == {'ok': 1}
  assert _tmp_files(tmp_path) == []


# --- MetricsLogger -------------------------------------------------------------


def test_columns_are_sorted_union_and_eval_rows_in_both_files(tmp_path):
  logger = recorder.MetricsLogger(tmp_path)
  logger.append_scalar_metrics({'train/loss': 1.0}, global_step=1)
  logger.append_scalar_metrics(
      {
          'validation/loss': 0.5,
          'accumulated_submission_time': 2.5,
          'score': 2.5,
          'total_duration': 3.0,
      },
      global_step=2,
      is_eval=True,
  )
  logger.append_scalar_metrics({'lr': 0.1}, global_step=3)
  logger.finish()

  measurements = tmp_path / 'measurements.csv'
  evals = tmp_path / 'eval_measurements.csv'
  assert _read_header(measurements) == [
      'accumulated_submission_time', 'global_step', 'lr', 'preemption_count',
      'score', 'total_duration', 'train/loss', 'validation/loss',
  ]
  assert _read_header(evals) == [
      'accumulated_submission_time', 'global_step', 'preemption_count',
      'score', 'total_duration', 'validation/loss',
  ]
  rows = recorder.read_eval_measurements(measurements)
  assert [r['global_step'] for r in rows] == [1, 2, 3]
  assert rows[0]['validation/loss'] is None  # missing cell is empty
  assert rows[0]['preemption_count'] == 0
  eval_rows = recorder.read_eval_measurements(tmp_path)  # a trial folder works too
  assert eval_rows == [{
      'accumulated_submission_time': 2.5, 'global_step': 2,
      'preemption_count': 0, 'score': 2.5, 'total_duration': 3.0,
      'validation/loss': 0.5,
  }]


def test_non_eval_rows_are_buffered_until_flush(tmp_path):
  logger = recorder.MetricsLogger(tmp_path)
  logger.append_scalar_metrics({'loss': 1.0}, global_step=1)
  logger.append_scalar_metrics({'loss': 0.9}, global_step=2)
  assert not (tmp_path / 'measurements.csv').exists()
  assert not (tmp_path / 'eval_measurements.csv').exists()
  logger.flush()
  assert len(recorder.read_eval_measurements(tmp_path / 'measurements.csv')) == 2
  assert not (tmp_path / 'eval_measurements.csv').exists()


def test_eval_row_writes_both_files_at_once(tmp_path):
  logger = recorder.MetricsLogger(tmp_path)
  logger.append_scalar_metrics({'loss': 1.0}, global_step=1)
  logger.append_scalar_metrics({'validation/loss': 0.7}, global_step=1, is_eval=True)
  # The earlier buffered row goes out too: the eval row's flush writes all.
  assert len(recorder.read_eval_measurements(tmp_path / 'measurements.csv')) == 2
  assert len(recorder.read_eval_measurements(tmp_path)) == 1


def test_metrics_dict_is_not_modified(tmp_path):
  metrics = {'loss': 1.0}
  recorder.MetricsLogger(tmp_path).append_scalar_metrics(metrics, 5, is_eval=True)
  assert metrics == {'loss': 1.0}


def test_floats_keep_full_precision(tmp_path):
  logger = recorder.MetricsLogger(tmp_path)
  values = [0.1 + 0.2, 1 / 3, 1e-300, 123456789.123456789, float('nan'), float('inf')]
  for step, value in enumerate(values):
    logger.append_scalar_metrics({'x': value}, step, is_eval=True)
  got = [r['x'] for r in recorder.read_eval_measurements(tmp_path)]
  assert got[:4] == values[:4]
  assert np.isnan(got[4]) and got[5] == float('inf')


def test_numpy_and_jax_scalars_are_converted(tmp_path):
  jnp = pytest.importorskip('jax.numpy')
  logger = recorder.MetricsLogger(tmp_path)
  logger.append_scalar_metrics(
      {
          'np_f32': np.float32(0.5),
          'np_f64': np.float64(0.1),
          'np_i': np.int32(7),
          'np_b': np.bool_(True),
          'jax_f': jnp.asarray(0.25),
          'jax_bf16': jnp.asarray(1.5, dtype=jnp.bfloat16),
          'jax_i': jnp.asarray(4),
          'one_element': np.array([2.0]),
      },
      global_step=jnp.asarray(10),
      is_eval=True,
  )
  text = (tmp_path / 'eval_measurements.csv').read_text()
  assert 'np.' not in text and 'Array' not in text
  (row,) = recorder.read_eval_measurements(tmp_path)
  assert row == {
      'global_step': 10, 'jax_bf16': 1.5, 'jax_f': 0.25, 'jax_i': 4,
      'np_b': True, 'np_f32': 0.5, 'np_f64': 0.1, 'np_i': 7,
      'one_element': 2.0, 'preemption_count': 0,
  }
  assert isinstance(row['np_i'], int) and isinstance(row['jax_f'], float)


def test_non_scalar_metric_is_rejected(tmp_path):
  logger = recorder.MetricsLogger(tmp_path)
  with pytest.raises(ValueError, match='vec'):
    logger.append_scalar_metrics({'vec': np.zeros(3)}, 1)
  with pytest.raises(TypeError, match='obj'):
    logger.append_scalar_metrics({'obj': object()}, 1)


def test_resume_appends_to_existing_rows(tmp_path):
  first = recorder.MetricsLogger(tmp_path)
  first.append_scalar_metrics({'train/loss': 1.0}, 1)
  first.append_scalar_metrics({'validation/loss': 0.9}, 1, is_eval=True)
  first.finish()
  before = (tmp_path / 'eval_measurements.csv').read_text()

  resumed = recorder.MetricsLogger(tmp_path, preemption_count=1)
  assert resumed.num_rows == 2 and resumed.num_eval_rows == 1
  resumed.append_scalar_metrics({'lr': 0.01}, 2)  # submission-style call
  resumed.append_scalar_metrics({'validation/loss': 0.8}, 2, is_eval=True)
  resumed.finish()

  rows = recorder.read_eval_measurements(tmp_path / 'measurements.csv')
  assert [(r['global_step'], r['preemption_count']) for r in rows] == [
      (1, 0), (1, 0), (2, 1), (2, 1)]
  assert rows[2]['lr'] == 0.01 and rows[0]['lr'] is None
  after = (tmp_path / 'eval_measurements.csv').read_text()
  assert after.startswith(before)  # old rows kept byte for byte
  eval_rows = recorder.read_eval_measurements(tmp_path)
  assert [r['validation/loss'] for r in eval_rows] == [0.9, 0.8]


def test_resume_reads_reference_style_logs(tmp_path):
  # A file as the reference benchmark writes it (pandas, no trailing columns).
  (tmp_path / 'eval_measurements.csv').write_text(
      'accumulated_eval_time,global_step,preemption_count,score\n'
      '1.5,1,0,0.25\n'
  )
  logger = recorder.MetricsLogger(tmp_path)
  logger.append_scalar_metrics({'score': 0.5, 'test/loss': 2.0}, 3, is_eval=True)
  rows = recorder.read_eval_measurements(tmp_path)
  assert rows[0] == {
      'accumulated_eval_time': 1.5, 'global_step': 1, 'preemption_count': 0,
      'score': 0.25, 'test/loss': None}
  assert rows[1]['test/loss'] == 2.0 and rows[1]['accumulated_eval_time'] is None


def test_explicit_preemption_count_wins(tmp_path):
  logger = recorder.MetricsLogger(tmp_path, preemption_count=2)
  logger.append_scalar_metrics({'a': 1}, 1, preemption_count=5, is_eval=True)
  assert recorder.read_eval_measurements(tmp_path)[0]['preemption_count'] == 5


def test_disabled_logger_writes_nothing(tmp_path):
  logger = recorder.MetricsLogger(tmp_path / 'trial_1', enabled=False)
  logger.append_scalar_metrics({'a': 1.0}, 1, is_eval=True)
  logger.finish()
  assert not (tmp_path / 'trial_1').exists()


def _raw(path):
  return pathlib.Path(path).read_bytes()


def test_flush_appends_and_keeps_earlier_bytes(tmp_path):
  logger = recorder.MetricsLogger(tmp_path)
  logger.append_scalar_metrics({'loss': 1.0}, 1)
  logger.append_scalar_metrics({'loss': 0.5}, 1, is_eval=True)
  path = tmp_path / 'measurements.csv'
  before, inode = _raw(path), os.stat(path).st_ino
  for step in range(2, 5):
    logger.append_scalar_metrics({'loss': 1.0 / step}, step)
  logger.flush()
  after = _raw(path)
  assert after.startswith(before) and after.count(b'\n') == before.count(b'\n') + 3
  assert os.stat(path).st_ino == inode  # Appended in place, not rewritten.
  assert logger.num_rows == 5 and logger.num_eval_rows == 1


def test_each_flush_is_one_write_per_file_on_an_append_descriptor(tmp_path, monkeypatch):
  logger = recorder.MetricsLogger(tmp_path)
  logger.append_scalar_metrics({'loss': 1.0}, 0, is_eval=True)  # Headers exist.
  calls = []
  real_write, real_fsync = os.write, os.fsync

  def write(fd, data):
    import fcntl  # pylint: disable=import-outside-toplevel
    calls.append(('write', bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND),
                  bytes(data)))
    return real_write(fd, data)

  def fsync(fd):
    calls.append(('fsync',))
    return real_fsync(fd)

  monkeypatch.setattr(os, 'write', write)
  monkeypatch.setattr(os, 'fsync', fsync)
  for step in range(1, 11):
    logger.append_scalar_metrics({'loss': 1.0 / step}, step)
  assert calls == []  # Buffering touches no file.
  logger.append_scalar_metrics({'loss': 0.1}, 11, is_eval=True)
  writes = [c for c in calls if c[0] == 'write']
  assert len(writes) == 2 and all(append for _, append, _ in writes)
  assert writes[0][2].count(b'\n') == 11 and writes[1][2].count(b'\n') == 1
  assert calls[1] == ('fsync',) and calls[3] == ('fsync',)  # Each write synced.
  calls.clear()
  logger.flush()  # Nothing pending: nothing written.
  assert calls == []


def test_new_column_rewrites_once_with_padded_cells(tmp_path):
  logger = recorder.MetricsLogger(tmp_path)
  logger.append_scalar_metrics({'loss': 1.0}, 1)
  logger.append_scalar_metrics({'loss': 0.9}, 2)
  logger.flush()
  path = tmp_path / 'measurements.csv'
  assert path.read_text() == (
      'global_step,loss,preemption_count\n1,1.0,0\n2,0.9,0\n')
  logger.append_scalar_metrics({'lr': 0.1, 'loss': 0.8}, 3)
  logger.flush()
  assert path.read_text() == (
      'global_step,loss,lr,preemption_count\n'
      '1,1.0,,0\n2,0.9,,0\n3,0.8,0.1,0\n')
  assert _tmp_files(tmp_path) == []
  before, inode = _raw(path), os.stat(path).st_ino
  logger.append_scalar_metrics({'loss': 0.7}, 4)  # Known columns: appended.
  logger.flush()
  assert _raw(path) == before + b'4,0.7,,0\n'
  assert os.stat(path).st_ino == inode
  assert logger.num_rows == 4


def test_resumed_file_with_unsorted_header_gets_rows_in_its_order(tmp_path):
  path = tmp_path / 'eval_measurements.csv'
  path.write_text('score,global_step,preemption_count\n0.5,1,0\n')
  logger = recorder.MetricsLogger(tmp_path)
  logger.append_scalar_metrics({'score': 0.75}, 2, is_eval=True)
  assert path.read_text() == (
      'score,global_step,preemption_count\n0.5,1,0\n0.75,2,0\n')


def test_partial_last_line_is_removed_on_open(tmp_path, caplog):
  first = recorder.MetricsLogger(tmp_path)
  for step in range(3):
    first.append_scalar_metrics({'validation/loss': 1.0 / (step + 1)}, step,
                                is_eval=True)
  path = tmp_path / 'eval_measurements.csv'
  complete = _raw(path)
  with open(path, 'ab') as f:  # An OS crash cut the next row short.
    f.write(b'0.2')
  resumed = recorder.MetricsLogger(tmp_path, preemption_count=1)
  assert _raw(path) == complete  # Earlier rows kept byte for byte.
  assert resumed.num_eval_rows == 3 and resumed.num_rows == 3
  assert 'incomplete row' in caplog.text
  resumed.append_scalar_metrics({'validation/loss': 0.2}, 3, is_eval=True)
  assert _raw(path).startswith(complete)
  rows = recorder.read_eval_measurements(path)
  assert [(r['global_step'], r['preemption_count']) for r in rows] == [
      (0, 0), (1, 0), (2, 0), (3, 1)]


def test_header_cut_short_is_removed_on_open(tmp_path):
  (tmp_path / 'measurements.csv').write_bytes(b'global_st')
  logger = recorder.MetricsLogger(tmp_path)
  assert logger.num_rows == 0
  logger.append_scalar_metrics({'loss': 1.0}, 1)
  logger.flush()
  assert (tmp_path / 'measurements.csv').read_text() == (
      'global_step,loss,preemption_count\n1,1.0,0\n')


_KILLED_WRITER = """
import os, signal, sys
from algoperf import recorder
logger = recorder.MetricsLogger(sys.argv[1])
for step in range(1, 51):
  logger.append_scalar_metrics({'loss': 1.0 / step, 'lr': 0.1}, step)
  if step % 10 == 0:
    logger.append_scalar_metrics({'validation/loss': 2.0 / step}, step,
                                 is_eval=True)
for step in range(51, 56):  # Buffered, never flushed: lost with the process.
  logger.append_scalar_metrics({'loss': 1.0 / step}, step)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_process_leaves_complete_rows_and_resume_continues(tmp_path):
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  repo = pathlib.Path(__file__).resolve().parents[1]
  proc = subprocess.run([sys.executable, '-c', _KILLED_WRITER, str(tmp_path)],
                        cwd=repo, capture_output=True, text=True, check=False)
  assert proc.returncode == -9, proc.stderr
  measurements = tmp_path / 'measurements.csv'
  assert _raw(measurements).endswith(b'\n')
  rows = recorder.read_eval_measurements(measurements)
  assert len(rows) == 55  # 50 training rows and 5 eval rows, all complete.
  assert all(r['global_step'] is not None and r['preemption_count'] == 0
             for r in rows)
  assert len(recorder.read_eval_measurements(tmp_path)) == 5
  # An OS crash in the middle of a later flush would also leave a partial row.
  with open(measurements, 'ab') as f:
    f.write(b'51,0.0196')
  resumed = recorder.MetricsLogger(tmp_path, preemption_count=1)
  assert resumed.num_rows == 55 and resumed.num_eval_rows == 5
  resumed.append_scalar_metrics({'loss': 0.02}, 51)
  resumed.append_scalar_metrics({'validation/loss': 0.03}, 51, is_eval=True)
  rows = recorder.read_eval_measurements(measurements)
  assert len(rows) == 57
  assert [(r['global_step'], r['preemption_count'], r['loss'])
          for r in rows[-2:]] == [(51, 1, 0.02), (51, 1, None)]


def test_failed_write_keeps_the_file_and_the_rows(tmp_path, monkeypatch):
  logger = recorder.MetricsLogger(tmp_path)
  logger.append_scalar_metrics({'loss': 1.0}, 1, is_eval=True)
  path = tmp_path / 'measurements.csv'
  before = _raw(path)
  real_write = os.write

  def disk_full(fd, data):
    real_write(fd, bytes(data)[:5])  # Half a row reaches the disk...
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(os, 'write', disk_full)
  logger.append_scalar_metrics({'loss': 0.5}, 2)
  with pytest.raises(OSError):
    logger.flush()
  assert _raw(path) == before  # ...and is taken back.
  assert logger.num_rows == 2  # The row is still pending.
  monkeypatch.setattr(os, 'write', real_write)
  logger.flush()
  assert [r['loss'] for r in recorder.read_eval_measurements(path)] == [1.0, 0.5]


def test_row_counts_survive_quoted_cells(tmp_path):
  logger = recorder.MetricsLogger(tmp_path)
  assert logger.num_rows == 0 and logger.num_eval_rows == 0
  logger.append_scalar_metrics({'note': 'a, "b"\nc'}, 1)
  logger.append_scalar_metrics({'note': 'plain'}, 2)
  assert logger.num_rows == 2 and logger.num_eval_rows == 0  # Pending count.
  logger.append_scalar_metrics({'validation/loss': 0.5, 'note': '"x\n'}, 2,
                               is_eval=True)
  assert logger.num_rows == 3 and logger.num_eval_rows == 1
  assert logger._log.pending == [] and logger._eval_log.pending == []  # pylint: disable=protected-access
  again = recorder.MetricsLogger(tmp_path)
  assert again.num_rows == 3 and again.num_eval_rows == 1
  with open(tmp_path / 'measurements.csv', newline='') as f:
    assert sum(1 for _ in csv.reader(f)) == 4  # How checkpoints count rows.
  rows = recorder.read_eval_measurements(tmp_path / 'measurements.csv')
  assert [r['note'] for r in rows] == ['a, "b"\nc', 'plain', '"x\n']


def test_logger_continues_after_rewind_to_checkpoint(tmp_path):
  checkpoints = pytest.importorskip('algoperf.checkpoints')
  first = recorder.MetricsLogger(tmp_path)
  for step in range(1, 7):
    first.append_scalar_metrics({'loss': 1.0 / step}, step)
    if step % 2 == 0:
      first.append_scalar_metrics({'validation/loss': 1.0 / step}, step,
                                  is_eval=True)
  first.finish()
  assert first.num_rows == 9 and first.num_eval_rows == 3
  # The checkpoint was taken after the eval of step 4: 6 and 2 rows.
  assert checkpoints.rewind_logs(
      tmp_path, {'measurements': 6, 'eval_measurements': 2},
      tmp_path / 'attempt_0')
  resumed = recorder.MetricsLogger(tmp_path, preemption_count=1)
  assert resumed.num_rows == 6 and resumed.num_eval_rows == 2
  resumed.append_scalar_metrics({'loss': 0.2, 'lr': 0.1}, 5)  # A new column.
  resumed.append_scalar_metrics({'validation/loss': 0.2}, 6, is_eval=True)
  rows = recorder.read_eval_measurements(tmp_path / 'measurements.csv')
  assert [(r['global_step'], r['preemption_count']) for r in rows] == [
      (1, 0), (2, 0), (2, 0), (3, 0), (4, 0), (4, 0), (5, 1), (6, 1)]
  assert [r['lr'] for r in rows] == [None] * 6 + [0.1, None]
  evals = recorder.read_eval_measurements(tmp_path)
  assert [r['global_step'] for r in evals] == [2, 4, 6]


def test_file_cut_under_an_open_logger_is_read_again(tmp_path, caplog):
  logger = recorder.MetricsLogger(tmp_path)
  for step in range(1, 4):
    logger.append_scalar_metrics({'validation/loss': 1.0 / step}, step,
                                 is_eval=True)
  path = tmp_path / 'eval_measurements.csv'
  lines = path.read_text().splitlines(keepends=True)
  path.write_text(''.join(lines[:2]))  # Someone keeps the header and one row.
  logger.append_scalar_metrics({'validation/loss': 0.1}, 4, is_eval=True)
  assert 'reading it again' in caplog.text
  assert [r['global_step'] for r in recorder.read_eval_measurements(path)] == [1, 4]
  assert logger.num_eval_rows == 2


def test_reads_competition_log_if_present():
  root = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'competition'
  pattern = 'external_tuning/*/study_0/*_jax/trial_1/eval_measurements.csv'
  files = sorted(root.glob(pattern))
  if not files:
    pytest.skip('no reference logs on this machine')
  rows = recorder.read_eval_measurements(files[0])
  assert rows and isinstance(rows[0]['global_step'], int)
  assert isinstance(rows[-1]['accumulated_submission_time'], float)


# --- hparams -------------------------------------------------------------------


def test_hparams_round_trip_and_reuse_on_resume(tmp_path):
  hp_type = collections.namedtuple(
      'Hyperparameters', ['learning_rate', 'beta2', 'warmup'])
  hparams = hp_type(learning_rate=np.float64(1e-3), beta2=0.999, warmup=0.05)
  returned = recorder.write_hparams(hparams, tmp_path)
  assert returned is hparams
  assert json.loads((tmp_path / 'hparams.json').read_text()) == {
      'learning_rate': 1e-3, 'beta2': 0.999, 'warmup': 0.05}

  # A resumed trial keeps the stored point, even if handed another one.
  other = hp_type(learning_rate=0.5, beta2=0.9, warmup=0.0)
  resumed = recorder.write_hparams(other, tmp_path)
  assert type(resumed).__name__ == 'Hyperparameters'
  assert resumed._fields == ('learning_rate', 'beta2', 'warmup')
  assert resumed.learning_rate == 1e-3 and resumed.beta2 == 0.999
  assert recorder.write_hparams(None, tmp_path).warmup == 0.05


def test_hparams_none_writes_nothing(tmp_path):
  assert recorder.write_hparams(None, tmp_path) is None
  assert not (tmp_path / 'hparams.json').exists()


# --- system info ---------------------------------------------------------------


class _Color(enum.Enum):
  RED = 1


class _FakeWorkload:
  """Just enough of a workload for get_meta_data."""

  def __init__(self):
    self.public_attr = 3
    self._private = 'hidden'
    self.metrics_logger = None

  @property
  def target_metric_name(self):
    return 'accuracy'

  @property
  def validation_target_value(self):
    return np.float32(0.9)

  @property
  def step_hint(self):
    return 1000

  @property
  def has_test_split(self):
    return True

  @property
  def loss_type(self):
    return _Color.RED

  @property
  def train_mean(self):
    return np.zeros(3)

  @property
  def param_shapes(self):
    raise ValueError('call init_model_fn first')

  @property
  def broken(self):
    raise RuntimeError('boom')

  def model_fn(self):
    raise AssertionError('methods must not be called')

  @staticmethod
  def static_helper():
    raise AssertionError('methods must not be called')


def test_meta_data_is_json_and_has_the_facts():
  meta = system_info.get_meta_data(
      _FakeWorkload(), rng_seed=np.int64(7),
      extra={'global_batch_size': 128, 'tuning_ruleset': 'external',
             'budget': float('inf')})
  text = json.dumps(meta, allow_nan=False)  # strict JSON
  assert json.loads(text) == meta
  for key in [
      'os_platform', 'hostname', 'cpu_model_name', 'cpu_count',
      'memory_total_bytes', 'accelerator_platform', 'accelerator_model_name',
      'accelerator_count', 'local_device_count', 'global_device_count',
      'process_count', 'process_index', 'python_version', 'jax_version',
      'jaxlib_version', 'flax_version', 'optax_version', 'numpy_version',
      'scipy_version', 'git_commit_hash', 'git_branch', 'rng_seed',
  ]:
    assert key in meta, key
  assert meta['rng_seed'] == 7
  assert meta['cpu_count'] == os.cpu_count()
  assert meta['numpy_version'] == np.__version__
  assert meta['global_batch_size'] == 128 and meta['budget'] == 'inf'
  assert meta['accelerator_count'] >= 1
  assert meta['workload.target_metric_name'] == 'accuracy'
  assert meta['workload.validation_target_value'] == pytest.approx(0.9)
  assert meta['workload.step_hint'] == 1000
  assert meta['workload.has_test_split'] is True
  assert meta['workload.loss_type'] == 'RED'
  assert meta['workload.public_attr'] == 3
  for absent in ['train_mean', 'param_shapes', 'broken', 'model_fn',
                 'static_helper', '_private', 'metrics_logger']:
    assert f'workload.{absent}' not in meta


def test_missing_package_version_is_none():
  assert system_info._package_version('surely-not-an-installed-package-xyz') is None


def test_meta_data_survives_missing_git(monkeypatch):
  monkeypatch.setattr(system_info, '_git', lambda *args: None)
  meta = system_info.get_meta_data(_FakeWorkload(), rng_seed=0)
  assert meta['git_commit_hash'] is None and meta['git_branch'] is None
