"""Every user mistake is one line on stderr, exit code 2, no traceback."""

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from algoperf import cli

REPO = Path(__file__).resolve().parents[1]


def _fashion_dir_with_a_truncated_file(tmp_path):
  folder = tmp_path / 'fashion'
  folder.mkdir()
  # Valid headers, far too little data: a download cut short.
  headers = {'train-images-idx3-ubyte': b'\x00\x00\x08\x03' + (60000).to_bytes(4, 'big')
             + (28).to_bytes(4, 'big') * 2,
             'train-labels-idx1-ubyte': b'\x00\x00\x08\x01' + (60000).to_bytes(4, 'big'),
             't10k-images-idx3-ubyte': b'\x00\x00\x08\x03' + (10000).to_bytes(4, 'big')
             + (28).to_bytes(4, 'big') * 2,
             't10k-labels-idx1-ubyte': b'\x00\x00\x08\x01' + (10000).to_bytes(4, 'big')}
  for name, header in headers.items():
    (folder / f'{name}.gz').write_bytes(gzip.compress(header + b'\x00' * 100))
  return folder


def _submission_with_syntax_error(tmp_path):
  folder = tmp_path / 'broken_sub'
  folder.mkdir()
  (folder / 'submission.py').write_text('def get_batch_size(name):\n  return 128 +\n')
  (folder / 'tuning_search_space.json').write_text('[{"learning_rate": 0.1}]')
  return folder


def _a_file(tmp_path):
  path = tmp_path / 'not_a_folder'
  path.write_text('x')
  return path


CASES = {
    'corrupt dataset file': lambda t: [
        'run', '--workload=fashion_mnist', f'--data_dir={_fashion_dir_with_a_truncated_file(t)}',
        f'--experiment_dir={t / "e"}', '--speed_factor=1'],
    'submission syntax error': lambda t: [
        'run', '--workload=mnist1d', f'--submission_path={_submission_with_syntax_error(t)}',
        f'--experiment_dir={t / "e"}', '--speed_factor=1'],
    'experiment dir is a file': lambda t: [
        'run', '--workload=mnist1d', f'--experiment_dir={_a_file(t)}'],
    'experiment dir under a file': lambda t: [
        'run', '--workload=mnist1d', f'--experiment_dir={_a_file(t) / "sub"}'],
    'overwrite with resume': lambda t: [
        'run', '--overwrite', '--resume_last_run', f'--experiment_dir={t}'],
    'zero trials': lambda t: ['run', '--num_tuning_trials=0'],
    'negative trials': lambda t: ['run', '--num_tuning_trials', '-2'],
    'zero steps': lambda t: ['run', '--max_global_steps=0'],
    'negative steps': lambda t: ['run', '--max_global_steps=-5'],
    'zero batch size': lambda t: ['run', '--global_batch_size=0'],
    'start after end': lambda t: ['run', '--num_tuning_trials=5',
                                  '--hparam_start_index=3', '--hparam_end_index=1'],
    'flag prefix': lambda t: ['run', '--max_global_step=5'],
    'describe unknown workload': lambda t: ['describe', 'imagenet_nope'],
    'describe unknown version': lambda t: ['describe', 'mnist1d', '--benchmark=v9'],
    'list unknown version': lambda t: ['list', '--benchmark=v9'],
    'sweep unknown workload': lambda t: [
        'sweep', '--workloads=mnist1d,not_a_workload', f'--experiment_dir={t / "s"}'],
    'check negative steps': lambda t: ['check', 'nadamw', '--steps=-1'],
    'score missing folder': lambda t: ['score', str(t / 'nothing_here')],
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_mistake_is_one_line_and_exit_2(case, tmp_path, capsys):
  argv = CASES[case](tmp_path)
  code = cli.main(argv)
  out, err = capsys.readouterr()
  lines = [line for line in err.splitlines() if line.strip()]
  assert code == 2, (out, err)
  assert 'Traceback' not in err and 'Traceback' not in out
  errors = [line for line in lines if ': error: ' in line]
  assert len(errors) == 1, err
  # The line names the problem and says what to do.
  assert len(errors[0]) > 40, errors[0]


def test_flag_prefix_names_the_real_flag(capsys):
  assert cli.main(['run', '--max_global_step=5']) == 2
  assert '--max_global_steps' in capsys.readouterr().err


def test_sweep_with_an_unknown_workload_starts_nothing(tmp_path, capsys):
  assert cli.main(['sweep', '--workloads=mnist1d,not_a_workload',
                   f'--experiment_dir={tmp_path}']) == 2
  assert 'not_a_workload' in capsys.readouterr().err
  assert not any(tmp_path.rglob('sweep_run.log'))


def test_list_into_a_closed_pipe_is_quiet():
  """`algoperf list | head -1`: no BrokenPipeError, no traceback."""
  # The reader is gone before the first byte: every write hits a closed pipe.
  proc = subprocess.Popen([sys.executable, '-m', 'algoperf.cli', 'list'], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  proc.stdout.close()
  err = proc.stderr.read().decode()
  proc.stderr.close()
  assert proc.wait(timeout=120) == 0, err
  assert 'Traceback' not in err and 'BrokenPipe' not in err, err
  done = subprocess.run(
      f'{sys.executable} -m algoperf.cli list | head -1', shell=True, cwd=REPO,
      capture_output=True, text=True, timeout=120, check=False)
  assert done.stdout.startswith('Workloads')
  assert done.stdout.count('\n') == 1
  assert 'Traceback' not in done.stderr and 'BrokenPipe' not in done.stderr, done.stderr


def test_ctrl_c_says_the_logs_are_kept_and_how_to_resume(monkeypatch, capsys):
  from algoperf import experiment  # pylint: disable=import-outside-toplevel

  def interrupted(options, flag_values):
    raise KeyboardInterrupt

  monkeypatch.setattr(experiment, 'run', interrupted)
  assert cli.main(['run', '--workload=mnist1d']) == 130
  err = capsys.readouterr().err
  assert 'logs written so far are kept' in err and '--resume_last_run' in err
