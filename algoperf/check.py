"""`algoperf check`: is a submission ready to run?

Static checks first, each with a message a first-time author can act on:

1. the file exists, parses and imports;
2. the required hooks exist (``get_batch_size``, ``init_optimizer_state``,
   ``update_params``, ``data_selection``; ``prepare_for_eval`` is optional);
3. their parameters fit how the runner calls them (docs/RULES.md, Submission
   hooks): ``get_batch_size``, ``init_optimizer_state`` and ``data_selection``
   are called positionally (the count matters, and a reference name in the
   wrong position is a bug); ``update_params`` and ``prepare_for_eval`` are called by
   keyword, so their parameter names must be exactly the reference's
   (``train_state`` is optional);
4. the search space (``tuning_search_space.json`` beside the submission, or
   ``--tuning_search_space``) parses and samples, and the source reads no
   ``hyperparameters.<name>`` it lacks unless the read is guarded (``hasattr``,
   ``getattr`` with a default, a ``try`` catching ``AttributeError``: see
   :func:`hyperparameter_reads`); an unguarded one is a FAIL, since the run
   would stop with an AttributeError there. Self-tuning submissions (folder
   ending ``_self_tuning``, or ``--tuning_ruleset self``) take no space;
5. the source uses no workload internals: no import of ``workloads`` modules,
   no ``._build_input_queue``, ``._eval_model_on_split`` or ``.eval_model``.

Then a dry run: a few steps on each named workload with synthetic data, through
the real runner (so the submission sees the fenced workload), with every hook
wrapped so a failure names the hook that raised. After the steps the training
loss on a fixed batch must be finite.

With ``memory`` (``--memory``) the dry run is replaced by a memory check: one
step per workload compiled ahead of time at its real batch size, its memory
compared with the device's (algoperf/memory.py).

The result is a :class:`CheckReport`; ``ok`` is True only if nothing failed
(warnings do not fail a check).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, TextIO, Tuple

from algoperf import fence, tuning
from algoperf.errors import ConfigError

DEFAULT_WORKLOADS = ('mnist1d',)
DEFAULT_STEPS = 5

OK, FAIL, WARN, SKIP = 'OK', 'FAIL', 'WARN', 'SKIP'

# docs/RULES.md, Submission hooks: each hook's parameters, in the order the runner
# passes them.
HOOK_PARAMETERS: Dict[str, Tuple[str, ...]] = {
    'get_batch_size': ('workload_name',),
    'init_optimizer_state': ('workload', 'model_params', 'model_state',
                             'hyperparameters', 'rng'),
    'update_params': ('workload', 'current_param_container',
                      'current_params_types', 'model_state', 'hyperparameters',
                      'batch', 'loss_type', 'optimizer_state', 'eval_results',
                      'global_step', 'rng'),
    'prepare_for_eval': ('workload', 'current_param_container',
                         'current_params_types', 'model_state',
                         'hyperparameters', 'loss_type', 'optimizer_state',
                         'eval_results', 'global_step', 'rng'),
    'data_selection': ('workload', 'input_queue', 'optimizer_state',
                       'current_param_container', 'model_state',
                       'hyperparameters', 'global_step', 'rng'),
}
REQUIRED_HOOKS = ('get_batch_size', 'init_optimizer_state', 'update_params',
                  'data_selection')
OPTIONAL_HOOKS = ('prepare_for_eval',)
POSITIONAL_HOOKS = ('get_batch_size', 'init_optimizer_state', 'data_selection')
KEYWORD_HOOKS = ('update_params', 'prepare_for_eval')
# Passed to update_params only if its signature names it.
OPTIONAL_KEYWORDS = {'update_params': ('train_state',)}

# Flagged on any object in the source: there is no legitimate use of these names.
_FORBIDDEN_ANYWHERE = ('_build_input_queue', 'build_input_queue', '_build_dataset',
                       '_eval_model_on_split', '_eval_model', 'eval_model')
# Flagged only on an object whose name mentions "workload" (too common otherwise).
_FORBIDDEN_ON_WORKLOAD = tuple(sorted(fence.FORBIDDEN_ATTRIBUTES
                                      - set(_FORBIDDEN_ANYWHERE)))
# Harness modules a submission has no business importing (a warning).
_HARNESS_MODULES = ('runner', 'experiment', 'recorder', 'clock', 'fence', 'check',
                    'cli', 'progress')


def _signature_text(hook: str) -> str:
  names = list(HOOK_PARAMETERS[hook]) + list(OPTIONAL_KEYWORDS.get(hook, ()))
  if hook in OPTIONAL_KEYWORDS:
    names[-1] += '=None'
  return f'def {hook}({", ".join(names)})'


@dataclasses.dataclass
class Finding:
  """One line of the report: a status, what was checked, and what to do."""

  status: str
  topic: str
  message: str = ''

  def render(self) -> str:
    text = f'  {self.status:<4}  {self.topic}'
    if self.message:
      text += ': ' + self.message.replace('\n', '\n' + ' ' * 8)
    return text


@dataclasses.dataclass
class WorkloadResult:
  """The dry run on one workload."""

  workload: str
  ok: bool
  message: str  # 'OK (...)' or 'FAIL: <hook>: <ExceptionType>: <message>'
  hook: Optional[str] = None

  def render(self) -> str:
    return f'  {self.workload}: {self.message}'


@dataclasses.dataclass
class CheckReport:
  """Everything `algoperf check` found about one submission."""

  submission: str
  findings: List[Finding] = dataclasses.field(default_factory=list)
  dry_run: List[WorkloadResult] = dataclasses.field(default_factory=list)
  dry_run_skipped: Optional[str] = None
  lines: List[str] = dataclasses.field(default_factory=list)

  @property
  def failures(self) -> List[str]:
    out = [f'{f.topic}: {f.message}' for f in self.findings if f.status == FAIL]
    out += [f'{r.workload}: {r.message}' for r in self.dry_run if not r.ok]
    return out

  @property
  def ok(self) -> bool:
    return not self.failures

  @property
  def text(self) -> str:
    return '\n'.join(self.lines) + '\n'


class _Printer:
  """Collects the report's lines and prints each as soon as it is known."""

  def __init__(self, report: CheckReport, out: Optional[TextIO]):
    self.report = report
    self.out = out

  def __call__(self, line: str) -> None:
    self.report.lines.append(line)
    if self.out is not None:
      print(line, file=self.out, flush=True)


