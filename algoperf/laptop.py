"""`algoperf reproduce mini`: the whole benchmark on a laptop, in one command.

The mini benchmark is the `small` benchmark version (the CPU workloads
fashion_mnist and mnist1d, their targets and budgets from the recorded
target-setting runs) with fewer studies and trials, run for the reference
submissions:

* ``full``: NadamW, AdamW, momentum and Schedule-Free AdamW on both workloads,
  2 studies x 2 trials each (32 runs, at most ~55 min on the 2-core reference
  CPU).
* ``quick``: the same four on mnist1d only, 1 study x 2 trials (8 runs, ~3-4
  min): a real score and profile plot for demos and CI.

Each submission is one ``algoperf sweep`` (``algoperf.sweep.run_sweep``), so the
logs are the cache: running the command again skips finished runs, resumes cut
off ones and starts the rest. The logs are then scored by
``scoring.leaderboard.score_logs`` and written by ``scoring.report``, the code
behind ``algoperf score``, with the small version's rules restricted to the
workloads and counts the setting ran (see ``scoring_version``).

This module imports no JAX: the runs are separate processes.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from algoperf import benchmarks, sweep
from algoperf.errors import ConfigError
from algoperf.recorder import atomic_write_text

BENCHMARK = 'small'
SUMMARY_FILE = 'mini.json'
REFERENCE_SUBMISSIONS = ('nadamw', 'adamw', 'momentum', 'schedule_free_adamw')

# Wall time of one run beyond its budget, measured on the 2-core reference
# machine: evaluation is off the submission clock but not off the wall clock
# (~15 s of evals in a fashion_mnist run), and each run is a fresh process
# that imports JAX, builds the data and times the speed calibration (~10 s;
# compiling is on the clock). Used only for the printed upper bound; runs
# that reach their targets stop much earlier.
_EVAL_WALL_FRACTION = 0.2
_STARTUP_SEC = 12.0


@dataclasses.dataclass(frozen=True)
class MiniSetting:
  """One size of the mini benchmark: who runs on what, how many times."""

  name: str
  submissions: Tuple[str, ...]
  workloads: Tuple[str, ...]
  num_studies: int
  num_trials: int

  @property
  def num_runs(self) -> int:
    """`algoperf run` processes the setting needs from scratch."""
    return (len(self.submissions) * len(self.workloads) * self.num_studies
            * self.num_trials)

  def upper_bound_sec(self, version: Optional[benchmarks.BenchmarkVersion] = None
                      ) -> float:
    """Wall seconds if every run used its whole budget (on the reference machine)."""
    version = version or benchmarks.load(BENCHMARK)
    per_pass = sum(
        version.workload(w).max_allowed_runtime_sec * (1 + _EVAL_WALL_FRACTION)
        + _STARTUP_SEC for w in self.workloads)
    return per_pass * len(self.submissions) * self.num_studies * self.num_trials


FULL = MiniSetting(name='full', submissions=REFERENCE_SUBMISSIONS,
                   workloads=('fashion_mnist', 'mnist1d'), num_studies=2,
                   num_trials=2)
# mnist1d runs take ~10 s each (its 11 s budget, usually stopped early at the
# target): 8 runs keep CI's share of this under ~3 minutes, and 2 trials still
# exercise the per-study trial rule.
QUICK = MiniSetting(name='quick', submissions=REFERENCE_SUBMISSIONS,
                    workloads=('mnist1d',), num_studies=1, num_trials=2)
SETTINGS: Dict[str, MiniSetting] = {'full': FULL, 'quick': QUICK}


def default_experiment_dir(quick: bool) -> str:
  """Where the logs go by default; quick and full use different folders.

  A sweep refuses to continue in a folder that holds a sweep with other
  settings, so the two sizes must not share one.
  """
  return './experiments_mini_quick' if quick else './experiments_mini'


def default_output_dir(experiment_dir: str) -> str:
  """``<experiment_dir>_report``: beside the logs, not inside the scored folder."""
  return str(Path(experiment_dir).expanduser()).rstrip('/') + '_report'


def scoring_version(setting: MiniSetting) -> benchmarks.BenchmarkVersion:
  """The `small` version's rules for what ``setting`` runs.

  Base workloads are the ones the setting ran: scoring quick's mnist1d-only
  logs against both small workloads would count fashion_mnist as missing for
  everyone and halve every score. The study and trial counts are the
  setting's (the small version's own are 3 x 5), so that a complete mini run
  is what scoring expects.
  """
  version = benchmarks.load(BENCHMARK)
  name = version.name if set(setting.workloads) == set(version.base_workloads) \
      else f'{version.name} ({", ".join(setting.workloads)} only)'
  return dataclasses.replace(
      version, name=name, base_workloads=tuple(setting.workloads),
      held_out_workloads=(), external_num_studies=setting.num_studies,
      external_num_trials=setting.num_trials)


def resolve_submission(value: str) -> str:
  """A path to a submission as given, or a bundled submission's name (``nadamw``)."""
  path = Path(value).expanduser()
  if path.exists():
    return str(path)
  import submissions  # pylint: disable=import-outside-toplevel

  bundled = Path(submissions.__file__).resolve().parent / value / 'submission.py'
  if bundled.is_file():
    return str(bundled)
  raise ConfigError(f'Submission {value!r} is neither a path nor a bundled '
                    'submission; see `algoperf list` for the bundled names.')


