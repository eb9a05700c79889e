"""One `algoperf run`: a submission on a workload, over its tuning trials.

Resolves everything a trial needs (workload, submission hooks, batch size,
hyperparameter points, seeds, budget, log folders), writes the per-trial files
the reference writes (``hparams.json``, ``meta_data_<p>.json``,
``flags_<p>.json``) and runs each trial with ``runner.train_once``.

Everything that can fail on bad input is checked before any folder is made,
so a refused run leaves nothing behind (and, with the default experiment
name, uses up no study number).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import struct
import sys
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from algoperf import benchmarks, recorder, tuning
from algoperf.errors import ConfigError
from algoperf.submission import (SubmissionError, check_divisible,
                                 load_submission, resolve_eval_batch_size,
                                 resolve_global_batch_size)

TRIAL_SUMMARY_FILE = 'trial_summary.json'
_STUDY_PREFIX = 'study_'


@dataclasses.dataclass
class RunOptions:
  """The settings of one run; field names follow the reference runner's flags."""

  workload: str
  submission_path: str
  tuning_search_space: Optional[str] = None
  tuning_ruleset: str = 'external'
  num_tuning_trials: int = 1
  experiment_dir: str = './experiments'
  experiment_name: Optional[str] = None
  data_dir: Optional[str] = None
  rng_seed: Optional[int] = None
  max_global_steps: Optional[int] = None
  overwrite: bool = False
  resume_last_run: bool = False
  hparam_start_index: Optional[int] = None
  hparam_end_index: Optional[int] = None
  framework: str = 'jax'
  benchmark: str = benchmarks.DEFAULT_VERSION
  global_batch_size: Optional[int] = None
  tuning_seed: int = 0
  synthetic_data: bool = False
  progress: bool = True
  # JAX's persistent compilation cache (algoperf/startup.py): None = only if
  # compilation_cache_dir or JAX_COMPILATION_CACHE_DIR names a folder.
  compilation_cache: Optional[bool] = None
  compilation_cache_dir: Optional[str] = None
  # The laptop benchmark's machine-speed factor (algoperf/speed.py); None:
  # measured before the first trial of a small workload.
  speed_factor: Optional[float] = None
  save_checkpoints: bool = True
  num_checkpoints_to_keep: int = 2  # checkpoints.DEFAULT_NUM_TO_KEEP (not imported: JAX)
  imagenet_v2_data_dir: Optional[str] = None
  librispeech_tokenizer_vocab_path: Optional[str] = None
  # Which runner contract the submission follows: 'auto' (read from its
  # source), 'jit' or 'pmap' (v0.5's; algoperf/layout.py).
  submission_api: str = 'auto'


@dataclasses.dataclass
class TrialOutcome:
  trial_index: int
  trial_dir: Optional[Path]
  summary: Dict[str, Any]
  # The submission raised: the trial has no result (and no trial_summary.json,
  # so a later --resume_last_run tries it again).
  failed: bool = False


def _fresh_seed() -> int:
  # Like the reference: a new seed from the OS for every trial without --rng_seed.
  return struct.unpack('I', os.urandom(4))[0]


def _sha256(path: Optional[str]) -> Optional[str]:
  if not path:
    return None
  try:
    return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
  except OSError:
    return None


# --- studies and the folders of a default-named run -------------------------------


def _trial_started(trial: Path) -> bool:
  """Whether a trial folder holds logs (its meta data is the first file written)."""
  return any(trial.glob('meta_data_*.json'))


def _study_numbers(experiment_dir: str, submission_name: str, workload: str,
                   framework: str) -> List[int]:
  """Studies of ``submission_name`` that hold logs of ``workload``, ascending."""
  root = Path(experiment_dir).expanduser() / submission_name
  numbers = []
  if not root.is_dir():
    return numbers
  for study in root.iterdir():
    suffix = study.name[len(_STUDY_PREFIX):]
    if not (study.name.startswith(_STUDY_PREFIX) and suffix.isdigit()):
      continue
    folder = study / f'{workload}_{framework}'
    if folder.is_dir() and any(_trial_started(t) for t in folder.glob('trial_*')):
      numbers.append(int(suffix))
  return sorted(numbers)


