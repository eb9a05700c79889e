"""Tuning search spaces, quasi-random (Halton) sampling, trials and studies.

Under the external-tuning ruleset a submission ships a JSON search space; each study of a
workload runs several trials, each with one point of that space. The JSON has one of two
forms (docs/RULES.md, Search spaces):

(a) a dict of parameter specs, sampled quasi-randomly::

      {"learning_rate": {"min": 1e-4, "max": 1e-2, "scaling": "log"},
       "warmup_factor": {"feasible_points": [0.05]}}

    A spec is either ``{"feasible_points": [...]}`` (a non-empty list of values of any
    JSON type, returned unchanged) or ``{"min": a, "max": b, "scaling": s}`` with ``s``
    one of ``"linear"`` or ``"log"`` (the only two the reference accepts). ``min <= max``
    is required; ``min == max`` is allowed and pins the value (the reference accepts it,
    and it lets an author fix a value without changing the spec's form). ``"log"`` needs
    ``min > 0``.

(b) a non-empty list of fixed points used in order::

      [{"learning_rate": 0.001, "beta1": 0.9}, {"learning_rate": 0.003, "beta1": 0.9}]

Points are `Hyperparameters` namedtuples whose fields are the search-space keys, in the
order they appear in the JSON (as in the reference, so ``._asdict()`` keeps that order).

Sampling uses SciPy's scrambled Halton sequence seeded with ``seed``. Halton *dimensions*
are assigned to parameters in sorted-name order, not file order, so reordering the keys
of a JSON file never changes the points drawn. Point ``i`` depends only on the space,
the seed and ``i``: the sequence is prefix-stable, so any process that draws ``n >= i``
points gets the same point ``i``. That is what lets ``--hparam_start_index`` /
``--hparam_end_index`` slices of one study run in separate processes without
duplicating or skipping a point, and lets studies be consecutive slices of one draw.

This module imports no JAX: the CLI, the sweep launcher and scoring import it cheaply.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import json
import keyword
import logging
import math
import os
from typing import Any, Iterable, Mapping, Sequence

_log = logging.getLogger(__name__)

# A `Hyperparameters` value is a `collections.namedtuple('Hyperparameters', names)`
# instance; the class is made per field tuple at run time, so no static type is precise.
Hyperparameters = Any

_SCALINGS = ('linear', 'log')
_RANGE_KEYS = ('min', 'max', 'scaling')
_POINTS_KEY = 'feasible_points'
_ALLOWED_SPEC_KEYS = (_POINTS_KEY,) + _RANGE_KEYS


class SearchSpaceError(ValueError):
  """A search space (file or object) is malformed.

  The message names the source (file name if known), the offending key or point index,
  what is wrong, and how to fix it.
  """


@dataclasses.dataclass(frozen=True)
class ParamSpec:
  """One parameter of a dict-form search space.

  Exactly one of (`feasible_points`) or (`min`, `max`, `scaling`) is set.
  """
  name: str
  feasible_points: tuple[Any, ...] | None = None
  min: float | None = None
  max: float | None = None
  scaling: str | None = None

  def value_at(self, u: float) -> Any:
    """Map a unit-interval coordinate `u` in [0, 1) to a value of this parameter."""
    if self.feasible_points is not None:
      n = len(self.feasible_points)
      # Clip: u is < 1 in exact arithmetic, but never trust a float to stay below 1.
      index = min(max(int(math.floor(u * n)), 0), n - 1)
      # Copy so that trials never share (and mutate) one list/dict from the space.
      return copy.deepcopy(self.feasible_points[index])
    lo, hi = float(self.min), float(self.max)
    if self.scaling == 'log':
      value = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
    else:
      value = lo + u * (hi - lo)
    # exp/log round-off can step just outside [min, max]; a value outside the declared
    # range would surprise an author checking their logs against their JSON.
    return float(min(max(value, lo), hi))


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """A validated search space.

  Attributes:
    names: parameter names, in the order they appear in the source (namedtuple fields).
    params: for the dict form, the spec of each parameter; None for the list form.
    points: for the list form, the fixed points (each a dict) in order; None otherwise.
    source: where the space came from (a file name or a description), for messages.
  """
  names: tuple[str, ...]
  params: Mapping[str, ParamSpec] | None = None
  points: tuple[Mapping[str, Any], ...] | None = None
  source: str = '<search space>'

  @property
  def is_list(self) -> bool:
    """Whether this is a list of fixed points (form b) rather than a dict of specs."""
    return self.points is not None

  @property
  def hyperparameters_class(self) -> type:
    """The namedtuple class of this space's points."""
    return _hparams_class(self.names)


