"""The `algoperf` command line: run, sweep, check, score, reproduce, list, describe.

Heavy imports (JAX, workloads) happen inside the subcommands, so `algoperf
--help` stays fast.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

DEFAULT_WORKLOAD = 'fashion_mnist'
DEFAULT_SUBMISSION = 'nadamw'

_TRUE = {'1', 'true', 't', 'yes', 'y'}
_FALSE = {'0', 'false', 'f', 'no', 'n'}

# Reference runner flags accepted for launch-script compatibility that change
# nothing here; a non-default value prints a warning.
_IGNORED_FLAGS = {
    'torch_compile': True,
    'profile': False,
    'capture_jax_trace': False,
    'pytorch_eval_num_workers': 0,
    'set_pytorch_max_split_size': False,
}
_BOOL_FLAGS = ('overwrite', 'resume_last_run', 'append_timestamp',
               'synthetic_data', 'progress', 'save_checkpoints',
               'save_intermediate_checkpoints', 'torch_compile', 'profile',
               'capture_jax_trace', 'set_pytorch_max_split_size',
               'compilation_cache')


class _Parser(argparse.ArgumentParser):
  """argparse with one-line errors and no abbreviated flags.

  A usage error is one line, ``algoperf <command>: error: <what> (see
  algoperf <command> --help)``, and exit code 2. Prefixes of flags are not
  accepted (``--max_global_step`` is not ``--max_global_steps``): an
  abbreviation that works today breaks silently when a flag is added.
  """

  def __init__(self, *args: Any, **kwargs: Any):
    kwargs.setdefault('allow_abbrev', False)
    super().__init__(*args, **kwargs)

  def error(self, message: str) -> None:  # type: ignore[override]
    if message.startswith('unrecognized arguments:'):
      message = _explain_unrecognized(self, message)
    self.exit(2, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


def _explain_unrecognized(parser: argparse.ArgumentParser, message: str) -> str:
  """Names the closest real flag for each unknown one."""
  import difflib  # pylint: disable=import-outside-toplevel

  known = [o for a in parser._actions for o in a.option_strings]  # pylint: disable=protected-access
  parts = []
  after_flag = False
  for arg in message.split(':', 1)[1].split():
    name = arg.split('=', 1)[0]
    if not name.startswith('-'):
      if not after_flag:  # Else it is the unknown flag's value.
        parts.append(f'unexpected argument {arg!r}')
      after_flag = False
      continue
    after_flag = '=' not in arg
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    parts.append(f'unknown flag {name}'
                 + (f' (did you mean {close[0]}?)' if close else ''))
  return '; '.join(parts) if parts else message


def _subcommand_parser(parser: argparse.ArgumentParser,
                       command: Optional[str]) -> Optional[argparse.ArgumentParser]:
  for action in parser._actions:  # pylint: disable=protected-access
    if isinstance(action, argparse._SubParsersAction):  # pylint: disable=protected-access
      return action.choices.get(command) if command else None
  return None


def _bounded(kind: type, minimum: float, allow_minimum: bool, what: str) -> Any:
  """An argparse ``type``: ``kind(text)``, refused below (or at) ``minimum``."""

  def parse(text: str) -> Any:
    try:
      value = kind(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f'expected {what}, got {text!r}') from None
    if value < minimum or (value == minimum and not allow_minimum) or value != value \
        or value == float('inf'):
      raise argparse.ArgumentTypeError(f'must be {what}, got {text}')
    return value

  return parse


_positive_int = _bounded(int, 1, True, 'a positive integer')
_non_negative_int = _bounded(int, 0, True, 'an integer >= 0')
_positive_float = _bounded(float, 0.0, False, 'a positive number')


def _byte_size(text: str) -> int:
  """An argparse ``type``: a byte count, bare or with a unit (``16GiB``)."""
  from algoperf import memory  # pylint: disable=import-outside-toplevel

  try:
    return memory.parse_bytes(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def _bool(text: str) -> bool:
  lowered = text.lower()
  if lowered in _TRUE:
    return True
  if lowered in _FALSE:
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def _normalise_bool_flags(argv: Sequence[str]) -> List[str]:
  """Turns absl-style ``--noflag`` into ``--flag=false``."""
  out = []
  for arg in argv:
    name = arg[4:].split('=', 1)[0] if arg.startswith('--no') else ''
    out.append(f'--{name}=false' if name in _BOOL_FLAGS and '=' not in arg
               else arg)
  return out


def add_bool(parser: argparse.ArgumentParser, name: str, default: bool,
              help_text: str) -> None:
  parser.add_argument(f'--{name}', type=_bool, nargs='?', const=True,
                      default=default, metavar='BOOL', help=help_text)


def _bundled_submissions_dir() -> Path:
  import submissions  # pylint: disable=import-outside-toplevel

  return Path(submissions.__file__).resolve().parent


def _bundled_submissions() -> Dict[str, Path]:
  root = _bundled_submissions_dir()
  return {p.parent.name: p for p in sorted(root.glob('*/submission.py'))}


def _resolve_submission_path(value: str) -> str:
  """A path as given, or the name of a bundled submission (e.g. ``nadamw``)."""
  if Path(value).expanduser().exists():
    return value
  bundled = _bundled_submissions()
  if value in bundled:
    return str(bundled[value])
  return value


def _add_sweep_parser(sub: Any) -> None:
  sweep = sub.add_parser(
      'sweep', help='run many trials (workloads x studies x trials) as separate '
      'processes, locally or on SLURM; a restart finishes what is left',
      description='Expand workloads x studies x trials into one `algoperf run` '
      'per trial, with seeds derived from --seed (same command, same seeds and '
      'points), and run them locally or as SLURM jobs (submitit). Finished runs '
      '(trial_summary.json) are skipped, cut-off ones resumed. Arguments after '
      '"--" go to every `algoperf run` (e.g. -- --max_global_steps=50).')
  sweep.add_argument('--submission_path', default=DEFAULT_SUBMISSION,
                     help='submission .py file, folder or bundled name '
                     f'(default {DEFAULT_SUBMISSION})')
  sweep.add_argument('--workloads', default=DEFAULT_WORKLOAD,
                     help='comma-separated workload names (default '
                     f'{DEFAULT_WORKLOAD})')
  sweep.add_argument('--num_studies', type=_positive_int, default=None,
                     help='studies per workload (default: the benchmark\'s)')
  sweep.add_argument('--num_tuning_trials', type=_positive_int, default=None,
                     help='trials per study (default: the benchmark\'s; 1 '
                     'under self-tuning)')
  sweep.add_argument('--experiment_dir', default='./experiments',
                     help='logs go to <experiment_dir>/<submission>/study_<s>/')
  sweep.add_argument('--tuning_search_space', default=None,
                     help='search-space JSON (default: the one beside the submission)')
  sweep.add_argument('--tuning_ruleset', default='external',
                     choices=('external', 'self'))
  sweep.add_argument('--seed', type=int, default=0,
                     help='sweep seed; each run\'s --rng_seed is derived from it, '
                     'the workload, study and trial (default 0)')
  sweep.add_argument('--tuning_seed', type=int, default=0,
                     help='study s draws its points with --tuning_seed + s')
  sweep.add_argument('--benchmark', default=None,
                     help='benchmark version (default: small when every workload is a small one, else v0.6)')
  sweep.add_argument('--executor', default='local',
                     choices=('local', 'slurm', 'submitit_local'))
  sweep.add_argument('--max_parallel', type=_positive_int, default=None,
                     help='runs at a time (default: 1 locally, since parallel '
                     'runs share the machine and skew each other\'s times; '
                     'no limit on SLURM)')
  add_bool(sweep, 'overwrite', False,
            'delete the logs of an earlier sweep with other settings in '
            'this folder and start over')
  add_bool(sweep, 'progress', True, 'live table on a terminal (else one line per change)')
  slurm = sweep.add_argument_group('SLURM (--executor slurm)')
  slurm.add_argument('--slurm_partition', default=None)
  slurm.add_argument('--gpus_per_job', type=int, default=1)
  slurm.add_argument('--cpus_per_job', type=int, default=None)
  slurm.add_argument('--mem_gb', type=float, default=None)
  slurm.add_argument('--timeout_min', type=int, default=24 * 60,
                     help='time limit of each job in minutes (default 1440); '
                     'a job that hits it is requeued and resumes')
  slurm.add_argument('--slurm_setup', action='append', default=[],
                     help='shell line run before each job (repeatable), e.g. '
                     '"source .venv/bin/activate"')
  sweep.add_argument('run_args', nargs='*', metavar='-- RUN_ARGS',
                     help='flags passed to every `algoperf run`')


def _cmd_sweep(args: argparse.Namespace) -> int:
  from algoperf import benchmarks, sweep  # pylint: disable=import-outside-toplevel

  options = sweep.SweepOptions(
      submission_path=_resolve_submission_path(args.submission_path),
      workloads=args.workloads.split(','),
      experiment_dir=args.experiment_dir,
      tuning_search_space=args.tuning_search_space,
      tuning_ruleset=args.tuning_ruleset,
      num_studies=args.num_studies,
      num_tuning_trials=args.num_tuning_trials,
      seed=args.seed,
      tuning_seed=args.tuning_seed,
      benchmark=args.benchmark or _default_version(args.workloads.split(',')),
      run_args=args.run_args,
      executor=args.executor,
      max_parallel=args.max_parallel,
      overwrite=args.overwrite,
      progress=args.progress,
      slurm_partition=args.slurm_partition,
      gpus_per_job=args.gpus_per_job,
      cpus_per_job=args.cpus_per_job,
      mem_gb=args.mem_gb,
      timeout_min=args.timeout_min,
      slurm_setup=args.slurm_setup,
  )
  result = sweep.run_sweep(options)
  return 1 if result.failed else 0


def _build_parser() -> argparse.ArgumentParser:
  parser = _Parser(
      prog='algoperf',
      description='Benchmark neural-network training algorithms the AlgoPerf way.')
  sub = parser.add_subparsers(dest='command', metavar='COMMAND',
                              parser_class=_Parser)

  run = sub.add_parser(
      'run', help='train a workload with a submission (no arguments: NadamW on '
      'fashion_mnist into ./experiments)',
      description='Run a submission on a workload: tuning trials, timed '
      'training, evals and logs. Flag names follow the reference runner.')
  run.add_argument('--workload', default=DEFAULT_WORKLOAD,
                   help=f'workload name (default {DEFAULT_WORKLOAD}; see `algoperf list`)')
  run.add_argument('--submission_path', default=DEFAULT_SUBMISSION,
                   help='submission .py file, a folder with submission.py, or '
                   f'a bundled submission name (default {DEFAULT_SUBMISSION})')
  run.add_argument('--tuning_search_space', default=None,
                   help='search-space JSON (external tuning; default: the '
                   "tuning_search_space.json beside the submission)")
  run.add_argument('--tuning_ruleset', default='external',
                   choices=('external', 'self'))
  run.add_argument('--num_tuning_trials', type=_positive_int, default=1)
  run.add_argument('--experiment_dir', default='./experiments')
  run.add_argument('--experiment_name', default=None,
                   help='default: <submission>/study_<n>, the first study not '
                   'yet run on this workload; may hold "/" (e.g. name/study_0)')
  run.add_argument('--data_dir', default=None,
                   help='dataset folder (default: the workload\'s standard place)')
  run.add_argument('--rng_seed', type=int, default=None,
                   help='seed of every trial (default: a fresh one per trial)')
  run.add_argument('--max_global_steps', type=_positive_int, default=None)
  add_bool(run, 'overwrite', False, 'replace an existing experiment folder')
  add_bool(run, 'resume_last_run', False,
            'keep an existing experiment folder: finished trials are skipped, '
            'unfinished ones continue from their latest checkpoint')
  run.add_argument('--hparam_start_index', type=_non_negative_int, default=None)
  run.add_argument('--hparam_end_index', type=_non_negative_int, default=None)
  run.add_argument('--framework', default='jax', choices=('jax',))
  run.add_argument('--benchmark', default=None,
                   help='benchmark version for budgets and targets (default: '
                   'small for fashion_mnist and mnist1d, else v0.6)')
  run.add_argument('--global_batch_size', type=_positive_int, default=None,
                   help='batch size for workloads the submission does not know')
  run.add_argument('--submission_api', default='auto',
                   choices=('auto', 'jit', 'pmap'),
                   help='the runner contract the submission was written for: '
                   'jit (current) or pmap (v0.5: replicated state, batches '
                   'split per device); default auto: pmap if its source calls '
                   'jax.pmap')
  run.add_argument('--tuning_seed', type=int, default=0,
                   help='seed of the quasi-random search (same seed, same points)')
  add_bool(run, 'append_timestamp', False,
            'append a timestamp to --experiment_name')
  add_bool(run, 'synthetic_data', False,
            'random data of the real shapes instead of the dataset (smoke tests)')
  add_bool(run, 'progress', True, 'print a live progress line')
  add_bool(run, 'compilation_cache', None,
            'keep compiled steps in a persistent cache (default off: '
            'compilation is on the clock, so a cached run starts faster and '
            'is not comparable; on when --compilation_cache_dir or '
            '$JAX_COMPILATION_CACHE_DIR is set; recorded in meta_data)')
  run.add_argument('--compilation_cache_dir', default=None, metavar='DIR',
                   help='the cache folder (default $JAX_COMPILATION_CACHE_DIR, '
                   'else ~/.cache/algoperf/jax_cache); outside --experiment_dir')
  run.add_argument('--speed_factor', type=_positive_float, default=None,
                   help='small workloads only: this machine\'s speed relative '
                   'to the reference machine, which scales their budgets '
                   '(default: measured before the first trial; recorded in '
                   'meta_data, and scoring divides times by it)')
  run.add_argument('--imagenet_v2_data_dir', default=None,
                   help='ImageNet-v2 folder for the ImageNet workloads\' test split')
  run.add_argument('--librispeech_tokenizer_vocab_path', default=None,
                   help='SentencePiece model of the LibriSpeech workloads '
                   '(default: DATA_DIR/spm_model.vocab)')
  add_bool(run, 'save_checkpoints', True,
            'checkpoint the trial after each eval (off the clock), so '
            '--resume_last_run continues it after a preemption')
  run.add_argument('--num_checkpoints_to_keep', type=_positive_int, default=2,
                   help='newest checkpoints kept per trial (default 2)')
  add_bool(run, 'save_intermediate_checkpoints', True,
            'false: keep only the latest checkpoint (as '
            '--num_checkpoints_to_keep=1)')
  # Multi-host (see algoperf/distributed.py): give all three to every process,
  # or launch with srun/mpirun and let JAX detect them.
  run.add_argument('--coordinator_address', default=None, metavar='HOST:PORT',
                   help='multi-host: address of process 0 (default: '
                   '$JAX_COORDINATOR_ADDRESS)')
  run.add_argument('--num_processes', type=int, default=None,
                   help='multi-host: number of processes (default: $JAX_NUM_PROCESSES)')
  run.add_argument('--process_id', type=int, default=None,
                   help='multi-host: this process, 0..num_processes-1 '
                   '(default: $JAX_PROCESS_ID)')
  for name, default in _IGNORED_FLAGS.items():
    if isinstance(default, bool):
      add_bool(run, name, default, argparse.SUPPRESS)
    else:
      run.add_argument(f'--{name}', default=default, help=argparse.SUPPRESS)

  check = sub.add_parser(
      'check', help='check a submission before running it: hooks, signatures, '
      'search space, rules, and a few dry-run steps',
      description='Check a submission: it imports, defines the hooks with the '
      'parameters the runner passes, ships a search space that parses (external '
      'tuning), uses no workload internals; then trains a few steps on each '
      'workload with synthetic data through the runner. Exit code 0 if all '
      'checks pass, 2 otherwise.')
  check.add_argument('submission',
                     help='submission .py file, a folder with submission.py, '
                     'or a bundled submission name')
  check.add_argument('--workload', action='append', default=None,
                     help='workload for the dry run (repeat, or comma-separate, '
                     'for several; default mnist1d)')
  check.add_argument('--steps', type=_non_negative_int, default=5,
                     help='dry-run steps per workload (default 5; 0: static '
                     'checks only)')
  check.add_argument('--tuning_search_space', default=None,
                     help='search-space JSON (default: the '
                     'tuning_search_space.json beside the submission)')
  check.add_argument('--tuning_ruleset', default=None, choices=('external', 'self'),
                     help='default: self for a folder ending in _self_tuning, '
                     'else external')
  check.add_argument('--global_batch_size', type=_positive_int, default=None,
                     help='batch size of the dry run; overrides the '
                     "submission's own (a CPU check of a large workload needs "
                     'a small one)')
  check.add_argument('--submission_api', default='auto',
                     choices=('auto', 'jit', 'pmap'),
                     help='as for run (default auto)')
  check.add_argument('--memory', action='store_true',
                     help='instead of the dry run: compile one training step '
                     'per workload at its real batch size (nothing runs, '
                     'nothing is allocated) and check that it fits in device '
                     'memory; exit code 2 if it does not (jit-style '
                     'submissions only)')
  check.add_argument('--memory_limit_bytes', type=_byte_size, default=None,
                     metavar='N',
                     help='with --memory: the memory of each device, instead of '
                     'what the device reports (GPU) or the host RAM (CPU); '
                     'bytes, or with a unit: 16GiB, 512MiB')

  lst = sub.add_parser('list', help='list workloads and bundled submissions')
  lst.add_argument('--benchmark', default=None)

  from scoring import command as score_command  # pylint: disable=import-outside-toplevel

  score_command.add_parser(sub)

  data = sub.add_parser(
      'datasets', help='what a dataset needs: where to get it, preparing it, '
      'verifying a copy',
      description='Explains where to get a dataset and what to do with it, '
      'verifies a folder against the split names and example counts of a '
      'complete copy, and with --prepare converts the downloaded files into '
      'what the workload reads. Exit code 0 when the folder verifies, 1 when '
      'it is missing or incomplete, 2 on a usage error.')
  data.add_argument('name', nargs='?', default=None,
                    help='dataset (imagenet, fashion_mnist, mnist1d) or a '
                    'workload name; omit to list them')
  data.add_argument('--data_dir', default=None,
                    help='the folder holding (or to hold) the dataset')
  data.add_argument('--imagenet_v2_data_dir', default=None,
                    help='ImageNet-v2 folder when apart from --data_dir')
  data.add_argument('--prepare', action='store_true',
                    help='prepare the dataset in --data_dir, then verify it')

  desc = sub.add_parser('describe', help="a workload's facts, parameter count and shapes")
  desc.add_argument('workload')
  desc.add_argument('--benchmark', default=None)
  desc.add_argument('--json', action='store_true', help='print JSON')
  _add_sweep_parser(sub)
  _add_reproduce_parser(sub)
  return parser


def _default_version(workload_names: Sequence[str]) -> str:
  """``small`` for the laptop benchmark's workloads, else the latest AlgoPerf version."""
  from algoperf import benchmarks  # pylint: disable=import-outside-toplevel

  names = [n.strip() for n in workload_names if n.strip()]
  if names and all(n in benchmarks.small_workloads() for n in names):
    return 'small'
  return benchmarks.DEFAULT_VERSION


