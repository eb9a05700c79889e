"""Leaderboard outputs: terminal table, CSV files, profile plots, Markdown/HTML report."""

from __future__ import annotations

import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Dict, List, Optional

from algoperf.recorder import atomic_write_text
from scoring.leaderboard import RULE_WORDS, Leaderboard, format_factor, rule_note


def _fmt_time(t: float, column: str) -> str:
  if math.isnan(t):
    return 'missing'
  if math.isinf(t):
    return 'inf'
  return f'{t:.0f}' if column == 'global_step' else f'{t:.1f}'


def _fmt_fraction(t: float, budget: float) -> str:
  if math.isnan(t) or math.isinf(t):
    return ''
  return f'{t / budget:.2f}'


def _plural(n: int, word: str) -> str:
  return f'{n} {word}' + ('' if n == 1 else 's')


def _short(workload: str) -> str:
  return workload.replace('librispeech_', 'ls_').replace('imagenet_', 'in_')


def scores_rows(board: Leaderboard) -> List[List[str]]:
  """Rank, submission, score (and speedup) rows."""
  rows = []
  for rank, s in enumerate(board.ranking(), start=1):
    row = [str(rank), s, f'{board.scores[s]:.4f}']
    if board.speedups is not None:
      ratio = board.speedups[s]
      change = (1 - ratio) * 100
      word = 'faster' if change >= 0 else 'slower'
      row.append(f'{ratio:.3f} ({abs(change):.1f}% {word})')
    rows.append(row)
  return rows


def _table_text(header: List[str], rows: List[List[str]]) -> str:
  widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
  line = lambda r: '  '.join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()
  return '\n'.join([line(header), line(['-' * w for w in widths])]
                   + [line(r) for r in rows])


def _scores_header(board: Leaderboard) -> List[str]:
  header = ['rank', 'submission', 'score']
  if board.speedups is not None:
    header.append(f'time ratio vs {board.baseline}')
  return header


def _with_fraction(board: Leaderboard) -> bool:
  """Whether times can be given as fractions of the (nominal) budget: seconds,
  and not logged seconds of machines whose budgets were scaled."""
  return board.time_column == 'score' and not board.unscaled


def _time_rows(board: Leaderboard, with_fraction: bool) -> List[List[str]]:
  with_fraction = with_fraction and _with_fraction(board)
  rows = []
  for s in board.ranking():
    row = [s]
    for w in board.scored_workloads:
      t = board.time_to_target[s][w]
      cell = _fmt_time(t, board.time_column)
      if with_fraction:
        frac = _fmt_fraction(t, board.budgets[w])
        cell = f'{cell} ({frac})' if frac else cell
      row.append(cell)
    rows.append(row)
  return rows


def rescaling_note(board: Leaderboard) -> Optional[str]:
  """One sentence saying the times were rescaled by speed factors, or were
  not (``--nospeed_rescale``); None when every factor is 1 (or steps)."""
  if board.speed_factor_range is None:
    return None
  low, high = board.speed_factor_range
  fmt = format_factor
  factors = fmt(low) if low == high else f'{fmt(low)} to {fmt(high)}'
  if board.unscaled:
    return ('Times are unscaled (--nospeed_rescale): the seconds each trial '
            'logged on its own machine, not divided by its meta_data '
            f'speed_factor ({factors}); each trial was cut at the budget it '
            'ran with (the nominal one times its factor), and no time is '
            'given as a fraction of the budget.')
  return ('Times are reference-machine seconds: each trial\'s times were '
          f'divided by its meta_data speed_factor ({factors}), as its budget '
          'had been multiplied by it.')


def trial_rule_notes(board: Leaderboard) -> List[str]:
  """The lines about the trial rule: which one, where asked for; where the two differ."""
  lines = []
  if board.trial_rule != board.version_trial_rule:
    lines.append(f'Each study\'s trial: the one with the '
                 f'{RULE_WORDS[board.trial_rule]} (--trial_rule; '
                 f'{board.benchmark}\'s own rule is the '
                 f'{RULE_WORDS[board.version_trial_rule]}).')
  note = rule_note(board)
  if note:
    lines.append(note)
  return lines


