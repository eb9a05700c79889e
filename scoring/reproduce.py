"""`algoperf reproduce v0.5`: rescore the first competition, compare with the published scores.

By default the logs are the extract shipped in the package
(``scoring/data/competition_v0.5.json.xz``, see ``scoring/extract.py``), so
this works offline, in a fresh clone and in Docker; ``--logs`` scores a full
log folder (holding ``external_tuning/`` and ``self_tuning/``) or another
extract instead. Both go through ``leaderboard.score_logs``, the code behind
``algoperf score``: there is no second scoring implementation here, only the
comparison with ``scoring/data/published_<version>.json`` and the printout.

Exit status: 0 when every recomputed score rounds to the published one (4
decimals) and the submissions are the same; 1 otherwise (naming each
mismatch), also when the logs cannot be read (e.g. a corrupt extract).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence, TextIO

from algoperf.recorder import atomic_write_text
from scoring import extract, leaderboard, loading, published, report

EXTRACTS = {'v0.5': published.DATA / 'competition_v0.5.json.xz'}
"""Competitions that can be reproduced, and the shipped extract of their logs."""

RULESET_TITLES = {'external': 'External tuning', 'self': 'Self-tuning'}


@dataclasses.dataclass(frozen=True)
class ScoreRow:
  """One submission's published and recomputed score (None: absent on that side)."""

  submission: str
  name: str
  published: Optional[float]
  recomputed: Optional[float]
  matches: bool


@dataclasses.dataclass
class RulesetResult:
  """One ruleset's leaderboard and its comparison with the published one."""

  ruleset: str
  board: leaderboard.Leaderboard
  rows: List[ScoreRow]

  @property
  def mismatches(self) -> List[ScoreRow]:
    return [r for r in self.rows if not r.matches]


def compare(board: leaderboard.Leaderboard,
            board_published: published.PublishedLeaderboard,
            ruleset: str) -> List[ScoreRow]:
  """Rows in published order, then submissions the leaderboard never published."""
  scores = board_published.scores[ruleset]
  names = board_published.names[ruleset]
  order = sorted(scores, key=lambda s: (-scores[s], s))
  order += [s for s in board.ranking() if s not in scores]
  rows = []
  for s in order:
    got = board.scores.get(s)
    rows.append(ScoreRow(
        submission=s, name=names.get(s, s), published=scores.get(s),
        recomputed=got,
        matches=got is not None and board_published.matches(ruleset, s, got)))
  return rows


def _fmt(x: Optional[float], decimals: int) -> str:
  return 'missing' if x is None else f'{x:.{decimals}f}'


def _score_table(rows: Sequence[ScoreRow], decimals: int) -> str:
  body = [[str(i), r.submission, _fmt(r.published, decimals),
           _fmt(r.recomputed, decimals), 'yes' if r.matches else 'NO']
          for i, r in enumerate(rows, start=1)]
  # pylint: disable-next=protected-access
  return report._table_text(['rank', 'submission', 'published', 'recomputed',
                             'match'], body)


def _workload_table(board: leaderboard.Leaderboard) -> str:
  # The same per-workload table as `algoperf score` prints.
  # pylint: disable=protected-access
  header = ['submission'] + [report._short(w) for w in board.scored_workloads]
  return report._table_text(header, report._time_rows(board, with_fraction=True))


def _mismatch_text(ruleset: str, row: ScoreRow, decimals: int) -> str:
  if row.recomputed is None:
    return f'{ruleset}/{row.submission}: published {row.published:.{decimals}f}, no logs'
  if row.published is None:
    return (f'{ruleset}/{row.submission}: recomputed {row.recomputed:.{decimals}f}, '
            'not on the published leaderboard')
  return (f'{ruleset}/{row.submission}: published {row.published:.{decimals}f}, '
          f'recomputed {row.recomputed:.6f}')


