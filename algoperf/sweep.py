"""`algoperf sweep`: many `algoperf run` processes, one per (workload, study, trial).

A sweep is a plan, a status and an executor:

* **Plan.** Every (workload, study, trial) becomes one `algoperf run` command
  line that runs exactly that trial (``--hparam_start_index i
  --hparam_end_index i+1``) into ``<experiment_dir>/<submission>/study_<s>/``,
  the layout `algoperf score` reads. Seeds come from a stable hash (SHA-256,
  not Python's per-process salted ``hash()``), so the same command gives the
  same seeds and hyperparameter points on any machine.
* **Status.** The logs are the cache: a trial folder with
  ``trial_summary.json`` is finished and never run again; one with a
  ``meta_data_<p>.json`` but no summary was cut off and is run again with
  ``--resume_last_run`` (which resumes it); anything else has not started.
* **Executor.** ``local`` runs the commands as subprocesses (at most
  ``max_parallel`` at a time); ``slurm`` submits them as SLURM jobs through
  submitit; ``submitit_local`` goes through submitit's local executor (the
  same code path as SLURM, without a cluster).

The plan, each run's state and the counts of every invocation are written to
``<experiment_dir>/<submission>/.sweep/sweep.json`` (a dot folder, which
`algoperf score` does not read; the reference scorer takes it for a study
whose only "workload" is ``submitit/``, with no ``trial_<n>`` folders in it,
so it reads nothing there either and counts no study for it). A restart with
different settings is refused unless ``--overwrite`` says to delete the old
logs.

This module imports no JAX: the runs are separate processes.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TextIO

from algoperf import benchmarks, recorder, tuning
from algoperf.errors import ConfigError
from algoperf.submission import check_syntax

SWEEP_FOLDER = '.sweep'
SWEEP_FILE = 'sweep.json'
RUN_LOG_FILE = 'sweep_run.log'
TRIAL_SUMMARY_FILE = 'trial_summary.json'  # written by algoperf.experiment
EXECUTORS = ('local', 'slurm', 'submitit_local')
_FORMAT_VERSION = 1

# `algoperf run` flags the sweep sets itself; forwarding them would break the
# plan (two values of one flag, or a trial run into the wrong folder).
_OWNED_RUN_FLAGS = (
    'workload', 'submission_path', 'tuning_search_space', 'tuning_ruleset',
    'num_tuning_trials', 'experiment_dir', 'experiment_name', 'rng_seed',
    'hparam_start_index', 'hparam_end_index', 'tuning_seed', 'overwrite',
    'resume_last_run', 'benchmark', 'append_timestamp', 'framework')

# SLURM job states in which a job may still write to its trial folder.
_ACTIVE_SLURM_STATES = ('PENDING', 'RUNNING', 'REQUEUED', 'CONFIGURING',
                        'COMPLETING', 'RESIZING', 'SUSPENDED')


@dataclasses.dataclass
class SweepOptions:
  """What `algoperf sweep` was asked to do."""

  submission_path: str
  workloads: Sequence[str]
  experiment_dir: str = './experiments'
  tuning_search_space: Optional[str] = None
  tuning_ruleset: str = 'external'
  num_studies: Optional[int] = None  # None: the benchmark version's number
  num_tuning_trials: Optional[int] = None  # None: the benchmark version's number
  seed: int = 0
  tuning_seed: int = 0
  benchmark: str = benchmarks.DEFAULT_VERSION
  run_args: Sequence[str] = ()
  executor: str = 'local'
  max_parallel: Optional[int] = None  # None: 1 locally, no limit on SLURM
  overwrite: bool = False
  progress: bool = True
  slurm_partition: Optional[str] = None
  gpus_per_job: int = 1
  cpus_per_job: Optional[int] = None
  mem_gb: Optional[float] = None
  timeout_min: int = 24 * 60
  slurm_setup: Sequence[str] = ()


@dataclasses.dataclass(frozen=True)
class PlannedRun:
  """One `algoperf run` process: one trial of one study of one workload."""

  workload: str
  study: int  # 0-based, folder study_<study>
  trial: int  # 1-based, folder trial_<trial>
  rng_seed: int
  tuning_seed: Optional[int]  # None under self-tuning
  hyperparameters: Optional[Dict[str, Any]]
  trial_dir: Path
  argv: List[str]

  @property
  def label(self) -> str:
    return f'{self.workload} study_{self.study} trial_{self.trial}'

  @property
  def log_path(self) -> Path:
    return self.trial_dir / RUN_LOG_FILE


# --- seeds and plan ---------------------------------------------------------


def derive_seed(*parts: Any) -> int:
  """A seed in [0, 2**31) from ``parts``, equal on every machine and process.

  Python's ``hash()`` of a string changes from one process to the next
  (PYTHONHASHSEED), so it cannot make a restarted sweep reproduce its seeds.
  """
  text = '\x1f'.join(str(p) for p in parts)
  digest = hashlib.sha256(text.encode('utf-8')).digest()
  return int.from_bytes(digest[:4], 'big') & 0x7FFFFFFF


def run_seed(sweep_seed: int, workload: str, study: int, trial: int) -> int:
  """The ``--rng_seed`` of one run of a sweep."""
  return derive_seed('algoperf-sweep', sweep_seed, workload, study, trial)


def study_tuning_seed(tuning_seed: int, study: int) -> int:
  """The ``--tuning_seed`` of study ``study``: one quasi-random draw per study.

  Studies get different points, as the rules ask (independent studies), and
  study 0 gets exactly the points of a plain `algoperf run` with the same
  ``--tuning_seed``. A list-style search space ignores the seed: every study
  runs the list's first points.
  """
  return tuning_seed + study


def submission_name(submission_path: str) -> str:
  """The folder name `algoperf run` logs a submission under.

  The same rule as ``algoperf.submission.Submission.name``, without importing
  the submission (which may import JAX).
  """
  path = Path(submission_path).expanduser()
  if path.is_dir():
    return path.resolve().name
  return path.resolve().parent.name if path.stem == 'submission' else path.stem


def default_search_space(submission_path: str) -> Optional[str]:
  """``tuning_search_space.json`` beside the submission, if there is one."""
  path = Path(submission_path).expanduser()
  beside = (path if path.is_dir() else path.parent) / 'tuning_search_space.json'
  return str(beside.resolve()) if beside.is_file() else None


def _check_run_args(run_args: Sequence[str]) -> None:
  for arg in run_args:
    if not arg.startswith('--'):
      continue
    name = arg[2:].split('=', 1)[0]
    if name.startswith('no') and name[2:] in _OWNED_RUN_FLAGS:
      name = name[2:]
    if name in _OWNED_RUN_FLAGS:
      raise ConfigError(
          f'--{name} after "--" is set by the sweep for each run; use the '
          f'sweep\'s own flag instead (see `algoperf sweep --help`).')


def _counts(options: SweepOptions,
            version: benchmarks.BenchmarkVersion) -> tuple[int, int]:
  external = options.tuning_ruleset == 'external'
  num_studies = options.num_studies
  if num_studies is None:
    num_studies = version.external_num_studies if external else version.self_num_studies
  num_trials = options.num_tuning_trials
  if num_trials is None:
    num_trials = version.external_num_trials if external else 1
  for flag, value in (('--num_studies', num_studies),
                      ('--num_tuning_trials', num_trials)):
    if value < 1:
      raise ConfigError(f'{flag} must be at least 1, got {value}.')
  if not external and num_trials != 1:
    raise ConfigError('Self-tuning runs one trial per study: drop '
                      '--num_tuning_trials or use --tuning_ruleset=external.')
  return num_studies, num_trials


def check_workloads(names: Sequence[str]) -> None:
  """Raises one ``ConfigError`` naming every workload `algoperf run` cannot run.

  The runnable ones are the registered workloads (``workloads.registry``, a
  table of names that imports no JAX); a name that only a benchmark version
  knows (e.g. ``wmt``) has facts but no implementation here.
  """
  import difflib  # pylint: disable=import-outside-toplevel

  from workloads import registry  # pylint: disable=import-outside-toplevel

  runnable = registry.names()
  unknown = [n for n in names if n not in runnable]
  if not unknown:
    return
  benchmark_only = set()
  for version in benchmarks.available_versions():
    benchmark_only.update(benchmarks.load(version).workloads)
  not_here = [n for n in unknown if n in benchmark_only]
  typos = [n for n in unknown if n not in benchmark_only]
  parts = []
  if typos:
    named = []
    for name in typos:
      close = difflib.get_close_matches(name, runnable, n=1)
      named.append(name + (f' (did you mean {close[0]}?)' if close else ''))
    parts.append(f'unknown workload(s) {", ".join(named)}')
  if not_here:
    parts.append(f'{", ".join(not_here)} (benchmark workload(s) with no '
                 'implementation in this installation)')
  raise ConfigError(
      f'--workloads: {"; ".join(parts)}. No run was started. Workloads '
      f'`algoperf run` can train: {", ".join(runnable)} (see `algoperf list`).')


def settings(options: SweepOptions) -> Dict[str, Any]:
  """The settings that decide the plan; a restart must repeat them.

  Every check that can fail without running anything happens here, before
  the sweep writes a file or starts a process: the benchmark version, the
  ruleset, the workload names, the submission file (exists and parses), the
  search space, the forwarded flags and the counts.
  """
  try:
    version = benchmarks.load(options.benchmark)
  except (KeyError, ValueError) as e:
    raise ConfigError(str(e).strip('"')) from e
  if options.tuning_ruleset not in ('external', 'self'):
    raise ConfigError('--tuning_ruleset must be external or self, got '
                      f'{options.tuning_ruleset!r}.')
  workloads = list(dict.fromkeys(w.strip() for w in options.workloads if w.strip()))
  if not workloads:
    raise ConfigError('--workloads is empty: name at least one workload '
                      '(e.g. --workloads fashion_mnist,mnist1d).')
  check_workloads(workloads)
  # A file that does not parse would fail every run; compiling it imports nothing.
  submission = check_syntax(options.submission_path)
  space = options.tuning_search_space
  if options.tuning_ruleset == 'external':
    space = space or default_search_space(str(submission))
    if space is None:
      raise ConfigError(
          'External tuning needs a search space: pass --tuning_search_space '
          'PATH, put tuning_search_space.json beside the submission, or use '
          '--tuning_ruleset=self.')
    space = str(Path(space).expanduser().resolve())
  elif space:
    raise ConfigError('Self-tuning submissions take no search space: drop '
                      '--tuning_search_space or use --tuning_ruleset=external.')
  _check_run_args(options.run_args)
  num_studies, num_trials = _counts(options, version)
  return {
      'submission_path': str(submission),
      'submission': submission_name(str(submission)),
      'workloads': workloads,
      'tuning_ruleset': options.tuning_ruleset,
      'tuning_search_space': space,
      'num_studies': num_studies,
      'num_tuning_trials': num_trials,
      'seed': options.seed,
      'tuning_seed': options.tuning_seed,
      'benchmark': version.name,
      'run_args': list(options.run_args),
  }


def make_plan(config: Dict[str, Any], experiment_dir: str) -> List[PlannedRun]:
  """One ``PlannedRun`` per (study, workload, trial), in that order.

  Studies come first so that a sweep cut short holds whole studies of every
  workload, which is what scoring needs.
  """
  root = Path(experiment_dir).expanduser().resolve()
  external = config['tuning_ruleset'] == 'external'
  num_trials = config['num_tuning_trials']
  space = tuning.load_search_space(config['tuning_search_space']) if external else None
  runs = []
  for study in range(config['num_studies']):
    experiment_name = f'{config["submission"]}/study_{study}'
    points = None
    tuning_seed = None
    if external:
      tuning_seed = study_tuning_seed(config['tuning_seed'], study)
      # Drawn here too, so a bad space fails before any process starts and
      # the plan file shows each run's hyperparameters.
      points = tuning.generate_points(space, num_trials, seed=tuning_seed)
    for workload in config['workloads']:
      for index in range(num_trials):
        trial = index + 1
        argv = [
            sys.executable, '-m', 'algoperf.cli', 'run',
            f'--workload={workload}',
            f'--submission_path={config["submission_path"]}',
            f'--tuning_ruleset={config["tuning_ruleset"]}',
            f'--experiment_dir={root}',
            f'--experiment_name={experiment_name}',
            f'--benchmark={config["benchmark"]}',
            f'--rng_seed={run_seed(config["seed"], workload, study, trial)}',
            # Every run of a study shares the <workload>_jax folder, and
            # cut-off trials must resume, so always keep what is there.
            '--resume_last_run=true',
            '--progress=false',
        ]
        if external:
          argv += [
              f'--tuning_search_space={config["tuning_search_space"]}',
              f'--num_tuning_trials={num_trials}',
              f'--tuning_seed={tuning_seed}',
              f'--hparam_start_index={index}',
              f'--hparam_end_index={index + 1}',
          ]
        argv += list(config['run_args'])
        runs.append(PlannedRun(
            workload=workload, study=study, trial=trial,
            rng_seed=run_seed(config['seed'], workload, study, trial),
            tuning_seed=tuning_seed,
            hyperparameters=(tuning.hparams_to_dict(points[index])
                             if points is not None else None),
            trial_dir=(root / config['submission'] / f'study_{study}'
                       / f'{workload}_jax' / f'trial_{trial}'),
            argv=argv))
  return runs


# --- status from the logs ---------------------------------------------------

NEW, RESUME, FINISHED = 'new', 'resume', 'finished'


def run_status(trial_dir: Path) -> str:
  """``finished``, ``resume`` (started, cut off) or ``new``, from the logs."""
  if (trial_dir / TRIAL_SUMMARY_FILE).is_file():
    return FINISHED
  if any(trial_dir.glob('meta_data_*.json')):
    return RESUME
  return NEW


def last_eval(trial_dir: Path) -> Optional[Dict[str, str]]:
  """The last row of ``eval_measurements.csv`` (step and time), if any."""
  path = trial_dir / recorder.EVAL_MEASUREMENTS_FILE
  try:
    with open(path, 'rb') as f:
      header = f.readline().decode('utf-8')
      # The table redraws twice a second: read the header and the tail only.
      f.seek(max(f.tell(), os.fstat(f.fileno()).st_size - 16384))
      lines = [line for line in f.read().decode('utf-8', 'replace').splitlines()
               if line.strip()]
  except (OSError, UnicodeDecodeError):
    return None
  if not header.strip() or not lines:
    return None
  import csv  # pylint: disable=import-outside-toplevel

  names, row = next(csv.reader([header])), next(csv.reader([lines[-1]]))
  return dict(zip(names, row)) if len(row) == len(names) else None


# --- executors --------------------------------------------------------------


def _child_env() -> Dict[str, str]:
  """The sweep's environment, with this checkout importable in the child."""
  env = dict(os.environ)
  root = str(Path(__file__).resolve().parent.parent)
  paths = [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]
  if root not in paths:
    env['PYTHONPATH'] = os.pathsep.join([root] + paths)
  return env


