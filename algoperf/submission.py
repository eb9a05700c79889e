"""Loading a submission module from a file and resolving its hooks."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import logging
import numbers
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, List, Optional, Tuple

from algoperf import compat
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
  # The submission's own eval batch size hook (the reference calls it when
  # defined), or None.
  get_eval_batch_size: Optional[Callable[[str], int]] = None
  # 'jit' (the current contract) or 'pmap' (v0.5's: replicated state,
  # batches split per device); see algoperf/layout.py.
  api: str = 'jit'

  def close(self) -> None:
    """Removes the shims loading it installed (see algoperf/compat.py)."""
    shims = _SHIMS.pop(self.path, None)
    if shims is not None:
      shims.remove()

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


def _package_chain(path: Path) -> Tuple[Path, List[str]]:
  """The folder to import ``path`` from and its dotted name's parts.

  As the reference imports a submission (``importlib.import_module`` on the
  dotted form of its path), every folder above the file that holds an
  ``__init__.py`` is a package: ``algorithms/x/jax/submission.py`` in a tree
  of packages is ``algorithms.x.jax.submission`` imported from the folder
  that holds ``algorithms``.
  """
  parts = [path.stem]
  folder = path.parent
  while (folder / '__init__.py').is_file() and folder.parent != folder:
    parts.insert(0, folder.name)
    folder = folder.parent
  return folder, parts


def _alias_package(name: str, folder: Path) -> None:
  """Registers an empty package ``name`` whose modules live in ``folder``."""
  package = ModuleType(name)
  package.__path__ = [str(folder)]  # type: ignore[attr-defined]
  package.__package__ = name
  sys.modules[name] = package


def _module_name(path: Path) -> str:
  """The dotted name to import the submission at ``path`` under.

  The reference's name when its top package is free (or already this one);
  otherwise (no package around the file, or a top package name another
  module already uses, e.g. ``submissions``) the same chain under a private
  top package, so relative imports (``from .helper import x``) still work.
  """
  root, parts = _package_chain(path)
  top = sys.modules.get(parts[0])
  top_folder = root / parts[0]
  if len(parts) > 1:
    taken = top is not None and str(top_folder) not in [
        str(Path(p).resolve()) for p in getattr(top, '__path__', [])]
    if not taken:
      return '.'.join(parts)
  alias = f'_algoperf_submission_{abs(hash(str(path)))}'
  if alias not in sys.modules:
    _alias_package(alias, top_folder if len(parts) > 1 else path.parent)
  return '.'.join([alias, *parts[1:]] if len(parts) > 1 else [alias, parts[0]])


def import_submission(path: str | Path) -> Tuple[Path, ModuleType]:
  """Imports the submission file at ``path`` (or ``path``/submission.py).

  Returns the resolved file path and the module; does not check its hooks.
  The module is imported by its dotted name in its package tree, as the
  reference does (so relative imports work, and absolute ones from the tree's
  root); its own folder and the working directory are also on ``sys.path``
  so it can import loose helpers. Raises ``SubmissionError`` if there is no
  such file or it (or a module it imports) has a syntax error, and whatever
  else the module raises while it is imported.
  """
  path = submission_file(path)
  root, _ = _package_chain(path)
  for folder in (str(path.parent), str(root)):
    if folder not in sys.path:
      sys.path.insert(0, folder)
  if os.getcwd() not in sys.path:
    sys.path.append(os.getcwd())
  _install_shims(path)
  module_name = _module_name(path)
  existing = sys.modules.get(module_name)
  if existing is not None and getattr(existing, '__file__', None) == str(path):
    return path, existing
  before = set(sys.modules)
  try:
    module = importlib.import_module(module_name)
  except SyntaxError as e:
    _forget(set(sys.modules) - before)
    # One line instead of a traceback through importlib (the CLI prints it).
    raise SubmissionError(_syntax_error_message(path, e)) from e
  except BaseException:
    _forget(set(sys.modules) - before)
    raise
  return path, module


# The shims each imported submission file needed (removed by Submission.close).
_SHIMS: Dict[Path, compat.Shims] = {}


def _install_shims(path: Path) -> None:
  """Installs what a v0.5-era submission needs to import and run unchanged.

  The sources read are the file's package folder (all of it) or, for a loose
  file, the file and its sibling modules.
  """
  if (path.parent / '__init__.py').is_file():
    sources = [path.parent]
  else:
    sources = [p for p in path.parent.glob('*.py') if p.is_file()]
  names = compat.shims_for(sources)
  if names:
    if path in _SHIMS:
      _SHIMS[path].remove()
    _SHIMS[path] = compat.Shims(names).install()


def installed_shims() -> frozenset:
  """The submission files whose shims are installed now."""
  return frozenset(_SHIMS)


def remove_shims(exclude: frozenset = frozenset()) -> None:
  """Removes the shims of every imported submission file not in ``exclude``."""
  for path in [p for p in _SHIMS if p not in exclude]:
    _SHIMS.pop(path).remove()


def _forget(names: set) -> None:
  """Drops half-imported modules, so a fixed file is imported afresh."""
  for name in names:
    sys.modules.pop(name, None)


API_CHOICES = ('auto', 'jit', 'pmap')


def load_submission(path: str | Path, api: str = 'auto') -> Submission:
  """Imports the submission at ``path`` (a .py file, or a folder with submission.py).

  ``api``: ``'jit'`` or ``'pmap'`` (the v0.5 contract) to say which runner
  contract the submission was written for; ``'auto'`` reads it from the
  source (``jax.pmap`` calls mean pmap). See ``import_submission`` for how
  it is imported.
  """
  if api not in API_CHOICES:
    raise SubmissionError(
        f'Unknown submission API {api!r}; choose one of {", ".join(API_CHOICES)}.')
  path, module = import_submission(path)
  if api == 'auto':
    api = 'pmap' if compat.uses_pmap(path.read_text(errors='replace')) else 'jit'
    if api == 'pmap':
      logging.warning(
          'Submission %s calls jax.pmap: running it under the v0.5 contract '
          '(replicated state, batches of shape (devices, per-device batch, '
          '...)); pass --submission_api jit to override.',
          path.parent.name if path.stem == 'submission' else path.stem)
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
      get_eval_batch_size=(module.get_eval_batch_size if callable(
          getattr(module, 'get_eval_batch_size', None)) else None),
      api=api,
  )


def _asked_size(submission: Submission, name: str) -> Optional[int]:
  """``get_batch_size(name)``, or None when the submission does not know ``name``.

  Not knowing is any exception (the reference's own submissions raise
  ``ValueError`` or ``KeyError``) or a ``None`` result.
  """
  try:
    size = submission.get_batch_size(name)
  except Exception:  # pylint: disable=broad-except
    return None
  if size is None:
    return None
  try:
    return int(size)
  except (TypeError, ValueError):
    raise SubmissionError(
        f'Submission {submission.path.name}: get_batch_size({name!r}) returned '
        f'{size!r}; it must return an int.') from None


def resolve_global_batch_size(
    submission: Submission,
    workload_name: str,
    base_workload_name: str,
    override: Optional[int],
    *,
    force: bool = False,
) -> int:
  """The submission's batch size for a workload, with the reference's fallbacks.

  ``get_batch_size(workload_name)``, then the base workload's name; when the
  submission knows neither (it raises or returns None: written for other
  workloads), ``override`` (the ``--global_batch_size`` flag); without it, a
  ``SubmissionError``. With ``force`` (``algoperf check``), ``override``
  wins over the submission's own size, with a note that says so.
  """
  names = list(dict.fromkeys((workload_name, base_workload_name)))
  for name in names:
    size = _asked_size(submission, name)
    if size is None:
      continue
    if override is not None and override != size:
      if force:
        logging.warning(
            'The submission sets global batch size %d for %s; using '
            '--global_batch_size=%d instead.', size, name, override)
        return int(override)
      logging.warning(
          'The submission sets global batch size %d for %s; ignoring '
          '--global_batch_size=%d.', size, name, override)
    return size
  if override is None:
    raise SubmissionError(
        f'Submission {submission.path.name}: get_batch_size() does not know '
        f'workload {workload_name!r}'
        + (f' or its base {base_workload_name!r}'
           if base_workload_name != workload_name else '')
        + ' (it raised or returned None). It was probably written for other '
        'workloads; pass --global_batch_size N to choose the batch size.'
    )
  return int(override)


def resolve_eval_batch_size(submission: Submission, workload_name: str,
                            default: int) -> int:
  """The eval batch size: the submission's ``get_eval_batch_size`` if it has one.

  As the reference runner does; ``default`` (the workload's) otherwise, or
  when the hook does not know the workload (raises or returns None).
  """
  hook = submission.get_eval_batch_size
  if hook is None:
    return int(default)
  try:
    size = hook(workload_name)
  except Exception:  # pylint: disable=broad-except
    logging.warning('get_eval_batch_size(%r) raised; using the workload\'s '
                    'eval batch size %d.', workload_name, default)
    return int(default)
  if size is None:
    return int(default)
  if (not isinstance(size, numbers.Integral) or isinstance(size, bool)
      or size <= 0):
    raise SubmissionError(
        f'Submission {submission.path.name}: get_eval_batch_size({workload_name!r}) '
        f'returned {size!r}; it must return a positive int.')
  return int(size)


def check_divisible(batch_size: int, num_devices: int, what: str) -> None:
  """Raises unless ``batch_size`` splits evenly over ``num_devices``."""
  if batch_size <= 0 or batch_size % num_devices:
    raise SubmissionError(
        f'The {what} ({batch_size}) must be a positive multiple of the number '
        f'of devices ({num_devices}); choose a batch size divisible by '
        f'{num_devices}.'
    )
