"""The scoring rules, from one trial's evals to a submission's benchmark score.

docs/RULES.md, Scoring rules, states them; in order:

1. Per trial (``first_hit``): the first eval whose validation metric meets the
   target (``>=`` when higher is better, ``<=`` otherwise; NaN never meets it).
2. Per study (``study_time``): among the trials that hit, the version's trial
   rule picks one (v0.5: the smallest eval index, v0.6: the smallest time); no
   hit is ``inf``.
3. Per workload (``workload_time``): ``numpy.median`` over the studies that have
   logs, ``inf`` taking part.
4. Per table (``apply_rules``): the v0.5 held-out rules and the 4x cut.
5. ``performance_profile`` and ``benchmark_score``: the normalized area under
   each submission's performance profile for tau in [1, 4].

Conventions for a time: a finite float is a time to target in seconds; ``inf``
is a miss (the submission ran but did not reach the target, or lost credit by a
rule); NaN, or a key absent from a table, is *missing* (no logs). Missing and
miss both give no credit in the profile; they differ only in the held-out rules
(where either one counts against the base) and in what reports say.

Everything here is pure: no I/O, no JAX, no pandas. The rules follow the
reference scorer (``scoring/performance_profile.py`` of
mlcommons/algorithmic-efficiency) as it produced the published v0.5 leaderboard.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence

import numpy as np

Table = Dict[str, Dict[str, float]]
"""submission -> workload -> time to target (``inf`` miss; NaN/absent missing)."""

SMALLEST_EVAL_INDEX = 'smallest_eval_index'
SMALLEST_TIME = 'smallest_time'
TRIAL_RULES = (SMALLEST_EVAL_INDEX, SMALLEST_TIME)

MAX_TAU = 4.0
"""A time more than this many times the column's best gets no credit (rule 2),
and the profile is integrated over tau in [1, MAX_TAU]."""

DEFAULT_TAUS = np.linspace(1.0, MAX_TAU, 100)
"""The published leaderboards' tau grid: 100 points evenly from 1 to 4."""
DEFAULT_TAUS.setflags(write=False)  # A shared module constant; nobody may edit it.


class TrialHit(NamedTuple):
  """When one trial first reached its target.

  ``time`` is the ``score`` column (accumulated submission time) at that eval
  and ``eval_index`` the 0-based row of that eval in the trial's eval table;
  both are ``math.inf`` when the trial never reached the target. ``eval_index``
  is a float only so that a miss can be ``inf``.
  """

  time: float
  eval_index: float


MISS = TrialHit(math.inf, math.inf)


def first_hit(values: Sequence[float], times: Sequence[float], target: float,
              higher_is_better: bool, budget: float = math.inf) -> TrialHit:
  """The first eval whose value meets ``target``; ``MISS`` if none does.

  Args:
    values: the validation metric at each eval, in eval order.
    times: the ``score`` (accumulated submission time) at each eval.
    target: the workload's validation target.
    higher_is_better: ``>=`` if true (accuracy, ssim, mAP, bleu), else ``<=``
      (loss, error rate, wer, ...). Equality reaches the target either way.
    budget: a hit later than this (strictly greater) is a miss. The caller
      passes the workload's budget, times the self-tuning multiplier where that
      applies; the default ``inf`` keeps every hit, as the reference scorer
      does. Only the first hit is checked: a trial's clock only grows, so any
      later hit would be over the budget too.
  """
  if len(values) != len(times):
    raise ValueError(f'{len(values)} values but {len(times)} times.')
  for index, (value, time) in enumerate(zip(values, times)):
    value = float(value)
    if math.isnan(value):  # Explicit, though NaN comparisons are false anyway.
      continue
    if value >= target if higher_is_better else value <= target:
      time = float(time)
      if time > budget:
        return MISS
      return TrialHit(time, float(index))
  return MISS


def chosen_trial(hits: Sequence[TrialHit], rule: str) -> Optional[int]:
  """The position in ``hits`` of the trial the rule picks; None when no trial hit.

  ``'smallest_eval_index'``: the smallest eval index, a tie going to the first
  in order (the reference's ``idxmin``). ``'smallest_time'``: the smallest
  time, a tie going to the smaller eval index, then to the first in order; so
  the two rules pick different trials only where they give different times.

  Raises:
    ValueError: an unknown rule.
  """
  if rule not in TRIAL_RULES:
    raise ValueError(f'Unknown trial rule {rule!r}; known: {", ".join(TRIAL_RULES)}.')
  reached = [i for i, h in enumerate(hits) if math.isfinite(h.time)]
  if not reached:
    return None
  if rule == SMALLEST_TIME:
    return min(reached, key=lambda i: (hits[i].time, hits[i].eval_index, i))
  return min(reached, key=lambda i: (hits[i].eval_index, i))