def _open_log(path: Path, argv: Sequence[str]) -> TextIO:
  path.parent.mkdir(parents=True, exist_ok=True)
  log = open(path, 'a', encoding='utf-8')  # pylint: disable=consider-using-with
  stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
  log.write(f'=== {stamp} {" ".join(argv)}\n')
  log.flush()
  return log


class RunCommand:
  """A picklable job for submitit: runs one `algoperf run`, returns its exit code.

  Its ``checkpoint`` makes submitit requeue the job when SLURM preempts it or
  its time runs out; the requeued job runs the same command, which resumes
  the trial (``--resume_last_run``).
  """

  def __init__(self, argv: Sequence[str], log_path: str):
    self.argv = list(argv)
    self.log_path = log_path

  def __call__(self) -> int:
    with _open_log(Path(self.log_path), self.argv) as log:
      return subprocess.run(self.argv, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=_child_env(),
                            check=False).returncode

  def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
    import submitit  # pylint: disable=import-outside-toplevel

    return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


class _LocalBackend:
  """Subprocesses of this process (same process group: a kill of the sweep's
  group stops its runs too)."""

  name = 'local'

  def start(self, run: PlannedRun) -> Any:
    log = _open_log(run.log_path, run.argv)
    proc = subprocess.Popen(run.argv, stdout=log, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                            stdin=subprocess.DEVNULL, env=_child_env())
    log.close()  # the child holds its own descriptor
    return proc

  def job_id(self, handle: Any) -> Optional[str]:
    return str(handle.pid)

  def poll(self, handle: Any) -> Optional[int]:
    return handle.poll()

  def cancel(self, handles: Sequence[Any]) -> None:
    for proc in handles:
      if proc.poll() is None:
        proc.terminate()
    deadline = time.monotonic() + 10
    for proc in handles:
      try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

  def reattach(self, job_id: str) -> Any:
    del job_id  # a local run dies with the sweep that started it
    return None


