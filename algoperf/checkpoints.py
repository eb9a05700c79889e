"""Save and restore a trial's whole state with orbax, so a preempted trial resumes.

What a checkpoint holds (one folder ``<trial_dir>/checkpoints/<global_step>/``):

* ``arrays``: every array leaf of the params, the optimizer state and the model
  state (orbax ``PyTreeSave``);
* ``meta`` (JSON): the global step, the seed and the base key the per-step
  keys are folded from, the accumulated submission/eval/logging times, the
  wall time since the trial started (downtime excluded), the eval results so
  far, the time to target, the train-state flags, the preemption count, the
  input position (batches the submission consumed), how many rows the log
  files held, the Python scalars found in the state trees (e.g. an ``int``
  step counter), and a description of every leaf to check a restore against.

The state trees are saved as flat lists of leaves, not as their own
structure: reference submissions keep ``(optax_state, update_fn)`` as their
optimizer state, and a function cannot be saved. A restore therefore starts
from freshly initialised trees (the *templates*: ``init_model_fn`` and
``init_optimizer_state`` run again on resume) and replaces their leaves:
arrays by the saved arrays, placed with the template's sharding (so the
submission's jitted step sees the placement it was compiled for and does not
compile again), Python scalars by the saved values; anything else (functions)
is kept from the template.

Atomicity is orbax's: a checkpoint is written into a temporary folder and
renamed into place once complete, and unfinished folders are never listed
(and are deleted when a manager opens the folder). So a process killed while
writing leaves the previous checkpoints as the latest good ones.

Multi-host runs: every process builds its ``TrialCheckpointer`` on the same
folder and takes part in every save and restore (orbax writes each process's
shards and commits on process 0); the folder must be on a shared file system.

Input pipeline: the runner wraps the train queue in a ``CountingIterator``
and saves its count as the input position. On resume it rebuilds the queue
from the same data key, starting at that position (``start_position`` of
the workload's ``_build_input_queue``): nothing is replayed. A workload
without that argument is put back in place by discarding the consumed
batches (a deterministic replay, off the clock).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import pathlib
import shutil
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

import jax
import numpy as np

from algoperf import distributed, recorder
from algoperf.errors import ConfigError
from algoperf.trial_state import TrialState

CHECKPOINTS_DIR = 'checkpoints'
DEFAULT_NUM_TO_KEEP = 2
FORMAT_VERSION = 1

# Test hook (used by tests/test_checkpoints.py, never by a normal run): with
# ALGOPERF_TEST_HOLD_CHECKPOINT_MARKER set to a path, the first save at a step
# >= ALGOPERF_TEST_HOLD_CHECKPOINT_FROM_STEP (default 0) writes all its data
# into orbax's temporary folder, creates the marker file, and then blocks
# forever instead of committing: a test can SIGKILL the process exactly while a
# checkpoint is being written.
TEST_HOLD_MARKER_ENV = 'ALGOPERF_TEST_HOLD_CHECKPOINT_MARKER'
TEST_HOLD_FROM_STEP_ENV = 'ALGOPERF_TEST_HOLD_CHECKPOINT_FROM_STEP'

_STATE_TREES = ('params', 'optimizer_state', 'model_state')
_ARRAYS_ITEM = 'arrays'
_META_ITEM = 'meta'
_UNREADABLE_PREFIX = 'unreadable_'


class CheckpointMismatchError(ConfigError):
  """A checkpoint does not fit the trial resuming from it (other model or optimizer)."""


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
  """The latest good checkpoint of a trial folder, without its arrays."""

  step: int
  path: pathlib.Path
  rng_seed: int
  preemption_count: int
  log_rows: Optional[Dict[str, int]]
  submission_time: float


class CountingIterator(Iterator[Any]):
  """Passes an iterator's items through and counts how many were taken."""

  def __init__(self, iterator: Iterator[Any], start: int = 0):
    """``start``: the position of ``iterator``'s first item (a resumed queue)."""
    self._iterator = iterator
    self.consumed = int(start)

  def __iter__(self) -> 'CountingIterator':
    return self

  def __next__(self) -> Any:
    item = next(self._iterator)
    self.consumed += 1
    return item

  def skip(self, count: int) -> None:
    """Discards ``count`` items (a replay up to a restored input position).

    Only for a workload whose queue cannot start at a position itself.
    """
    for _ in range(count):
      try:
        next(self)
      except StopIteration as e:
        raise ConfigError(
            f'The input pipeline ended after {self.consumed} batches while '
            f'replaying to the checkpoint\'s position ({count}); the data '
            'changed since the checkpoint was written. Pass --overwrite to '
            'start the trial afresh.') from e


