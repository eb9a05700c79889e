"""Loading submission files and resolving their batch size."""

import textwrap

import pytest

from algoperf.errors import ConfigError
from algoperf.submission import (SubmissionError, check_divisible, check_syntax,
                                 load_submission, resolve_global_batch_size)

_HOOKS = '''
def get_batch_size(name):
    if name == 'known':
        return 64
    if name == 'base':
        return 32
    raise ValueError(name)
def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    return None
def update_params(workload, current_param_container, current_params_types,
                  model_state, hyperparameters, batch, loss_type, optimizer_state,
                  eval_results, global_step, rng{extra}):
    return optimizer_state, current_param_container, model_state
def data_selection(*args):
    return None
'''


def _write(tmp_path, body, name='submission.py'):
  path = tmp_path / name
  path.write_text(textwrap.dedent(body))
  return path


def test_loads_hooks_and_detects_train_state(tmp_path):
  plain = load_submission(_write(tmp_path, _HOOKS.format(extra=''), 'a.py'))
  assert not plain.needs_train_state and plain.prepare_for_eval is None
  named = load_submission(
      _write(tmp_path, _HOOKS.format(extra=', train_state=None'), 'b.py'))
  assert named.needs_train_state


def test_folder_path_means_submission_py(tmp_path):
  _write(tmp_path, _HOOKS.format(extra=''))
  sub = load_submission(tmp_path)
  assert sub.name == tmp_path.name


def test_missing_file_and_missing_hooks_are_clear_errors(tmp_path):
  with pytest.raises(SubmissionError, match='does not exist'):
    load_submission(tmp_path / 'nope.py')
  path = _write(tmp_path, 'def get_batch_size(name):\n    return 1\n', 'c.py')
  with pytest.raises(SubmissionError, match='init_optimizer_state, update_params, data_selection'):
    load_submission(path)


def test_batch_size_fallbacks(tmp_path):
  sub = load_submission(_write(tmp_path, _HOOKS.format(extra=''), 'd.py'))
  assert resolve_global_batch_size(sub, 'known', 'known', None) == 64
  # ValueError for the variant: retried with the base workload's name.
  assert resolve_global_batch_size(sub, 'variant', 'base', None) == 32
  # Unknown to the submission: the --global_batch_size flag decides ...
  assert resolve_global_batch_size(sub, 'other', 'other', 16) == 16
  # ... and without it the error names the flag.
  with pytest.raises(SubmissionError, match='--global_batch_size'):
    resolve_global_batch_size(sub, 'other', 'other', None)


def test_batch_size_must_divide_over_devices():
  check_divisible(128, 8, 'global batch size')
  with pytest.raises(SubmissionError, match=r'global batch size \(12\).*devices \(8\)'):
    check_divisible(12, 8, 'global batch size')


def test_a_syntax_error_is_one_line_naming_file_line_and_error(tmp_path):
  path = _write(tmp_path, 'import os\n\ndef get_batch_size(:\n    return 1\n')
  expected = (f'Submission {path.resolve()} has a syntax error at line 3: '
              'invalid syntax (`def get_batch_size(:`).')
  with pytest.raises(SubmissionError) as info:
    load_submission(path)
  assert str(info.value) == expected
  assert isinstance(info.value, ConfigError)  # the CLI prints it, exit code 2
  assert isinstance(info.value.__cause__, SyntaxError)
  with pytest.raises(SubmissionError) as info:
    check_syntax(tmp_path)  # what the sweep runs: compiles, imports nothing
  assert str(info.value) == expected


def test_a_syntax_error_in_an_imported_helper_names_the_helper(tmp_path):
  _write(tmp_path, 'def helper(\n', 'my_broken_helper.py')
  path = _write(tmp_path, 'import my_broken_helper\n', 'e.py')
  with pytest.raises(SubmissionError) as info:
    load_submission(path)
  message = str(info.value)
  assert message.startswith(f'Submission {path.resolve()}: ')
  assert (f'{tmp_path / "my_broken_helper.py"} (which it imports) has a syntax '
          'error at line 1: ') in message
  assert '\n' not in message


def test_cli_run_reports_a_syntax_error_in_one_line(tmp_path, capsys):
  from algoperf import cli  # pylint: disable=import-outside-toplevel

  _write(tmp_path, 'def get_batch_size(name)\n    return 1\n')
  code = cli.main(['run', '--workload', 'mnist1d', '--submission_path',
                   str(tmp_path), '--tuning_ruleset', 'self',
                   '--experiment_dir', str(tmp_path / 'exp')])
  assert code == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith(f'algoperf run: error: Submission {tmp_path.resolve()}'
                        '/submission.py has a syntax error at line 1: ')
  assert '\n' not in err and 'Traceback' not in err