def _import_submitit() -> Any:
  try:
    import submitit  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ConfigError(
        'The slurm and submitit_local executors need submitit: '
        '`pip install submitit` (or `pip install -e .[slurm]`).') from e
  return submitit


class _SubmititBackend:
  """SLURM jobs (or submitit's local executor) of ``RunCommand`` callables."""

  def __init__(self, options: SweepOptions, folder: Path):
    submitit = _import_submitit()
    self._submitit = submitit
    self.name = options.executor
    self._folder = folder
    if options.executor == 'slurm':
      try:
        executor = submitit.AutoExecutor(folder=str(folder), cluster='slurm')
      except RuntimeError as e:
        raise ConfigError(f'--executor slurm: {e} (is this a SLURM login node '
                          'with sbatch on the PATH?)') from e
      params: Dict[str, Any] = {
          'timeout_min': options.timeout_min,
          'gpus_per_node': options.gpus_per_job,
          'nodes': 1,
          'tasks_per_node': 1,
          'name': 'algoperf',
      }
      if options.slurm_partition:
        params['slurm_partition'] = options.slurm_partition
      if options.cpus_per_job:
        params['cpus_per_task'] = options.cpus_per_job
      if options.mem_gb:
        params['mem_gb'] = options.mem_gb
      if options.slurm_setup:
        params['slurm_setup'] = list(options.slurm_setup)
      executor.update_parameters(**params)
    else:
      executor = submitit.LocalExecutor(folder=str(folder))
      executor.update_parameters(timeout_min=options.timeout_min)
    self._executor = executor

  def start(self, run: PlannedRun) -> Any:
    return self._executor.submit(RunCommand(run.argv, str(run.log_path)))

  def job_id(self, handle: Any) -> Optional[str]:
    return str(handle.job_id)

  def poll(self, handle: Any) -> Optional[int]:
    if not handle.done():
      return None
    if handle.exception() is not None:
      return -1  # the job itself failed (killed, timed out, not requeued)
    return int(handle.result())

  def cancel(self, handles: Sequence[Any]) -> None:
    for job in handles:
      if not job.done():
        job.cancel(check=False)

  def reattach(self, job_id: str) -> Any:
    """The still-active SLURM job of an earlier, killed sweep, or None."""
    if self.name != 'slurm':
      return None
    job = self._submitit.SlurmJob(folder=str(self._folder), job_id=job_id)
    return job if job.state in _ACTIVE_SLURM_STATES else None