def _check_run_flags(args: argparse.Namespace) -> None:
  """Flag combinations argparse cannot check by itself."""
  from algoperf.errors import ConfigError  # pylint: disable=import-outside-toplevel

  if args.overwrite and args.resume_last_run:
    raise ConfigError('--overwrite and --resume_last_run are mutually exclusive: '
                      'overwrite deletes the previous run, resume_last_run '
                      'continues it. Pass one of them.')
  start, end = args.hparam_start_index, args.hparam_end_index
  if start is not None and end is not None and start >= end:
    raise ConfigError(f'--hparam_start_index ({start}) must be smaller than '
                      f'--hparam_end_index ({end}): the trials run are '
                      f'start..end-1 (e.g. --hparam_start_index {end} '
                      f'--hparam_end_index {end + 1} runs one).')
  if end is not None and end > args.num_tuning_trials:
    raise ConfigError(f'--hparam_end_index ({end}) is beyond '
                      f'--num_tuning_trials ({args.num_tuning_trials}): raise '
                      '--num_tuning_trials or lower the index.')


def _cmd_run(args: argparse.Namespace) -> int:
  from algoperf import distributed, experiment  # pylint: disable=import-outside-toplevel

  _check_run_flags(args)
  # Before anything touches a device: the mesh must span every process.
  distributed.initialize(args.coordinator_address, args.num_processes,
                         args.process_id)

  for name, default in _IGNORED_FLAGS.items():
    if getattr(args, name) != default:
      logging.warning('--%s is accepted for compatibility and has no effect here.', name)
  submission_path = _resolve_submission_path(args.submission_path)
  search_space = args.tuning_search_space
  if search_space is None and args.tuning_ruleset == 'external':
    beside = Path(submission_path).expanduser()
    beside = (beside if beside.is_dir() else beside.parent) / 'tuning_search_space.json'
    if beside.is_file():
      search_space = str(beside)
      print(f'Using the search space beside the submission: {beside}')
  experiment_name = args.experiment_name
  if experiment_name and args.append_timestamp:
    experiment_name += datetime.datetime.now().strftime('-%Y-%m-%d-%H-%M-%S')
  options = experiment.RunOptions(
      workload=args.workload,
      submission_path=submission_path,
      tuning_search_space=search_space,
      tuning_ruleset=args.tuning_ruleset,
      num_tuning_trials=args.num_tuning_trials,
      experiment_dir=args.experiment_dir,
      experiment_name=experiment_name,
      data_dir=args.data_dir,
      rng_seed=args.rng_seed,
      max_global_steps=args.max_global_steps,
      overwrite=args.overwrite,
      resume_last_run=args.resume_last_run,
      hparam_start_index=args.hparam_start_index,
      hparam_end_index=args.hparam_end_index,
      framework=args.framework,
      benchmark=args.benchmark or _default_version([args.workload]),
      global_batch_size=args.global_batch_size,
      tuning_seed=args.tuning_seed,
      synthetic_data=args.synthetic_data,
      progress=args.progress,
      compilation_cache=args.compilation_cache,
      compilation_cache_dir=args.compilation_cache_dir,
      speed_factor=args.speed_factor,
      imagenet_v2_data_dir=args.imagenet_v2_data_dir,
      librispeech_tokenizer_vocab_path=args.librispeech_tokenizer_vocab_path,
      submission_api=args.submission_api,
      save_checkpoints=args.save_checkpoints,
      num_checkpoints_to_keep=(args.num_checkpoints_to_keep
                               if args.save_intermediate_checkpoints else 1),
  )
  flag_values = {k: v for k, v in vars(args).items() if k != 'command'}
  outcomes = experiment.run(options, flag_values)
  failed = [o for o in outcomes if o.failed]
  reached = [o for o in outcomes
             if o.summary.get('time_to_validation_target') is not None]
  if outcomes:
    best = min(reached, key=lambda o: o.summary['time_to_validation_target'],
               default=None)
    print(f'{len(reached)}/{len(outcomes)} trial(s) reached the validation target.')
    if best is not None:
      print(f'Best time to target: {best.summary["time_to_validation_target"]:.2f} s '
            f'(trial_{best.trial_index}). Logs: {best.trial_dir}')
    elif outcomes[0].trial_dir is not None:
      print(f'Logs: {outcomes[0].trial_dir.parent}')
  if failed:
    print(f'{len(failed)} trial(s) failed in the submission: '
          + ', '.join(f'trial_{o.trial_index}' for o in failed)
          + ' (see above). Fix the submission, then rerun the same command '
          'with --resume_last_run to retry them.', file=sys.stderr)
    return 1
  return 0