def _is_identifier(name: Any) -> bool:
  # namedtuple rejects keywords and (without rename=True) leading underscores.
  return (isinstance(name, str) and name.isidentifier() and
          not keyword.iskeyword(name) and not name.startswith('_'))


def _check_name(name: Any, source: str, where: str) -> None:
  if not _is_identifier(name):
    raise SearchSpaceError(
        f'{source}: {where}: hyperparameter name {name!r} is not usable: names become '
        'namedtuple fields, so each must be a Python identifier that is not a keyword '
        'and does not start with "_". Rename it (e.g. "learning_rate").')


def _reduce_hparams(self: Any) -> tuple[Any, tuple[dict[str, Any]]]:
  # The namedtuple classes are made at run time, so pickle cannot find them by name;
  # rebuild from the field dict instead (multiprocessing and submitit pickle hparams).
  return hparams_from_dict, (dict(self._asdict()),)


@functools.lru_cache(maxsize=None)
def _hparams_class(names: tuple[str, ...]) -> type:
  """One namedtuple class per field tuple, so all points of a space share a type."""
  cls = collections.namedtuple('Hyperparameters', names)
  cls.__module__ = __name__
  cls.__reduce__ = _reduce_hparams
  return cls


def _is_number(value: Any) -> bool:
  # bool is an int subclass, but `"min": true` is a typo, not a bound.
  return (isinstance(value, (int, float)) and not isinstance(value, bool) and
          math.isfinite(value))


def _parse_spec(name: str, spec: Any, source: str) -> ParamSpec:
  where = f'key {name!r}'
  if not isinstance(spec, Mapping):
    hint = (f' To list values, write {{"{name}": {{"feasible_points": {json.dumps(spec)}}}}}.'
            if isinstance(spec, list) else '')
    raise SearchSpaceError(
        f'{source}: {where}: the spec must be an object with "feasible_points" or '
        f'"min"/"max"/"scaling", got {type(spec).__name__} {spec!r}.{hint}')
  unknown = [k for k in spec if k not in _ALLOWED_SPEC_KEYS]
  if unknown:
    raise SearchSpaceError(
        f'{source}: {where}: unknown key(s) {", ".join(repr(k) for k in unknown)} in its '
        f'spec; allowed keys are {", ".join(repr(k) for k in _ALLOWED_SPEC_KEYS)}. '
        'Remove or rename them.')
  if _POINTS_KEY in spec:
    mixed = [k for k in _RANGE_KEYS if k in spec]
    if mixed:
      raise SearchSpaceError(
          f'{source}: {where}: has both "feasible_points" and '
          f'{", ".join(repr(k) for k in mixed)}; a spec is either a list of feasible '
          'points or a min/max range. Keep one form.')
    points = spec[_POINTS_KEY]
    if not isinstance(points, list) or not points:
      raise SearchSpaceError(
          f'{source}: {where}: "feasible_points" must be a non-empty list, got '
          f'{points!r}. Give at least one value, e.g. "feasible_points": [0.1].')
    return ParamSpec(name=name, feasible_points=tuple(points))
  missing = [k for k in _RANGE_KEYS if k not in spec]
  if missing:
    raise SearchSpaceError(
        f'{source}: {where}: missing {", ".join(repr(k) for k in missing)}; a range spec '
        'needs "min", "max" and "scaling" ("linear" or "log"), e.g. '
        '{"min": 0.0001, "max": 0.01, "scaling": "log"}. '
        'For fixed values use {"feasible_points": [...]}.')
  lo, hi, scaling = spec['min'], spec['max'], spec['scaling']
  for bound_name, bound in (('min', lo), ('max', hi)):
    if not _is_number(bound):
      raise SearchSpaceError(
          f'{source}: {where}: "{bound_name}" must be a finite number, got {bound!r}.')
  if scaling not in _SCALINGS:
    raise SearchSpaceError(
        f'{source}: {where}: "scaling" must be "linear" or "log", got {scaling!r}. '
        'For a list of values use {"feasible_points": [...]} instead.')
  if lo > hi:
    raise SearchSpaceError(
        f'{source}: {where}: "min" ({lo!r}) is greater than "max" ({hi!r}). Swap them.')
  if scaling == 'log' and lo <= 0:
    raise SearchSpaceError(
        f'{source}: {where}: "log" scaling needs "min" > 0, got {lo!r}. Use a positive '
        'lower bound or "scaling": "linear".')
  return ParamSpec(name=name, min=lo, max=hi, scaling=scaling)


