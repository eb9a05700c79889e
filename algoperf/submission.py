"""Loading a submission module from a file and resolving its hooks."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional, Tuple

from algoperf.errors import ConfigError

_REQUIRED_HOOKS = ('get_batch_size', 'init_optimizer_state', 'update_params',
                   'data_selection')


class SubmissionError(ConfigError):
  """A submission file that cannot be used; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class Submission:
  """The hooks of one submission module."""

  path: Path
  module: ModuleType
  get_batch_size: Callable[[str], int]
  init_optimizer_state: Callable
  update_params: Callable
  data_selection: Callable
  prepare_for_eval: Optional[Callable]

  @property
  def name(self) -> str:
    """The submission's folder name (or file stem for a loose file)."""
    if self.path.stem == 'submission':
      return self.path.parent.name
    return self.path.stem

  @property
  def needs_train_state(self) -> bool:
    """Whether ``update_params`` declares a ``train_state`` parameter."""
    return 'train_state' in inspect.signature(self.update_params).parameters


def submission_file(path: str | Path) -> Path:
  """The submission file ``path`` names (a .py file, or a folder's submission.py).

  Raises ``SubmissionError`` if there is no such file. Imports nothing, so a
  sweep can check its submission without loading JAX.
  """
  path = Path(path).expanduser()
  if path.is_dir():
    path = path / 'submission.py'
  if not path.is_file():
    raise SubmissionError(
        f'Submission file {path} does not exist. Pass --submission_path with a '
        'submission .py file, a folder holding submission.py, or a bundled '
        'name (see `algoperf list`).')
  return path.resolve()


def _syntax_error_message(path: Path, error: SyntaxError) -> str:
  """One line: which file, which line, what Python says."""
  where = Path(error.filename) if error.filename else path
  text = (error.text or '').strip()
  message = (f'Submission {path} has a syntax error' if where == path else
             f'Submission {path}: {where} (which it imports) has a syntax error')
  message += f' at line {error.lineno}: {error.msg}'
  if text:
    message += f' (`{text}`)'
  return message + '.'


def check_syntax(path: str | Path) -> Path:
  """Compiles the submission file at ``path``; ``SubmissionError`` if it does not parse.

  Imports nothing (no JAX), so a sweep can refuse a broken file before it
  starts any run. Returns the resolved file path.
  """
  path = submission_file(path)
  try:
    compile(path.read_bytes(), str(path), 'exec', dont_inherit=True)
  except SyntaxError as e:
    raise SubmissionError(_syntax_error_message(path, e)) from None
  return path


def import_submission(path: str | Path) -> Tuple[Path, ModuleType]:
  """Imports the submission file at ``path`` (or ``path``/submission.py).

  Returns the resolved file path and the module; does not check its hooks.
  The file's folder is put on ``sys.path`` so it can import its own helpers.
  Raises ``SubmissionError`` if there is no such file or it (or a module it
  imports) has a syntax error, and whatever else the module raises while it
  is imported.
  """
  path = submission_file(path)
  module_name = f'_algoperf_submission_{abs(hash(str(path)))}'
  if module_name in sys.modules:
    return path, sys.modules[module_name]
  folder = str(path.parent)
  if folder not in sys.path:
    sys.path.insert(0, folder)
  spec = importlib.util.spec_from_file_location(module_name, path)
  assert spec is not None and spec.loader is not None
  module = importlib.util.module_from_spec(spec)
  sys.modules[module_name] = module
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    del sys.modules[module_name]
    # One line instead of a traceback through importlib (the CLI prints it).
    raise SubmissionError(_syntax_error_message(path, e)) from e
  except BaseException:
    del sys.modules[module_name]
    raise
  return path, module


def load_submission(path: str | Path) -> Submission:
  """Imports the submission at ``path`` (a .py file, or a folder with submission.py).

  The file's folder is put on ``sys.path`` so it can import its own helpers.
  """
  path, module = import_submission(path)
  missing = [h for h in _REQUIRED_HOOKS if not callable(getattr(module, h, None))]
  if missing:
    raise SubmissionError(
        f'Submission {path} does not define {", ".join(missing)}. Every '
        f'submission must define {", ".join(_REQUIRED_HOOKS)} (and may define '
        'prepare_for_eval); see submissions/template/submission.py.'
    )
  return Submission(
      path=path,
      module=module,
      get_batch_size=module.get_batch_size,
      init_optimizer_state=module.init_optimizer_state,
      update_params=module.update_params,
      data_selection=module.data_selection,
      prepare_for_eval=getattr(module, 'prepare_for_eval', None),
  )


def resolve_global_batch_size(
    submission: Submission,
    workload_name: str,
    base_workload_name: str,
    override: Optional[int],
) -> int:
  """The submission's batch size for a workload, with the reference's fallbacks.

  ``get_batch_size(workload_name)``; on ``ValueError`` the base workload's name;
  if that also raises (a submission written for other workloads), ``override``
  (the ``--global_batch_size`` flag); without it, a ``SubmissionError``.
  """
  for name in dict.fromkeys((workload_name, base_workload_name)):
    try:
      size = int(submission.get_batch_size(name))
    except ValueError:
      continue
    if override is not None and override != size:
      logging.warning(
          'The submission sets global batch size %d for %s; ignoring '
          '--global_batch_size=%d.', size, name, override)
    return size
  if override is None:
    raise SubmissionError(
        f'Submission {submission.path.name}: get_batch_size() raised ValueError '
        f'for workload {workload_name!r}'
        + (f' and its base {base_workload_name!r}'
           if base_workload_name != workload_name else '')
        + '. It was probably written for other workloads; pass '
        '--global_batch_size N to choose the batch size.'
    )
  return int(override)


def check_divisible(batch_size: int, num_devices: int, what: str) -> None:
  """Raises unless ``batch_size`` splits evenly over ``num_devices``."""
  if batch_size <= 0 or batch_size % num_devices:
    raise SubmissionError(
        f'The {what} ({batch_size}) must be a positive multiple of the number '
        f'of devices ({num_devices}); choose a batch size divisible by '
        f'{num_devices}.'
    )