def _cmd_check(args: argparse.Namespace) -> int:
  from algoperf import check  # pylint: disable=import-outside-toplevel
  from algoperf.errors import ConfigError  # pylint: disable=import-outside-toplevel

  if args.memory_limit_bytes is not None and not args.memory:
    raise ConfigError('--memory_limit_bytes is the limit of the memory check: '
                      'add --memory.')
  names = [n.strip() for value in (args.workload or []) for n in value.split(',')
           if n.strip()]
  report = check.check_submission(
      _resolve_submission_path(args.submission),
      workloads=names or None,
      steps=args.steps,
      tuning_search_space=args.tuning_search_space,
      tuning_ruleset=args.tuning_ruleset,
      global_batch_size=args.global_batch_size,
      submission_api=args.submission_api,
      out=sys.stdout,
      memory=args.memory,
      memory_limit_bytes=args.memory_limit_bytes,
  )
  return 0 if report.ok else 2


def _load_version(name: Optional[str]) -> Any:
  """A benchmark version; an unknown name is a one-line error listing the known ones."""
  from algoperf import benchmarks  # pylint: disable=import-outside-toplevel
  from algoperf.errors import ConfigError  # pylint: disable=import-outside-toplevel

  try:
    return benchmarks.load(name)
  except ValueError as e:
    raise ConfigError(f'{e} Pass one of them to --benchmark.') from e