def _parse_dict(obj: Mapping[str, Any], source: str) -> SearchSpace:
  if not obj:
    raise SearchSpaceError(
        f'{source}: the search space is empty; give at least one hyperparameter, e.g. '
        '{"learning_rate": {"min": 0.0001, "max": 0.01, "scaling": "log"}}.')
  params = {}
  for name, spec in obj.items():
    _check_name(name, source, f'key {name!r}')
    params[name] = _parse_spec(name, spec, source)
  return SearchSpace(names=tuple(params), params=params, source=source)


def _parse_list(obj: Sequence[Any], source: str) -> SearchSpace:
  if not obj:
    raise SearchSpaceError(
        f'{source}: the list of points is empty; give at least one point, e.g. '
        '[{"learning_rate": 0.001}].')
  points = []
  names: tuple[str, ...] = ()
  for index, point in enumerate(obj):
    if not isinstance(point, Mapping):
      raise SearchSpaceError(
          f'{source}: point at index {index}: must be an object {{name: value, ...}}, '
          f'got {type(point).__name__} {point!r}.')
    if index == 0:
      if not point:
        raise SearchSpaceError(
            f'{source}: point at index 0 has no hyperparameters; give each point at '
            'least one {name: value}.')
      for name in point:
        _check_name(name, source, f'point at index 0, key {name!r}')
      names = tuple(point)
    elif set(point) != set(names):
      missing = [n for n in names if n not in point]
      extra = [k for k in point if k not in names]
      parts = []
      if missing:
        parts.append(f'missing key(s) {", ".join(repr(k) for k in missing)}')
      if extra:
        parts.append(f'extra key(s) {", ".join(repr(k) for k in extra)}')
      raise SearchSpaceError(
          f'{source}: point at index {index}: {" and ".join(parts)} compared with the '
          f'point at index 0 ({", ".join(repr(n) for n in names)}). Every point must '
          'have the same keys.')
    # Reorder to the first point's key order so namedtuple fields are consistent.
    points.append({n: point[n] for n in names})
  return SearchSpace(names=names, points=tuple(points), source=source)


def parse_search_space(obj: Any, source: str = '<search space>') -> SearchSpace:
  """Validate a decoded JSON search space (dict or list form) and return a SearchSpace.

  Args:
    obj: the decoded JSON (a dict of specs or a list of points); a SearchSpace is
      returned unchanged.
    source: where `obj` came from, used in error messages (e.g. the file name).

  Raises:
    SearchSpaceError: `obj` is not a valid search space.
  """
  if isinstance(obj, SearchSpace):
    return obj
  if isinstance(obj, Mapping):
    return _parse_dict(obj, source)
  if isinstance(obj, (list, tuple)):
    return _parse_list(obj, source)
  raise SearchSpaceError(
      f'{source}: a search space must be a JSON object {{name: spec, ...}} or a list of '
      f'points [{{name: value, ...}}, ...], got {type(obj).__name__}.')