def make_backend(options: SweepOptions, folder: Path) -> Any:
  if options.executor == 'local':
    return _LocalBackend()
  if options.executor in ('slurm', 'submitit_local'):
    return _SubmititBackend(options, folder)
  raise ConfigError(f'--executor must be one of {", ".join(EXECUTORS)}, got '
                    f'{options.executor!r}.')


# --- progress display -------------------------------------------------------


@dataclasses.dataclass
class _RunState:
  run: PlannedRun
  state: str = 'pending'  # pending, running, done, failed, skipped, cancelled
  resume: bool = False
  exit_code: Optional[int] = None
  job_id: Optional[str] = None
  started: Optional[float] = None
  ended: Optional[float] = None
  handle: Any = None

  def elapsed(self) -> Optional[float]:
    if self.started is None:
      return None
    return (self.ended or time.monotonic()) - self.started


class _PlainDisplay:
  """One line per change of state (logs, CI, pipes)."""

  def __init__(self, out: TextIO):
    self._out = out

  def __enter__(self) -> '_PlainDisplay':
    return self

  def __exit__(self, *exc: Any) -> None:
    pass

  def changed(self, states: Sequence[_RunState], item: _RunState) -> None:
    n = len(states)
    index = states.index(item) + 1
    extra = ''
    if item.state in ('done', 'failed'):
      extra = f' exit {item.exit_code} after {item.elapsed():.0f} s'
      row = last_eval(item.run.trial_dir)
      if row and row.get('global_step'):
        extra += f', last eval at step {row["global_step"]}'
      if item.state == 'failed':
        extra += f'; log: {item.run.log_path}'
    elif item.state == 'running' and item.resume:
      extra = ' (resuming)'
    self._out.write(f'[{index:>{len(str(n))}}/{n}] {item.state:<9} '
                    f'{item.run.label}{extra}\n')
    self._out.flush()

  def refresh(self, states: Sequence[_RunState]) -> None:
    del states