def _default_experiment_name(options: RunOptions, submission_name: str,
                             trial_indices: List[int]) -> str:
  """``<submission>/study_<n>`` for a run without ``--experiment_name``.

  A new run takes the first study with no logs of this workload, so repeated
  runs add studies (the layout `algoperf score` reads). With
  ``--resume_last_run`` it continues the latest study that has an unfinished
  trial of this run's (or, all finished, the latest study: its trials are
  then skipped). A study whose run failed before writing any log is free.
  """
  numbers = _study_numbers(options.experiment_dir, submission_name,
                           options.workload, options.framework)
  if options.resume_last_run and numbers:
    root = Path(options.experiment_dir).expanduser() / submission_name
    for n in reversed(numbers):
      folder = root / f'{_STUDY_PREFIX}{n}' / f'{options.workload}_{options.framework}'
      if any(not (folder / f'trial_{k}' / TRIAL_SUMMARY_FILE).exists()
             for k in trial_indices):
        return f'{submission_name}/{_STUDY_PREFIX}{n}'
    return f'{submission_name}/{_STUDY_PREFIX}{numbers[-1]}'
  n = 0
  taken = set(numbers)
  while n in taken:
    n += 1
  return f'{submission_name}/{_STUDY_PREFIX}{n}'


def _remove_if_empty(folder: Path, stop: Path) -> None:
  """Removes ``folder`` and its parents up to ``stop`` while they hold nothing.

  Empty trial folders (and empty ``checkpoints`` folders in them) count as
  nothing: they are what a run that failed before its first log leaves.
  """
  def empty(path: Path) -> bool:
    return path.is_dir() and all(empty(p) for p in path.iterdir())

  folder, stop = folder.resolve(), stop.resolve()
  if not empty(folder):
    return
  shutil.rmtree(folder, ignore_errors=True)
  parent = folder.parent
  while parent != stop and stop in parent.parents:
    try:
      parent.rmdir()
    except OSError:
      break
    parent = parent.parent


# --- provenance: what made a folder, to refuse resuming someone else's run --------


def _provenance(options: RunOptions, submission_file: Path) -> Dict[str, Any]:
  space = options.tuning_search_space
  return {
      'workload': options.workload,
      'submission_file': str(submission_file),
      'submission_sha256': _sha256(str(submission_file)),
      'tuning_ruleset': options.tuning_ruleset,
      'tuning_search_space_file': (str(Path(space).expanduser().resolve())
                                   if space else None),
      'tuning_search_space_sha256': _sha256(space),
  }


def check_same_run(log_dir: Path, provenance: Dict[str, Any]) -> None:
  """Refuses to resume ``log_dir`` if another submission, workload or search space made it.

  Compares with the ``flags_0.json`` of the trials already there. A moved
  file with the same contents is the same submission; an edited file or
  search space is not.
  """
  for flags_file in sorted(log_dir.glob('trial_*/flags_0.json')):
    try:
      old = json.loads(flags_file.read_text())
    except (OSError, ValueError):
      continue
    problems = []
    if old.get('workload', provenance['workload']) != provenance['workload']:
      problems.append(f'workload {old.get("workload")!r}, this run '
                      f'{provenance["workload"]!r}')
    if old.get('tuning_ruleset', provenance['tuning_ruleset']) != provenance['tuning_ruleset']:
      problems.append(f'tuning ruleset {old.get("tuning_ruleset")!r}, this run '
                      f'{provenance["tuning_ruleset"]!r}')
    for what, file_key, hash_key in (
        ('submission', 'submission_file', 'submission_sha256'),
        ('search space', 'tuning_search_space_file', 'tuning_search_space_sha256')):
      old_file, old_hash = old.get(file_key), old.get(hash_key)
      if old_file is None and old_hash is None:
        continue  # Written before provenance was recorded.
      if (old_hash, old_file) == (provenance[hash_key], provenance[file_key]):
        continue
      if old_hash is not None and old_hash == provenance[hash_key]:
        continue  # The same file, moved.
      problems.append(f'{what} {old_file or "(none)"}'
                      + (' (since edited)' if old_file == provenance[file_key] else '')
                      + f', this run {provenance[file_key] or "(none)"}')
    if problems:
      raise ConfigError(
          f'Cannot resume {log_dir}: its run used ' + '; '.join(problems)
          + f' ({flags_file}). Resume with the same submission and search '
          'space, choose another --experiment_name, or pass --overwrite to '
          'replace that run.')


