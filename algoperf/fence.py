"""The workload as a submission sees it: the public interface, nothing else.

docs/RULES.md, Submission hooks: a submission must not build input pipelines
(``workload._build_input_queue``), read eval data, or run evals. The runner
passes every submission hook a :class:`FencedWorkload` instead of the workload
itself. The view forwards what the rules allow (the facts, ``model_fn``,
``loss_fn``, ``init_model_fn``, ``param_shapes``, ``metrics_logger``, ...) and
refuses the rest with a :class:`FenceError` that names the rule, at the moment
of the access, so the traceback points at the offending line.

Decisions:

* Public names are forwarded, except the few on the deny list (``eval_model``,
  ``data_dir``, ``attach_metrics_logger``, ...): a workload may add public
  facts, and a submission may read them. :data:`ALLOWED` documents the
  interface of docs/RULES.md, Workload interface (and is what ``dir()`` shows
  first).
* ``init_model_fn`` is allowed: submissions do not need it (the runner
  initialises the model and passes the params), but the reference hands them
  the whole workload and calling it changes nothing they could exploit.
* Every private name (one leading underscore) is refused: the known ones with a
  message naming the rule they break, the others with a generic one.
* Dunder names are the proxy's own (``__class__``, ``__hash__``, ...), so
  Python protocols (``copy``, ``hasattr(x, '__deepcopy__')``) work normally.
* The view is read-only: setting or deleting an attribute is refused. Keep
  state in the optimizer state.
* Hash and equality are object's (identity), like the workload's, so the view
  works as a static ``jax.jit`` argument. The runner builds one view per trial and
  passes the same object to every hook, so a jitted step compiles once.
* Bound methods are forwarded as they are (``fenced.model_fn ==
  workload.model_fn``): a new wrapper per access would defeat ``jit`` caches
  keyed on them. This fence catches mistakes and honest misreadings of
  the rules, not determined circumvention (which review catches).
* ``isinstance(fenced, spec.Workload)`` is True: the class is registered as a
  virtual subclass (subclassing would require implementing, or inheriting,
  every abstract method and ``eval_model``, which the view must not have).
"""

from __future__ import annotations

from typing import Any, FrozenSet, List

from algoperf import spec

_RULES = 'AlgoPerf rules (docs/RULES.md, Submission hooks)'

# The public interface (docs/RULES.md, Workload interface) that submissions may
# use, plus the reference workload's extras (output_activation_fn, metrics_logger).
ALLOWED: FrozenSet[str] = frozenset({
    # facts
    'target_metric_name', 'validation_target_value', 'test_target_value',
    'loss_type', 'num_train_examples', 'num_eval_train_examples',
    'num_validation_examples', 'num_test_examples', 'eval_batch_size',
    'train_mean', 'train_stddev', 'max_allowed_runtime_sec',
    'eval_period_time_sec', 'step_hint', 'param_shapes', 'model_params_types',
    # model
    'init_model_fn', 'model_fn', 'loss_fn', 'output_activation_fn',
    'is_output_params',
    # targets
    'has_reached_validation_target', 'has_reached_test_target',
    # logging
    'metrics_logger',
})

_INPUT_PIPELINE = (
    f'{_RULES}: submissions may not build input pipelines (`{{name}}`); use '
    'the `input_queue` passed to data_selection.')
_EVAL = (
    f'{_RULES}: submissions may not run evaluations (`{{name}}`); the runner '
    'evaluates, and update_params receives the results as `eval_results`.')
_DATA = (
    f'{_RULES}: submissions may not read the workload\'s data or data paths '
    '(`{name}`); training batches come only through the `input_queue` passed '
    'to data_selection, and eval data not at all.')
_LOGGER = (
    f'{_RULES}: the runner attaches the metrics logger (`{{name}}`); log '
    'through `workload.metrics_logger` (it may be None).')
_PRIVATE = (
    f'{_RULES}: submissions may use only the workload\'s public interface '
    '(docs/RULES.md, Workload interface); `{name}` is private to the workload.')
_READ_ONLY = (
    f'{_RULES}: the workload is read-only for submissions (tried to '
    '{action} `{name}`); keep your own state in the optimizer state.')