def study_time(hits: Sequence[TrialHit], rule: str) -> float:
  """A study's time to target from its trials' hits, by the version's trial rule.

  Args:
    hits: one ``TrialHit`` per trial that has logs. Pass them sorted by trial
      number: under ``'smallest_eval_index'`` a tie on the eval index goes to
      the first one in this order (the reference takes pandas' ``idxmin``,
      the first of equal minima in its row order).
    rule: ``'smallest_eval_index'`` (v0.5): the trial that hit at the earliest
      eval, and the study time is *its* time, which need not be the smallest
      time; ``'smallest_time'`` (v0.6): the smallest time.

  Returns:
    The chosen trial's time; ``inf`` when no trial hit.

  Raises:
    ValueError: an unknown rule, or no trials at all. A study without logs is
      missing, not a miss: the caller leaves it out of ``workload_time``.
  """
  if rule not in TRIAL_RULES:
    raise ValueError(f'Unknown trial rule {rule!r}; known: {", ".join(TRIAL_RULES)}.')
  if not hits:
    raise ValueError('A study needs at least one trial; a study without logs is '
                     'missing and must be left out, not scored.')
  chosen = chosen_trial(hits, rule)
  return math.inf if chosen is None else float(hits[chosen].time)


def workload_time(study_times: Sequence[float]) -> float:
  """The median of the study times (``inf`` takes part); NaN when there are none.

  ``numpy.median`` averages the two middle values of an even count, so the
  median of ``[1, inf]`` is ``inf`` and of ``[1, 3, 5, inf]`` is 4.
  """
  if len(study_times) == 0:
    return math.nan
  return float(np.median(np.asarray(study_times, dtype=float)))


# --- Tables ---------------------------------------------------------------


def _matrix(table: Mapping[str, Mapping[str, float]], submissions: Sequence[str],
            workloads: Sequence[str]) -> np.ndarray:
  """[submission, workload] times as floats; absent keys become NaN (missing)."""
  out = np.full((len(submissions), len(workloads)), np.nan)
  for i, sub in enumerate(submissions):
    row = table[sub]
    for j, workload in enumerate(workloads):
      if workload in row and row[workload] is not None:
        out[i, j] = float(row[workload])
  return out


def _column_min(matrix: np.ndarray) -> np.ndarray:
  """Each column's minimum over submissions, ignoring NaN; ``inf`` if none is finite.

  The reference takes pandas' ``min``, which skips NaN. An all-NaN column gives
  ``inf`` here (not NaN) so that comparisons below stay quiet and false.
  """
  if matrix.shape[0] == 0:
    return np.full(matrix.shape[1], np.inf)
  return np.where(np.isnan(matrix), np.inf, matrix).min(axis=0)


def _not_finite(x: np.ndarray) -> np.ndarray:
  """Miss (``inf``) or missing (NaN): the held-out rules treat both alike."""
  return ~np.isfinite(x)


def _base_of(version_like: Any, held_out: str) -> str:
  """The base workload of a held-out workload, from the version's facts."""
  lookup = getattr(version_like, 'workload', None)
  facts = lookup(held_out) if callable(lookup) else version_like.workloads[held_out]
  return facts.base_workload


def apply_rules(table: Mapping[str, Mapping[str, float]], version_like: Any) -> Table:
  """The held-out and 4x rules; returns the base-workload table that is profiled.

  ``version_like`` is a ``BenchmarkVersion`` or any object with
  ``base_workloads``, ``held_out_workloads`` and, for each held-out workload,
  ``workloads[name].base_workload`` (or a ``workload(name)`` method giving it).

  With held-out workloads (v0.5), exactly in the reference's order:
    1. held-out := inf where its base is inf or missing;
    2. on every column (base and held-out), inf where T > 4 x the column's
       minimum over all submissions in ``table`` (the minimum ignores NaN; a
       column with no finite time is left as it is);
    3. base := inf where (any of) its held-out is inf or missing; this is how a
       held-out miss takes away a submission's credit on the base workload;
    4. keep only the base columns.
  Without held-out workloads (v0.6): only step 2, on the base columns.

  Columns of ``table`` that are neither base nor held-out (e.g. extra variants
  the baseline ran) are ignored; a base workload absent for a submission comes
  out NaN (missing). Note the 4x cut is applied once, before step 3: a base
  column whose fastest time is then removed can leave ratios above 4, exactly
  as in the published scores (they are outside tau's range anyway).
  """
  base = list(version_like.base_workloads)
  held_out = list(version_like.held_out_workloads)
  columns = base + held_out
  submissions = list(table)
  T = _matrix(table, submissions, columns)
  col = {w: j for j, w in enumerate(columns)}
  pairs = []  # (held-out column, its base column)
  for h in held_out:
    b = _base_of(version_like, h)
    if b not in col or col[b] >= len(base):
      raise ValueError(f'Held-out workload {h!r} has base {b!r}, which is not '
                       f'one of the base workloads {base}.')
    pairs.append((col[h], col[b]))

  # (1) A held-out time only counts where its base was reached.
  for h, b in pairs:
    T[_not_finite(T[:, b]), h] = np.inf
  # (2) Nobody gets credit for being more than 4x slower than the best. NaN > x
  # is false, so missing stays missing; an inf minimum makes the cut a no-op.
  limit = MAX_TAU * _column_min(T)
  with np.errstate(invalid='ignore'):
    T[T > limit[np.newaxis, :]] = np.inf
  # (3) A base time only counts where its held-out was reached too.
  for h, b in pairs:
    T[_not_finite(T[:, h]), b] = np.inf
  # (4) Only base workloads are profiled.
  return {sub: {w: float(T[i, col[w]]) for w in base}
          for i, sub in enumerate(submissions)}