# --- static checks -------------------------------------------------------------


def _submission_file(path: str | Path) -> Path:
  path = Path(path).expanduser()
  return path / 'submission.py' if path.is_dir() else path


def _source_files(file: Path) -> List[Path]:
  """The submission file, plus its folder's other .py files for a submission.py."""
  if file.name != 'submission.py':
    return [file]
  others = sorted(p for p in file.parent.glob('*.py') if p != file)
  return [file] + others


def _is_workloads_module(name: Optional[str]) -> bool:
  return bool(name) and (name == 'workloads' or name.startswith('workloads.'))


def _names_workload(node: ast.AST) -> bool:
  """Whether an expression's text is about a workload (``workload``, ``self._workload``)."""
  if isinstance(node, ast.Name):
    return 'workload' in node.id.lower()
  if isinstance(node, ast.Attribute):
    return 'workload' in node.attr.lower() or _names_workload(node.value)
  return False


def scan_source(source: str, filename: str = '<submission>') -> Tuple[List[str], List[str]]:
  """Uses of workload internals in ``source``: ``(problems, warnings)``, one line each.

  Raises ``SyntaxError`` if the source does not parse.
  """
  tree = ast.parse(source, filename=filename)
  problems: List[str] = []
  warnings: List[str] = []
  where = lambda node: f'{filename}:{node.lineno}'  # noqa: E731

  def forbidden_attribute(node: ast.AST, name: str, on: ast.AST) -> None:
    if name in _FORBIDDEN_ANYWHERE or (name in _FORBIDDEN_ON_WORKLOAD
                                       and _names_workload(on)):
      problems.append(f'{where(node)} uses `.{name}`. {fence.rule_message(name)}')

  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if _is_workloads_module(alias.name):
          problems.append(
              f'{where(node)} imports `{alias.name}`. Submissions may not import '
              'workload code: use only the `workload` object the hooks receive '
              '(its model_fn, loss_fn, param_shapes, ...).')
        elif alias.name.startswith('algoperf.') and (
            alias.name.split('.')[1] in _HARNESS_MODULES):
          warnings.append(f'{where(node)} imports the harness module '
                          f'`{alias.name}`; submissions normally import only '
                          'algoperf.spec, jax_sharding_utils, submission_utils '
                          'and optimizers.')
    elif isinstance(node, ast.ImportFrom):
      module = node.module or ''
      if node.level == 0 and _is_workloads_module(module):
        problems.append(
            f'{where(node)} imports from `{module}`. Submissions may not import '
            'workload code: use only the `workload` object the hooks receive '
            '(its model_fn, loss_fn, param_shapes, ...).')
      elif node.level == 0 and module == 'algoperf':
        for alias in node.names:
          if alias.name in _HARNESS_MODULES:
            warnings.append(f'{where(node)} imports the harness module '
                            f'`algoperf.{alias.name}`; submissions normally import '
                            'only algoperf.spec, jax_sharding_utils, '
                            'submission_utils and optimizers.')
    elif isinstance(node, ast.Attribute):
      forbidden_attribute(node, node.attr, node.value)
    elif isinstance(node, ast.Call):
      func = node.func
      func_name = (func.id if isinstance(func, ast.Name)
                   else func.attr if isinstance(func, ast.Attribute) else '')
      args = node.args
      first = args[0] if args else None
      second = args[1] if len(args) > 1 else None
      if (func_name in ('getattr', 'hasattr') and isinstance(second, ast.Constant)
          and isinstance(second.value, str)):
        forbidden_attribute(node, second.value, first)
      if (func_name in ('import_module', '__import__')
          and isinstance(first, ast.Constant) and isinstance(first.value, str)
          and _is_workloads_module(first.value)):
        problems.append(f'{where(node)} imports `{first.value}`. Submissions may '
                        'not import workload code.')
  return problems, warnings


# Names a submission gives the hyperparameters namedtuple.
_HYPERPARAMETER_NAMES = frozenset({'hyperparameters', 'hparams'})
# An ``except`` of one of these catches the AttributeError of a missing field.
_CATCHES_ATTRIBUTE_ERROR = frozenset({'AttributeError', 'Exception', 'BaseException'})


@dataclasses.dataclass(frozen=True)
class HyperparameterRead:
  """One ``hyperparameters.<name>`` (or ``getattr(hyperparameters, 'name')``) read.

  ``guarded``: the source makes sure the read cannot raise when the field is
  missing (a ``hasattr`` test, an early return, a ``try`` that catches
  ``AttributeError``).
  """

  name: str
  line: int
  guarded: bool


def _constant_str(node: Optional[ast.AST]) -> Optional[str]:
  if isinstance(node, ast.Constant) and isinstance(node.value, str):
    return node.value
  return None


def _call_name(node: ast.AST) -> str:
  if not isinstance(node, ast.Call):
    return ''
  func = node.func
  if isinstance(func, ast.Name):
    return func.id
  if isinstance(func, ast.Attribute):
    return func.attr
  return ''