# --- leaves --------------------------------------------------------------------


def _is_array(leaf: Any) -> bool:
  return isinstance(leaf, (jax.Array, np.ndarray, np.generic))


def _is_python_scalar(leaf: Any) -> bool:
  return isinstance(leaf, (bool, int, float)) and not isinstance(leaf, np.generic)


def _is_typed_key(leaf: Any) -> bool:
  return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(
      leaf.dtype, jax.dtypes.prng_key)


def _describe(leaf: Any) -> Dict[str, Any]:
  if _is_array(leaf):
    return {'kind': 'array', 'shape': [int(d) for d in leaf.shape],
            'dtype': str(leaf.dtype)}
  if _is_python_scalar(leaf):
    return {'kind': 'scalar'}
  return {'kind': 'other', 'type': type(leaf).__name__}


def _leaves(name: str, tree: Any) -> List[Tuple[str, str, Any]]:
  """``(key, path, leaf)`` of every leaf; the key names it in the checkpoint."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(f'{name}_{i:05d}', jax.tree_util.keystr(path), leaf)
          for i, (path, leaf) in enumerate(flat)]


def _jsonable(value: Any) -> Any:
  """Metric values as plain Python (numpy/jax scalars become floats, ints, bools)."""
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if hasattr(value, 'item') and np.size(value) == 1:
    return np.asarray(value).reshape(()).item()
  return str(value)


# --- the test hook ---------------------------------------------------------------


def _holding_temporary_path_class() -> Optional[type]:
  """The temporary-path class of the test hook, or None when the hook is off."""
  marker = os.environ.get(TEST_HOLD_MARKER_ENV)
  if not marker:
    return None
  from_step = int(os.environ.get(TEST_HOLD_FROM_STEP_ENV, '0'))
  from orbax.checkpoint import path as ocp_path  # pylint: disable=import-outside-toplevel

  class _HoldBeforeCommit(ocp_path.atomicity.AtomicRenameTemporaryPath):

    async def finalize(self, *args, **kwargs):
      try:
        step = int(self.get_final().name)
      except ValueError:
        step = -1
      if step >= from_step:
        pathlib.Path(marker).write_text(str(self.get()))
        threading.Event().wait()  # Until the test kills the process.
      return await super().finalize(*args, **kwargs)

  return _HoldBeforeCommit


# --- the checkpointer --------------------------------------------------------------


class TrialCheckpointer:
  """Saves and restores ``TrialState`` in one folder, keeping the newest ``max_to_keep``.

  Saves are synchronous: the runner calls ``save`` between steps, off the
  clock, and the next ``update_params`` may donate the very buffers being
  saved, so the write must be over before training continues.
  """

  def __init__(self, directory: recorder.PathLike,
               max_to_keep: int = DEFAULT_NUM_TO_KEEP, save: bool = True):
    """Opens (and creates) ``directory``.

    Args:
      directory: the checkpoint folder, usually ``<trial_dir>/checkpoints``.
      max_to_keep: how many of the newest checkpoints survive a save.
      save: False makes ``save`` a no-op (restoring still works).
    """
    if max_to_keep < 1:
      raise ConfigError(
          f'--num_checkpoints_to_keep must be at least 1, got {max_to_keep}.')
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    self._ocp = ocp
    self.directory = pathlib.Path(directory).resolve()
    self.saving = save
    self.max_to_keep = max_to_keep
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=False,
        # Folders of saves that never finished (a killed process) go away.
        cleanup_tmp_directories=True,
        create=True,
        temporary_path_class=_holding_temporary_path_class(),
    )
    # Handlers named up front, so a fresh process can read item metadata.
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={_ARRAYS_ITEM: ocp.PyTreeCheckpointHandler(),
                       _META_ITEM: ocp.JsonCheckpointHandler()})

  def close(self) -> None:
    self._manager.close()

  def __enter__(self) -> 'TrialCheckpointer':
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()

  def all_steps(self) -> List[int]:
    """Steps of the complete checkpoints, oldest first."""
    self._manager.reload()
    return sorted(self._manager.all_steps())

  # --- save ---

  def save(self, state: TrialState) -> bool:
    """Writes ``state`` as the checkpoint of ``state.global_step``; True if written.

    Raises:
      TypeError: a metric value or a train-state entry cannot be stored.
    """
    if not self.saving:
      return False
    ocp = self._ocp
    arrays: Dict[str, Any] = {}
    scalars: Dict[str, Any] = {}
    layout: Dict[str, List[Dict[str, Any]]] = {}
    for name in _STATE_TREES:
      layout[name] = []
      for key, path, leaf in _leaves(name, getattr(state, name)):
        entry = {'key': key, 'path': path, **_describe(leaf)}
        if _is_typed_key(leaf):
          # Orbax stores plain arrays; a typed key goes as its raw data.
          arrays[key] = jax.random.key_data(leaf)
        elif _is_array(leaf):
          arrays[key] = leaf
        elif _is_python_scalar(leaf):
          scalars[key] = leaf
        layout[name].append(entry)
    meta = {
        'format_version': FORMAT_VERSION,
        'global_step': int(state.global_step),
        'rng_seed': int(state.rng_seed),
        'rng_key': [int(x) for x in state.rng_key],
        'clock': {'accumulated': float(state.submission_time)},
        'accumulated_eval_time': float(state.eval_time),
        'accumulated_logging_time': float(state.logging_time),
        'total_duration': float(state.total_duration),
        'eval_results': [[int(step), {str(k): _jsonable(v) for k, v in r.items()}]
                         for step, r in state.eval_results],
        'time_to_target': (None if state.time_to_target is None
                           else float(state.time_to_target)),
        'train_state': state.stop_flags(),
        'preemption_count': int(state.preemption_count),
        'input_position': int(state.input_position),
        'log_rows': state.log_rows,
        'scalars': scalars,
        'layout': layout,
    }
    args = {_META_ITEM: ocp.args.JsonSave(meta)}
    if arrays:
      args[_ARRAYS_ITEM] = ocp.args.PyTreeSave(arrays)
    return bool(self._manager.save(int(state.global_step),
                                   args=ocp.args.Composite(**args), force=True))

  # --- find and restore ---

  def _read_meta(self, step: int) -> Dict[str, Any]:
    ocp = self._ocp
    meta = self._manager.restore(
        step, args=ocp.args.Composite(**{_META_ITEM: ocp.args.JsonRestore()}))
    meta = meta[_META_ITEM]
    if not isinstance(meta, dict) or meta.get('format_version') != FORMAT_VERSION:
      raise ValueError(f'unknown checkpoint format in {self.directory / str(step)}')
    if any(entry['kind'] == 'array' for tree in meta['layout'].values()
           for entry in tree):
      # Reads only the array metadata: the files must be there and readable.
      self._manager.item_metadata(step)[_ARRAYS_ITEM]  # pylint: disable=expression-not-assigned
    return meta

  def latest(self) -> Optional[CheckpointInfo]:
    """The newest checkpoint whose metadata reads back, or None.

    Newer complete checkpoints that cannot be read (a damaged disk, a file
    deleted by hand) are renamed ``unreadable_<step>`` with a warning, so new
    saves at those steps do not collide with them.
    """
    for step in reversed(self.all_steps()):
      try:
        meta = self._read_meta(step)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('Checkpoint %s cannot be read (%s: %s); it is set '
                        'aside as %s%d and an older one is used.',
                        self.directory / str(step), type(e).__name__, e,
                        _UNREADABLE_PREFIX, step)
        self._set_aside(step)
        continue
      return CheckpointInfo(
          step=step, path=self.directory / str(step),
          rng_seed=int(meta['rng_seed']),
          preemption_count=int(meta['preemption_count']),
          log_rows=meta.get('log_rows'),
          submission_time=float(meta['clock'].get('accumulated', 0.0)))
    return None

  def _set_aside(self, step: int) -> None:
    # On a multi-host run every process finds the same unreadable folder (one
    # shared file system); process 0 moves it and the others wait for that.
    if distributed.is_primary():
      source = self.directory / str(step)
      target = self.directory / f'{_UNREADABLE_PREFIX}{step}'
      if target.exists():
        shutil.rmtree(target)
      source.rename(target)
    distributed.everywhere(True)
    # The manager caches its list of steps; make it read the folder again.
    self._manager.reload()

  def read_arrays(self, step: int) -> Dict[str, Dict[str, np.ndarray]]:
    """Checkpoint ``step``'s arrays on the host, by tree and leaf path.

    For inspecting a trial's state without the model or the submission, e.g.
    ``read_arrays(step)['params']["['Dense_0']['kernel']"]``.
    """
    ocp = self._ocp
    meta = self._read_meta(step)
    keys = {entry['key']: (name, entry['path'])
            for name, tree in meta['layout'].items() for entry in tree
            if entry['kind'] == 'array'}
    out: Dict[str, Dict[str, np.ndarray]] = {name: {} for name in _STATE_TREES}
    if not keys:
      return out
    restore_args = {key: ocp.RestoreArgs(restore_type=np.ndarray) for key in keys}
    restored = self._manager.restore(step, args=ocp.args.Composite(**{
        _ARRAYS_ITEM: ocp.args.PyTreeRestore(restore_args=restore_args)}))
    for key, value in restored[_ARRAYS_ITEM].items():
      name, path = keys[key]
      out[name][path] = np.asarray(value)
    return out

  def restore(self, step: int, *, params: Any, optimizer_state: Any,
              model_state: Any, rng_seed: int) -> TrialState:
    """Reads checkpoint ``step`` into copies of the given freshly initialised trees.

    Raises:
      CheckpointMismatchError: the checkpoint was written for other trees
        (another workload, model or optimizer) or another seed.
    """
    ocp = self._ocp
    where = self.directory / str(step)
    try:
      meta = self._read_meta(step)
    except Exception as e:  # pylint: disable=broad-except
      raise _unreadable(where, e) from e
    if int(meta['rng_seed']) != int(rng_seed):
      raise CheckpointMismatchError(
          f'Checkpoint {where} was written with --rng_seed={meta["rng_seed"]}, '
          f'this run uses {rng_seed}. Resume with the same seed, or pass '
          '--overwrite to start afresh.')
    templates = {'params': params, 'optimizer_state': optimizer_state,
                 'model_state': model_state}
    targets: Dict[str, Any] = {}
    restore_args: Dict[str, Any] = {}
    flat: Dict[str, List[Tuple[str, str, Any]]] = {}
    for name in _STATE_TREES:
      flat[name] = _leaves(name, templates[name])
      saved = meta['layout'][name]
      if len(saved) != len(flat[name]):
        raise CheckpointMismatchError(
            f'Checkpoint {where} holds {len(saved)} {name} leaves, this trial '
            f'has {len(flat[name])}: it was written by another workload or '
            'submission. Pass --overwrite to start afresh, or use another '
            '--experiment_name.')
      for (key, path, leaf), entry in zip(flat[name], saved):
        expected = _describe(leaf)
        found = {k: v for k, v in entry.items() if k in expected}
        if found != expected:
          raise CheckpointMismatchError(
              f'Checkpoint {where}: {name}{path} is {found} there but '
              f'{expected} in this trial; it was written by another workload '
              'or submission. Pass --overwrite to start afresh, or use '
              'another --experiment_name.')
        if expected['kind'] != 'array':
          continue
        data = jax.random.key_data(leaf) if _is_typed_key(leaf) else leaf
        targets[key] = data
        if isinstance(data, jax.Array):
          restore_args[key] = ocp.ArrayRestoreArgs(
              sharding=data.sharding, global_shape=data.shape, dtype=data.dtype)
        else:
          restore_args[key] = ocp.RestoreArgs(restore_type=np.ndarray,
                                              dtype=np.asarray(data).dtype)
    arrays: Dict[str, Any] = {}
    if targets:
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(**{
            _ARRAYS_ITEM: ocp.args.PyTreeRestore(item=targets,
                                                 restore_args=restore_args)}))
      except Exception as e:  # pylint: disable=broad-except
        raise _unreadable(where, e) from e
      arrays = restored[_ARRAYS_ITEM]

    def rebuild(name: str) -> Any:
      leaves = []
      for key, _, leaf in flat[name]:
        if key in arrays:
          value = arrays[key]
          if _is_typed_key(leaf):
            value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf))
          elif isinstance(leaf, np.generic):
            value = leaf.dtype.type(np.asarray(value).reshape(()))
          leaves.append(value)
        elif key in meta['scalars']:
          leaves.append(type(leaf)(meta['scalars'][key]))
        else:
          leaves.append(leaf)
      return jax.tree_util.tree_unflatten(
          jax.tree_util.tree_structure(templates[name]), leaves)

    state = TrialState(
        params=rebuild('params'),
        optimizer_state=rebuild('optimizer_state'),
        model_state=rebuild('model_state'),
        rng_seed=int(meta['rng_seed']),
        rng_key=list(meta['rng_key']),
        preemption_count=int(meta['preemption_count']),
        global_step=int(meta['global_step']),
        submission_time=float(meta['clock'].get('accumulated', 0.0)),
        eval_time=float(meta['accumulated_eval_time']),
        logging_time=float(meta['accumulated_logging_time']),
        total_duration=float(meta['total_duration']),
        eval_results=[(int(s), dict(r)) for s, r in meta['eval_results']],
        time_to_target=meta['time_to_target'],
        input_position=int(meta['input_position']),
        log_rows=meta.get('log_rows'),
    )
    state.load_stop_flags(meta['train_state'])
    return state


def _unreadable(where: pathlib.Path, error: Exception) -> ConfigError:
  return ConfigError(
      f'Checkpoint {where} cannot be read ({type(error).__name__}: {error}). '
      f'Rename that folder (e.g. to {_UNREADABLE_PREFIX}{where.name}) to resume '
      'from the previous checkpoint, or pass --overwrite to start afresh.')


def key_data(rng: Any) -> List[int]:
  """A PRNG key's raw words as ints (what a checkpoint stores of it)."""
  if _is_typed_key(rng):
    rng = jax.random.key_data(rng)
  return [int(x) for x in np.asarray(rng).ravel()]


