"""Benchmark versions as data: budgets, targets, protocol and scoring rules.

Each version is a JSON file beside this module: ``v0.5.json`` and ``v0.6.json``
(AlgoPerf's), and ``small.json`` (the laptop-size benchmark of the small CPU
workloads, scored with the v0.6 rules). The small workloads' facts
(``small_workloads.json``) are merged into every version so that runs and
scoring of them work under whichever version is selected.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Dict, Optional, Tuple

DEFAULT_VERSION = 'v0.6'
_HERE = Path(__file__).resolve().parent
_SMALL_WORKLOADS_FILE = _HERE / 'small_workloads.json'
TRIAL_RULES = ('smallest_eval_index', 'smallest_time')


@dataclasses.dataclass(frozen=True)
class WorkloadFacts:
  """What a benchmark version fixes for one workload."""

  name: str
  base_workload: str
  target_metric_name: str
  higher_is_better: bool
  validation_target_value: float
  test_target_value: float
  max_allowed_runtime_sec: float
  eval_period_time_sec: float
  step_hint: int
  reference_machine: str

  def reached(self, value: float, target: float) -> bool:
    """Whether ``value`` meets ``target`` in this metric's direction (NaN never does)."""
    if value != value:  # NaN
      return False
    return value >= target if self.higher_is_better else value <= target


@dataclasses.dataclass(frozen=True)
class BenchmarkVersion:
  """One benchmark version's protocol, scoring rules and workload facts."""

  name: str
  description: str
  base_workloads: Tuple[str, ...]
  held_out_workloads: Tuple[str, ...]
  external_num_studies: int
  external_num_trials: int
  self_num_studies: int
  self_budget_multiplier: float
  trial_rule: str
  workloads: Dict[str, WorkloadFacts]

  def __post_init__(self) -> None:
    # Also checks ``dataclasses.replace(version, trial_rule=...)``: scoring a
    # version under the other rule is how the rules are compared.
    if self.trial_rule not in TRIAL_RULES:
      raise ValueError(f'Benchmark {self.name}: trial_rule must be one of '
                       f'{", ".join(TRIAL_RULES)}, got {self.trial_rule!r}.')

  def workload(self, name: str) -> WorkloadFacts:
    """Facts of workload ``name``; a clear error lists the known names."""
    try:
      return self.workloads[name]
    except KeyError:
      known = ', '.join(sorted(self.workloads))
      raise KeyError(
          f'Benchmark {self.name} has no workload {name!r}. Known: {known}.'
      ) from None

  def budget_multiplier(self, tuning_ruleset: str) -> float:
    """1 for external tuning; the version's multiplier for self-tuning."""
    if tuning_ruleset == 'external':
      return 1.0
    if tuning_ruleset == 'self':
      return self.self_budget_multiplier
    raise ValueError(
        f'tuning_ruleset must be "external" or "self", got {tuning_ruleset!r}.'
    )


def available_versions() -> Tuple[str, ...]:
  """Names of the versions shipped with the package: ``('small', 'v0.5', 'v0.6')``."""
  return tuple(sorted(p.stem for p in _HERE.glob('*.json')
                      if p != _SMALL_WORKLOADS_FILE))


def _facts(name: str, raw: dict, default_machine: str) -> WorkloadFacts:
  return WorkloadFacts(
      name=name,
      base_workload=raw.get('base_workload', name),
      target_metric_name=raw['target_metric_name'],
      higher_is_better=bool(raw['higher_is_better']),
      validation_target_value=float(raw['validation_target_value']),
      test_target_value=float(raw['test_target_value']),
      max_allowed_runtime_sec=float(raw['max_allowed_runtime_sec']),
      eval_period_time_sec=float(raw['eval_period_time_sec']),
      step_hint=int(raw['step_hint']),
      reference_machine=raw.get('reference_machine', default_machine),
  )


@functools.lru_cache(maxsize=None)
def _small_raw() -> dict:
  return json.loads(_SMALL_WORKLOADS_FILE.read_text())


def small_workloads() -> Tuple[str, ...]:
  """Names of the laptop benchmark's workloads (whose budgets scale with the speed factor)."""
  return tuple(sorted(_small_raw()['workloads']))


def small_calibration() -> Optional[Dict[str, object]]:
  """The reference machine's speed calibration (``algoperf/speed.py``), if measured.

  ``{'version': int, 'seconds': float, 'measured': str, ...}`` or None.
  """
  calibration = _small_raw().get('calibration')
  return dict(calibration) if calibration else None


@functools.lru_cache(maxsize=None)
def load(name: Optional[str] = None) -> BenchmarkVersion:
  """Loads benchmark version ``name`` (default ``v0.6``)."""
  name = name or DEFAULT_VERSION
  path = _HERE / f'{name}.json'
  if not path.is_file() or path == _SMALL_WORKLOADS_FILE:
    raise ValueError(
        f'Unknown benchmark version {name!r}; available: '
        f'{", ".join(available_versions())}.'
    )
  raw = json.loads(path.read_text())
  machine = raw.get('reference_machine', '')
  workloads = {n: _facts(n, w, machine) for n, w in raw['workloads'].items()}
  small = _small_raw()
  for n, w in small['workloads'].items():
    workloads[n] = _facts(n, w, small['reference_machine'])
  if raw['trial_rule'] not in TRIAL_RULES:
    raise ValueError(f'{path.name}: trial_rule must be one of {TRIAL_RULES}.')
  return BenchmarkVersion(
      name=raw['name'],
      description=raw.get('description', ''),
      base_workloads=tuple(raw['base_workloads']),
      held_out_workloads=tuple(raw['held_out_workloads']),
      external_num_studies=int(raw['external_tuning']['num_studies']),
      external_num_trials=int(raw['external_tuning']['num_trials']),
      self_num_studies=int(raw['self_tuning']['num_studies']),
      self_budget_multiplier=float(raw['self_tuning']['budget_multiplier']),
      trial_rule=raw['trial_rule'],
      workloads=workloads,
  )
