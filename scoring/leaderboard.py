"""From a folder of logs to a leaderboard: the scoring pipeline in one place.

loading (tolerant, fast; times divided by each trial's meta ``speed_factor``
unless ``speed_rescale=False``)
-> first hit per trial -> one time per study (the version's trial rule) ->
median over studies -> held-out and 4x rules -> performance profiles -> scores
(and speedups against a baseline). docs/RULES.md, Scoring rules, states the
rules.

Two entry points:

* ``score_logs(root, benchmark, ruleset)``: one leaderboard, every submission
  under ``ruleset`` (the library call: ``reproduce``, the laptop benchmark).
* ``score_root(root)``: what ``algoperf score`` does. The benchmark version
  and each submission's ruleset may come from the logs' meta data; one
  leaderboard per ruleset present; a missing or empty folder is an error.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from algoperf import benchmarks
from algoperf.errors import ConfigError
from scoring import loading, rules, speedup

TIME_COLUMNS = ('score', 'global_step')
RULESETS = loading.RULESETS
AUTO = 'auto'

# `algoperf score --trial_rule` values and the rule each names.
TRIAL_RULE_FLAGS = {'eval_index': rules.SMALLEST_EVAL_INDEX,
                    'time': rules.SMALLEST_TIME}
RULE_WORDS = {rules.SMALLEST_EVAL_INDEX: 'smallest eval index',
              rules.SMALLEST_TIME: 'smallest time'}
MAX_NAMED_DIFFERENCES = 5
"""The note on the trial rules names at most this many studies (JSON: all)."""

SPEED_FACTOR_SPREAD = 1.5
"""Warn when the largest speed factor of the scored trials is more than this
times the smallest: rescaling times between so different machines is rough,
and unscaled times (``speed_rescale=False``) do not compare at all."""


class StrictScoringError(ValueError):
  """``--strict`` found problems in the logs; the message lists them."""


class NoLogsError(ConfigError):
  """No trial logs under the folder; ``warnings`` say what was found instead."""

  def __init__(self, message: str, warnings: Sequence[str]):
    super().__init__(message)
    self.warnings = list(warnings)


class RuleDifference(NamedTuple):
  """A study where the two trial rules pick different trials (so times)."""

  submission: str
  workload: str
  study: int  # the study number
  by_eval_index: str  # the trial folder 'smallest_eval_index' picks
  eval_index_time: float
  by_time: str  # the trial folder 'smallest_time' picks
  time: float

  @property
  def name(self) -> str:
    return f'{self.submission}/{self.workload}/study_{self.study}'


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
  # (smallest, largest) speed factor of the scored trials when any is not 1
  # (seconds only); else None. The times were divided by them when
  # speed_rescale is True (``rescaled``), else are the logged seconds.
  speed_factor_range: Optional[Tuple[float, float]] = None
  # submission -> workload -> (smallest, largest) factor of its trials; only
  # filled when speed_factor_range is set.
  speed_factors: Dict[str, Dict[str, Tuple[float, float]]] = dataclasses.field(
      default_factory=dict)
  # The rule that picked each study's trial, and the version's own one.
  trial_rule: str = rules.SMALLEST_TIME
  version_trial_rule: str = rules.SMALLEST_TIME
  # Studies where the other rule would pick another trial (computed always).
  rule_differences: List[RuleDifference] = dataclasses.field(default_factory=list)
  # submission -> workload -> study number -> the study's time (this rule).
  study_times: Dict[str, Dict[str, Dict[int, float]]] = dataclasses.field(
      default_factory=dict)
  # submission -> workload -> study number -> trial folder -> its time to target.
  trial_times: Dict[str, Dict[str, Dict[int, Dict[str, float]]]] = dataclasses.field(
      default_factory=dict)
  # False: times are the logged seconds, not divided by the speed factors
  # (`algoperf score --nospeed_rescale`).
  speed_rescale: bool = True

  @property
  def rescaled(self) -> bool:
    """Whether times were divided by speed factors other than 1."""
    return self.speed_rescale and self.speed_factor_range is not None

  @property
  def unscaled(self) -> bool:
    """Whether times are logged seconds of trials with speed factors other
    than 1 (so not reference-machine seconds, nor fractions of the budget)."""
    return not self.speed_rescale and self.speed_factor_range is not None

  def ranking(self) -> List[str]:
    """Submissions by score, best first (ties by name)."""
    return sorted(self.submissions, key=lambda s: (-self.scores[s], s))

  def to_json(self) -> dict:
    def clean(x: float):
      return None if x is None or math.isnan(x) else ('inf' if math.isinf(x) else x)

    out = {
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
        'trial_rule': self.trial_rule,
        'version_trial_rule': self.version_trial_rule,
        'trial_rule_differences': [
            {'submission': d.submission, 'workload': d.workload,
             'study': d.study,
             'smallest_eval_index': {'trial': d.by_eval_index,
                                     'time': clean(d.eval_index_time)},
             'smallest_time': {'trial': d.by_time, 'time': clean(d.time)}}
            for d in self.rule_differences],
        'study_times': {
            s: {w: {f'study_{n}': clean(t) for n, t in studies.items()}
                for w, studies in self.study_times[s].items()}
            for s in self.ranking() if s in self.study_times},
        'trial_times': {
            s: {w: {f'study_{n}': {k: clean(t) for k, t in trials.items()}
                    for n, trials in studies.items()}
                for w, studies in self.trial_times[s].items()}
            for s in self.ranking() if s in self.trial_times},
        'warnings': self.warnings,
    }
    if self.time_column != 'global_step':
      out['speed_rescale'] = self.speed_rescale
    if self.speed_factor_range is not None:
      out['speed_factor_range'] = list(self.speed_factor_range)
    return out


@dataclasses.dataclass
class Scoring:
  """What ``score_root`` gives: one leaderboard per ruleset, and how it chose."""

  benchmark: str
  benchmark_source: Optional[str]  # e.g. "from the logs' meta_data"; None if given
  boards: Dict[str, Leaderboard]  # ruleset -> leaderboard, external first
  warnings: List[str]  # every board's warnings, each once, in order


def score_logs(
    root: str | Path,
    benchmark: str | benchmarks.BenchmarkVersion,
    ruleset: str,
    *,
    time_column: str = 'score',
    exclude: Sequence[str] = (),
    baseline: Optional[str] = None,
    strict: bool = False,
    trial_rule: Optional[str] = None,
    speed_rescale: bool = True,
) -> Leaderboard:
  """Scores every submission folder under ``root`` with version ``benchmark``'s rules.

  ``benchmark`` is a version name (``v0.5``) or a ``BenchmarkVersion`` object
  (e.g. ``dataclasses.replace(version, trial_rule='smallest_time')``, to study
  the rules themselves). Every submission is scored under ``ruleset``; one
  whose meta data name the other ruleset gets a warning. ``exclude`` names
  submissions to leave out (a name also leaves out the submissions below it:
  ``x`` leaves out ``x/y``). ``trial_rule`` (``'smallest_eval_index'`` or
  ``'smallest_time'``; None: the version's) picks each study's trial.
  ``speed_rescale`` False scores the logged seconds instead of dividing each
  trial's times by its meta ``speed_factor``; a trial's budget is then the
  one it ran with (the nominal one times its factor), so every trial hits or
  misses as it does rescaled.

  Raises:
    FileNotFoundError: ``root`` is no folder (nor a folder of a log extract).
    ValueError: a bad ruleset, time column or baseline.
    StrictScoringError: ``strict`` and the logs have problems.
  """
  version = (benchmark if isinstance(benchmark, benchmarks.BenchmarkVersion)
             else benchmarks.load(benchmark))
  version_rule = version.trial_rule
  version = _with_trial_rule(version, trial_rule)
  if ruleset not in RULESETS:
    raise ValueError(f'ruleset must be "external" or "self", got {ruleset!r}.')
  _check_time_column(time_column)
  root = Path(root)
  # A folder on disk, or one inside a log extract (scoring/extract.py).
  if not loading.is_log_folder(root):
    raise FileNotFoundError(f'No such folder of logs: {root}.')
  found = loading.discover(root)
  boards, _ = _score(found, version, ruleset, time_column=time_column,
                     exclude=exclude, baseline=baseline, strict=strict,
                     version_rule=version_rule, speed_rescale=speed_rescale)
  return boards[ruleset]


def _with_trial_rule(version: benchmarks.BenchmarkVersion,
                     trial_rule: Optional[str]) -> benchmarks.BenchmarkVersion:
  """``version`` with another trial rule (None: as it is)."""
  if trial_rule is None or trial_rule == version.trial_rule:
    return version
  if trial_rule not in rules.TRIAL_RULES:
    raise ValueError(f'trial_rule must be one of {", ".join(rules.TRIAL_RULES)}, '
                     f'got {trial_rule!r}.')
  return dataclasses.replace(version, trial_rule=trial_rule)


def score_root(
    root: str | Path,
    benchmark: Optional[str] = None,
    ruleset: Optional[str] = None,
    *,
    time_column: str = 'score',
    exclude: Sequence[str] = (),
    baseline: Optional[str] = None,
    strict: bool = False,
    trial_rule: Optional[str] = None,
    speed_rescale: bool = True,
) -> Scoring:
  """``algoperf score``: scores ``root``, choosing the version and rulesets from the logs.

  Args:
    root: a folder of submission folders (see ``scoring.loading``).
    benchmark: a version name; None infers it: the one version the trials'
      meta data name, else the one version that scores the workload folders
      found (only small workloads: ``small``).
    ruleset: ``'external'`` or ``'self'`` scores every submission under it
      (warning for a submission whose meta data say otherwise); None or
      ``'auto'`` takes each submission's from its trials' meta data
      (``tuning_ruleset``; external when unknown) and makes one leaderboard
      per ruleset present.
    time_column, exclude, baseline, strict, trial_rule, speed_rescale: as for
      ``score_logs``.

  Raises:
    ConfigError: ``root`` is missing or holds no trial logs; the version
      cannot be inferred (several, or AlgoPerf workloads without meta data);
      an explicit version scores none of the workloads found.
    ValueError: a bad argument (time column, baseline, version name).
    StrictScoringError: ``strict`` and the logs have problems.
  """
  if ruleset == AUTO:
    ruleset = None
  if ruleset is not None and ruleset not in RULESETS:
    raise ValueError(f'ruleset must be "auto", "external" or "self", got {ruleset!r}.')
  _check_time_column(time_column)
  root = Path(root)
  if not loading.is_log_folder(root):
    raise ConfigError(f'{root}: no such folder; scoring expects a folder laid '
                      f'out as {loading.LAYOUT} (an --experiment_dir of '
                      'algoperf run).')
  found = loading.discover(root)
  if not found.trials:
    hint = (f' {root} holds study_<n> folders itself: pass its parent folder.'
            if found.root_has_studies else '')
    raise NoLogsError(f'{root}: no trial logs found; scoring expects '
                      f'{loading.LAYOUT} (an --experiment_dir of algoperf '
                      f'run).{hint}', found.folder_warnings())
  left_out = {s for s in found.submissions if _excluded(s, set(exclude))}
  kept = [t for t in found.trials if t.submission not in left_out]
  if not kept:
    raise ConfigError(f'--exclude leaves out every submission under {root}; '
                      'nothing to score.')
  if benchmark is None:
    name, source = infer_version(kept)
  else:
    name, source = benchmark, None
    _check_version_scores_something(name, kept, root)
  version = benchmarks.load(name)
  version_rule = version.trial_rule
  version = _with_trial_rule(version, trial_rule)
  boards, warnings = _score(found, version, ruleset, time_column=time_column,
                            exclude=exclude, baseline=baseline, strict=strict,
                            version_rule=version_rule, speed_rescale=speed_rescale)
  return Scoring(benchmark=version.name, benchmark_source=source,
                 boards=boards, warnings=warnings)


# --- Choosing the version and the rulesets -----------------------------------


def infer_version(trials: Sequence[loading.FoundTrial]) -> Tuple[str, str]:
  """The benchmark version of these trials, and where it came from.

  The version their meta data name, counting only trials of a workload that
  version scores (exactly one, else an error): a small-workload run made under
  the runner's default ``v0.6`` names a version that scores none of its
  workloads. Without such meta data, the one version that scores the
  workloads their folders name (base and held-out workloads: only small
  workloads give ``small``).

  Raises:
    ConfigError: no single version; the message says which ``--benchmark``
      values would do.
  """
  named: Counter = Counter()
  unusable: Counter = Counter()
  for t in trials:
    if t.meta is None or t.meta.benchmark is None:
      continue
    if t.workload in _scored_by(t.meta.benchmark):
      named[t.meta.benchmark] += 1
    else:
      unusable[t.meta.benchmark] += 1
  if len(named) == 1:
    return next(iter(named)), "from the logs' meta_data"
  if len(named) > 1:
    listed = ', '.join(f'{v} ({_plural(n, "trial")})' for v, n in sorted(named.items()))
    raise ConfigError(
        f"the logs' meta_data name several benchmark versions: {listed}; pass "
        f'{_either(sorted(named))} to score under one of them.')
  workloads = {t.workload for t in trials}
  candidates = _versions_scoring(workloads)
  if len(candidates) == 1:
    source = 'from the workload folder names'
    if unusable:
      source += (f"; the meta_data name {', '.join(sorted(unusable))}, which "
                 f'score{"s" if len(unusable) == 1 else ""} none of them')
    return candidates[0], source
  if not candidates:
    raise ConfigError(
        'cannot infer the benchmark version: no workload folder names a '
        f'workload any version scores ({", ".join(sorted(workloads))}); pass '
        f'{_either(benchmarks.available_versions())}.')
  small = _scored_by('small')
  some = sorted(w for w in workloads if w not in small) or sorted(workloads)
  shown = ', '.join(some[:3]) + (', ...' if len(some) > 3 else '')
  raise ConfigError(
      'cannot infer the benchmark version: the logs have no meta_data naming '
      f'one, and their workloads ({shown}) are scored by '
      f'{" and ".join(candidates)}; pass {_either(candidates)}.')


def _either(versions: Sequence[str]) -> str:
  flags = [f'`--benchmark {v}`' for v in versions]
  return flags[0] if len(flags) == 1 else ', '.join(flags[:-1]) + ' or ' + flags[-1]


def _scored(version: benchmarks.BenchmarkVersion) -> set:
  return set(version.base_workloads) | set(version.held_out_workloads)


@functools.lru_cache(maxsize=None)
def _scored_by(name: str) -> frozenset:
  """The workloads version ``name`` scores; empty for a version not shipped."""
  if name not in benchmarks.available_versions():
    return frozenset()
  return frozenset(_scored(benchmarks.load(name)))


def _versions_scoring(workloads: set) -> List[str]:
  """The shipped versions that score at least one of ``workloads``."""
  return [v for v in benchmarks.available_versions() if workloads & _scored_by(v)]


def _check_version_scores_something(name: str, trials: Sequence[loading.FoundTrial],
                                    root: Path) -> None:
  """An explicit version that scores none of the trials is a mistake, said clearly."""
  version = benchmarks.load(name)
  workloads = {t.workload for t in trials}
  if not trials or workloads & _scored(version):
    return
  others = [v for v in _versions_scoring(workloads) if v != version.name]
  fix = f'pass {_either(others)}' if others else 'check the workload folder names'
  raise ConfigError(
      f'{root}: benchmark {version.name} scores none of the workloads found '
      f'({", ".join(sorted(workloads))}); {fix}.')


def _excluded(submission: str, exclude: set) -> bool:
  """``x`` excludes ``x`` and every submission below it (``x/y``)."""
  if submission in exclude:
    return True
  parts = submission.split('/')
  return any('/'.join(parts[:i]) in exclude for i in range(1, len(parts)))


def _meta_rulesets(found: loading.Discovery) -> Dict[str, Counter]:
  """submission -> how many of its trials' meta data name each ruleset."""
  counts: Dict[str, Counter] = defaultdict(Counter)
  for t in found.trials:
    if t.meta is not None and t.meta.tuning_ruleset is not None:
      counts[t.submission][t.meta.tuning_ruleset] += 1
  return counts


def _assign_rulesets(found: loading.Discovery, submissions: Sequence[str],
                     ruleset: Optional[str]) -> Tuple[Dict[str, str], List[str]]:
  """Each submission's ruleset, and one warning per submission where the logs disagree."""
  counts = _meta_rulesets(found)
  assigned: Dict[str, str] = {}
  warnings: List[str] = []
  for s in submissions:
    said = counts.get(s, Counter())
    if ruleset is not None:
      assigned[s] = ruleset
      other = sorted(r for r in said if r != ruleset)
      if other:
        warnings.append(
            f'{s}: its trials\' meta_data say {" and ".join(other)} tuning, but '
            f'it is scored under {ruleset} tuning as asked (--ruleset '
            f'{ruleset}); without --ruleset each submission is scored under '
            'its own ruleset.')
      continue
    if not said:
      assigned[s] = 'external'
      continue
    # The ruleset of most trials; a tie goes to external.
    assigned[s] = max(RULESETS, key=lambda r: (said[r], r == 'external'))
    if len(said) > 1:
      listed = ' and '.join(f'{r} tuning ({_plural(said[r], "trial")})'
                            for r in RULESETS if said[r])
      warnings.append(
          f'{s}: its trials\' meta_data say {listed}; scored under '
          f'{assigned[s]} tuning (most trials); pass --ruleset to choose.')
  return assigned, warnings


# --- Scoring ------------------------------------------------------------------


def _check_time_column(time_column: str) -> None:
  if time_column not in TIME_COLUMNS:
    raise ValueError(f'time_column must be one of {TIME_COLUMNS}, got {time_column!r}.')


def _score(found: loading.Discovery, version: benchmarks.BenchmarkVersion,
           ruleset: Optional[str], *, time_column: str, exclude: Sequence[str],
           baseline: Optional[str], strict: bool, version_rule: str,
           speed_rescale: bool = True,
           ) -> Tuple[Dict[str, Leaderboard], List[str]]:
  """Loads and scores; one board per ruleset (``ruleset`` None: from the meta data)."""
  scored = list(version.base_workloads) + list(version.held_out_workloads)
  result = loading.load_logs(found.root, version, workloads=set(scored),
                             time_column=time_column, discovery=found,
                             speed_rescale=speed_rescale)
  excluded = set(exclude)
  submissions = [s for s in result.submissions if not _excluded(s, excluded)]
  assigned, ruleset_warnings = _assign_rulesets(found, submissions, ruleset)
  trials = [t for t in result.trials if t.submission in assigned]
  with_trials = {t.submission for t in trials}
  if ruleset is not None:
    present = [ruleset]
  else:  # the rulesets of the submissions with trials to score, external first
    present = [r for r in RULESETS
               if any(assigned[s] == r for s in with_trials)] or ['external']
  if strict:
    problems = list(result.warnings)
    for r in present:
      subset = dataclasses.replace(
          result, trials=[t for t in result.trials if assigned.get(t.submission, r) == r],
          submissions=[s for s in result.submissions if assigned.get(s, r) == r])
      problems += loading.expected_counts_problems(subset, version, r)
    if problems:
      raise StrictScoringError(
          f'--strict: {len(problems)} problem(s) in {found.root}:\n  '
          + '\n  '.join(problems))
  if baseline is not None and baseline not in with_trials:
    raise ValueError(f'Unknown baseline {baseline!r}; known submissions: '
                     f'{", ".join(sorted(with_trials))}.')
  several = len(present) > 1
  boards: Dict[str, Leaderboard] = {}
  all_warnings = list(result.warnings) + ruleset_warnings
  for r in present:
    mine = {s for s in submissions if assigned[s] == r}
    others = [s for s in submissions if assigned[s] != r]
    warnings = _warnings_for(result.warnings, found.root, others)
    warnings += [w for w in ruleset_warnings if w.split(':', 1)[0] in mine]
    board_trials = [t for t in trials if assigned[t.submission] == r]
    board = _board(board_trials, version, r, scored, time_column=time_column,
                   baseline=baseline if baseline in mine else None,
                   warnings=warnings, label=f'{r} tuning: ' if several else '',
                   version_rule=version_rule, speed_rescale=speed_rescale)
    all_warnings += board.warnings[len(warnings):]
    boards[r] = board
  return boards, all_warnings


def _warnings_for(warnings: Sequence[str], root: Path,
                  others: Sequence[str]) -> List[str]:
  """The warnings that do not name a path inside one of ``others``' folders."""
  if not others:
    return list(warnings)
  prefixes = tuple(p for s in others
                   for p in (f'{root / s}/', f'{root / s}:'))
  return [w for w in warnings if not w.startswith(prefixes)]


def _board(trials: Sequence[loading.TrialLog], version: benchmarks.BenchmarkVersion,
           ruleset: str, scored: Sequence[str], *, time_column: str,
           baseline: Optional[str], warnings: List[str], label: str,
           version_rule: Optional[str] = None,
           speed_rescale: bool = True) -> Leaderboard:
  """One leaderboard of ``trials``, all scored under ``ruleset``."""
  multiplier = version.budget_multiplier(ruleset)
  budgets = {w: version.workload(w).max_allowed_runtime_sec * multiplier
             for w in scored}
  # (submission, workload) -> study number -> [(trial folder, TrialHit)], in
  # trial order (the loader sorts them).
  hits: Dict[tuple, Dict[int, list]] = defaultdict(lambda: defaultdict(list))
  for trial in trials:
    facts = version.workload(trial.workload)
    # Steps have no budget; seconds are cut at the budget (a late hit is a
    # miss). Logged seconds are cut at the budget the trial ran with.
    budget = budgets[trial.workload] if time_column == 'score' else math.inf
    if not speed_rescale:
      budget *= trial.speed_factor
    hit = rules.first_hit(trial.values, trial.times, facts.validation_target_value,
                          facts.higher_is_better, budget=budget)
    hits[(trial.submission, trial.workload)][trial.study_number].append(
        (trial.trial, hit))

  submissions = sorted({s for s, _ in hits})
  table: rules.Table = {s: {} for s in submissions}
  study_table: Dict[str, Dict[str, Dict[int, float]]] = defaultdict(dict)
  trial_table: Dict[str, Dict[str, Dict[int, Dict[str, float]]]] = defaultdict(dict)
  differences: List[RuleDifference] = []
  for (submission, workload), studies in sorted(hits.items()):
    times: Dict[int, float] = {}
    for number, named in sorted(studies.items()):
      only_hits = [h for _, h in named]
      times[number] = rules.study_time(only_hits, version.trial_rule)
      by_index = rules.chosen_trial(only_hits, rules.SMALLEST_EVAL_INDEX)
      by_time = rules.chosen_trial(only_hits, rules.SMALLEST_TIME)
      if by_index != by_time:  # both None (no hit) is no difference
        differences.append(RuleDifference(
            submission, workload, number, named[by_index][0],
            only_hits[by_index].time, named[by_time][0], only_hits[by_time].time))
    study_table[submission][workload] = times
    trial_table[submission][workload] = {
        number: {name: h.time for name, h in named}
        for number, named in sorted(studies.items())}
    table[submission][workload] = rules.workload_time(list(times.values()))
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
  warnings = list(warnings)
  cache_warning = _cache_warning(trials)
  if cache_warning:
    warnings.append(label + cache_warning)
  factor_range, factors = None, {}
  if time_column != 'global_step':
    factor_range, factors = _speed_factors(trials)
    if factor_range is not None and factor_range[1] > SPEED_FACTOR_SPREAD * factor_range[0]:
      low, high = factor_range
      spread = (f'{label}the speed factors of the scored trials range from '
                f'{format_factor(low)} to {format_factor(high)} ({high / low:.2f}x '
                f'apart, more than {SPEED_FACTOR_SPREAD}x): ')
      if speed_rescale:
        warnings.append(
            spread + 'each trial\'s times were divided by its factor to '
            'reference-machine seconds, which is only approximate between '
            'machines this different.')
      else:
        warnings.append(
            spread + 'the times are unscaled (--nospeed_rescale), each '
            'machine\'s own seconds, so trials of machines this different do '
            'not compare; without it they are rescaled to reference-machine '
            'seconds.')
  return Leaderboard(
      benchmark=version.name,
      ruleset=ruleset,
      time_column=time_column,
      submissions=submissions,
      base_workloads=list(version.base_workloads),
      scored_workloads=list(scored),
      budgets=budgets,
      time_to_target=table,
      scored_times=scored_times,
      scores=scores,
      profiles={s: [float(x) for x in profiles[s]] for s in submissions},
      taus=[float(t) for t in taus],
      speedups=speedups,
      baseline=baseline,
      warnings=warnings,
      num_trials=len(trials),
      speed_factor_range=factor_range,
      speed_factors=factors,
      trial_rule=version.trial_rule,
      version_trial_rule=version_rule or version.trial_rule,
      rule_differences=differences,
      study_times=dict(study_table),
      trial_times=dict(trial_table),
      speed_rescale=speed_rescale,
  )


def rule_note(board: Leaderboard) -> Optional[str]:
  """One line naming the studies where the two trial rules pick different trials.

  None when they agree everywhere. Names at most ``MAX_NAMED_DIFFERENCES``
  studies (``--json`` lists all).
  """
  diffs = board.rule_differences
  if not diffs:
    return None
  fmt = lambda t: f'{t:.0f} steps' if board.time_column == 'global_step' else f'{t:.1f} s'
  named = [f'{d.name} ({d.by_eval_index} {fmt(d.eval_index_time)} by smallest '
           f'eval index, {d.by_time} {fmt(d.time)} by smallest time)'
           for d in diffs[:MAX_NAMED_DIFFERENCES]]
  more = len(diffs) - len(named)
  listed = '; '.join(named) + (f'; and {more} more (all in --json)' if more else '')
  used = RULE_WORDS[board.trial_rule]
  whose = ('the version\'s rule' if board.trial_rule == board.version_trial_rule
           else f'as asked; {board.benchmark}\'s rule is '
           f'{RULE_WORDS[board.version_trial_rule]}')
  return (f'Trial rules differ in {_plural(len(diffs), "study", "studies")}: '
          f'{listed}; scored by {used} ({whose}).')


def _cache_warning(trials: Sequence[loading.TrialLog]) -> Optional[str]:
  """One line when some scored trials ran with the compilation cache and some without."""
  used = Counter(t.meta.compilation_cache_used for t in trials
                 if t.meta is not None and t.meta.compilation_cache_used is not None)
  if not (used[True] and used[False]):
    return None
  return (f'{_plural(used[True], "scored trial")} ran with JAX\'s persistent '
          f'compilation cache on and {used[False]} with it off (meta_data '
          'compilation_cache_used): compilation time is on the submission '
          'clock, so cached runs start faster and their times are not '
          'comparable; rerun them all with the same --compilation_cache setting.')


def _speed_factors(trials: Sequence[loading.TrialLog],
                   ) -> Tuple[Optional[Tuple[float, float]],
                              Dict[str, Dict[str, Tuple[float, float]]]]:
  """(smallest, largest) factor over ``trials`` and per (submission, workload).

  Both empty (None, {}) when every factor is 1: nothing was rescaled.
  """
  factors = [t.speed_factor for t in trials]
  if all(f == 1.0 for f in factors):
    return None, {}
  cells: Dict[str, Dict[str, Tuple[float, float]]] = defaultdict(dict)
  for t in trials:
    low, high = cells[t.submission].get(t.workload, (t.speed_factor, t.speed_factor))
    cells[t.submission][t.workload] = (min(low, t.speed_factor),
                                       max(high, t.speed_factor))
  return (min(factors), max(factors)), dict(cells)


def format_factor(x: float) -> str:
  """A speed factor for messages: 3 significant digits, at least one decimal."""
  text = f'{x:.3g}'
  return text if ('.' in text or 'e' in text) else text + '.0'


def _plural(n: int, word: str, words: Optional[str] = None) -> str:
  if n == 1:
    return f'{n} {word}'
  return f'{n} {words or word + "s"}'