# --- the speed factor of the laptop benchmark ---------------------------------------


# One measurement per process: the trials of a run (and the runs a test or a
# notebook makes in one process) share it.
_MEASURED: Dict[str, float] = {}


class _SpeedFactor:
  """Measures the machine-speed factor once, when a trial first needs it."""

  def __init__(self, options: RunOptions):
    self._given = options.speed_factor
    self._value: Optional[float] = None
    self.calibration: Optional[Dict[str, Any]] = None

  def get(self) -> float:
    if self._given is not None:
      return float(self._given)
    if self._value is None:
      self._value = self._measure()
    return self._value

  def _measure(self) -> float:
    from algoperf import distributed, speed  # pylint: disable=import-outside-toplevel

    reference = benchmarks.small_calibration()
    if not reference or reference.get('version') != speed.CALIBRATION_VERSION:
      logging.warning('No reference calibration for this version of the speed '
                      'check; the small workloads keep their nominal budgets '
                      '(speed factor 1).')
      return 1.0
    if 'factor' not in _MEASURED:
      print('Measuring this machine\'s speed (off the clock)...', flush=True)
      measured = speed.measure()
      _MEASURED.update(factor=distributed.agree(measured.factor(reference['seconds'])),
                       seconds=measured.seconds)
      _MEASURED['samples'] = list(measured.samples)  # type: ignore[assignment]
    factor = _MEASURED['factor']
    self.calibration = {'seconds': _MEASURED['seconds'],
                        'samples': _MEASURED['samples'],
                        'reference_seconds': reference['seconds']}
    print(f'Speed factor {factor:.3f} ({_MEASURED["seconds"]:.3f} s here, '
          f'{reference["seconds"]:.3f} s on the reference machine): the small '
          f'workloads\' budgets are scaled by it.', flush=True)
    return factor


def _first_meta(trial_dir: Optional[Path]) -> Dict[str, Any]:
  if trial_dir is None:
    return {}
  try:
    return json.loads((trial_dir / 'meta_data_0.json').read_text())
  except (OSError, ValueError):
    return {}


# --- reporting a failed trial --------------------------------------------------------


def _submission_traceback(error: BaseException, folder: Path) -> str:
  """The frames of ``error``'s traceback that are in the submission's folder."""
  frames = [f for f in traceback.extract_tb(error.__traceback__)
            if Path(f.filename).resolve().is_relative_to(folder)]
  if not frames:
    return ''
  return ('Traceback (the submission\'s frames):\n'
          + ''.join(traceback.format_list(frames)).rstrip('\n'))


def _hint(error: BaseException) -> str:
  """What a terse JAX error raised on a submission's behalf means, if known."""
  frames = traceback.extract_tb(error.__traceback__)[-3:]
  in_pmap = [f for f in frames
             if f.filename.replace(os.sep, '/').endswith('jax/_src/pmap.py')]
  if isinstance(error, IndexError) and any('in_axes' in f.name for f in in_pmap):
    return (' (inside jax.pmap, while matching in_axes to the arguments: the '
            'pmapped function takes more arguments than its in_axes has entries)')
  return ''


def _report_failure(failure: Any, trial_index: int, trial_dir: Optional[Path],
                    submission_folder: Path) -> str:
  error = failure.error
  frames = _submission_traceback(error, submission_folder)
  if frames:
    print(frames, file=sys.stderr)
  where = trial_dir if trial_dir is not None else 'not written (not process 0)'
  what = str(error).strip().rstrip('.') or '(no message)'
  line = (f'trial_{trial_index} failed at step {failure.global_step}: '
          f'{failure.hook} raised {type(error).__name__}: {what}'
          f'{_hint(error)}. Logs: {where}')
  print(line, file=sys.stderr, flush=True)
  return line