def _cmd_list(args: argparse.Namespace) -> int:
  import workloads  # pylint: disable=import-outside-toplevel
  from algoperf import benchmarks  # pylint: disable=import-outside-toplevel

  version = _load_version(args.benchmark)
  print(f'Workloads (benchmark {version.name}):')
  names = workloads.list_workloads()
  width = max(16, *(len(n) for n in names))
  for name in names:
    facts = version.workloads.get(name)
    if facts is None:
      print(f'  {name}')
      continue
    direction = '>=' if facts.higher_is_better else '<='
    print(f'  {name:<{width}} validation/{facts.target_metric_name} {direction} '
          f'{facts.validation_target_value:g}, budget '
          f'{facts.max_allowed_runtime_sec:g} s ({facts.reference_machine})')
  print('Submissions:')
  for name, path in _bundled_submissions().items():
    print(f'  {name:<20} {path}')
  return 0


def _cmd_score(args: argparse.Namespace) -> int:
  from scoring import command as score_command  # pylint: disable=import-outside-toplevel

  return score_command.run(args)


# What `algoperf reproduce TARGET` can reproduce: the published competition
# leaderboards, rescored from their logs (scoring/reproduce.py).
# mini: the laptop benchmark, run and scored here (algoperf/laptop.py).
_REPRODUCE_TARGETS = ('v0.5', 'mini')