def _present_if_true(test: ast.AST, watched: frozenset) -> frozenset:
  """The ``(variable, field)`` pairs that surely exist when ``test`` is true."""
  if (isinstance(test, ast.Call) and isinstance(test.func, ast.Name)
      and test.func.id == 'hasattr' and len(test.args) == 2
      and not test.keywords and isinstance(test.args[0], ast.Name)
      and test.args[0].id in watched and _constant_str(test.args[1])):
    return frozenset({(test.args[0].id, test.args[1].value)})
  if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
    return _present_if_false(test.operand, watched)
  if isinstance(test, ast.BoolOp):
    parts = [_present_if_true(v, watched) for v in test.values]
    if isinstance(test.op, ast.And):
      return frozenset().union(*parts)
    return frozenset.intersection(*parts)
  return frozenset()


def _present_if_false(test: ast.AST, watched: frozenset) -> frozenset:
  """The ``(variable, field)`` pairs that surely exist when ``test`` is false."""
  if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
    return _present_if_true(test.operand, watched)
  if isinstance(test, ast.BoolOp):
    parts = [_present_if_false(v, watched) for v in test.values]
    if isinstance(test.op, ast.Or):
      return frozenset().union(*parts)
    return frozenset.intersection(*parts)
  return frozenset()


def _always_leaves(body: Sequence[ast.stmt]) -> bool:
  """Whether running ``body`` never falls through to the next statement."""
  if not body:
    return False
  last = body[-1]
  if isinstance(last, (ast.Return, ast.Raise, ast.Continue, ast.Break)):
    return True
  if isinstance(last, ast.If):
    return _always_leaves(last.body) and _always_leaves(last.orelse)
  return False


def _catches_attribute_error(handlers: Sequence[ast.excepthandler]) -> bool:
  for handler in handlers:
    kinds = handler.type
    if kinds is None:
      return True  # a bare ``except:``
    for kind in (kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]):
      name = (kind.id if isinstance(kind, ast.Name)
              else kind.attr if isinstance(kind, ast.Attribute) else '')
      if name in _CATCHES_ATTRIBUTE_ERROR:
        return True
  return False


def _suppresses_attribute_error(items: Sequence[ast.withitem]) -> bool:
  """``with contextlib.suppress(AttributeError):`` and the like."""
  for item in items:
    call = item.context_expr
    if _call_name(call) == 'suppress':
      for arg in call.args:
        name = (arg.id if isinstance(arg, ast.Name)
                else arg.attr if isinstance(arg, ast.Attribute) else '')
        if name in _CATCHES_ATTRIBUTE_ERROR:
          return True
  return False


def _rebound(node: ast.AST) -> frozenset:
  """Names assigned anywhere inside ``node`` (a rebound name is not the namedtuple)."""
  out = set()
  for child in ast.walk(node):
    if isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
      out.add(child.id)
  return frozenset(out)


@dataclasses.dataclass(frozen=True)
class _Scope:
  watched: frozenset  # variable names that hold the hyperparameters here
  present: frozenset = frozenset()  # fields a hasattr test has established
  catch_all: bool = False  # inside a try that catches AttributeError

  def knowing(self, fields: frozenset) -> '_Scope':
    return dataclasses.replace(self, present=self.present | fields) if fields else self


class _ReadFinder:
  """Walks a module, noting each hyperparameter read and whether it is guarded."""

  def __init__(self) -> None:
    self.reads: List[HyperparameterRead] = []

  def note(self, variable: str, name: str, node: ast.AST, scope: _Scope) -> None:
    if name.startswith('_') or hasattr(tuple, name):
      return  # namedtuple methods: _asdict, _replace, _fields, count, index
    guarded = scope.catch_all or (variable, name) in scope.present
    self.reads.append(HyperparameterRead(name, node.lineno, guarded))

  def block(self, body: Sequence[ast.stmt], scope: _Scope) -> None:
    for statement in body:
      self.visit(statement, scope)
      if isinstance(statement, ast.If):
        # ``if not hasattr(h, 'x'): return ...`` guards the rest of the block.
        if _always_leaves(statement.body):
          scope = scope.knowing(_present_if_false(statement.test, scope.watched))
        elif _always_leaves(statement.orelse):
          scope = scope.knowing(_present_if_true(statement.test, scope.watched))

  def children(self, node: ast.AST, scope: _Scope) -> None:
    for _, value in ast.iter_fields(node):
      if isinstance(value, list):
        if value and all(isinstance(v, ast.stmt) for v in value):
          self.block(value, scope)
        else:
          for item in value:
            if isinstance(item, ast.AST):
              self.visit(item, scope)
      elif isinstance(value, ast.AST):
        self.visit(value, scope)

  def visit(self, node: ast.AST, scope: _Scope) -> None:
    watched = scope.watched
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
      for default in node.args.defaults + [d for d in node.args.kw_defaults if d]:
        self.visit(default, scope)
      for decorator in getattr(node, 'decorator_list', ()):
        self.visit(decorator, scope)
      arguments = node.args
      parameters = {a.arg for a in (arguments.posonlyargs + arguments.args
                                    + arguments.kwonlyargs)}
      inner = dataclasses.replace(scope, watched=(
          watched | (_HYPERPARAMETER_NAMES & parameters)) - _rebound(node))
      if isinstance(node, ast.Lambda):
        self.visit(node.body, inner)
      else:
        self.block(node.body, inner)
    elif isinstance(node, ast.If):
      self.visit(node.test, scope)
      self.block(node.body, scope.knowing(_present_if_true(node.test, watched)))
      self.block(node.orelse, scope.knowing(_present_if_false(node.test, watched)))
    elif isinstance(node, ast.IfExp):
      self.visit(node.test, scope)
      self.visit(node.body, scope.knowing(_present_if_true(node.test, watched)))
      self.visit(node.orelse, scope.knowing(_present_if_false(node.test, watched)))
    elif isinstance(node, ast.BoolOp):
      # ``hasattr(h, 'x') and h.x``, ``not hasattr(h, 'x') or h.x``.
      inner = scope
      for value in node.values:
        self.visit(value, inner)
        inner = inner.knowing(
            _present_if_true(value, watched) if isinstance(node.op, ast.And)
            else _present_if_false(value, watched))
    elif isinstance(node, (ast.Try, getattr(ast, 'TryStar', ast.Try))):
      body_scope = scope
      if _catches_attribute_error(node.handlers):
        body_scope = dataclasses.replace(scope, catch_all=True)
      self.block(node.body, body_scope)
      for handler in node.handlers:
        self.visit(handler, scope)
      self.block(node.orelse, scope)
      self.block(node.finalbody, scope)
    elif isinstance(node, (ast.With, ast.AsyncWith)):
      for item in node.items:
        self.visit(item, scope)
      if _suppresses_attribute_error(node.items):
        scope = dataclasses.replace(scope, catch_all=True)
      self.block(node.body, scope)
    elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)
          and isinstance(node.value, ast.Name) and node.value.id in watched):
      self.note(node.value.id, node.attr, node, scope)
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
          and node.func.id == 'getattr' and len(node.args) == 2
          and not node.keywords and isinstance(node.args[0], ast.Name)
          and node.args[0].id in watched and _constant_str(node.args[1])):
      # getattr(h, 'x') without a default raises like h.x does.
      self.note(node.args[0].id, node.args[1].value, node, scope)
      self.children(node, scope)
    else:
      self.children(node, scope)


