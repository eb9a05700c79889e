"""`algoperf score`: its flags and what it does with them.

Kept apart from ``algoperf/cli.py`` so that scoring's command line lives with
scoring; the CLI only registers it. The pipeline is
``scoring.leaderboard.score_root``; the outputs are ``scoring.report``'s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
  """Registers the ``score`` sub-command on ``sub`` (an argparse subparsers object)."""
  from algoperf import benchmarks, cli  # pylint: disable=import-outside-toplevel

  versions = ', '.join(benchmarks.available_versions())
  score = sub.add_parser(
      'score', help='score a folder of logs: time to target, profiles, scores',
      description='Score every submission folder under ROOT '
      '(ROOT/<submission>/study_<s>/<workload>_<framework>/trial_<t>/'
      'eval_measurements.csv; a submission folder is any folder below ROOT '
      'that holds study_<n> folders, which may end in the timestamp of '
      '--append_timestamp) with a benchmark version\'s rules '
      '(docs/RULES.md, Scoring rules).')
  score.add_argument('root', help='folder holding the submission folders '
                     '(an --experiment_dir of algoperf run)')
  score.add_argument('--benchmark', default=None,
                     help=f'benchmark version: {versions} (default: the one the '
                     'logs\' meta_data name, else the one that scores the '
                     'workload folders found; small workloads give small)')
  score.add_argument('--ruleset', default='auto', choices=('auto', 'external', 'self'),
                     help='auto (default): each submission\'s from its trials\' '
                     'meta_data (external when unknown), one leaderboard per '
                     'ruleset; external or self: every submission under it')
  score.add_argument('--output_dir', default=None,
                     help='write scores.csv, time_to_target.csv, profile plots '
                     '(png, svg) and report.md/html here (with two rulesets, in '
                     'its external_tuning/ and self_tuning/ folders)')
  score.add_argument('--json', default=None, metavar='PATH',
                     help='write scores and times as JSON (with two rulesets, '
                     '{"external": ..., "self": ...})')
  cli.add_bool(score, 'strict', False,
               'fail (exit 2) on any bad log or a wrong number of studies/trials')
  score.add_argument('--exclude', default='',
                     help='comma-separated submissions to leave out (a name also '
                     'leaves out the submissions below it)')
  score.add_argument('--baseline', default=None,
                     help='also report each submission\'s time ratio to this one')
  score.add_argument('--time_column', default='score', choices=('score', 'global_step'),
                     help='score seconds (default) or steps to target')
  score.add_argument('--trial_rule', default=None, choices=('eval_index', 'time'),
                     help='which trial of a study counts: eval_index, the one '
                     'that reached the target at the smallest eval index (the '
                     'reference scorer\'s, for every version), or time, the '
                     'fastest one (v0.6\'s documentation); default: the '
                     'benchmark version\'s own rule (v0.5 eval_index, v0.6 '
                     'and small time). Either way, a note names the studies '
                     'where the two rules pick different trials')
  cli.add_bool(score, 'speed_rescale', True,
               'divide each trial\'s seconds by its meta_data speed_factor '
               '(small workloads: the factor its budget was multiplied by), '
               'giving reference-machine seconds (default); '
               '--nospeed_rescale or --speed_rescale=false: the seconds as '
               'logged, what the reference scorer reads (each trial still '
               'cut at the budget it ran with)')
  # The absl spelling; the CLI's own --noflag handling covers only run's and
  # sweep's flags.
  score.add_argument('--nospeed_rescale', dest='speed_rescale',
                     action='store_false', help=argparse.SUPPRESS)
  return score


def run(args: argparse.Namespace) -> int:
  """Scores ``args.root`` and prints (and writes) the results; the exit code."""
  from algoperf.errors import ConfigError  # pylint: disable=import-outside-toplevel
  from scoring import leaderboard, report  # pylint: disable=import-outside-toplevel

  trial_rule = (None if args.trial_rule is None
                else leaderboard.TRIAL_RULE_FLAGS[args.trial_rule])
  try:
    scoring = leaderboard.score_root(
        args.root, args.benchmark, args.ruleset, time_column=args.time_column,
        exclude=[s for s in args.exclude.split(',') if s],
        baseline=args.baseline, strict=args.strict, trial_rule=trial_rule,
        speed_rescale=args.speed_rescale)
  except leaderboard.NoLogsError as e:
    for line in e.warnings:
      print(f'warning: {line}', file=sys.stderr)
    raise
  except (ValueError, KeyError) as e:
    if isinstance(e, ConfigError):
      raise
    raise ConfigError(str(e).strip('"')) from e
  if scoring.benchmark_source is not None:
    print(f'benchmark {scoring.benchmark} ({scoring.benchmark_source})')
  for line in scoring.warnings:
    print(f'warning: {line}', file=sys.stderr)
  boards = scoring.boards
  several = len(boards) > 1
  for i, (ruleset, board) in enumerate(boards.items()):
    if several:
      print(('\n' if i else '') + report.ruleset_header(board))
    print(report.terminal_text(board), end='')
  if args.json:
    report.write_json_boards(boards, Path(args.json))
    print(f'Wrote {args.json}')
  if args.output_dir:
    out = Path(args.output_dir)
    for ruleset, board in boards.items():
      folder = out / f'{ruleset}_tuning' if several else out
      paths = report.write_outputs(board, folder)
      print(f'Wrote {len(paths)} files to {folder}: '
            + ', '.join(p.name for p in paths))
  return 0
