"""How long scoring the first competition's logs takes, start-up included.

Runs `algoperf score` on both rulesets of the v0.5 logs as two separate
processes (as a user would), several times, and reports each repeat's total
wall time and the median. Optionally times another scorer command for
comparison (e.g. the reference implementation's).

Usage:
  python benchmarks/scoring_speed.py --logs PATH/TO/logs [--repeats 5]

PATH/TO/logs holds external_tuning/ and self_tuning/: the full v0.5 logs,
``previous_leaderboards/algoperf_v05/logs`` of mlcommons/submissions_algorithms.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def _time_commands(commands) -> float:
  start = time.perf_counter()
  for cmd in commands:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
      sys.exit(f'command failed ({done.returncode}): {shlex.join(cmd)}\n{done.stderr}')
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--logs', required=True,
                      help='folder holding external_tuning/ and self_tuning/ '
                      '(the full v0.5 logs)')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--compare', default=None,
                      help='another scoring command to time once per repeat '
                      '(a shell string), e.g. the reference scorer')
  args = parser.parse_args()
  logs = Path(args.logs)
  if not (logs / 'external_tuning').is_dir():
    sys.exit(f'{logs} has no external_tuning folder; pass --logs.')
  ours = [[sys.executable, '-m', 'algoperf.cli', 'score', str(logs / f'{r}_tuning'),
           '--benchmark', 'v0.5', '--ruleset', r.replace('_tuning', '')]
          for r in ('external', 'self')]
  num_csv = sum(1 for _ in logs.glob('*/*/study_*/*/trial_*/eval_measurements.csv'))
  print(f'{num_csv} eval_measurements.csv files under {logs}')
  print('algoperf score, both rulesets, two processes:')
  totals = []
  for i in range(args.repeats):
    totals.append(_time_commands(ours))
    print(f'  repeat {i + 1}: {totals[-1]:.2f} s')
  print(f'  median {statistics.median(totals):.2f} s, min {min(totals):.2f} s')
  if args.compare:
    other = []
    for i in range(args.repeats):
      start = time.perf_counter()
      subprocess.run(args.compare, shell=True, capture_output=True, check=True)
      other.append(time.perf_counter() - start)
      print(f'  compare repeat {i + 1}: {other[-1]:.2f} s')
    print(f'  compare median {statistics.median(other):.2f} s')


if __name__ == '__main__':
  main()