# --- the run ------------------------------------------------------------------------


def _trials(options: RunOptions) -> List[Tuple[int, Any]]:
  if options.tuning_ruleset == 'external':
    if not options.tuning_search_space:
      raise SubmissionError(
          'External tuning needs a search space: pass --tuning_search_space '
          'PATH (a JSON file), or --tuning_ruleset=self.')
    space = tuning.load_search_space(options.tuning_search_space)
    points = tuning.generate_points(space, options.num_tuning_trials,
                                    seed=options.tuning_seed)
    return tuning.select_trials(points, options.hparam_start_index,
                                options.hparam_end_index)
  if options.tuning_search_space:
    raise SubmissionError(
        'Self-tuning submissions take no search space: drop '
        '--tuning_search_space or use --tuning_ruleset=external.')
  return [(1, None)]


def _check_experiment_dir(experiment_dir: str,
                          cache_dir: Optional[Path]) -> None:
  base = Path(experiment_dir).expanduser()
  if base.exists() and not base.is_dir():
    raise ConfigError(f'--experiment_dir {base} is a file, not a folder: '
                      'choose a folder (it is created if missing).')
  try:
    base.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise ConfigError(f'--experiment_dir {base} cannot be created '
                      f'({e.strerror or e}): choose a folder you can write '
                      'to.') from e
  if not os.access(base, os.W_OK | os.X_OK):
    raise ConfigError(f'--experiment_dir {base} is not writable: choose a '
                      'folder you can write to.')
  if cache_dir is not None:
    resolved = base.resolve()
    if cache_dir == resolved or resolved in cache_dir.parents:
      raise ConfigError(
          f'The compilation cache {cache_dir} is inside --experiment_dir '
          f'{base}, which must hold nothing but submission folders (scorers '
          'read every folder there): pass --compilation_cache_dir outside it.')


def run(options: RunOptions, flag_values: Dict[str, Any]) -> List[TrialOutcome]:
  """Runs every selected trial of ``options``; returns their outcomes."""
  import jax  # pylint: disable=import-outside-toplevel

  import workloads  # pylint: disable=import-outside-toplevel
  from algoperf import distributed, startup  # pylint: disable=import-outside-toplevel

  if options.framework != 'jax':
    raise SubmissionError(f'Only --framework=jax is supported, got {options.framework!r}.')
  if options.tuning_ruleset not in ('external', 'self'):
    raise SubmissionError(
        f'--tuning_ruleset must be "external" or "self", got {options.tuning_ruleset!r}.')
  if options.overwrite and options.resume_last_run:
    raise ConfigError('--overwrite and --resume_last_run are mutually exclusive: '
                      'overwrite deletes the previous run, resume_last_run '
                      'continues it. Pass one of them.')
  if options.speed_factor is not None and not options.speed_factor > 0:
    raise ConfigError(f'--speed_factor must be positive, got {options.speed_factor}.')
  try:
    version = benchmarks.load(options.benchmark)
    workload = workloads.get_workload(
        options.workload, benchmark=version.name, data_dir=options.data_dir,
        synthetic=options.synthetic_data,
        imagenet_v2_data_dir=options.imagenet_v2_data_dir,
        tokenizer_vocab_path=options.librispeech_tokenizer_vocab_path)
  except (KeyError, ValueError) as e:
    raise ConfigError(str(e).strip('"')) from e
  cache_dir = startup.resolve_cache_dir(options.compilation_cache,
                                        options.compilation_cache_dir)
  _check_experiment_dir(options.experiment_dir, cache_dir)
  submission = load_submission(options.submission_path, options.submission_api)
  try:
    return _run_submission(options, flag_values, version, workload, submission,
                           cache_dir)
  finally:
    submission.close()