def _add_reproduce_parser(sub: Any) -> None:
  rep = sub.add_parser(
      'reproduce', help='rescore a published leaderboard from its logs and '
      'compare (v0.5: the first competition), or run the laptop benchmark (mini)',
      description='v0.5: score the first AlgoPerf competition\'s logs (a compact '
      'extract ships with the package; --logs for the full logs) under both '
      'rulesets and compare every score with the published leaderboard. Exit '
      'code 0 only if all scores match to 4 decimals, 1 otherwise. mini: run the '
      'reference submissions on the small CPU workloads (one sweep each; a rerun '
      'finishes only what is missing), score them with the small benchmark\'s '
      'rules and write the report and profile plot to --output_dir (default '
      '<experiment_dir>_report). Exit code 1 if a run failed.')
  rep.add_argument('target', choices=_REPRODUCE_TARGETS,
                   help='what to reproduce: v0.5 (the first competition) or '
                   'mini (the laptop benchmark)')
  mini = rep.add_argument_group('mini')
  add_bool(mini, 'quick', False, 'mnist1d only, 1 study x 2 trials (~3-4 min) '
            'instead of both small workloads, 2 studies x 2 trials (up to ~55 min)')
  mini.add_argument('--experiment_dir', default=None,
                    help='where the logs go (default ./experiments_mini, or '
                    './experiments_mini_quick with --quick)')
  mini.add_argument('--submissions', default=None,
                    help='comma-separated bundled names or paths instead of '
                    'nadamw,adamw,momentum,schedule_free_adamw')
  mini.add_argument('--max_parallel', type=_positive_int, default=1,
                    help='runs at a time (default 1: parallel runs share the '
                    'cores and slow each other\'s clocks, which are the score)')
  add_bool(mini, 'progress', True, 'live table on a terminal (else one line per change)')
  rep.add_argument('--logs', default=None, metavar='PATH',
                   help='folder holding external_tuning/ and self_tuning/ (the '
                   'full logs of mlcommons/submissions_algorithms, '
                   'previous_leaderboards/algoperf_v05/logs), or a log extract '
                   '(.json.xz), instead of the shipped extract')
  rep.add_argument('--ruleset', default='both', choices=('external', 'self', 'both'))
  rep.add_argument('--output_dir', default=None,
                   help='write reproduce.md/json and, per ruleset, the score '
                   'reports and performance-profile plots here')


