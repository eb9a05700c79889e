"""One `algoperf run`: a submission on a workload, over its tuning trials.

Resolves everything a trial needs (workload, submission hooks, batch size,
hyperparameter points, seeds, log folders), writes the per-trial files the
reference writes (``hparams.json``, ``meta_data_<p>.json``, ``flags_<p>.json``)
and runs each trial with ``runner.train_once``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import struct
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from algoperf import benchmarks, recorder, tuning
from algoperf.errors import ConfigError
from algoperf.submission import (SubmissionError, check_divisible,
                                 load_submission, resolve_global_batch_size)

TRIAL_SUMMARY_FILE = 'trial_summary.json'


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
  # Persistent XLA cache in <experiment_dir>/.jax_cache (algoperf/startup.py).
  compilation_cache: bool = True
  save_checkpoints: bool = True
  num_checkpoints_to_keep: int = 2  # checkpoints.DEFAULT_NUM_TO_KEEP (not imported: JAX)


@dataclasses.dataclass
class TrialOutcome:
  trial_index: int
  trial_dir: Path
  summary: Dict[str, Any]


def _fresh_seed() -> int:
  # Like the reference: a new seed from the OS for every trial without --rng_seed.
  return struct.unpack('I', os.urandom(4))[0]


def _next_study_name(experiment_dir: str, submission_name: str, workload: str,
                     framework: str) -> str:
  """``<submission>/study_<n>`` with the first ``n`` not yet run on ``workload``.

  Repeated default runs add studies instead of colliding, and the folder has
  the layout `algoperf score` reads (one folder per submission).
  """
  n = 0
  while (Path(experiment_dir) / submission_name / f'study_{n}'
         / f'{workload}_{framework}').exists():
    n += 1
  return f'{submission_name}/study_{n}'


def _preemption_count(trial_dir: Path) -> int:
  return len(list(trial_dir.glob('meta_data_*.json')))


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


def run(options: RunOptions, flag_values: Dict[str, Any]) -> List[TrialOutcome]:
  """Runs every selected trial of ``options``; returns their summaries."""
  import jax  # pylint: disable=import-outside-toplevel

  import workloads  # pylint: disable=import-outside-toplevel
  from algoperf import distributed, progress, runner, startup, system_info  # pylint: disable=import-outside-toplevel

  if options.framework != 'jax':
    raise SubmissionError(f'Only --framework=jax is supported, got {options.framework!r}.')
  if options.tuning_ruleset not in ('external', 'self'):
    raise SubmissionError(
        f'--tuning_ruleset must be "external" or "self", got {options.tuning_ruleset!r}.')
  try:
    version = benchmarks.load(options.benchmark)
    workload = workloads.get_workload(
        options.workload, benchmark=version.name, data_dir=options.data_dir,
        synthetic=options.synthetic_data)
  except (KeyError, ValueError) as e:
    raise ConfigError(str(e).strip('"')) from e
  submission = load_submission(options.submission_path)
  base_name = workloads.get_base_workload_name(options.workload)
  batch_size = resolve_global_batch_size(
      submission, options.workload, base_name, options.global_batch_size)
  num_devices = jax.device_count()
  check_divisible(batch_size, num_devices, 'global batch size')
  eval_batch_size = workload.eval_batch_size
  check_divisible(eval_batch_size, num_devices, 'eval batch size')

  if options.tuning_ruleset == 'external':
    if not options.tuning_search_space:
      raise SubmissionError(
          'External tuning needs a search space: pass --tuning_search_space '
          'PATH (a JSON file), or --tuning_ruleset=self.')
    space = tuning.load_search_space(options.tuning_search_space)
    points = tuning.generate_points(space, options.num_tuning_trials,
                                    seed=options.tuning_seed)
    trials = tuning.select_trials(points, options.hparam_start_index,
                                  options.hparam_end_index)
  else:
    if options.tuning_search_space:
      raise SubmissionError(
          'Self-tuning submissions take no search space: drop '
          '--tuning_search_space or use --tuning_ruleset=external.')
    trials = [(1, None)]
  budget = workload.max_allowed_runtime_sec * version.budget_multiplier(
      options.tuning_ruleset)

  experiment_name = options.experiment_name or _next_study_name(
      options.experiment_dir, submission.name, options.workload,
      options.framework)
  # Only process 0 writes logs; the others get None and write nothing. If it
  # fails (an existing run), every process stops instead of hanging.
  log_dir = distributed.on_primary(
      recorder.get_log_dir, options.experiment_dir, experiment_name,
      options.workload, options.framework, overwrite=options.overwrite,
      resume_last_run=options.resume_last_run)

  outcomes = []
  for trial_index, hyperparameters in trials:
    trial_dir = recorder.trial_dir(log_dir, trial_index) if log_dir else None
    preemption_count = 0
    # Every process must skip the same trials, but only process 0 sees the logs.
    finished = distributed.agree(
        trial_dir is not None and (trial_dir / TRIAL_SUMMARY_FILE).exists())
    if finished and trial_dir is None:
      continue  # Process 0 reports the finished trial just below.
    if trial_dir is not None:
      done = trial_dir / TRIAL_SUMMARY_FILE
      if done.exists():
        print(f'trial_{trial_index}: already finished ({done}); skipping.')
        outcomes.append(TrialOutcome(trial_index, trial_dir,
                                     json.loads(done.read_text())))
        continue
      preemption_count = _preemption_count(trial_dir)
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
    )
    logger = None
    if trial_dir is not None:
      extra = {
          'global_batch_size': batch_size,
          'global_batch_size_from_flag': options.global_batch_size is not None
                                         and batch_size == options.global_batch_size,
          'eval_batch_size': eval_batch_size,
          'tuning_ruleset': options.tuning_ruleset,
          'benchmark': version.name,
          'budget_sec': budget,
          'submission_path': str(submission.path),
          'trial_index': trial_index,
          'preemption_count': preemption_count,
      }
      recorder.write_json(trial_dir / f'meta_data_{preemption_count}.json',
                          system_info.get_meta_data(workload, seed, extra))
      recorder.write_json(trial_dir / f'flags_{preemption_count}.json',
                          {**flag_values, 'rng_seed': seed,
                           'resolved_global_batch_size': batch_size})
      logger = recorder.MetricsLogger(trial_dir, preemption_count=preemption_count)
    print(f'--- {options.workload} trial_{trial_index} '
          f'({len(outcomes) + 1}/{len(trials)}), seed {seed}, batch size '
          f'{batch_size}, hyperparameters '
          f'{dict(hyperparameters._asdict()) if hyperparameters else None}')
    # Other processes print only the end-of-trial summary.
    listener = startup.FirstStepTimer(progress.ProgressPrinter(
        label=f'trial_{trial_index} ',
        live=options.progress and distributed.is_primary()),
        label=f'trial_{trial_index}: ')
    try:
      with startup.compilation_cache(options.experiment_dir,
                                     options.compilation_cache):
        result = runner.train_once(workload, submission, config, logger=logger,
                                   listener=listener, checkpointer=checkpointer)
    finally:
      if checkpointer is not None:
        checkpointer.close()
    summary = result.summary()
    summary.update(trial_index=trial_index, rng_seed=seed,
                   workload=options.workload, budget_sec=budget,
                   first_step_sec=listener.seconds)
    if trial_dir is not None:
      recorder.write_json(trial_dir / TRIAL_SUMMARY_FILE, summary)
      logging.info('Logs in %s', trial_dir)
    outcomes.append(TrialOutcome(trial_index, trial_dir, summary))
  return outcomes