def ruleset_header(board: Leaderboard) -> str:
  """The line above each leaderboard when a folder holds two rulesets."""
  title = f' {board.ruleset.capitalize()} tuning ruleset '
  return f'{title:=^72}'


def terminal_text(board: Leaderboard) -> str:
  """The scores and the per-workload time to target (seconds and fraction of budget)."""
  unit = ('steps' if board.time_column == 'global_step'
          else 's (fraction of budget)' if _with_fraction(board)
          else 's, unscaled')
  parts = [
      f'Benchmark {board.benchmark}, {board.ruleset} tuning ruleset: '
      f'{_plural(len(board.submissions), "submission")}, '
      f'{_plural(board.num_trials, "trial")} scored.',
  ]
  note = rescaling_note(board)
  if note:
    parts.append(note)
  parts += trial_rule_notes(board)
  parts += [
      '',
      _table_text(_scores_header(board), scores_rows(board)),
      '',
      f'Time to target per workload (median over studies), {unit}:',
      _table_text(['submission'] + [_short(w) for w in board.scored_workloads],
                  _time_rows(board, with_fraction=True)),
  ]
  if board.warnings:
    parts += ['', f'{len(board.warnings)} warning(s) about the logs (listed '
              'above); see also the report or --strict.']
  return '\n'.join(parts) + '\n'


def _csv_text(header: List[str], rows: List[List]) -> str:
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator='\n')
  writer.writerow(header)
  writer.writerows(rows)
  return buf.getvalue()


def write_scores_csv(board: Leaderboard, path: Path) -> None:
  header = ['submission', 'score']
  if board.speedups is not None:
    header.append(f'time_ratio_vs_{board.baseline}')
  rows = []
  for s in board.ranking():
    row = [s, repr(board.scores[s])]
    if board.speedups is not None:
      row.append(repr(board.speedups[s]))
    rows.append(row)
  atomic_write_text(path, _csv_text(header, rows))


def write_time_to_target_csv(board: Leaderboard, path: Path) -> None:
  """One row per (submission, workload); with speed factors other than 1, those too.

  When any trial's speed factor is not 1, two more columns,
  ``speed_factor_min`` and ``speed_factor_max``, give the factors of the
  cell's trials (empty where it has none): the times were divided by them
  (reference-machine seconds), or with ``--nospeed_rescale`` were not (then
  ``fraction_of_budget`` is empty).
  """
  header = ['submission', 'workload', f'time_to_target_{board.time_column}',
            'fraction_of_budget', 'scored_time', 'budget_sec']
  factored = board.speed_factor_range is not None
  if factored:
    header += ['speed_factor_min', 'speed_factor_max']
  rows = []
  for s in board.ranking():
    for w in board.scored_workloads:
      t = board.time_to_target[s][w]
      scored = board.scored_times[s].get(w, '')
      row = [s, w, repr(t),
             _fmt_fraction(t, board.budgets[w]) if _with_fraction(board) else '',
             repr(scored) if scored != '' else '', repr(board.budgets[w])]
      if factored:
        factors = board.speed_factors.get(s, {}).get(w)
        row += [repr(f) for f in factors] if factors else ['', '']
      rows.append(row)
  atomic_write_text(path, _csv_text(header, rows))