def _run_submission(options: RunOptions, flag_values: Dict[str, Any],
                    version: Any, workload: Any, submission: Any,
                    cache_dir: Optional[str]) -> List[TrialOutcome]:
  """``run`` once the submission is loaded: its trials, one after another."""
  import jax  # pylint: disable=import-outside-toplevel

  import workloads  # pylint: disable=import-outside-toplevel
  from algoperf import distributed, layout  # pylint: disable=import-outside-toplevel

  base_name = workloads.get_base_workload_name(options.workload)
  batch_size = resolve_global_batch_size(
      submission, options.workload, base_name, options.global_batch_size)
  num_devices = jax.device_count()
  check_divisible(batch_size, num_devices, 'global batch size')
  eval_batch_size = resolve_eval_batch_size(submission, options.workload,
                                            workload.eval_batch_size)
  check_divisible(eval_batch_size, num_devices, 'eval batch size')
  if submission.api == 'pmap':
    layout.check_pmap_supported()
  trials = _trials(options)
  # A missing or corrupt dataset is an error now, before any folder is made.
  check_data = getattr(workload, 'check_data', None)
  if check_data is not None:
    check_data()
  nominal_budget = workload.max_allowed_runtime_sec * version.budget_multiplier(
      options.tuning_ruleset)
  scales_with_speed = options.workload in benchmarks.small_workloads()
  speed = _SpeedFactor(options)
  provenance = _provenance(options, submission.path)

  experiment_name = options.experiment_name or distributed.agree_text(
      distributed.on_primary(_default_experiment_name, options, submission.name,
                             [k for k, _ in trials]))
  # Only process 0 writes logs; the others get None and write nothing. If it
  # fails (an existing run, another run's folder), every process stops
  # instead of hanging.
  log_dir = distributed.on_primary(
      _open_log_dir, options, experiment_name, provenance)

  outcomes: List[TrialOutcome] = []
  for trial_index, hyperparameters in trials:
    trial_dir = recorder.trial_dir(log_dir, trial_index) if log_dir else None
    try:
      outcome = _run_trial(
          options, workload, submission, version, trial_index, hyperparameters,
          trial_dir, batch_size=batch_size, eval_batch_size=eval_batch_size,
          budget=nominal_budget, speed=speed if scales_with_speed else None,
          cache_dir=cache_dir, provenance=provenance, flag_values=flag_values,
          position=(len(outcomes) + 1, len(trials)))
    except BaseException:
      if log_dir is not None and trial_dir is not None and not _trial_started(trial_dir):
        _remove_if_empty(trial_dir, Path(options.experiment_dir).expanduser())
      raise
    if outcome is not None:
      outcomes.append(outcome)
  return outcomes


def _open_log_dir(options: RunOptions, experiment_name: str,
                  provenance: Dict[str, Any]) -> Path:
  # The folder recorder.get_log_dir returns (checked first: it is created there).
  planned = Path(options.experiment_dir).expanduser().joinpath(
      *Path(experiment_name).parts) / f'{options.workload}_{options.framework}'
  existed = any(_trial_started(t) for t in planned.glob('trial_*'))
  try:
    log_dir = recorder.get_log_dir(
        options.experiment_dir, experiment_name, options.workload,
        options.framework, overwrite=options.overwrite,
        resume_last_run=options.resume_last_run)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if existed and options.resume_last_run:
    check_same_run(log_dir, provenance)
  return log_dir


