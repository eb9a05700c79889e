"""`algoperf score`: its flags and what it does with them.

Kept apart from ``algoperf/cli.py`` so that scoring's command line lives with
scoring; the CLI only registers it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
  """Registers the ``score`` sub-command on ``sub`` (an argparse subparsers object)."""
  from algoperf import cli  # pylint: disable=import-outside-toplevel

  score = sub.add_parser(
      'score', help='score a folder of logs: time to target, profiles, scores',
      description='Score every submission folder under ROOT '
      '(ROOT/<submission>/study_<s>/<workload>_<framework>/trial_<t>/'
      'eval_measurements.csv) with a benchmark version\'s rules.')
  score.add_argument('root', help='folder holding one folder per submission')
  score.add_argument('--benchmark', default=None, help='v0.5 or v0.6 (default v0.6)')
  score.add_argument('--ruleset', default='external', choices=('external', 'self'))
  score.add_argument('--output_dir', default=None,
                     help='write scores.csv, time_to_target.csv, profile plots '
                     '(png, svg) and report.md/html here')
  score.add_argument('--json', default=None, metavar='PATH',
                     help='write scores and times as JSON')
  cli.add_bool(score, 'strict', False,
               'fail (exit 2) on any bad log or a wrong number of studies/trials')
  score.add_argument('--exclude', default='',
                     help='comma-separated submissions to leave out')
  score.add_argument('--baseline', default=None,
                     help='also report each submission\'s time ratio to this one')
  score.add_argument('--time_column', default='score', choices=('score', 'global_step'),
                     help='score seconds (default) or steps to target')
  return score


def run(args: argparse.Namespace) -> int:
  """Scores ``args.root`` and prints (and writes) the results; the exit code."""
  from algoperf.errors import ConfigError  # pylint: disable=import-outside-toplevel
  from scoring import leaderboard, report  # pylint: disable=import-outside-toplevel

  try:
    board = leaderboard.score_logs(
        args.root, args.benchmark or leaderboard.benchmarks.DEFAULT_VERSION,
        args.ruleset, time_column=args.time_column,
        exclude=[s for s in args.exclude.split(',') if s],
        baseline=args.baseline, strict=args.strict)
  except (ValueError, KeyError) as e:
    raise ConfigError(str(e).strip('"')) from e
  for line in board.warnings:
    print(f'warning: {line}', file=sys.stderr)
  print(report.terminal_text(board), end='')
  if args.json:
    report.write_json(board, Path(args.json))
    print(f'Wrote {args.json}')
  if args.output_dir:
    paths = report.write_outputs(board, Path(args.output_dir))
    print(f'Wrote {len(paths)} files to {args.output_dir}: '
          + ', '.join(p.name for p in paths))
  return 0
