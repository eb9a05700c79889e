"""From a folder of logs to a leaderboard: the scoring pipeline in one place.

loading (tolerant, fast) -> first hit per trial -> one time per study (the
version's trial rule) -> median over studies -> held-out and 4x rules ->
performance profiles -> scores (and speedups against a baseline).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from algoperf import benchmarks
from scoring import loading, rules, speedup

TIME_COLUMNS = ('score', 'global_step')


class StrictScoringError(ValueError):
  """``--strict`` found problems in the logs; the message lists them."""


@dataclasses.dataclass
class Leaderboard:
  """Everything scoring computed, for the terminal table, files and JSON."""

  benchmark: str
  ruleset: str
  time_column: str
  submissions: List[str]
  base_workloads: List[str]
  scored_workloads: List[str]
  budgets: Dict[str, float]
  time_to_target: rules.Table  # median over studies, before the rules
  scored_times: rules.Table  # after the held-out and 4x rules (base workloads)
  scores: Dict[str, float]
  profiles: Dict[str, list]
  taus: list
  speedups: Optional[Dict[str, float]]
  baseline: Optional[str]
  warnings: List[str]
  num_trials: int

  def ranking(self) -> List[str]:
    """Submissions by score, best first (ties by name)."""
    return sorted(self.submissions, key=lambda s: (-self.scores[s], s))

  def to_json(self) -> dict:
    def clean(x: float):
      return None if x is None or math.isnan(x) else ('inf' if math.isinf(x) else x)

    return {
        'benchmark': self.benchmark,
        'ruleset': self.ruleset,
        'time_column': self.time_column,
        'scores': {s: self.scores[s] for s in self.ranking()},
        'time_to_target': {s: {w: clean(t) for w, t in self.time_to_target[s].items()}
                           for s in self.ranking()},
        'scored_times': {s: {w: clean(t) for w, t in self.scored_times[s].items()}
                         for s in self.ranking()},
        'budgets': self.budgets,
        'baseline': self.baseline,
        'speedups': self.speedups,
        'num_trials': self.num_trials,
        'warnings': self.warnings,
    }


def score_logs(
    root: str | Path,
    benchmark: str | benchmarks.BenchmarkVersion,
    ruleset: str,
    *,
    time_column: str = 'score',
    exclude: Sequence[str] = (),
    baseline: Optional[str] = None,
    strict: bool = False,
) -> Leaderboard:
  """Scores every submission folder under ``root`` with version ``benchmark``'s rules.

  ``benchmark`` is a version name (``v0.5``) or a ``BenchmarkVersion`` object
  (e.g. one with another trial rule, to study the rules themselves).
  """
  version = (benchmark if isinstance(benchmark, benchmarks.BenchmarkVersion)
             else benchmarks.load(benchmark))
  if ruleset not in ('external', 'self'):
    raise ValueError(f'ruleset must be "external" or "self", got {ruleset!r}.')
  if time_column not in TIME_COLUMNS:
    raise ValueError(f'time_column must be one of {TIME_COLUMNS}, got {time_column!r}.')
  root = Path(root)
  # A folder on disk, or one inside a log extract (scoring/extract.py).
  if not loading.is_log_folder(root):
    raise FileNotFoundError(f'No such folder of logs: {root}.')
  scored = list(version.base_workloads) + list(version.held_out_workloads)
  result = loading.load_logs(root, version, workloads=set(scored),
                             time_column=time_column)
  warnings = list(result.warnings)
  if strict:
    problems = warnings + loading.expected_counts_problems(result, version, ruleset)
    if problems:
      raise StrictScoringError(
          f'--strict: {len(problems)} problem(s) in {root}:\n  '
          + '\n  '.join(problems))

  multiplier = version.budget_multiplier(ruleset)
  budgets = {w: version.workload(w).max_allowed_runtime_sec * multiplier
             for w in scored}
  excluded = set(exclude)
  # (submission, workload) -> study -> [TrialHit in trial order]
  hits: Dict[tuple, Dict[str, list]] = defaultdict(lambda: defaultdict(list))
  num_trials = 0
  for trial in result.trials:
    if trial.submission in excluded:
      continue
    facts = version.workload(trial.workload)
    # Steps have no budget; seconds are cut at the budget (a late hit is a miss).
    budget = budgets[trial.workload] if time_column == 'score' else math.inf
    hit = rules.first_hit(trial.values, trial.times, facts.validation_target_value,
                          facts.higher_is_better, budget=budget)
    hits[(trial.submission, trial.workload)][trial.study].append(hit)
    num_trials += 1

  submissions = sorted({s for s, _ in hits})
  table: rules.Table = {s: {} for s in submissions}
  for (submission, workload), studies in hits.items():
    study_times = [rules.study_time(h, version.trial_rule) for h in studies.values()]
    table[submission][workload] = rules.workload_time(study_times)
  for submission in submissions:
    for workload in scored:
      table[submission].setdefault(workload, math.nan)

  scored_times = rules.apply_rules(table, version)
  taus = rules.DEFAULT_TAUS
  profiles = rules.performance_profile(scored_times, version.base_workloads, taus)
  scores = {s: rules.benchmark_score(profiles[s], taus) for s in submissions}
  speedups = None
  if baseline is not None:
    speedups = speedup.speedups(table, baseline, budgets, version.base_workloads)
  return Leaderboard(
      benchmark=version.name,
      ruleset=ruleset,
      time_column=time_column,
      submissions=submissions,
      base_workloads=list(version.base_workloads),
      scored_workloads=scored,
      budgets=budgets,
      time_to_target=table,
      scored_times=scored_times,
      scores=scores,
      profiles={s: [float(x) for x in profiles[s]] for s in submissions},
      taus=[float(t) for t in taus],
      speedups=speedups,
      baseline=baseline,
      warnings=warnings,
      num_trials=num_trials,
  )