def verdict(results: Sequence[RulesetResult],
            board_published: published.PublishedLeaderboard) -> str:
  """The last line: all scores reproduced, or which ones are not."""
  total = sum(len(r.rows) for r in results)
  bad = [_mismatch_text(r.ruleset, row, board_published.decimals)
         for r in results for row in r.mismatches]
  version = board_published.benchmark
  if not bad:
    return (f'Reproduced: all {total} recomputed scores equal the published '
            f'{version} leaderboard to {board_published.decimals} decimals.')
  return (f'NOT reproduced: {len(bad)} of {total} scores differ from the '
          f'published {version} leaderboard: ' + '; '.join(bad) + '.')


def _ruleset_text(result: RulesetResult, decimals: int) -> str:
  board = result.board
  return '\n'.join([
      f'{RULESET_TITLES[result.ruleset]} ruleset: '
      f'{len(board.submissions)} submissions, {board.num_trials} trials scored.',
      _score_table(result.rows, decimals),
      '',
      'Time to target per workload (median over studies), s (fraction of budget):',
      _workload_table(board),
  ])


def _write_outputs(results: Sequence[RulesetResult],
                   board_published: published.PublishedLeaderboard,
                   logs: str, out_dir: Path) -> List[Path]:
  """Per ruleset, `algoperf score`'s files; beside them reproduce.md and .json."""
  out_dir.mkdir(parents=True, exist_ok=True)
  written: List[Path] = []
  decimals = board_published.decimals
  md = [f'# Reproducing the {board_published.title}', '',
        f'Logs: `{logs}`. Published scores: {_source_text(board_published)}.', '']
  doc = {'benchmark': board_published.benchmark, 'logs': logs,
         'published_source': board_published.source, 'decimals': decimals,
         'rulesets': {}}
  for result in results:
    folder = board_published.log_folders[result.ruleset]
    written += report.write_outputs(result.board, out_dir / folder)
    md += [f'## {RULESET_TITLES[result.ruleset]} ruleset', '',
           '| rank | submission | published | recomputed | match |',
           '|---|---|---|---|---|']
    md += [f'| {i} | {r.name} (`{r.submission}`) | {_fmt(r.published, decimals)} '
           f'| {_fmt(r.recomputed, decimals)} | {"yes" if r.matches else "**NO**"} |'
           for i, r in enumerate(result.rows, start=1)]
    md += ['', f'Time to target per workload, profiles and plots: '
           f'[{folder}/report.md]({folder}/report.md).', '']
    board_json = result.board.to_json()
    doc['rulesets'][result.ruleset] = {
        'submissions': [dataclasses.asdict(r) for r in result.rows],
        'time_to_target': board_json['time_to_target'],
        'num_trials': result.board.num_trials,
        'warnings': result.board.warnings,
    }
  line = verdict(results, board_published)
  md += [f'**{line}**', '']
  doc['reproduced'] = all(not r.mismatches for r in results)
  doc['verdict'] = line
  md_path, json_path = out_dir / 'reproduce.md', out_dir / 'reproduce.json'
  atomic_write_text(md_path, '\n'.join(md))
  atomic_write_text(json_path, json.dumps(doc, indent=2, allow_nan=False) + '\n')
  return [md_path, json_path] + written


def _source_text(board_published: published.PublishedLeaderboard) -> str:
  src = board_published.source
  repo = src.get('repository', '?').removeprefix('https://github.com/')
  return f'{repo}@{src.get("commit", "?")[:8]} {src.get("path", "")}'.strip()