def _run_trial(options: RunOptions, workload: Any, submission: Any,
               version: benchmarks.BenchmarkVersion, trial_index: int,
               hyperparameters: Any, trial_dir: Optional[Path], *,
               batch_size: int, eval_batch_size: int, budget: float,
               speed: Optional[_SpeedFactor], cache_dir: Optional[Path],
               provenance: Dict[str, Any], flag_values: Dict[str, Any],
               position: Tuple[int, int]) -> Optional[TrialOutcome]:
  """One trial: skip it if finished, else resume or start it; its outcome."""
  from algoperf import (distributed, progress, runner, startup,  # pylint: disable=import-outside-toplevel
                        system_info)

  # Every process must skip the same trials, but only process 0 sees the logs.
  finished = distributed.agree(
      trial_dir is not None and (trial_dir / TRIAL_SUMMARY_FILE).exists())
  if finished:
    if trial_dir is None:
      return None  # Process 0 reports the finished trial.
    done = trial_dir / TRIAL_SUMMARY_FILE
    print(f'trial_{trial_index}: already finished ({done}); skipping.')
    return TrialOutcome(trial_index, trial_dir, json.loads(done.read_text()))
  preemption_count = (len(list(trial_dir.glob('meta_data_*.json')))
                      if trial_dir is not None else 0)
  # A resumed trial keeps the speed factor (so the budget) of its first attempt.
  first_meta = _first_meta(trial_dir) if preemption_count else {}
  factor = None
  if speed is not None:
    # Agreed first, so that every process measures (a collective) or none.
    factor = distributed.agree(float(first_meta.get('speed_factor') or 0.0))
    factor = factor or speed.get()
    budget *= factor
  checkpointer, resume, preemption_count = _open_checkpoints(
      trial_dir, options, preemption_count)
  if trial_dir is not None:
    if preemption_count and resume is None:
      # No checkpoint to resume from: the trial restarts from step 0.
      _archive_partial_attempt(trial_dir, preemption_count - 1)
    hyperparameters = recorder.write_hparams(hyperparameters, trial_dir)
  seed = options.rng_seed if options.rng_seed is not None else _fresh_seed()
  if resume is not None:
    # A resumed trial keeps its seed (a mismatching --rng_seed is an error).
    seed = options.rng_seed if options.rng_seed is not None else resume.rng_seed
    print(f'trial_{trial_index}: resuming from the checkpoint at step '
          f'{resume.step} ({resume.submission_time:.2f} s of submission '
          f'time), preemption {preemption_count}.')
  seed = distributed.agree(seed)  # A fresh seed differs between processes.
  config = runner.TrialConfig(
      global_batch_size=batch_size,
      hyperparameters=hyperparameters,
      rng_seed=seed,
      budget_sec=budget,
      data_dir=options.data_dir,
      eval_batch_size=eval_batch_size,
      max_global_steps=options.max_global_steps,
      preemption_count=preemption_count,
      resume_from_step=resume.step if resume is not None else None,
      imagenet_v2_data_dir=options.imagenet_v2_data_dir,
  )
  logger = None
  if trial_dir is not None:
    extra = {
        'global_batch_size': batch_size,
        'global_batch_size_from_flag': options.global_batch_size is not None
                                       and batch_size == options.global_batch_size,
        'eval_batch_size': eval_batch_size,
        'submission_api': submission.api,
        'tuning_ruleset': options.tuning_ruleset,
        'benchmark': version.name,
        'budget_sec': budget,
        'speed_factor': factor,
        'speed_calibration': speed.calibration if speed is not None else None,
        'compilation_cache_used': cache_dir is not None,
        'compilation_cache_dir': str(cache_dir) if cache_dir is not None else None,
        'submission_path': str(submission.path),
        'trial_index': trial_index,
        'preemption_count': preemption_count,
    }
    recorder.write_json(trial_dir / f'meta_data_{preemption_count}.json',
                        system_info.get_meta_data(workload, seed, extra))
    recorder.write_json(trial_dir / f'flags_{preemption_count}.json',
                        {**flag_values, **provenance, 'rng_seed': seed,
                         'resolved_global_batch_size': batch_size})
    logger = recorder.MetricsLogger(trial_dir, preemption_count=preemption_count)
  print(f'--- {options.workload} trial_{trial_index} ({position[0]}/{position[1]}), '
        f'seed {seed}, batch size {batch_size}, budget {budget:.1f} s, '
        'hyperparameters '
        f'{dict(hyperparameters._asdict()) if hyperparameters else None}')
  # Other processes print only the end-of-trial summary.
  listener = startup.FirstStepTimer(progress.ProgressPrinter(
      label=f'trial_{trial_index} ',
      live=options.progress and distributed.is_primary()),
      label=f'trial_{trial_index}: ')

  def summarise(result_summary: Dict[str, Any]) -> Dict[str, Any]:
    result_summary.update(trial_index=trial_index, rng_seed=seed,
                          workload=options.workload, budget_sec=budget,
                          speed_factor=factor, first_step_sec=listener.seconds)
    return result_summary

  def on_stuck(message: str) -> None:
    # Called from the watchdog thread just before the process ends: keep
    # the logs and record the trial as ended by its budget.
    if logger is not None:
      logger.flush()
    if trial_dir is not None:
      recorder.write_json(trial_dir / TRIAL_SUMMARY_FILE, summarise(
          {'stop_reason': 'budget', 'message': message,
           'global_step': None}))

  try:
    with startup.compilation_cache(cache_dir):
      result = runner.train_once(workload, submission, config, logger=logger,
                                 listener=listener, checkpointer=checkpointer,
                                 on_stuck=on_stuck)
  except runner.SubmissionFailure as failure:
    line = _report_failure(failure, trial_index, trial_dir,
                           submission.path.parent.resolve())
    return TrialOutcome(trial_index, trial_dir,
                        {'stop_reason': 'error', 'message': line,
                         'trial_index': trial_index}, failed=True)
  finally:
    if checkpointer is not None:
      checkpointer.close()
  summary = summarise(result.summary())
  if trial_dir is not None:
    recorder.write_json(trial_dir / TRIAL_SUMMARY_FILE, summary)
    logging.info('Logs in %s', trial_dir)
  return TrialOutcome(trial_index, trial_dir, summary)


