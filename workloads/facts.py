"""A workload's facts from the benchmark version's data (targets, budgets, hints).

Every workload class mixes this in: the numbers live in
``algoperf/benchmarks/<version>.json``, never in workload code, so v0.5 and
v0.6 differ by a flag.
"""

from __future__ import annotations

from typing import Dict, Optional

from algoperf import benchmarks


class VersionFacts:
  """Properties a ``spec.Workload`` takes from the version data.

  A class using it sets ``workload_name`` and calls ``_load_facts(benchmark)``
  in its constructor.
  """

  workload_name: str = ''

  def _load_facts(self, benchmark: Optional[str]) -> None:
    if not self.workload_name:
      raise TypeError(f'{type(self).__name__} must set workload_name.')
    self._benchmark = benchmarks.load(benchmark)
    self._facts = self._benchmark.workload(self.workload_name)

  @property
  def name(self) -> str:
    return self.workload_name

  @property
  def target_metric_name(self) -> str:
    return self._facts.target_metric_name

  @property
  def validation_target_value(self) -> float:
    return self._facts.validation_target_value

  @property
  def test_target_value(self) -> float:
    return self._facts.test_target_value

  @property
  def max_allowed_runtime_sec(self) -> float:
    return self._facts.max_allowed_runtime_sec

  @property
  def eval_period_time_sec(self) -> float:
    return self._facts.eval_period_time_sec

  @property
  def step_hint(self) -> int:
    return self._facts.step_hint

  def _metric(self, metrics: Dict[str, float], prefix: str) -> float:
    key = f'{prefix}/{self.target_metric_name}'
    if key not in metrics:
      raise KeyError(f'{key!r} missing from eval metrics {sorted(metrics)}.')
    return float(metrics[key])

  def has_reached_validation_target(self, eval_result: Dict[str, float]) -> bool:
    return self._facts.reached(
        self._metric(eval_result, 'validation'), self.validation_target_value)

  def has_reached_test_target(self, eval_result: Dict[str, float]) -> bool:
    return self._facts.reached(
        self._metric(eval_result, 'test'), self.test_target_value)
