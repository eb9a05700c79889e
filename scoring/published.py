"""The published leaderboards, as data (``scoring/data/published_<version>.json``).

Each file copies a leaderboard's scores as published (four decimals), per
ruleset, with the submission folder names its logs use, the display names, and
where the numbers come from. ``algoperf reproduce`` and the tests compare
recomputed scores with these.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Dict, Tuple

DATA = Path(__file__).resolve().parent / 'data'


@dataclasses.dataclass(frozen=True)
class PublishedLeaderboard:
  """One benchmark version's published scores."""

  benchmark: str
  title: str
  source: Dict[str, str]
  decimals: int
  scores: Dict[str, Dict[str, float]]  # ruleset -> submission folder -> score
  names: Dict[str, Dict[str, str]]  # ruleset -> submission folder -> display name
  log_folders: Dict[str, str]  # ruleset -> its folder under the logs root

  @property
  def rulesets(self) -> Tuple[str, ...]:
    return tuple(self.scores)

  def matches(self, ruleset: str, submission: str, recomputed: float) -> bool:
    """Whether ``recomputed`` rounds to the published score (False if unpublished)."""
    published = self.scores[ruleset].get(submission)
    return published is not None and round(recomputed, self.decimals) == published


def available() -> Tuple[str, ...]:
  """Versions with a published leaderboard, e.g. ``('v0.5',)``."""
  return tuple(sorted(p.stem[len('published_'):]
                      for p in DATA.glob('published_*.json')))


@functools.lru_cache(maxsize=None)
def load(benchmark: str) -> PublishedLeaderboard:
  """The published leaderboard of ``benchmark``.

  Raises:
    ValueError: no leaderboard of that version is shipped.
  """
  path = DATA / f'published_{benchmark}.json'
  if not path.is_file():
    raise ValueError(f'No published leaderboard for benchmark {benchmark!r}; '
                     f'available: {", ".join(available()) or "none"}.')
  raw = json.loads(path.read_text(encoding='utf-8'))
  rulesets = raw['rulesets']
  return PublishedLeaderboard(
      benchmark=raw['benchmark'],
      title=raw['title'],
      source=dict(raw['source']),
      decimals=int(raw['decimals']),
      scores={r: {s: float(v) for s, v in d['scores'].items()}
              for r, d in rulesets.items()},
      names={r: dict(d.get('names', {})) for r, d in rulesets.items()},
      log_folders={r: d['logs'] for r, d in rulesets.items()},
  )


__all__ = ['PublishedLeaderboard', 'available', 'load']