def _score(root: Path, folder: Path, benchmark: str, ruleset: str,
           from_extract: bool) -> leaderboard.Leaderboard:
  """``score_logs`` on one ruleset's folder, with messages that name ``--logs``."""
  if not loading.is_log_folder(folder):
    if from_extract:
      raise extract.ExtractError(
          f'{root}: the shipped extract is missing or lacks {folder.name}/; '
          'reinstall the package (pip install -e .) or pass --logs PATH.')
    if not loading.is_log_folder(root):
      raise FileNotFoundError(f'--logs {root}: no such folder (or log extract).')
    raise FileNotFoundError(
        f'--logs {root} has no {folder.name}/ folder; it must hold one folder '
        'per ruleset (external_tuning/, self_tuning/), as '
        'previous_leaderboards/algoperf_v05/logs of '
        'mlcommons/submissions_algorithms does.')
  return leaderboard.score_logs(folder, benchmark, ruleset)


def reproduce_competition(
    benchmark: str = 'v0.5',
    *,
    logs: Optional[str | Path] = None,
    rulesets: Sequence[str] = ('external', 'self'),
    output_dir: Optional[str | Path] = None,
    out: Optional[TextIO] = None,
    err: Optional[TextIO] = None,
) -> int:
  """Rescores a competition's logs and compares with its published leaderboard.

  Args:
    benchmark: a version in ``EXTRACTS`` (``'v0.5'``).
    logs: a folder (or extract) holding one folder per ruleset
      (``external_tuning``, ``self_tuning``); default: the shipped extract.
    rulesets: which of ``'external'`` and ``'self'`` to score.
    output_dir: if given, write reports, CSVs and profile plots there.
    out, err: where the tables and the warnings go (default: stdout, stderr).

  Returns:
    0 if every score matches the published one, else 1.

  Raises:
    FileNotFoundError: ``logs`` (or a ruleset folder in it) does not exist.
    ValueError: an unknown benchmark or ruleset.
  """
  # Looked up now, not at import: tests and callers may swap sys.stdout.
  out = sys.stdout if out is None else out
  err = sys.stderr if err is None else err
  if benchmark not in EXTRACTS:
    raise ValueError(f'Nothing to reproduce for {benchmark!r}; known: '
                     f'{", ".join(EXTRACTS)}.')
  board_published = published.load(benchmark)
  unknown = [r for r in rulesets if r not in board_published.scores]
  if unknown:
    raise ValueError(f'Unknown ruleset(s) {", ".join(unknown)}; the {benchmark} '
                     f'leaderboard has {", ".join(board_published.rulesets)}.')
  root = Path(logs) if logs is not None else EXTRACTS[benchmark]
  folders = [root / board_published.log_folders[r] for r in rulesets]
  try:
    boards = [_score(root, folder, benchmark, ruleset, from_extract=logs is None)
              for folder, ruleset in zip(folders, rulesets)]
  except extract.ExtractError as e:
    print(f'error: {e}', file=err)
    print('NOT reproduced: the logs could not be read.', file=out)
    return 1
  where = (f'{root} (the compact extract shipped with the package)' if logs is None
           else str(root))
  print(f'Reproducing the {board_published.title}.', file=out)
  print(f'Logs: {where}', file=out)
  print(f'Published scores: {_source_text(board_published)}', file=out)
  results: List[RulesetResult] = []
  for ruleset, board in zip(rulesets, boards):
    for line in board.warnings:
      print(f'warning: {line}', file=err)
    result = RulesetResult(ruleset, board, compare(board, board_published, ruleset))
    results.append(result)
    print('', file=out)
    print(_ruleset_text(result, board_published.decimals), file=out)
  print('', file=out)
  if output_dir is not None:
    paths = _write_outputs(results, board_published, str(root), Path(output_dir))
    print(f'Wrote {len(paths)} files to {output_dir} (reproduce.md, reproduce.json, '
          'and per ruleset: report.md/html, scores.csv, time_to_target.csv, '
          'performance_profiles.png/svg).', file=out)
  line = verdict(results, board_published)
  print(line, file=out)
  return 0 if all(not r.mismatches for r in results) else 1


__all__ = ['EXTRACTS', 'RulesetResult', 'ScoreRow', 'compare',
           'reproduce_competition', 'verdict']