def _cmd_reproduce(args: argparse.Namespace) -> int:
  if args.target == 'mini':
    from algoperf import laptop  # pylint: disable=import-outside-toplevel
    from algoperf.errors import ConfigError  # pylint: disable=import-outside-toplevel

    if args.logs is not None or args.ruleset == 'self':
      raise ConfigError('reproduce mini runs its own logs under external tuning: '
                        'drop --logs and --ruleset.')
    names = [s.strip() for s in (args.submissions or '').split(',') if s.strip()]
    return laptop.run_mini(
        quick=args.quick, experiment_dir=args.experiment_dir,
        output_dir=args.output_dir, submissions=names or None,
        max_parallel=args.max_parallel, progress=args.progress)
  # The other targets are published competition leaderboards, rescored.
  from scoring import reproduce  # pylint: disable=import-outside-toplevel

  rulesets = ('external', 'self') if args.ruleset == 'both' else (args.ruleset,)
  return reproduce.reproduce_competition(
      args.target, logs=args.logs, rulesets=rulesets, output_dir=args.output_dir)


def describe_workload(name: str, benchmark: Optional[str] = None) -> Dict[str, Any]:
  """A workload's facts and parameter shapes, without allocating the params."""
  import jax  # pylint: disable=import-outside-toplevel

  import workloads  # pylint: disable=import-outside-toplevel
  from algoperf import benchmarks  # pylint: disable=import-outside-toplevel

  from algoperf.errors import ConfigError  # pylint: disable=import-outside-toplevel

  version = _load_version(benchmark)
  try:
    workload = workloads.get_workload(name, benchmark=version.name)
  except (KeyError, ValueError) as e:
    raise ConfigError(f'{str(e).strip(chr(34))} See `algoperf list`.') from e
  jax.eval_shape(workload.init_model_fn, jax.random.PRNGKey(0))
  leaves = jax.tree_util.tree_flatten_with_path(workload.param_shapes)[0]
  shapes = {
      '/'.join(str(getattr(k, 'key', k)) for k in path): list(leaf.shape_tuple)
      for path, leaf in leaves
  }
  num_params = 0
  for dims in shapes.values():
    count = 1
    for d in dims:
      count *= d
    num_params += count
  facts = {
      'name': name,
      'benchmark': version.name,
      'target_metric_name': workload.target_metric_name,
      'validation_target_value': workload.validation_target_value,
      'test_target_value': workload.test_target_value,
      'max_allowed_runtime_sec': workload.max_allowed_runtime_sec,
      'eval_period_time_sec': workload.eval_period_time_sec,
      'step_hint': workload.step_hint,
      'loss_type': workload.loss_type.name,
      'num_train_examples': workload.num_train_examples,
      'num_eval_train_examples': workload.num_eval_train_examples,
      'num_validation_examples': workload.num_validation_examples,
      'num_test_examples': workload.num_test_examples,
      'eval_batch_size': workload.eval_batch_size,
      'reference_machine': version.workload(name).reference_machine,
      'num_params': num_params,
      'param_shapes': shapes,
  }
  return facts