class _LiveDisplay:
  """A rich table redrawn in place (terminals)."""

  _MAX_ROWS = 30

  def __init__(self, out: TextIO, header: str):
    from rich.console import Console  # pylint: disable=import-outside-toplevel
    from rich.live import Live  # pylint: disable=import-outside-toplevel

    self._header = header
    self._live = Live(console=Console(file=out), auto_refresh=False,
                      transient=False)

  def __enter__(self) -> '_LiveDisplay':
    self._live.__enter__()
    return self

  def __exit__(self, *exc: Any) -> None:
    self._live.__exit__(*exc)

  def _table(self, states: Sequence[_RunState]) -> Any:
    from rich.table import Table  # pylint: disable=import-outside-toplevel

    counts: Dict[str, int] = {}
    for s in states:
      counts[s.state] = counts.get(s.state, 0) + 1
    caption = ', '.join(f'{v} {k}' for k, v in sorted(counts.items()))
    table = Table(title=self._header, caption=caption)
    for column in ('workload', 'study', 'trial', 'state', 'step', 'score (s)',
                   'wall (s)', 'exit'):
      table.add_column(column, justify='left' if column == 'workload' else 'right')
    shown = list(states)
    if len(shown) > self._MAX_ROWS:
      # Long sweeps: what is moving or broken matters, not 100 finished rows.
      shown = [s for s in states if s.state in ('running', 'failed')]
    styles = {'done': 'green', 'failed': 'red', 'running': 'yellow',
              'skipped': 'dim', 'cancelled': 'red'}
    for s in shown:
      row = last_eval(s.run.trial_dir) if s.state != 'pending' else None
      elapsed = s.elapsed()
      table.add_row(
          s.run.workload, str(s.run.study), str(s.run.trial),
          s.state + (' (resume)' if s.resume and s.state == 'running' else ''),
          (row or {}).get('global_step', ''),
          _short_float((row or {}).get('score', '')),
          '' if elapsed is None else f'{elapsed:.0f}',
          '' if s.exit_code is None else str(s.exit_code),
          style=styles.get(s.state))
    return table

  def changed(self, states: Sequence[_RunState], item: _RunState) -> None:
    del item
    self.refresh(states)

  def refresh(self, states: Sequence[_RunState]) -> None:
    self._live.update(self._table(states), refresh=True)