def hyperparameter_reads(source: str, filename: str = '<submission>'
                         ) -> List[HyperparameterRead]:
  """Every read of a hyperparameter field in ``source``, in source order.

  A read is ``hyperparameters.<name>`` (or ``hparams.<name>``, or
  ``getattr(hyperparameters, 'name')`` without a default) where that name is
  the hook's parameter, not a variable the code assigns. It is guarded when it
  cannot raise for a missing field: inside ``if hasattr(hyperparameters,
  'name'):`` (also within ``and``/``or`` chains, conditional expressions and
  ``else`` branches of a negated test), after ``if not hasattr(...): return``,
  or inside a ``try`` whose handlers catch ``AttributeError`` (or
  ``Exception``, or everything). Namedtuple methods are not reads.
  Raises ``SyntaxError`` if the source does not parse.
  """
  tree = ast.parse(source, filename=filename)
  finder = _ReadFinder()
  # Module level: the names, unless the module assigns them itself.
  top_level = ast.Module(body=[s for s in tree.body if not isinstance(
      s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))], type_ignores=[])
  finder.block(tree.body, _Scope(watched=_HYPERPARAMETER_NAMES - _rebound(top_level)))
  return sorted(finder.reads, key=lambda r: r.line)


def _undefined_reads_message(unguarded: Dict[str, List[str]],
                             space_names: Sequence[str], space_file: str) -> str:
  """The FAIL line for unguarded reads of names the search space lacks."""
  import difflib  # pylint: disable=import-outside-toplevel

  parts = []
  for name, places in unguarded.items():
    close = difflib.get_close_matches(name, space_names, n=1)
    hint = f'; did you mean {close[0]}?' if close else ''
    parts.append(f'hyperparameters.{name} ({", ".join(places)}{hint})')
  name = next(iter(unguarded)) if len(unguarded) == 1 else 'name'
  return (f'the submission reads {", ".join(parts)}, which {space_file} does '
          'not define, so `algoperf run` would stop there with an '
          f'AttributeError. Add {"it" if len(unguarded) == 1 else "them"} to '
          f'{space_file}, or guard the read: getattr(hyperparameters, '
          f"'{name}', default), or inside `if hasattr(hyperparameters, "
          f"'{name}'):`.")


def check_signature(hook: str, fn: Callable) -> List[str]:
  """Problems with how ``fn`` would be called as ``hook``; empty if none."""
  expected = HOOK_PARAMETERS[hook]
  try:
    sig = inspect.signature(fn)
  except (TypeError, ValueError):
    return []  # A builtin or C function: nothing to inspect.
  params = list(sig.parameters.values())
  kinds = inspect.Parameter
  problems = []
  if hook in POSITIONAL_HOOKS:
    try:
      sig.bind(*expected)
    except TypeError as e:
      problems.append(
          f'{hook}{sig} cannot take the {len(expected)} positional arguments the '
          f'runner passes ({e}). Expected: {_signature_text(hook)}.')
      return problems
    positional = [p for p in params
                  if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    for i, (param, name) in enumerate(zip(positional, expected)):
      if param.name != name and param.name in expected:
        problems.append(
            f'parameter {i + 1} of {hook} is named `{param.name}`, but the runner '
            f'passes `{name}` in that position (the arguments come positionally, '
            f'in this order: {", ".join(expected)}).')
    return problems
  # Called by keyword: names are what matters.
  passed = list(expected)
  by_name = sig.parameters
  has_var_kw = any(p.kind == kinds.VAR_KEYWORD for p in params)
  for name in OPTIONAL_KEYWORDS.get(hook, ()):
    if name in by_name or has_var_kw:
      passed.append(name)
  missing = [n for n in expected if not has_var_kw and (
      n not in by_name or by_name[n].kind == kinds.POSITIONAL_ONLY)]
  unexpected = [p.name for p in params
                if p.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD)
                and p.name not in passed]
  required_unexpected = [n for n in unexpected if by_name[n].default is kinds.empty]
  positional_only = [p.name for p in params
                     if p.kind == kinds.POSITIONAL_ONLY and p.name in passed]
  if missing or required_unexpected or positional_only:
    parts = [f'the runner calls {hook} by keyword, so its parameters must be '
             f'named exactly: {", ".join(expected)}'
             + (' (and optionally train_state)' if hook in OPTIONAL_KEYWORDS else '')
             + '.']
    if missing:
      parts.append('Missing: ' + ', '.join(f'`{n}`' for n in missing) + '.')
    if required_unexpected:
      parts.append('Never passed by the runner: '
                   + ', '.join(f'`{n}`' for n in required_unexpected)
                   + ' (rename to the expected name, or give it a default).')
    if positional_only:
      parts.append('Positional-only (cannot be passed by keyword): '
                   + ', '.join(f'`{n}`' for n in positional_only) + '.')
    problems.append(' '.join(parts))
    return problems
  try:
    sig.bind(**{n: None for n in passed})
  except TypeError as e:
    problems.append(f'{hook}{sig} cannot be called as the runner calls it ({e}). '
                    f'Expected: {_signature_text(hook)}.')
  return problems