def _cmd_datasets(args: argparse.Namespace) -> int:
  from algoperf.errors import ConfigError  # pylint: disable=import-outside-toplevel
  from workloads import datasets  # pylint: disable=import-outside-toplevel

  if args.name is None:
    print('Datasets (algoperf datasets NAME --data_dir DIR for details):')
    for recipe in datasets.RECIPES.values():
      print(f'  {recipe.name:<14} for {recipe.workloads}')
    return 0
  recipe = datasets.recipe_for(args.name)
  data_dir = args.data_dir or recipe.default_data_dir
  if data_dir is None and (args.prepare or recipe.prepare is not None):
    raise ConfigError(f'Pass --data_dir DIR: the folder that holds (or is to '
                      f'hold) {recipe.name}.')
  print(recipe.instructions(data_dir or '.'))
  if args.prepare:
    if recipe.prepare is None:
      print(f'{recipe.name}: nothing to prepare.')
    else:
      recipe.prepare(data_dir, args.imagenet_v2_data_dir)
  where = f' in {data_dir}' if data_dir else ''
  try:
    checks = recipe.verify(data_dir, args.imagenet_v2_data_dir)
  except datasets.DatasetError as e:
    print(f'Not ready{where}: {e}')
    return 1
  for check in checks:
    found = 'missing' if check.found is None else f'{check.found:,}'
    status = 'ok' if check.ok else 'WRONG'
    print(f'  {check.split:<11} {found:>11} examples (expected '
          f'{check.expected:,}) {status}')
  bad = [c.split for c in checks if not c.ok]
  if bad:
    print(f'Not ready{where}: {", ".join(bad)} incomplete or missing; see the '
          'steps above.')
    return 1
  print(f'{recipe.name} is ready{where}.')
  return 0