def _sweep_options(setting: MiniSetting, submission_path: str,
                   experiment_dir: str, max_parallel: int,
                   progress: bool) -> sweep.SweepOptions:
  return sweep.SweepOptions(
      submission_path=submission_path,
      workloads=list(setting.workloads),
      experiment_dir=experiment_dir,
      tuning_ruleset='external',
      num_studies=setting.num_studies,
      num_tuning_trials=setting.num_trials,
      benchmark=BENCHMARK,
      max_parallel=max_parallel,
      progress=progress)


def _sweep_seconds(status_file: Path) -> float:
  """Wall seconds of every invocation of one sweep, from its ``sweep.json``.

  Summed over invocations, so that a mini run finished in several goes (or
  re-run to rescore) still reports what its runs took.
  """
  try:
    invocations = json.loads(status_file.read_text(encoding='utf-8'))['invocations']
  except (OSError, ValueError, KeyError):
    return 0.0
  total = 0.0
  for item in invocations:
    if item.get('started') and item.get('ended'):
      total += (datetime.datetime.fromisoformat(item['ended'])
                - datetime.datetime.fromisoformat(item['started'])).total_seconds()
  return total


def _duration(seconds: float) -> str:
  minutes, secs = divmod(int(round(seconds)), 60)
  return f'{minutes} min {secs} s' if minutes else f'{secs} s'


def run_mini(quick: bool = False,
             experiment_dir: Optional[str] = None,
             output_dir: Optional[str] = None,
             submissions: Optional[Sequence[str]] = None,
             max_parallel: int = 1,
             progress: bool = True,
             out: Optional[TextIO] = None) -> int:
  """Runs what is missing of the mini benchmark, scores it, writes the report.

  Args:
    quick: the ``quick`` setting instead of ``full``.
    experiment_dir: where the logs go (default ``default_experiment_dir``).
    output_dir: report, CSVs, profile plots and ``mini.json`` (default
      ``<experiment_dir>_report``).
    submissions: names of bundled submissions or paths, instead of the
      setting's four (external tuning: each needs a search space).
    max_parallel: runs at a time. More than 1 makes runs share the cores, which
      slows their clocks, and those clocks are the score.
    progress: a live table on a terminal (else one line per change).
    out: where progress and the summary go (default stdout).

  Returns:
    The exit code: 0 when every run finished and the plot was written; 1 when
    a run failed or a submission has no logs to score (the rest is still
    scored and reported). Bad settings raise ``ConfigError``.
  """
  out = out or sys.stdout
  started = time.monotonic()
  setting = SETTINGS['quick' if quick else 'full']
  if submissions:
    setting = dataclasses.replace(setting, submissions=tuple(submissions))
  experiment_dir = experiment_dir or default_experiment_dir(quick)
  output_dir = output_dir or default_output_dir(experiment_dir)
  if max_parallel < 1:
    raise ConfigError('--max_parallel must be at least 1.')

  # Check every submission before the first run starts, not 20 minutes in.
  options = [_sweep_options(setting, resolve_submission(s), experiment_dir,
                            max_parallel, progress) for s in setting.submissions]
  names = [sweep.settings(o)['submission'] for o in options]
  if len(set(names)) != len(names):
    raise ConfigError(f'Two submissions log under one folder name ({names}); '
                      'rename one of their folders.')

  out.write(
      f'algoperf reproduce mini ({setting.name}): {", ".join(names)} on '
      f'{", ".join(setting.workloads)}, {setting.num_studies} stud'
      f'{"y" if setting.num_studies == 1 else "ies"} x {setting.num_trials} '
      f'trial(s): {setting.num_runs} runs, at most ~'
      f'{math.ceil(setting.upper_bound_sec() / 60)} min on a 2-core CPU if '
      f'none stops early. Logs: {experiment_dir}\n')
  out.flush()
  results = [sweep.run_sweep(o, out) for o in options]
  failed = [(n, run) for n, r in zip(names, results) for run in r.failed]
  return _score_and_report(setting, names, experiment_dir, output_dir, results,
                           failed, started, out)