def _short(text: str, limit: int = 400) -> str:
  """The first paragraph of an error message, at most ``limit`` characters."""
  text = str(text).strip().split('\n\n')[0].strip()
  text = ' '.join(line.strip() for line in text.splitlines())
  return text if len(text) <= limit else text[:limit - 3] + '...'


def _display_path(path: Path) -> str:
  try:
    return str(path.resolve().relative_to(Path.cwd()))
  except ValueError:
    return str(path)


def _location(error: BaseException, folder: Path) -> str:
  """``file:line in function`` of the innermost frame in the submission's folder."""
  folder = folder.resolve()
  for frame in reversed(traceback.extract_tb(error.__traceback__)):
    try:
      Path(frame.filename).resolve().relative_to(folder)
    except ValueError:
      continue
    return f'{_display_path(Path(frame.filename))}:{frame.lineno} in {frame.name}'
  return ''


# --- dry run ---------------------------------------------------------------------


class _HookFailure(Exception):
  """A hook raised (or returned something unusable) during the dry run."""

  def __init__(self, hook: str, error: BaseException):
    super().__init__(f'{hook}: {type(error).__name__}: {error}')
    self.hook = hook
    self.error = error


def _find_hook_failure(error: BaseException) -> Optional[_HookFailure]:
  """The ``_HookFailure`` in ``error``'s chain (the runner may wrap it), if any."""
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, _HookFailure):
      return error
    seen.add(id(error))
    wrapped = getattr(error, 'error', None)
    error = (error.__cause__
             or (wrapped if isinstance(wrapped, BaseException) else None)
             or error.__context__)
  return None


class BadReturnValue(TypeError):
  """A hook returned a value the runner cannot use."""


def _guard(hook: str, fn: Callable,
           on_return: Optional[Callable[[Any, tuple, dict], None]] = None,
           before: Optional[Callable[[tuple, dict], None]] = None) -> Callable:
  """``fn`` with its failures turned into ``_HookFailure(hook, ...)``.

  ``functools.wraps`` keeps ``inspect.signature`` (the runner reads it to
  decide whether to pass ``train_state``).
  """
  from algoperf import spec  # pylint: disable=import-outside-toplevel

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    if before is not None:
      before(args, kwargs)
    try:
      out = fn(*args, **kwargs)
    except spec.TrainingCompleteError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise _HookFailure(hook, e) from e
    if on_return is not None:
      try:
        on_return(out, args, kwargs)
      except BadReturnValue as e:
        raise _HookFailure(hook, e) from None
    return out

  return wrapper


def _shape_table(tree: Any, leaf_shape: Callable[[Any], Any]) -> Dict[str, Any]:
  import jax  # pylint: disable=import-outside-toplevel

  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path): leaf_shape(leaf) for path, leaf in leaves}


def _check_update_return(workload: Any, layout: Any) -> Callable:
  """A return check: ``(optimizer_state, params, model_state)`` with the model's shapes.

  ``layout`` (algoperf/layout.py) gives one logical value per leaf, so a
  pmap-era submission's replicated params compare with the model's shapes.
  """
  from algoperf import spec  # pylint: disable=import-outside-toplevel

  def check(out: Any, args: tuple, kwargs: dict) -> None:
    del args, kwargs
    if not isinstance(out, (tuple, list)) or len(out) != 3:
      got = (f'a {type(out).__name__} of length {len(out)}'
             if isinstance(out, (tuple, list)) else f'a {type(out).__name__}')
      raise BadReturnValue(f'returned {got}; it must return the triple '
                       '(optimizer_state, params, model_state).')
    expected = _shape_table(
        workload.param_shapes,
        lambda s: tuple(s.shape_tuple) if isinstance(s, spec.ShapeTuple) else s)
    try:
      got = _shape_table(layout.host_copy(out[1]),
                         lambda x: tuple(getattr(x, 'shape', ())))
    except Exception:  # pylint: disable=broad-except
      got = None
    if got != expected:
      if got is None or set(got) != set(expected):
        detail = ('keys differ: expected ' + ', '.join(sorted(expected)[:4])
                  + (', ...' if len(expected) > 4 else '') + '; got '
                  + (', '.join(sorted(got or {})[:4]) or 'none')
                  + (', ...' if got and len(got) > 4 else ''))
      else:
        key = next(k for k in expected if expected[k] != got[k])
        detail = f'{key} has shape {got[key]}, expected {expected[key]}'
      raise BadReturnValue(
          'the params it returned (the second element) do not have the '
          f'model\'s structure and shapes ({detail}); return the updated '
          'current_param_container.')

  return check


def _check_batch(out: Any, args: tuple, kwargs: dict) -> None:
  del args, kwargs
  if not hasattr(out, 'keys') or not hasattr(out, '__getitem__'):
    raise BadReturnValue(f'returned a {type(out).__name__}; it must return a batch '
                     "dict such as next(input_queue) ({'inputs', 'targets', "
                     "'weights'}).")