# --- logs on resume ---------------------------------------------------------------


def _truncate_csv(path: pathlib.Path, num_rows: int) -> bool:
  """Keeps the header and the first ``num_rows`` rows of ``path``; True if rows went."""
  if not path.exists():
    return False
  with open(path, newline='', encoding='utf-8') as f:
    rows = list(csv.reader(f))
  if len(rows) <= num_rows + 1:
    return False
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator='\n').writerows(rows[:num_rows + 1])
  recorder.atomic_write_text(path, buffer.getvalue())
  return True


def rewind_logs(trial_dir: recorder.PathLike, log_rows: Optional[Dict[str, int]],
                archive_dir: recorder.PathLike) -> bool:
  """Cuts the trial's CSV logs back to the rows they held at the checkpoint.

  Rows written after the checkpoint belong to a future the resumed trial will
  not have (it replays those steps and evaluates at other times); scoring
  takes the first eval that reached the target, so they must leave the main
  files. The complete files are first copied to ``archive_dir`` (nothing is
  lost). Returns True if any row was dropped.
  """
  if log_rows is None:
    return False
  trial_dir = pathlib.Path(trial_dir)
  counts = {recorder.MEASUREMENTS_FILE: log_rows.get('measurements'),
            recorder.EVAL_MEASUREMENTS_FILE: log_rows.get('eval_measurements')}
  to_cut = []
  for name, count in counts.items():
    path = trial_dir / name
    if count is None or not path.exists():
      continue
    with open(path, newline='', encoding='utf-8') as f:
      if sum(1 for _ in csv.reader(f)) > count + 1:
        to_cut.append((path, count))
  if not to_cut:
    return False
  archive_dir = pathlib.Path(archive_dir)
  archive_dir.mkdir(parents=True, exist_ok=True)
  for name in counts:
    if (trial_dir / name).exists():
      shutil.copy2(trial_dir / name, archive_dir / name)
  for path, count in to_cut:
    _truncate_csv(path, count)
  return True


__all__ = [
    'CHECKPOINTS_DIR', 'CheckpointInfo', 'CheckpointMismatchError',
    'CountingIterator', 'DEFAULT_NUM_TO_KEEP', 'TEST_HOLD_FROM_STEP_ENV',
    'TEST_HOLD_MARKER_ENV', 'TrialCheckpointer', 'TrialState', 'key_data',
    'rewind_logs',
]