def _cmd_describe(args: argparse.Namespace) -> int:
  facts = describe_workload(args.workload, args.benchmark)
  if args.json:
    print(json.dumps(facts, indent=2))
    return 0
  shapes = facts.pop('param_shapes')
  width = max(len(k) for k in facts)
  for key, value in facts.items():
    print(f'{key:<{width}}  {value}')
  print('parameters:')
  width = max(len(k) for k in shapes)
  for key, dims in shapes.items():
    print(f'  {key:<{width}}  {tuple(dims)}')
  return 0


def _submission_frame(error: BaseException) -> str:
  """`` (at file:line in function)`` of the innermost frame outside this package."""
  import traceback  # pylint: disable=import-outside-toplevel

  package = Path(__file__).resolve().parent
  for frame in reversed(traceback.extract_tb(error.__traceback__)):
    try:
      Path(frame.filename).resolve().relative_to(package)
    except ValueError:
      return f' (at {frame.filename}:{frame.lineno} in {frame.name})'
  return ''


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Entry point of the `algoperf` console script; returns the exit code."""
  argv = list(sys.argv[1:] if argv is None else argv)
  # XLA runs the dense math on its own thread pool; OpenBLAS serves only LAPACK
  # calls (e.g. eigh in Shampoo) and its threads fight XLA's for the cores,
  # which made such steps 100x slower on 2 cores. Must be set before JAX loads.
  os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
  logging.basicConfig(level=logging.WARNING, format='%(levelname)s: %(message)s')
  parser = _build_parser()
  try:
    args, unknown = parser.parse_known_args(_normalise_bool_flags(argv))
    if unknown:
      # Reported by the sub-command's parser, which knows its own flags.
      owner = _subcommand_parser(parser, getattr(args, 'command', None)) or parser
      owner.error('unrecognized arguments: ' + ' '.join(unknown))
  except SystemExit as e:  # A usage error (one line, printed) or --help.
    return e.code if isinstance(e.code, int) else 2
  if args.command is None:
    parser.print_help()
    return 2
  handlers = {'run': _cmd_run, 'check': _cmd_check, 'list': _cmd_list,
              'describe': _cmd_describe, 'score': _cmd_score,
              'datasets': _cmd_datasets,
              'sweep': _cmd_sweep, 'reproduce': _cmd_reproduce}
  from algoperf.errors import user_errors  # pylint: disable=import-outside-toplevel

  try:
    code = handlers[args.command](args)
    sys.stdout.flush()  # A closed pipe shows here, not at interpreter exit.
    return code
  except BrokenPipeError:
    # `algoperf list | head -1`: the reader has what it wanted.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0
  except user_errors() as e:
    print(f'algoperf {args.command}: error: {e}', file=sys.stderr)
    return 2
  except RuntimeError as e:
    from algoperf.fence import FenceError  # pylint: disable=import-outside-toplevel

    if not isinstance(e, FenceError):
      raise
    # The submission broke a rule: one line, plus where in its code.
    print(f'algoperf {args.command}: error: {e}{_submission_frame(e)}',
          file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    hint = {'run': ' To continue, run the same command with --resume_last_run.',
            'sweep': ' To continue, run the same command again: finished runs '
                     'are skipped, cut-off ones resume.',
            'reproduce': ' To continue, run the same command again.'}
    print(f'Interrupted; the logs written so far are kept.'
          f'{hint.get(args.command, "")}', file=sys.stderr)
    return 130


if __name__ == '__main__':
  sys.exit(main())
