"""Target setting for the small CPU workloads, the way the benchmark sets its own.

Procedure (per workload), all with the NadamW baseline:
1. Screen: run every point of the baseline's search space for ``--step_hint``
   steps (the cosine schedule ends there) with seed 0.
2. Confirm: run the best point (highest best validation metric) with
   ``--seeds`` seeds in total (seed 0 is the screening run).
3. Targets: for validation and test separately, the worst over the seeds of the
   best value each run reached, rounded to ``--decimals`` decimals in the easy
   direction (down for accuracy, up for losses), so that every seed reaches
   both and a new seed does too, reliably.
4. Budget: the slowest seed's submission time to reach both targets, times
   ``--budget_factor``, rounded up to whole seconds.

The budget and step hint are then facts of this machine: write them, with the
machine's description, into ``algoperf/benchmarks/small_workloads.json``
(``--write`` does it). Run on an otherwise idle machine.

``--retime POINT`` skips steps 1-3: it keeps the current targets and times
point ``POINT`` of the search space with ``--seeds`` seeds for a new budget
(step 4) on this machine, which becomes the reference machine.
``--calibrate`` measures this machine's speed calibration
(``algoperf/speed.py``, median of ``--calibration_repeats`` measurements)
and, with ``--write``, records it as the reference the speed factor of every
other machine is measured against. Budgets and the calibration must come from
the same machine.

Usage: python scripts/set_targets.py --workload fashion_mnist --step_hint 2000
       python scripts/set_targets.py --workload mnist1d --step_hint 3000 --retime 0 --write
       python scripts/set_targets.py --calibrate --write --machine "2-core ... VM"
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from algoperf import benchmarks, recorder, speed
from algoperf.experiment import RunOptions, run

_REPO = Path(__file__).resolve().parent.parent
_SMALL = _REPO / 'algoperf' / 'benchmarks' / 'small_workloads.json'


def _best(rows, column, higher):
  values = [r[column] for r in rows if isinstance(r.get(column), (int, float))
            and not math.isnan(r[column])]
  return max(values) if higher else min(values)


def _first_time_both(rows, metric, val_target, test_target, higher):
  def ok(v, t):
    return isinstance(v, (int, float)) and (v >= t if higher else v <= t)

  for r in rows:
    if ok(r.get(f'validation/{metric}'), val_target) and ok(
        r.get(f'test/{metric}'), test_target):
      return r['score']
  return math.inf


def _runs(workload, step_hint, seeds_and_points, space_path, work_dir, data_dir):
  """Runs (seed, point index) pairs; returns their eval rows."""
  results = []
  for seed, point in seeds_and_points:
    name = f'seed_{seed}_point_{point}'
    options = RunOptions(
        workload=workload,
        submission_path=str(_REPO / 'submissions' / 'nadamw' / 'submission.py'),
        tuning_search_space=str(space_path),
        num_tuning_trials=point + 1,
        hparam_start_index=point,
        hparam_end_index=point + 1,
        experiment_dir=str(work_dir),
        experiment_name=name,
        data_dir=data_dir,
        rng_seed=seed,
        max_global_steps=step_hint,
        overwrite=True,
        # Budgets are reference-machine seconds: no speed scaling, no cache.
        speed_factor=1.0,
        compilation_cache=False,
    )
    outcome = run(options, {'set_targets': True})[0]
    rows = recorder.read_eval_measurements(
        outcome.trial_dir / 'eval_measurements.csv')
    results.append({'seed': seed, 'point': point, 'rows': rows,
                    'trial_dir': str(outcome.trial_dir)})
  return results


def _calibrate(args: argparse.Namespace) -> dict:
  """The median of ``--calibration_repeats`` calibrations, each in a fresh process.

  A run measures once, in its own new process, so the reference is measured
  the same way (a process's later measurements were up to 30% faster here).
  """
  code = ('from algoperf import speed; c = speed.measure(); '
          'print(c.seconds, *c.samples)')
  samples = []
  for i in range(args.calibration_repeats):
    done = subprocess.run([sys.executable, '-c', code], cwd=_REPO, check=True,
                          capture_output=True, text=True)
    seconds, *repeats = (float(x) for x in done.stdout.split())
    samples.append(seconds)
    print(f'calibration {i + 1}/{args.calibration_repeats}: {seconds:.4f} s '
          f'(repeats {", ".join(f"{x:.4f}" for x in repeats)})')
  return {'version': speed.CALIBRATION_VERSION,
          'seconds': round(statistics.median(samples), 4),
          'samples': [round(x, 4) for x in samples]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workload', default=None)
  parser.add_argument('--step_hint', type=int, default=None)
  parser.add_argument('--retime', type=int, default=None, metavar='POINT',
                      help='keep the targets; time search-space point POINT '
                      'with --seeds seeds for a new budget')
  parser.add_argument('--calibrate', action='store_true',
                      help='measure the speed calibration of this machine')
  parser.add_argument('--calibration_repeats', type=int, default=9)
  parser.add_argument('--seeds', type=int, default=5)
  parser.add_argument('--budget_factor', type=float, default=1.5)
  parser.add_argument('--decimals', type=int, default=2,
                      help='targets are rounded to this many decimals, in the '
                      'direction that makes them easier')
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--work_dir', default=None,
                      help='where the runs are logged (default: a temp folder)')
  parser.add_argument('--machine', default=None,
                      help='reference machine description to record')
  parser.add_argument('--write', action='store_true',
                      help='write the result into small_workloads.json')
  args = parser.parse_args()
  if args.calibrate:
    calibration = _calibrate(args)
    print(json.dumps(calibration, indent=2))
    if args.write:
      small = json.loads(_SMALL.read_text())
      small['calibration'] = {**calibration, 'machine': args.machine
                              or small['reference_machine']}
      _SMALL.write_text(json.dumps(small, indent=2) + '\n')
    if args.workload is None:
      return
  if args.workload is None or args.step_hint is None:
    parser.error('--workload and --step_hint are needed (or --calibrate alone)')

  original = _SMALL.read_text()
  try:
    report = _set_targets(args)
  finally:
    _SMALL.write_text(original)
  print(json.dumps(report, indent=2))
  if args.write:
    small = json.loads(_SMALL.read_text())
    small['workloads'][args.workload].update(
        {k: report[k] for k in ('validation_target_value', 'test_target_value',
                                'max_allowed_runtime_sec', 'step_hint')})
    small['reference_machine'] = report['machine']
    _SMALL.write_text(json.dumps(small, indent=2) + '\n')


def _set_targets(args: argparse.Namespace) -> dict:
  # The step hint shapes the baseline's schedule, so it is set before the runs.
  small = json.loads(_SMALL.read_text())
  facts = small['workloads'][args.workload]
  kept_targets = (facts['validation_target_value'], facts['test_target_value'])
  facts['step_hint'] = args.step_hint
  # No budget and unreachable targets while setting targets: every run goes
  # the full step_hint steps.
  facts['max_allowed_runtime_sec'] = 1e9
  unreachable = 1e9 if facts['higher_is_better'] else -1e9
  facts['validation_target_value'] = facts['test_target_value'] = unreachable
  _SMALL.write_text(json.dumps(small, indent=2) + '\n')
  benchmarks.load.cache_clear()
  metric = facts['target_metric_name']
  higher = facts['higher_is_better']

  space_path = _REPO / 'submissions' / 'nadamw' / 'tuning_search_space.json'
  num_points = len(json.loads(space_path.read_text()))
  work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix='set_targets_'))
  if args.retime is not None:
    screen = []
    confirm = _runs(args.workload, args.step_hint,
                    [(s, args.retime) for s in range(args.seeds)],
                    space_path, work_dir, args.data_dir)
    pick = confirm[0]
  else:
    screen = _runs(args.workload, args.step_hint,
                   [(0, p) for p in range(num_points)], space_path, work_dir,
                   args.data_dir)
    for r in screen:
      r['best_val'] = _best(r['rows'], f'validation/{metric}', higher)
      print(f'point {r["point"]}: best validation/{metric} {r["best_val"]:.4f}')
    pick = (max if higher else min)(screen, key=lambda r: r['best_val'])
    confirm = [pick] + _runs(args.workload, args.step_hint,
                             [(s, pick['point']) for s in range(1, args.seeds)],
                             space_path, work_dir, args.data_dir)

  def target(column):
    bests = [_best(r['rows'], column, higher) for r in confirm]
    worst = min(bests) if higher else max(bests)
    scale = 10 ** args.decimals
    rounded = (math.floor if higher else math.ceil)(worst * scale) / scale
    return rounded, bests

  val_target, val_bests = target(f'validation/{metric}')
  test_target, test_bests = target(f'test/{metric}')
  if args.retime is not None:
    val_target, test_target = kept_targets
  times = [_first_time_both(r['rows'], metric, val_target, test_target, higher)
           for r in confirm]
  budget = math.ceil(max(times) * args.budget_factor)
  machine = args.machine or f'{platform.processor() or platform.machine()}'
  return {
      'machine': machine,
      'workload': args.workload,
      'best_point_index': pick['point'],
      'screen_best_validation': {r['point']: r['best_val'] for r in screen},
      'seeds_best_validation': val_bests,
      'seeds_best_test': test_bests,
      'seeds_time_to_both_targets': times,
      'validation_target_value': val_target,
      'test_target_value': test_target,
      'max_allowed_runtime_sec': budget,
      'step_hint': args.step_hint,
      'work_dir': str(work_dir),
  }


if __name__ == '__main__':
  main()