def performance_profile(table: Mapping[str, Mapping[str, float]],
                        base_workloads: Sequence[str],
                        taus: Optional[Sequence[float]] = None
                        ) -> Dict[str, np.ndarray]:
  """Each submission's rho(tau): the fraction of base workloads with r <= tau.

  r = T / (the column's minimum over the submissions in ``table``, ignoring
  NaN); so the profile depends on who is scored together. A column with no
  finite time gives nobody credit. rho is always divided by
  ``len(base_workloads)`` (8 for the real versions), also for a submission
  missing some of them. Apply ``apply_rules`` first; ``score_table`` does both.
  The reference divides with no special case, so a column whose best time is 0
  gives 0/0 = NaN, i.e. no credit to anyone; times to target are always > 0.
  """
  taus = DEFAULT_TAUS if taus is None else np.asarray(taus, dtype=float)
  submissions = list(table)
  T = _matrix(table, submissions, base_workloads)
  best = _column_min(T)
  with np.errstate(invalid='ignore', divide='ignore'):
    r = T / best[np.newaxis, :]
  # inf/inf and NaN/x are NaN, and NaN <= tau is false: no credit.
  r[:, ~np.isfinite(best)] = np.nan
  n = len(base_workloads)
  with np.errstate(invalid='ignore'):
    hits = r[:, :, np.newaxis] <= taus[np.newaxis, np.newaxis, :]
  rho = hits.sum(axis=1) / n if n else np.zeros((len(submissions), len(taus)))
  return {sub: rho[i] for i, sub in enumerate(submissions)}


def benchmark_score(rho: Sequence[float], taus: Sequence[float]) -> float:
  """The trapezoid integral of rho over taus, divided by the range of taus.

  With the default taus that range is 3, so a submission fastest on every
  workload scores 1. Written as ``numpy.trapz`` computes it, so results match
  the reference to the last bit.
  """
  rho = np.asarray(rho, dtype=float)
  taus = np.asarray(taus, dtype=float)
  if rho.shape != taus.shape or taus.ndim != 1 or len(taus) < 2:
    raise ValueError(f'rho {rho.shape} and taus {taus.shape} must be equal, '
                     'one-dimensional and at least 2 long.')
  area = (np.diff(taus) * (rho[1:] + rho[:-1]) / 2.0).sum()
  return float(area / (taus.max() - taus.min()))


def score_table(table: Mapping[str, Mapping[str, float]], version_like: Any,
                taus: Optional[Sequence[float]] = None) -> Dict[str, float]:
  """Benchmark score of every submission in ``table`` (scored together).

  ``table`` holds per-workload times (``workload_time``) of base and held-out
  workloads; the version's rules are applied, then the profile is integrated.
  """
  taus = DEFAULT_TAUS if taus is None else np.asarray(taus, dtype=float)
  ruled = apply_rules(table, version_like)
  profiles = performance_profile(ruled, version_like.base_workloads, taus)
  return {sub: benchmark_score(rho, taus) for sub, rho in profiles.items()}


__all__: List[str] = [
    'DEFAULT_TAUS', 'MAX_TAU', 'MISS', 'SMALLEST_EVAL_INDEX', 'SMALLEST_TIME',
    'TRIAL_RULES', 'Table', 'TrialHit', 'apply_rules', 'benchmark_score',
    'chosen_trial', 'first_hit', 'performance_profile', 'score_table', 'study_time',
    'workload_time',
]