def _short_float(text: str) -> str:
  try:
    return f'{float(text):.1f}'
  except ValueError:
    return text


# --- the sweep --------------------------------------------------------------


def sweep_dir(experiment_dir: str, submission: str) -> Path:
  return Path(experiment_dir).expanduser().resolve() / submission / SWEEP_FOLDER


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def _load_previous(path: Path) -> Optional[Dict[str, Any]]:
  if not path.is_file():
    return None
  import json  # pylint: disable=import-outside-toplevel

  try:
    return json.loads(path.read_text(encoding='utf-8'))
  except (OSError, ValueError) as e:
    raise ConfigError(f'{path} is unreadable ({e}); delete it, or pass '
                      '--overwrite to start this sweep over.') from e


def _differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
  return [f'{key}: was {old.get(key)!r}, now {new.get(key)!r}'
          for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def _delete_logs(runs: Sequence[PlannedRun]) -> None:
  """Deletes the ``<workload>_jax`` folders of ``runs`` (for --overwrite)."""
  for folder in sorted({r.trial_dir.parent for r in runs}):
    if folder.is_dir():
      shutil.rmtree(folder)


def _status_document(config: Dict[str, Any], states: Sequence[_RunState],
                     invocations: List[Dict[str, Any]]) -> Dict[str, Any]:
  return {
      'format_version': _FORMAT_VERSION,
      'settings': config,
      'invocations': invocations,
      'runs': [{
          'workload': s.run.workload,
          'study': s.run.study,
          'trial': s.run.trial,
          'rng_seed': s.run.rng_seed,
          'tuning_seed': s.run.tuning_seed,
          'hyperparameters': s.run.hyperparameters,
          'trial_dir': str(s.run.trial_dir),
          'log': str(s.run.log_path),
          'state': s.state,
          'resumed': s.resume,
          'exit_code': s.exit_code,
          'job_id': s.job_id,
          'command': s.run.argv,
      } for s in states],
  }


@dataclasses.dataclass
class SweepResult:
  """What one invocation did; ``failed`` lists the runs that failed."""

  total: int
  skipped: int
  resumed: int
  new: int
  done: int
  failed: List[PlannedRun]
  status_file: Path


def run_sweep(options: SweepOptions, out: Optional[TextIO] = None,
              poll_interval: float = 0.5) -> SweepResult:
  """Runs every unfinished run of the sweep; returns the counts.

  Progress goes to ``out`` (default stdout), the status to ``.sweep/sweep.json``.
  A ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM, which is turned into one)
  cancels the runs in flight, records them as cancelled and propagates.
  """
  out = out or sys.stdout
  config = settings(options)
  runs = make_plan(config, options.experiment_dir)
  folder = sweep_dir(options.experiment_dir, config['submission'])
  status_file = folder / SWEEP_FILE
  previous = _load_previous(status_file)
  if previous is not None and previous.get('settings') != config:
    if not options.overwrite:
      diff = '; '.join(_differences(previous.get('settings', {}), config))
      raise ConfigError(
          f'{status_file} belongs to a sweep with other settings ({diff}). '
          'Rerun that sweep\'s command to finish it, pick another '
          '--experiment_dir, or pass --overwrite to delete its logs and start '
          'this one.')
  if options.overwrite:
    if previous is not None:
      old = previous.get('settings', {})
      try:
        _delete_logs(make_plan(old, options.experiment_dir))
      except (KeyError, TypeError, ValueError, OSError):
        # An old plan that no longer expands (its search space is gone):
        # its study folders are the ones this sweep replaces anyway.
        pass
    _delete_logs(runs)
    if folder.is_dir():
      shutil.rmtree(folder)
    previous = None
  folder.mkdir(parents=True, exist_ok=True)

  backend = make_backend(options, folder / 'submitit')
  max_parallel = options.max_parallel
  if max_parallel is None:
    max_parallel = 1 if options.executor != 'slurm' else len(runs)
  if max_parallel < 1:
    raise ConfigError('--max_parallel must be at least 1.')

  old_jobs = {}
  if previous is not None:
    old_jobs = {(r['workload'], r['study'], r['trial']): r.get('job_id')
                for r in previous.get('runs', [])}
  states = []
  for run in runs:
    status = run_status(run.trial_dir)
    item = _RunState(run, resume=status == RESUME)
    if status == FINISHED:
      item.state = 'skipped'
    states.append(item)
  skipped = sum(s.state == 'skipped' for s in states)
  resumed = sum(s.resume for s in states)
  invocation = {
      'started': _now(), 'executor': options.executor, 'total': len(runs),
      'skipped_finished': skipped, 'resumed': resumed,
      'new': len(runs) - skipped - resumed, 'done': 0, 'failed': 0,
      'ended': None, 'interrupted': False}
  invocations = list((previous or {}).get('invocations', [])) + [invocation]

  def save() -> None:
    recorder.write_json(status_file, _status_document(config, states, invocations))

  header = (f'algoperf sweep: {config["submission"]} on '
            f'{", ".join(config["workloads"])}, {config["num_studies"]} '
            f'stud{"y" if config["num_studies"] == 1 else "ies"} x '
            f'{config["num_tuning_trials"]} trial(s)')
  out.write(f'{header}: {len(runs)} runs; {skipped} already finished '
            f'(skipped), {resumed} to resume, {invocation["new"]} new. '
            f'Executor {options.executor}, at most {max_parallel} at a time. '
            f'Status: {status_file}\n')
  out.flush()
  save()

  live = options.progress and getattr(out, 'isatty', lambda: False)()
  display = _LiveDisplay(out, header) if live else _PlainDisplay(out)

  def change(item: _RunState, state: str) -> None:
    item.state = state
    save()
    display.changed(states, item)

  old_handler = None
  if hasattr(signal, 'SIGTERM') and _in_main_thread():
    def _terminate(signum: int, frame: Any) -> None:
      del signum, frame
      raise KeyboardInterrupt
    old_handler = signal.signal(signal.SIGTERM, _terminate)
  in_flight: List[_RunState] = []
  try:
    with display:
      pending = [s for s in states if s.state == 'pending']
      # Jobs of a killed earlier sweep that SLURM still runs are watched, not
      # submitted twice (two processes would write one trial folder).
      for item in list(pending):
        job_id = old_jobs.get((item.run.workload, item.run.study, item.run.trial))
        handle = backend.reattach(job_id) if job_id else None
        if handle is not None:
          item.handle, item.job_id, item.started = handle, job_id, time.monotonic()
          pending.remove(item)
          in_flight.append(item)
          change(item, 'running')
      display.refresh(states)
      while pending or in_flight:
        while pending and len(in_flight) < max_parallel:
          item = pending.pop(0)
          item.handle = backend.start(item.run)
          item.job_id = backend.job_id(item.handle)
          item.started = time.monotonic()
          in_flight.append(item)
          change(item, 'running')
        for item in list(in_flight):
          code = backend.poll(item.handle)
          if code is None:
            continue
          item.exit_code, item.ended = code, time.monotonic()
          in_flight.remove(item)
          # A zero exit without a summary (e.g. killed inside the child in a
          # way that exits 0) is not a finished trial.
          ok = code == 0 and run_status(item.run.trial_dir) == FINISHED
          invocation['done' if ok else 'failed'] += 1
          change(item, 'done' if ok else 'failed')
        if in_flight:
          time.sleep(poll_interval)
          display.refresh(states)
  except KeyboardInterrupt:
    backend.cancel([s.handle for s in in_flight])
    for item in in_flight:
      item.state, item.ended = 'cancelled', time.monotonic()
    invocation.update(ended=_now(), interrupted=True)
    save()
    out.write(f'Sweep interrupted; {len(in_flight)} run(s) cancelled. Run the '
              'same command again to finish the remaining runs.\n')
    raise
  finally:
    if old_handler is not None:
      signal.signal(signal.SIGTERM, old_handler)
  invocation['ended'] = _now()
  save()
  failed = [s.run for s in states if s.state == 'failed']
  out.write(f'Sweep finished: {len(runs)} runs; {skipped} skipped (already '
            f'finished), {invocation["done"] + invocation["failed"]} ran '
            f'({resumed} resumed): {invocation["done"]} done, '
            f'{invocation["failed"]} failed.\n')
  for run in failed:
    out.write(f'  FAILED {run.label}: see {run.log_path}\n')
  out.flush()
  return SweepResult(total=len(runs), skipped=skipped, resumed=resumed,
                     new=invocation['new'], done=invocation['done'],
                     failed=failed, status_file=status_file)


def _in_main_thread() -> bool:
  import threading  # pylint: disable=import-outside-toplevel

  return threading.current_thread() is threading.main_thread()
