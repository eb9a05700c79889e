"""The first rule of scoring: when did a trial first reach its target?"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Optional, Sequence


def time_to_target(values: Sequence[float], times: Sequence[float],
                   target: float, higher_is_better: bool) -> float:
  """The time at the first eval whose value meets ``target``; ``inf`` if none does.

  ``>=`` for metrics where higher is better, ``<=`` otherwise; NaN never meets a
  target (docs/RULES.md, Scoring rules).
  """
  if len(values) != len(times):
    raise ValueError(f'{len(values)} values but {len(times)} times.')
  for value, time in zip(values, times):
    if math.isnan(value):
      continue
    if (value >= target) if higher_is_better else (value <= target):
      return float(time)
  return math.inf


def _number(text: str) -> float:
  try:
    return float(text)
  except ValueError:
    return math.nan


def trial_time_to_target(eval_csv: str | Path, metric_column: str,
                         target: float, higher_is_better: bool,
                         time_column: str = 'score') -> float:
  """``time_to_target`` over one trial's ``eval_measurements.csv``."""
  with open(eval_csv, newline='') as f:
    rows = list(csv.DictReader(f))
  if rows and metric_column not in rows[0]:
    raise KeyError(f'{eval_csv} has no column {metric_column!r}.')
  values = [_number(r[metric_column]) for r in rows]
  times = [_number(r[time_column]) for r in rows]
  return time_to_target(values, times, target, higher_is_better)