def _fixed_batch_loss(workload: Any, params: Any, model_state: Any,
                      batch: Dict[str, Any]) -> float:
  """Mean training loss (no dropout, no label smoothing) of ``params`` on ``batch``."""
  from algoperf import spec  # pylint: disable=import-outside-toplevel

  logits, _ = workload.model_fn(
      params, batch, model_state, spec.ForwardPassMode.EVAL, None,
      update_batch_norm=False)
  losses = workload.loss_fn(label_batch=batch['targets'], logits_batch=logits,
                            mask_batch=batch.get('weights'))
  return float(losses['summed']) / float(losses['n_valid_examples'])


def dry_run(submission: Any, workload_name: str, *, steps: int,
            hyperparameters: Any, global_batch_size: Optional[int] = None,
            rng_seed: int = 0) -> WorkloadResult:
  """``steps`` steps of ``submission`` on synthetic ``workload_name`` through the runner.

  As in ``run``: a metrics logger is attached (one that writes nothing), and
  the submission's API (jit or pmap) decides the layout of state and
  batches. ``global_batch_size`` overrides the submission's own size.
  """
  import jax  # pylint: disable=import-outside-toplevel

  import workloads  # pylint: disable=import-outside-toplevel
  from algoperf import layout as layouts  # pylint: disable=import-outside-toplevel
  from algoperf import recorder, runner, spec  # pylint: disable=import-outside-toplevel
  from algoperf.submission import (SubmissionError, check_divisible,  # pylint: disable=import-outside-toplevel
                                   resolve_eval_batch_size,
                                   resolve_global_batch_size)

  folder = submission.path.parent

  def fail(hook: str, error: BaseException, prefix: str = '') -> WorkloadResult:
    where = _location(error, folder)
    message = f'FAIL: {hook}: {prefix}{type(error).__name__}: {_short(error)}'
    if where:
      message += f' (at {where})'
    return WorkloadResult(workload_name, False, message, hook)

  started = time.perf_counter()
  workload = workloads.get_workload(workload_name, synthetic=True)
  base = workloads.get_base_workload_name(workload_name)
  try:
    batch_size = resolve_global_batch_size(submission, workload_name, base,
                                           global_batch_size, force=True)
  except SubmissionError:
    return WorkloadResult(
        workload_name, False,
        f'FAIL: get_batch_size: it does not know {workload_name!r} (it raised '
        'or returned None: the submission does not support this workload); '
        'pass --global_batch_size N to try it with batch size N.',
        'get_batch_size')
  except Exception as e:  # pylint: disable=broad-except
    return fail('get_batch_size', e)
  try:
    check_divisible(batch_size, jax.device_count(), 'global batch size')
  except SubmissionError as e:
    return WorkloadResult(workload_name, False, f'FAIL: get_batch_size: {e}',
                          'get_batch_size')
  if batch_size > workload.num_train_examples:
    return WorkloadResult(
        workload_name, False,
        f'FAIL: get_batch_size: batch size {batch_size} is larger than the '
        f'synthetic training set ({workload.num_train_examples} examples); pass '
        '--global_batch_size N with a smaller N.', 'get_batch_size')

  try:
    layout = layouts.for_api(submission.api)
  except Exception as e:  # pylint: disable=broad-except
    return fail('runner', e)
  batch = next(workload._build_input_queue(  # pylint: disable=protected-access
      jax.random.PRNGKey(rng_seed + 1), 'train', None, batch_size))
  losses: Dict[str, float] = {}
  latest: Dict[str, Any] = {}

  def before_init(args: tuple, kwargs: dict) -> None:
    params, model_state = layout.to_workload((args[1], args[2]))
    losses['initial'] = _fixed_batch_loss(workload, params, model_state, batch)
    latest['state'] = (params, model_state)

  def keep(check: Callable) -> Callable:
    def on_return(out: Any, args: tuple, kwargs: dict) -> None:
      check(out, args, kwargs)
      latest['state'] = layout.to_workload((out[1], out[2]))
    return on_return

  guarded = dataclasses.replace(
      submission,
      init_optimizer_state=_guard('init_optimizer_state',
                                  submission.init_optimizer_state,
                                  before=before_init),
      data_selection=_guard('data_selection', submission.data_selection,
                            on_return=_check_batch),
      update_params=_guard(
          'update_params', submission.update_params,
          on_return=keep(_check_update_return(workload, layout))),
      prepare_for_eval=(None if submission.prepare_for_eval is None else _guard(
          'prepare_for_eval', submission.prepare_for_eval,
          on_return=keep(_check_update_return(workload, layout)))),
  )
  config = runner.TrialConfig(
      global_batch_size=batch_size, hyperparameters=hyperparameters,
      rng_seed=rng_seed, budget_sec=float('inf'),
      eval_batch_size=resolve_eval_batch_size(submission, workload_name,
                                              workload.eval_batch_size),
      max_global_steps=steps)
  # What run attaches, minus the files: code under `if
  # workload.metrics_logger is not None` runs here too.
  logger = recorder.MetricsLogger(tempfile.gettempdir(), enabled=False)
  try:
    result = runner.train_once(workload, guarded, config, logger=logger)
  except Exception as e:  # pylint: disable=broad-except
    hook_failure = _find_hook_failure(e)
    if hook_failure is not None:
      return fail(hook_failure.hook, hook_failure.error)
    return fail('runner', e, prefix='(outside the hooks) ')
  params, model_state = latest['state']
  try:
    final = _fixed_batch_loss(workload, params, model_state, batch)
  except Exception as e:  # pylint: disable=broad-except
    return fail('loss after training', e)
  initial = losses.get('initial', float('nan'))
  if not math.isfinite(final):
    return WorkloadResult(
        workload_name, False,
        f'FAIL: update_params: the training loss on a fixed batch is {final} '
        f'after {result.global_step} step(s) (it was {initial:.4g} at '
        'initialisation): the parameters diverged. Check the learning rate and '
        'the update for divisions by zero.', 'update_params')
  elapsed = time.perf_counter() - started
  note = (f'{result.global_step} step(s), batch size {batch_size}, loss on a '
          f'fixed batch {initial:.4g} -> {final:.4g}, {elapsed:.1f} s')
  if result.stop_reason == 'training_complete':
    note += '; update_params raised TrainingCompleteError'
  return WorkloadResult(workload_name, True, f'OK ({note})')