def _score_and_report(setting: MiniSetting, names: List[str],
                      experiment_dir: str, output_dir: str,
                      results: Sequence[sweep.SweepResult],
                      failed: Sequence[Tuple[str, sweep.PlannedRun]],
                      started: float, out: TextIO) -> int:
  # Scoring loads pandas and matplotlib: only once the runs are done.
  from scoring import leaderboard, report  # pylint: disable=import-outside-toplevel

  root = Path(experiment_dir).expanduser()
  # Other submissions' logs in the same folder are not part of this benchmark.
  others = [p.name for p in root.iterdir()
            if p.is_dir() and not p.name.startswith('.') and p.name not in names]
  board = leaderboard.score_logs(root, scoring_version(setting), 'external',
                                 exclude=others)
  for line in board.warnings:
    out.write(f'warning: {line}\n')
  out.write('\n' + report.terminal_text(board))
  missing = [n for n in names if n not in board.submissions]
  paths: List[Path] = []
  if board.submissions:
    paths = report.write_outputs(board, Path(output_dir))
  plot = next((p for p in paths if p.suffix == '.png'), None)
  wall = time.monotonic() - started
  sweeps = sum(_sweep_seconds(r.status_file) for r in results)
  summary = {
      'setting': dataclasses.asdict(setting),
      'submissions': names,
      'experiment_dir': str(root.resolve()),
      'wall_seconds': wall,
      'sweep_seconds_all_invocations': sweeps,
      'runs': {
          'total': sum(r.total for r in results),
          'skipped_finished': sum(r.skipped for r in results),
          'resumed': sum(r.resumed for r in results),
          'done': sum(r.done for r in results),
          'failed': [f'{n}: {run.label} ({run.log_path})' for n, run in failed],
      },
      'plot': plot.name if plot else None,
      # The curves of the plot, one per scored submission.
      'taus': board.taus,
      'profiles': board.profiles,
      'leaderboard': board.to_json(),
  }
  Path(output_dir).mkdir(parents=True, exist_ok=True)
  summary_path = Path(output_dir) / SUMMARY_FILE
  atomic_write_text(summary_path, json.dumps(summary, indent=2) + '\n')

  ran = summary['runs']['done'] + len(failed)
  out.write(f'\nMini benchmark ({setting.name}): {summary["runs"]["total"]} '
            f'runs, {summary["runs"]["skipped_finished"]} already finished '
            f'(skipped), {ran} ran, {len(failed)} failed. This command took '
            f'{_duration(wall)}; the runs took {_duration(sweeps)} over all '
            f'invocations. Report: {output_dir}\n')
  problems = [f'run failed: {n} {run.label}; log: {run.log_path}'
              for n, run in failed]
  problems += [f'no logs to score for {n}' for n in missing]
  if plot is None:
    problems.append('no profile plot was written')
  for line in problems:
    out.write(f'error: {line}\n')
  if problems:
    out.write('Run the same command again to retry the failed runs; finished '
              'ones are kept.\n')
  out.flush()
  return 1 if problems else 0