def _no_duplicate_keys(source: str):
  # json silently keeps the last of two equal keys; in a search space that is almost
  # certainly a copy-paste mistake, so refuse it.
  def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
      if key in out:
        raise SearchSpaceError(
            f'{source}: key {key!r} appears twice in one JSON object; remove one.')
      out[key] = value
    return out
  return hook


def _reject_constant(name: str) -> Any:
  raise ValueError(f'{name} is not valid JSON')


def load_search_space(path: str | os.PathLike[str]) -> SearchSpace:
  """Read and validate a JSON search-space file.

  Raises:
    SearchSpaceError: the file cannot be read, is not valid JSON (the message gives the
      line and column), or is not a valid search space. The message names the file.
  """
  source = os.fspath(path)
  try:
    with open(source, encoding='utf-8') as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise SearchSpaceError(f'{source}: cannot read the search space file: {e}') from e
  try:
    obj = json.loads(text, object_pairs_hook=_no_duplicate_keys(source),
                     parse_constant=_reject_constant)
  except json.JSONDecodeError as e:
    raise SearchSpaceError(
        f'{source}: invalid JSON at line {e.lineno}, column {e.colno} (char {e.pos}): '
        f'{e.msg}.') from e
  except SearchSpaceError:
    raise
  except ValueError as e:  # NaN / Infinity, which Python's json would otherwise accept.
    raise SearchSpaceError(f'{source}: invalid JSON: {e}.') from e
  return parse_search_space(obj, source)


def _halton(num_dims: int, num_points: int, seed: int) -> Any:
  """`num_points` points of a scrambled Halton sequence in [0, 1)^num_dims."""
  # Imported here so `import algoperf.tuning` stays cheap for the CLI.
  import numpy as np
  from scipy.stats import qmc
  # Pass a Generator, not the int: under SciPy's SPEC 7 transition `seed=<int>` and
  # `rng=<int>` give *different* streams, and `seed=` will be removed. A Generator
  # yields the same stream through either keyword, so points stay stable as SciPy
  # moves on.
  generator = np.random.default_rng(seed)
  try:
    engine = qmc.Halton(d=num_dims, scramble=True, rng=generator)
  except TypeError:  # SciPy < 1.15 has no `rng` keyword.
    engine = qmc.Halton(d=num_dims, scramble=True, seed=generator)
  # Halton points are a function of their index once the scrambling permutations are
  # drawn (at construction, from the seed), so a longer draw extends a shorter one.
  return engine.random(num_points)


def _check_count(value: Any, what: str) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 0:
    raise ValueError(f'{what} must be a non-negative int, got {value!r}.')


def generate_points(space: SearchSpace, num_points: int,
                    seed: int = 0) -> list[Hyperparameters]:
  """The first `num_points` points of `space` for `seed`, as Hyperparameters namedtuples.

  Dict form: scrambled Halton sampling; point i depends only on (space, seed, i), so
  ``generate_points(s, n, seed)[:k] == generate_points(s, k, seed)`` for k <= n, in any
  process. Range values are plain floats; feasible points keep their JSON type.
  List form: the first ``min(num_points, len(points))`` points in order (a warning is
  logged when `num_points` differs from the list's length, as the reference does).
  """
  space = parse_search_space(space)
  _check_count(num_points, 'num_points')
  _check_count(seed, 'seed')
  cls = space.hyperparameters_class
  if space.is_list:
    if num_points != len(space.points):
      # Asking for more points than the list has is worth a warning; using a
      # prefix of the list (e.g. one trial of a fixed set) is routine.
      log = _log.warning if num_points > len(space.points) else _log.info
      log(
          '%s: %d point(s) requested but the search space lists %d; using the first %d.',
          space.source, num_points, len(space.points), min(num_points, len(space.points)))
    return [cls(**copy.deepcopy(dict(p))) for p in space.points[:num_points]]
  if num_points == 0:
    return []
  dims = sorted(space.names)  # Key order in the file must not change the points.
  unit = _halton(len(dims), num_points, seed)
  points = []
  for row in unit:
    values = {name: space.params[name].value_at(float(u)) for name, u in zip(dims, row)}
    points.append(cls(**values))
  return points