# --- the whole check ---------------------------------------------------------------


def _resolve_ruleset(file: Path, ruleset: Optional[str]) -> str:
  if ruleset is not None:
    if ruleset not in ('external', 'self'):
      raise ConfigError(f'--tuning_ruleset must be "external" or "self", got {ruleset!r}.')
    return ruleset
  folder = file.parent.name if file.name == 'submission.py' else file.stem
  return 'self' if folder.endswith('_self_tuning') else 'external'


def check_submission(
    path: str | Path,
    *,
    workloads: Optional[Sequence[str]] = None,
    steps: int = DEFAULT_STEPS,
    tuning_search_space: Optional[str | Path] = None,
    tuning_ruleset: Optional[str] = None,
    global_batch_size: Optional[int] = None,
    submission_api: str = 'auto',
    out: Optional[TextIO] = None,
    memory: bool = False,
    memory_limit_bytes: Optional[int] = None,
) -> CheckReport:
  """Checks the submission at ``path``; prints the report to ``out`` as it goes.

  ``workloads`` (default mnist1d) get ``steps`` dry-run steps each (0: static
  checks only). ``tuning_ruleset`` None means "self" for a folder ending
  ``_self_tuning``, else "external". ``global_batch_size`` is the dry run's
  batch size (over the submission's own); ``submission_api`` as for run.
  ``memory``: instead of the dry run, compile one step per workload at its
  real batch size and compare its memory with the device's (or
  ``memory_limit_bytes``); see algoperf/memory.py.
  Raises ``ConfigError`` for bad options (an unknown workload, a negative
  step count).
  """
  from algoperf import submission as submission_module  # pylint: disable=import-outside-toplevel

  # Shims a v0.5-era submission needs are removed when the check ends.
  before = submission_module.installed_shims()
  try:
    return _check_submission(
        path, workloads=workloads, steps=steps,
        tuning_search_space=tuning_search_space, tuning_ruleset=tuning_ruleset,
        global_batch_size=global_batch_size, submission_api=submission_api,
        out=out, memory=memory, memory_limit_bytes=memory_limit_bytes)
  finally:
    submission_module.remove_shims(exclude=before)