def _archive_partial_attempt(trial_dir: Path, attempt: int) -> None:
  """Moves the logs of an unfinished attempt aside so none are lost."""
  names = ('measurements.csv', 'eval_measurements.csv')
  present = [n for n in names if (trial_dir / n).exists()]
  if not present:
    return
  target = trial_dir / f'attempt_{attempt}'
  target.mkdir(exist_ok=True)
  for name in present:
    shutil.move(str(trial_dir / name), str(target / name))


def _open_checkpoints(trial_dir: Optional[Path], options: RunOptions,
                      preemption_count: int) -> Tuple[Any, Any, int]:
  """The trial's checkpointer, the checkpoint to resume from, the preemption count.

  Returns ``(checkpointer or None, checkpoints.CheckpointInfo or None,
  preemption_count)``. A resumed trial (``preemption_count > 0``) continues
  from its latest good checkpoint, even with ``--nosave_checkpoints``; its logs
  are cut back to the rows they held at that checkpoint (the full files go to
  ``attempt_<n>/``).

  Every process calls this: on a multi-host run only process 0 knows the
  trial folder (``trial_dir`` is None elsewhere) and the preemption count, and
  shares them; every process then takes part in each save and restore, which
  needs the experiment folder on a file system all hosts see.
  """
  import jax  # pylint: disable=import-outside-toplevel

  from algoperf import checkpoints, distributed  # pylint: disable=import-outside-toplevel

  directory = (trial_dir / checkpoints.CHECKPOINTS_DIR
               if trial_dir is not None else None)
  wanted = directory is not None and (
      options.save_checkpoints or bool(preemption_count and directory.exists()))
  multi_host = jax.process_count() > 1
  if multi_host:
    wanted, preemption_count = distributed.agree((wanted, preemption_count))
  if not wanted:
    return None, None, preemption_count
  if multi_host:
    directory = Path(distributed.agree_text(str(directory) if directory else None))
    distributed.on_primary(directory.mkdir, parents=True, exist_ok=True)
    if not distributed.everywhere(directory.is_dir()):
      logging.warning(
          'Checkpoints are off for this trial: not every host sees %s. Put '
          '--experiment_dir on a file system shared by all hosts (e.g. NFS) '
          'to save them, or pass --nosave_checkpoints to silence this.',
          directory)
      return None, None, preemption_count
  checkpointer = checkpoints.TrialCheckpointer(
      directory, options.num_checkpoints_to_keep, save=options.save_checkpoints)
  info = checkpointer.latest() if preemption_count else None
  if info is not None and trial_dir is not None:
    checkpoints.rewind_logs(trial_dir, info.log_rows,
                            trial_dir / f'attempt_{preemption_count - 1}')
  return checkpointer, info, preemption_count