def select_trials(points: Sequence[Hyperparameters], start_index: int | None = None,
                  end_index: int | None = None) -> list[tuple[int, Hyperparameters]]:
  """The (trial_index, point) pairs of ``points[start_index:end_index]``.

  Trial indices start at 1 (trial folders are ``trial_1``, ``trial_2``, ...), so the
  point at 0-based position i is trial i + 1. None means the start/end of `points`.
  ``start_index == end_index`` gives an empty list, like Python slicing.

  Raises:
    ValueError: an index is negative, not an int, beyond ``len(points)``, or
      ``start_index > end_index``.
  """
  n = len(points)
  start = 0 if start_index is None else start_index
  end = n if end_index is None else end_index
  for what, value in (('start_index', start), ('end_index', end)):
    if not isinstance(value, int) or isinstance(value, bool):
      raise ValueError(f'hparam {what} must be an int, got {value!r}.')
    if value < 0:
      raise ValueError(f'hparam {what} must be >= 0, got {value}.')
    if value > n:
      raise ValueError(
          f'hparam {what}={value} is beyond the {n} trial point(s); indices are 0-based '
          f'and the end is exclusive, so use values in [0, {n}].')
  if start > end:
    raise ValueError(
        f'hparam start_index={start} is greater than end_index={end}; the slice is '
        '[start_index, end_index).')
  return [(i + 1, points[i]) for i in range(start, end)]


def study_points(space: SearchSpace, num_studies: int, num_trials: int,
                 study_index: int, seed: int = 0) -> list[Hyperparameters]:
  """The `num_trials` points of study `study_index` (0-based) of a workload.

  Dict form: all ``num_studies * num_trials`` points are drawn once with `seed`, and
  study s gets the consecutive slice ``[s * num_trials, (s + 1) * num_trials)``, so
  studies never share a point (docs/RULES.md, Search spaces). By prefix stability a study's
  points do not depend on `num_studies` either.
  List form: every study gets the list's first `num_trials` points: a list is a fixed
  set of configurations chosen by the author, and studies then measure run-to-run
  variance of those same configurations rather than cutting the list into pieces.
  """
  space = parse_search_space(space)
  _check_count(num_studies, 'num_studies')
  _check_count(num_trials, 'num_trials')
  if not isinstance(study_index, int) or not 0 <= study_index < num_studies:
    raise ValueError(
        f'study_index must be an int in [0, {num_studies}) (0-based), got {study_index!r}.')
  if space.is_list:
    return generate_points(space, num_trials, seed)
  all_points = generate_points(space, num_studies * num_trials, seed)
  return all_points[study_index * num_trials:(study_index + 1) * num_trials]


def hparams_to_dict(hp: Hyperparameters) -> dict[str, Any]:
  """A plain dict of a Hyperparameters namedtuple (field order kept), for hparams.json."""
  if not hasattr(hp, '_asdict'):
    raise TypeError(f'expected a Hyperparameters namedtuple, got {type(hp).__name__}.')
  return dict(hp._asdict())


def hparams_from_dict(d: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Hyperparameters:
  """A Hyperparameters namedtuple from a dict (e.g. a loaded hparams.json), keys in order.

  Raises:
    ValueError: a key is not a usable field name.
  """
  d = dict(d)
  for name in d:
    if not _is_identifier(name):
      raise ValueError(
          f'hyperparameter name {name!r} is not a Python identifier (or is a keyword, or '
          'starts with "_"), so it cannot be a namedtuple field.')
  return _hparams_class(tuple(d))(**d)