def _check_submission(path: str | Path, *, workloads: Optional[Sequence[str]],
                      steps: int, tuning_search_space: Optional[str | Path],
                      tuning_ruleset: Optional[str],
                      global_batch_size: Optional[int], submission_api: str,
                      out: Optional[TextIO], memory: bool = False,
                      memory_limit_bytes: Optional[int] = None) -> CheckReport:
  """``check_submission``'s body."""
  import workloads as workload_registry  # pylint: disable=import-outside-toplevel

  names = list(workloads or DEFAULT_WORKLOADS)
  known = workload_registry.list_workloads()
  unknown = [n for n in names if n not in known]
  if unknown:
    raise ConfigError(f'Unknown workload(s) {", ".join(unknown)}. Known workloads: '
                      f'{", ".join(known)}.')
  if steps < 0:
    raise ConfigError(f'--steps must be 0 or more, got {steps}.')
  file = _submission_file(path)
  report = CheckReport(submission=str(file))
  emit = _Printer(report, out)
  emit(f'Checking {_display_path(file)}')

  def add(status: str, topic: str, message: str = '') -> Finding:
    finding = Finding(status, topic, message)
    report.findings.append(finding)
    emit(finding.render())
    return finding

  def finish() -> CheckReport:
    failures = report.failures
    if failures:
      emit(f'{len(failures)} problem(s) found; fix the FAIL lines above.')
    else:
      emit('All checks passed.')
    return report

  def skip_dry_run(reason: str) -> CheckReport:
    report.dry_run_skipped = reason
    emit(f'Dry run skipped: {reason}')
    return finish()

  # 1. The file exists, parses, imports.
  if not file.is_file():
    add(FAIL, 'file', f'{file} does not exist. Pass a submission .py file or a '
        'folder holding submission.py.')
    return skip_dry_run('there is no submission file.')
  sources: Dict[Path, str] = {}
  for source_file in _source_files(file):
    try:
      sources[source_file] = source_file.read_text()
      ast.parse(sources[source_file], filename=str(source_file))
    except SyntaxError as e:
      add(FAIL, 'syntax', f'{_display_path(source_file)}:{e.lineno}: {e.msg}.')
      return skip_dry_run('the source does not parse.')
    except (OSError, UnicodeDecodeError) as e:
      add(FAIL, 'file', f'cannot read {_display_path(source_file)}: {e}.')
      return skip_dry_run('the source cannot be read.')

  from algoperf import submission as submission_module  # pylint: disable=import-outside-toplevel

  try:
    file, module = submission_module.import_submission(file)
  except submission_module.SubmissionError as e:
    # A syntax error in a module the submission imports from elsewhere.
    add(FAIL, 'syntax' if isinstance(e.__cause__, SyntaxError) else 'import',
        str(e))
    return skip_dry_run('the submission does not import.')
  except Exception as e:  # pylint: disable=broad-except
    where = _location(e, file.parent)
    add(FAIL, 'import', f'importing the submission raised {type(e).__name__}: '
        f'{_short(e)}' + (f' (at {where})' if where else '')
        + '. Check its imports: only installed packages and files beside it.')
    return skip_dry_run('the submission does not import.')
  add(OK, 'import')

  # 2. Hooks exist.
  missing = [h for h in REQUIRED_HOOKS if not callable(getattr(module, h, None))]
  not_callable = [h for h in REQUIRED_HOOKS + OPTIONAL_HOOKS
                  if hasattr(module, h) and not callable(getattr(module, h))]
  present = [h for h in REQUIRED_HOOKS + OPTIONAL_HOOKS
             if callable(getattr(module, h, None))]
  if missing:
    add(FAIL, 'hooks', 'missing ' + ', '.join(f'`{h}`' for h in missing)
        + '. Every submission defines get_batch_size, init_optimizer_state, '
        'update_params and data_selection (prepare_for_eval is optional); '
        'expected:\n' + '\n'.join(_signature_text(h) for h in missing)
        + ('\n' + ', '.join(not_callable) + ' must be functions.'
           if not_callable else '')
        + '\nSee submissions/template/submission.py.')
  else:
    add(OK, 'hooks', ', '.join(present)
        + ('' if 'prepare_for_eval' in present else ' (no prepare_for_eval: fine)'))

  # 3. Signatures.
  signature_problems = []
  for hook in present:
    signature_problems += check_signature(hook, getattr(module, hook))
  if signature_problems:
    add(FAIL, 'signatures', '\n'.join(signature_problems))
  elif present:
    notes = []
    if missing:
      notes.append('of the hooks present')
    if ('update_params' in present
        and 'train_state' in _parameter_names(module.update_params)):
      notes.append('update_params takes train_state')
    add(OK, 'signatures', '; '.join(notes))

  # 4. Search space.
  ruleset = _resolve_ruleset(file, tuning_ruleset)
  hyperparameters = None
  space_ok = True
  if ruleset == 'self':
    if tuning_search_space:
      add(FAIL, 'search space', 'self-tuning submissions take no search space: '
          'drop --tuning_search_space, or use --tuning_ruleset external.')
      space_ok = False
    else:
      add(OK, 'search space', 'self-tuning ruleset: none needed (hyperparameters '
          'is None in every hook)')
  else:
    space_path = (Path(tuning_search_space) if tuning_search_space
                  else file.parent / 'tuning_search_space.json')
    if not space_path.is_file():
      add(FAIL, 'search space',
          f'no {space_path.name} {"at " + str(space_path) if tuning_search_space else "beside the submission"}. '
          'External-tuning submissions ship a tuning_search_space.json (see '
          'submissions/template/tuning_search_space.json); pass '
          '--tuning_search_space PATH to use another file, or --tuning_ruleset '
          'self (or a folder name ending in _self_tuning) for a self-tuning '
          'submission.')
      space_ok = False
    else:
      try:
        space = tuning.load_search_space(space_path)
        points = tuning.generate_points(
            space, min(5, len(space.points)) if space.is_list else 5)
      except (tuning.SearchSpaceError, ValueError, OSError) as e:
        message = _short(e, 600)
        if space_path.name not in message:
          message = f'{_display_path(space_path)}: {message}'
        add(FAIL, 'search space', message)
        space_ok = False
      else:
        hyperparameters = points[0]
        form = (f'{len(space.points)} fixed point(s)' if space.is_list
                else 'sampled 5 points')
        add(OK, 'search space', f'{_display_path(space_path)}: '
            f'{len(space.names)} hyperparameter(s) ({", ".join(space.names)}), '
            f'{form}; the dry run uses the first')
        unguarded: Dict[str, List[str]] = {}
        for source_file, source in sources.items():
          for read in hyperparameter_reads(source, str(source_file)):
            if read.guarded or read.name in space.names:
              continue
            unguarded.setdefault(read.name, []).append(
                f'{source_file.name}:{read.line}')
        if unguarded:
          add(FAIL, 'hyperparameters', _undefined_reads_message(
              unguarded, space.names, space_path.name))

  # 5. Workload internals.
  problems: List[str] = []
  warnings: List[str] = []
  for source_file, source in sources.items():
    p, w = scan_source(source, _display_path(source_file))
    problems += p
    warnings += w
  if problems:
    add(FAIL, 'rules', '\n'.join(problems))
  else:
    add(OK, 'rules', 'no workload internals used')
  for line in warnings:
    add(WARN, 'rules', line)

  # Dry run.
  if missing or signature_problems:
    return skip_dry_run('fix the hooks first.')
  if not space_ok:
    return skip_dry_run('fix the search space first (the dry run needs its '
                        'first point).')
  if steps == 0 and not memory:
    return skip_dry_run('--steps 0.')
  try:
    submission = submission_module.load_submission(file, submission_api)
  except submission_module.SubmissionError as e:
    add(FAIL, 'api', str(e))
    return skip_dry_run('the submission cannot be loaded.')
  if submission.api == 'pmap':
    add(OK, 'api', 'jax.pmap (the v0.5 contract): state replicated with a '
        'leading device axis, batches of shape (devices, per-device batch, '
        '...)')
  if memory:
    from algoperf import memory as step_memory  # pylint: disable=import-outside-toplevel

    emit('Memory check (instead of the dry run): one training step per '
         'workload, compiled ahead of time at its real batch size; nothing runs '
         'and nothing is allocated:')
    for name in names:
      result = step_memory.check_workload(
          submission, name, emit=emit, hyperparameters=hyperparameters,
          global_batch_size=global_batch_size,
          memory_limit_bytes=memory_limit_bytes)
      report.dry_run.append(result)
      emit(result.render())
    return finish()
  emit(f'Dry run: {steps} step(s) on synthetic data, through the runner:')
  for name in names:
    result = dry_run(submission, name, steps=steps,
                     hyperparameters=hyperparameters,
                     global_batch_size=global_batch_size)
    report.dry_run.append(result)
    emit(result.render())
  return finish()


def _parameter_names(fn: Callable) -> Iterable[str]:
  try:
    return inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return ()


__all__ = ['CheckReport', 'Finding', 'HyperparameterRead', 'WorkloadResult',
           'check_signature', 'check_submission', 'dry_run',
           'hyperparameter_reads', 'scan_source']