def plot_profiles(board: Leaderboard, stem: Path) -> List[Path]:
  """Draws one performance-profile curve per submission; writes .png and .svg."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
  styles = ['-', '--', '-.', ':']
  for i, s in enumerate(board.ranking()):
    ax.step(board.taus, board.profiles[s], where='post',
            linestyle=styles[(i // 10) % len(styles)], linewidth=1.8,
            label=f'{s} ({board.scores[s]:.4f})')
  ax.set_xlabel('τ: time to target relative to the fastest submission')
  ax.set_ylabel('fraction of workloads with ratio ≤ τ')
  ax.set_title(f'Performance profiles, benchmark {board.benchmark}, '
               f'{board.ruleset} tuning')
  ax.set_xlim(board.taus[0], board.taus[-1])
  ax.set_ylim(-0.02, 1.02)
  ax.grid(True, alpha=0.4)
  ax.legend(loc='center left', bbox_to_anchor=(1.01, 0.5), fontsize=8,
            title='submission (score)')
  fig.tight_layout()
  paths = [stem.with_suffix('.png'), stem.with_suffix('.svg')]
  for p in paths:
    fig.savefig(p)
  plt.close(fig)
  return paths


def _md_table(header: List[str], rows: List[List[str]]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
  return '\n'.join(lines)


def _html_table(header: List[str], rows: List[List[str]]) -> str:
  head = ''.join(f'<th>{html.escape(h)}</th>' for h in header)
  body = ''.join('<tr>' + ''.join(f'<td>{html.escape(c)}</td>' for c in r) + '</tr>'
                 for r in rows)
  return f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def write_reports(board: Leaderboard, out: Path, plot_name: str) -> List[Path]:
  """``report.md`` and ``report.html`` with scores, times, the plot and warnings."""
  title = f'Benchmark {board.benchmark} leaderboard, {board.ruleset} tuning ruleset'
  intro = (f'{_plural(len(board.submissions), "submission")}, '
           f'{_plural(board.num_trials, "trial")}; '
           f'time column `{board.time_column}`. Times are medians over studies'
           + ('; in brackets, the fraction of the workload\'s budget.'
              if _with_fraction(board) else '.'))
  note = rescaling_note(board)
  if note:
    intro += ' ' + note
  for line in trial_rule_notes(board):
    intro += ' ' + line
  score_header, score_rows = _scores_header(board), scores_rows(board)
  time_header = ['submission'] + board.scored_workloads
  time_rows = _time_rows(board, with_fraction=True)
  warn = board.warnings
  md = [f'# {title}', '', intro, '', '## Scores', '',
        _md_table(score_header, score_rows), '',
        '## Performance profiles', '', f'![performance profiles]({plot_name})', '',
        '## Time to target', '', _md_table(time_header, time_rows), '']
  if warn:
    md += ['## Warnings', ''] + [f'- {w}' for w in warn] + ['']
  md_path = out / 'report.md'
  atomic_write_text(md_path, '\n'.join(md))
  warn_html = ''
  if warn:
    warn_html = ('<h2>Warnings</h2><ul>'
                 + ''.join(f'<li>{html.escape(w)}</li>' for w in warn) + '</ul>')
  page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}
table{{border-collapse:collapse;font-size:0.85em}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style></head><body>
<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>
<h2>Scores</h2>{_html_table(score_header, score_rows)}
<h2>Performance profiles</h2><img src="{html.escape(plot_name)}" alt="performance profiles" style="max-width:100%">
<h2>Time to target</h2>{_html_table(time_header, time_rows)}
{warn_html}</body></html>
"""
  html_path = out / 'report.html'
  atomic_write_text(html_path, page)
  return [md_path, html_path]


def write_outputs(board: Leaderboard, out: Path) -> List[Path]:
  """All files of ``--output_dir``."""
  out.mkdir(parents=True, exist_ok=True)
  write_scores_csv(board, out / 'scores.csv')
  write_time_to_target_csv(board, out / 'time_to_target.csv')
  plots = plot_profiles(board, out / 'performance_profiles')
  reports = write_reports(board, out, plots[0].name)
  return [out / 'scores.csv', out / 'time_to_target.csv', *plots, *reports]


def write_json(board: Leaderboard, path: Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  atomic_write_text(path, json.dumps(board.to_json(), indent=2) + '\n')


def write_json_boards(boards: Dict[str, Leaderboard], path: Path) -> None:
  """One board's JSON as ``write_json``; several as ``{ruleset: board JSON}``."""
  if len(boards) == 1:
    write_json(next(iter(boards.values())), path)
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  doc = {ruleset: board.to_json() for ruleset, board in boards.items()}
  atomic_write_text(path, json.dumps(doc, indent=2) + '\n')