# Names refused with a specific message. Private names not listed here are
# refused with _PRIVATE. The data names cover the reference workloads'
# conventions and workloads/classification.py's (_splits, _data_dir, ...).
DENIED = {
    '_build_input_queue': _INPUT_PIPELINE,
    '_build_dataset': _INPUT_PIPELINE,
    'build_input_queue': _INPUT_PIPELINE,
    'eval_model': _EVAL,
    '_eval_model_on_split': _EVAL,
    '_eval_model': _EVAL,
    '_eval_step': _EVAL,
    '_get_jitted_eval_step': _EVAL,
    '_jitted_eval_step': _EVAL,
    '_eval_iters': _EVAL,
    'data_dir': _DATA,
    '_data_dir': _DATA,
    '_data': _DATA,
    '_splits': _DATA,
    '_get_splits': _DATA,
    '_split_arrays': _DATA,
    '_synthetic_splits': _DATA,
    '_load_real_splits': _DATA,
    'attach_metrics_logger': _LOGGER,
}

# Attribute names a static scan of a submission's source flags (algoperf
# check); all but the logger one, which is harmless to mention.
FORBIDDEN_ATTRIBUTES: FrozenSet[str] = frozenset(
    n for n, m in DENIED.items() if m is not _LOGGER)


class FenceError(RuntimeError):
  """A submission used a part of the workload the rules keep from it."""


def rule_message(name: str) -> str:
  """Why a submission may not use attribute ``name`` of the workload."""
  return DENIED.get(name, _PRIVATE).format(name=name)


class FencedWorkload:
  """A read-only view of a workload for the submission's hooks.

  Build it with ``FencedWorkload(workload)``; get the workload back (runner
  only) with :func:`unwrap`.
  """

  __slots__ = ('_fenced_workload', '__weakref__')

  def __init__(self, workload: Any) -> None:
    if isinstance(workload, FencedWorkload):
      workload = unwrap(workload)
    _SLOT.__set__(self, workload)

  def __getattribute__(self, name: str) -> Any:
    if name.startswith('__') and name.endswith('__'):
      return object.__getattribute__(self, name)
    if name in DENIED or name.startswith('_'):
      raise FenceError(rule_message(name))
    return getattr(_SLOT.__get__(self), name)

  def __setattr__(self, name: str, value: Any) -> None:
    raise FenceError(_READ_ONLY.format(action='set', name=name))

  def __delattr__(self, name: str) -> None:
    raise FenceError(_READ_ONLY.format(action='delete', name=name))

  def __dir__(self) -> List[str]:
    inner = dir(_SLOT.__get__(self))
    public = {n for n in inner if not n.startswith('_') and n not in DENIED}
    return sorted(public | ALLOWED)

  # Hash and equality stay object's (identity, and in C: no Python call when
  # jit looks the view up in its cache of static arguments).

  def __copy__(self) -> 'FencedWorkload':
    return self

  def __deepcopy__(self, memo: Any) -> 'FencedWorkload':
    return self

  def __reduce__(self):
    raise TypeError('A FencedWorkload cannot be pickled; it is a view of the '
                    'live workload for one trial.')

  def __repr__(self) -> str:
    return f'FencedWorkload({_SLOT.__get__(self)!r})'


# The slot's descriptor, taken before __getattribute__ can refuse the name.
_SLOT = FencedWorkload.__dict__['_fenced_workload']
spec.Workload.register(FencedWorkload)


def fence(workload: spec.Workload) -> FencedWorkload:
  """The view of ``workload`` to pass to a submission (a view stays as it is)."""
  if isinstance(workload, FencedWorkload):
    return workload
  return FencedWorkload(workload)


def unwrap(workload: Any) -> Any:
  """The workload behind a fenced view (the workload itself if not fenced)."""
  if isinstance(workload, FencedWorkload):
    return _SLOT.__get__(workload)
  return workload


__all__ = ['ALLOWED', 'DENIED', 'FORBIDDEN_ATTRIBUTES', 'FenceError',
           'FencedWorkload', 'fence', 'rule_message', 'unwrap']
