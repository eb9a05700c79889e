"""One trial: the timed train/eval loop.

The rules (DESIGN.md, "Timing rules"): the clock starts after data, model and
optimizer initialisation; ``data_selection``, ``update_params`` and
``prepare_for_eval`` run on the clock; evaluation, logging and checkpointing
run off it. Every clock reading waits for the device work the submission
returned. An eval is due when ``eval_period_time_sec`` of wall time has passed
since the previous eval ended (the first step always evaluates); no eval runs
and nothing is recorded once the budget is spent.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import types
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax

from algoperf import checkpoints, distributed, fence, prefetch, spec
from algoperf.clock import SubmissionClock, Stopwatch
from algoperf.submission import Submission

EvalResult = Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TrialConfig:
  """What one trial needs besides the workload and the submission."""

  global_batch_size: int
  hyperparameters: Optional[spec.Hyperparameters]
  rng_seed: int
  budget_sec: float
  data_dir: Optional[str] = None
  eval_batch_size: Optional[int] = None
  max_global_steps: Optional[int] = None
  preemption_count: int = 0
  # The step of the checkpoint to continue from (None: start at step 0).
  resume_from_step: Optional[int] = None


@dataclasses.dataclass
class TrialResult:
  """How a trial ended."""

  stop_reason: str
  global_step: int
  accumulated_submission_time: float
  accumulated_eval_time: float
  accumulated_logging_time: float
  total_duration: float
  validation_goal_reached: bool
  test_goal_reached: bool
  time_to_validation_target: Optional[float]
  eval_results: List[Tuple[int, EvalResult]]

  def summary(self) -> Dict[str, Any]:
    """A JSON-serialisable digest (without the per-eval rows)."""
    out = dataclasses.asdict(self)
    del out['eval_results']
    out['num_evals'] = len(self.eval_results)
    return out


class Listener:
  """Hooks the runner calls off the clock; the base class does nothing."""

  def on_start(self, workload: spec.Workload, config: TrialConfig) -> None:
    pass

  def on_step(self, global_step: int, train_state: Dict[str, Any]) -> None:
    pass

  def on_eval(self, global_step: int, result: EvalResult,
              train_state: Dict[str, Any]) -> None:
    pass

  def on_end(self, result: TrialResult) -> None:
    pass


_KEYS_PER_BLOCK = 64


@functools.partial(jax.jit, static_argnums=2)
def _key_block(rng: jax.Array, first_step: int,
               num_steps: int) -> Tuple[jax.Array, ...]:
  """``split(fold_in(rng, s), 4)`` for ``num_steps`` steps from ``first_step``, flat."""
  steps = first_step + jax.numpy.arange(num_steps)
  keys = jax.vmap(
      lambda step: jax.random.split(jax.random.fold_in(rng, step), 4))(steps)
  return tuple(keys[i, j] for i in range(num_steps) for j in range(4))


class _StepKeys:
  """Each step's (select, update, prepare-for-eval, eval) keys.

  The values of ``split(fold_in(rng, global_step), 4)``, computed for 64 steps
  in one jitted call and handed out as separate arrays: deriving them per step
  costs a dispatch and a device round trip (6 dispatches done eagerly), about
  0.15 ms of every step on a CPU, which the device spends idle; per block
  it is ~7 us a step.
  """

  def __init__(self, rng: jax.Array):
    self._rng = rng
    self._first = 0
    self._keys: Tuple[jax.Array, ...] = ()

  def __call__(self, global_step: int) -> Tuple[jax.Array, ...]:
    offset = global_step - self._first
    if not self._keys or not 0 <= offset < _KEYS_PER_BLOCK:
      self._first, offset = global_step, 0
      self._keys = _key_block(self._rng, global_step, _KEYS_PER_BLOCK)
    return self._keys[4 * offset:4 * offset + 4]


def _replicate_unplaced(tree: Any) -> Any:
  """Replicates the arrays of ``tree`` that were never explicitly placed.

  A submission's jitted step returns replicated (committed) arrays; if the
  state it starts from is uncommitted (e.g. ``optax`` ``init`` on
  ``jnp.zeros``), the second step sees a different placement and compiles
  again, on the clock. Placing those arrays once, before the clock starts,
  changes no value. Arrays a submission placed itself are left alone.
  """
  from algoperf import jax_sharding_utils  # pylint: disable=import-outside-toplevel

  sharding = jax_sharding_utils.get_replicate_sharding()

  def place(leaf):
    if isinstance(leaf, jax.Array) and not leaf.committed:
      return jax.device_put(leaf, sharding)
    return leaf

  return jax.tree.map(place, tree)


# --- checkpoints (algoperf/checkpoints.py does the saving and reading) ------------


def _restore_checkpoint(
    checkpointer: Optional[checkpoints.TrialCheckpointer], config: TrialConfig,
    rng: jax.Array, input_queue: checkpoints.CountingIterator, params: Any,
    optimizer_state: Any, model_state: Any,
) -> Optional[checkpoints.TrialState]:
  """Reads ``config.resume_from_step`` into the fresh state and replays the input.

  Runs before the clock starts. The train queue was rebuilt from the same
  data key, so discarding the batches consumed before the checkpoint puts it
  where it was (a deterministic replay).
  """
  if checkpointer is None or config.resume_from_step is None:
    return None
  restored = checkpointer.restore(
      config.resume_from_step, params=params, optimizer_state=optimizer_state,
      model_state=model_state, rng_seed=config.rng_seed)
  if restored.rng_key != checkpoints.key_data(rng):
    raise checkpoints.CheckpointMismatchError(
        f'Checkpoint {checkpointer.directory / str(config.resume_from_step)} '
        'was written by a version of the runner that derives its random keys '
        'differently; pass --overwrite to start the trial afresh.')
  input_queue.skip(restored.input_position)
  return restored


def _save_checkpoint(
    checkpointer: Optional[checkpoints.TrialCheckpointer], *, global_step: int,
    params: Any, optimizer_state: Any, model_state: Any, config: TrialConfig,
    rng: jax.Array, clock: SubmissionClock, eval_watch: Stopwatch,
    logging_watch: Stopwatch, total_duration: float,
    eval_results: List[Tuple[int, EvalResult]], time_to_target: Optional[float],
    train_state: Dict[str, Any], input_position: int, logger: Any,
) -> None:
  """Writes the trial's state (off every clock: it counts as no kind of time)."""
  if checkpointer is None or not checkpointer.saving:
    return
  log_rows = None
  if logger is not None and getattr(logger, 'enabled', True):
    log_rows = {'measurements': logger.num_rows,
                'eval_measurements': logger.num_eval_rows}
  checkpointer.save(checkpoints.TrialState(
      global_step=global_step,
      params=params,
      optimizer_state=optimizer_state,
      model_state=model_state,
      rng_seed=config.rng_seed,
      rng_key=checkpoints.key_data(rng),
      clock=clock.state_dict(),
      accumulated_eval_time=eval_watch.accumulated,
      accumulated_logging_time=logging_watch.accumulated,
      total_duration=total_duration,
      eval_results=eval_results,
      time_to_target=time_to_target,
      train_state={k: train_state[k] for k in (
          'validation_goal_reached', 'test_goal_reached', 'is_time_remaining',
          'training_complete')},
      preemption_count=config.preemption_count,
      input_position=input_position,
      log_rows=log_rows,
  ))


def _stop_reason(train_state: Dict[str, Any], global_step: int,
                 config: TrialConfig) -> str:
  """Why the trial stops after this step ('' while it goes on)."""
  if not train_state['is_time_remaining']:
    return 'budget'
  if train_state['validation_goal_reached'] and train_state['test_goal_reached']:
    return 'targets'
  if train_state['training_complete']:
    reached_max = (config.max_global_steps is not None
                   and global_step >= config.max_global_steps)
    return 'max_global_steps' if reached_max else 'training_complete'
  return ''


def _record_eval(logger: Any, result: EvalResult, global_step: int,
                 preemption_count: int) -> None:
  if logger is not None:
    logger.append_scalar_metrics(result, global_step=global_step,
                                 preemption_count=preemption_count,
                                 is_eval=True)


def train_once(
    workload: spec.Workload,
    submission: Submission,
    config: TrialConfig,
    *,
    logger: Any = None,
    listener: Optional[Listener] = None,
    now: Callable[[], float] = time.perf_counter,
    checkpointer: Optional[checkpoints.TrialCheckpointer] = None,
) -> TrialResult:
  """Trains ``workload`` with ``submission`` until a stop condition; returns how it ended.

  ``logger`` (a ``recorder.MetricsLogger`` or None) receives one row per eval
  and is attached to the workload as ``workload.metrics_logger``.

  The submission's hooks get one ``fence.FencedWorkload`` view of the workload
  for the whole trial (the same object every call, so jit caches keyed on it
  hit): it refuses what the rules forbid (input pipelines, evals, data). The
  runner itself uses the workload for the input queue and evals.

  ``checkpointer`` (a ``checkpoints.TrialCheckpointer`` or None) saves the
  trial's state after each eval, off the clock; with
  ``config.resume_from_step`` set, the trial continues from that checkpoint.
  """
  listener = listener or Listener()
  workload = fence.unwrap(workload)
  fenced = fence.fence(workload)
  rng = jax.random.PRNGKey(config.rng_seed)
  # A key from a single 32-bit seed has a zero half; splitting once mixes it.
  rng, _ = jax.random.split(rng)
  data_rng, opt_init_rng, model_init_rng, rng = jax.random.split(rng, 4)

  # The next batches are built in a background thread while the device trains.
  input_queue = prefetcher = prefetch.Prefetcher(workload._build_input_queue(  # pylint: disable=protected-access
      data_rng, 'train', data_dir=config.data_dir,
      global_batch_size=config.global_batch_size))
  params, model_state = workload.init_model_fn(model_init_rng)
  optimizer_state = submission.init_optimizer_state(
      fenced, params, model_state, config.hyperparameters, opt_init_rng)
  params, model_state, optimizer_state = _replicate_unplaced(
      (params, model_state, optimizer_state))
  # The submission's batches are counted: a checkpoint records the position.
  input_queue = checkpoints.CountingIterator(input_queue)
  restored = _restore_checkpoint(checkpointer, config, rng, input_queue, params,
                                 optimizer_state, model_state)
  if restored is not None:
    params, optimizer_state, model_state = (
        restored.params, restored.optimizer_state, restored.model_state)
  if logger is not None:
    workload.attach_metrics_logger(logger)

  train_state: Dict[str, Any] = {
      'validation_goal_reached': False,
      'test_goal_reached': False,
      'is_time_remaining': True,
      'last_eval_time': 0.0,
      'training_complete': False,
      'accumulated_submission_time': 0.0,
      'accumulated_eval_time': 0.0,
      'accumulated_logging_time': 0.0,
      'last_step_end_time': None,
  }
  read_only_train_state = types.MappingProxyType(train_state)
  # Once per trial: inspecting the signature every step costs ~10 us.
  train_state_kwarg = ({'train_state': read_only_train_state}
                       if submission.needs_train_state else {})
  step_key_blocks = _StepKeys(rng)
  eval_results: List[Tuple[int, EvalResult]] = []
  eval_batch_size = config.eval_batch_size or workload.eval_batch_size
  clock = SubmissionClock(now=now)
  eval_watch = Stopwatch(now=now)
  logging_watch = Stopwatch(now=now)
  global_step = 0
  last_eval_end: Optional[float] = None
  time_to_target: Optional[float] = None
  stop_reason = ''

  listener.on_start(workload, config)
  # Initialisation may still be running on the device: it is not timed.
  clock.sync((params, model_state, optimizer_state))
  global_start = now()
  train_state['last_step_end_time'] = global_start
  if restored is not None:
    # The trial goes on from its saved totals; the downtime counts nowhere.
    global_step = restored.global_step
    clock.load_state_dict(restored.clock)
    eval_watch.accumulated = restored.accumulated_eval_time
    logging_watch.accumulated = restored.accumulated_logging_time
    eval_results.extend(restored.eval_results)
    time_to_target = restored.time_to_target
    train_state.update(restored.train_state)
    train_state.update(
        accumulated_submission_time=clock.accumulated,
        accumulated_eval_time=eval_watch.accumulated,
        accumulated_logging_time=logging_watch.accumulated)
    # The checkpoint was written right after an eval: the schedule goes on
    # from there instead of evaluating again at once.
    last_eval_end = global_start
    train_state['last_eval_time'] = global_start
    global_start -= restored.total_duration
    stop_reason = _stop_reason(train_state, global_step, config)

  try:
    while not stop_reason:
      step_keys = step_key_blocks(global_step)
      select_rng, update_rng, prep_rng, eval_rng = step_keys
      clock.resume(pending=step_keys)
      batch = submission.data_selection(
          fenced, input_queue, optimizer_state, params, model_state,
          config.hyperparameters, global_step, select_rng)
      try:
        optimizer_state, params, model_state = submission.update_params(
            workload=fenced,
            current_param_container=params,
            current_params_types=workload.model_params_types,
            model_state=model_state,
            hyperparameters=config.hyperparameters,
            batch=batch,
            loss_type=workload.loss_type,
            optimizer_state=optimizer_state,
            eval_results=eval_results,
            global_step=global_step,
            rng=update_rng,
            **train_state_kwarg,
        )
      except spec.TrainingCompleteError:
        # The state of the raising call is dropped (we never assigned it).
        train_state['training_complete'] = True
      del batch
      clock.pause((optimizer_state, params, model_state))
      global_step += 1
      if config.max_global_steps is not None and (
          global_step >= config.max_global_steps):
        train_state['training_complete'] = True

      step_end = now()
      train_state['accumulated_submission_time'] = clock.accumulated
      train_state['is_time_remaining'] = clock.accumulated < config.budget_sec
      listener.on_step(global_step, train_state)

      eval_due = (last_eval_end is None
                  or step_end - last_eval_end >= workload.eval_period_time_sec
                  or train_state['training_complete'])
      # Multi-host: every process follows process 0's clock and stop signal,
      # or one would evaluate (or stop) while another trains, and both hang.
      # One process: a no-op.
      decisions = distributed.agree((eval_due, train_state['is_time_remaining'],
                                     train_state['training_complete']))
      (eval_due, train_state['is_time_remaining'],
       train_state['training_complete']) = decisions
      if eval_due and train_state['is_time_remaining']:
        if submission.prepare_for_eval is not None:
          clock.resume()
          optimizer_state, params, model_state = submission.prepare_for_eval(
              workload=fenced,
              current_param_container=params,
              current_params_types=workload.model_params_types,
              model_state=model_state,
              hyperparameters=config.hyperparameters,
              loss_type=workload.loss_type,
              optimizer_state=optimizer_state,
              eval_results=eval_results,
              global_step=global_step,
              rng=prep_rng,
          )
          clock.pause((optimizer_state, params, model_state))
          train_state['accumulated_submission_time'] = clock.accumulated
          train_state['is_time_remaining'] = distributed.agree(  # Process 0's clock.
              clock.accumulated < config.budget_sec)

        # The budget is checked before each eval: nothing is evaluated past it.
        if train_state['is_time_remaining']:
          with eval_watch.measure():
            result = dict(workload.eval_model(
                eval_batch_size, params, model_state, eval_rng, config.data_dir,
                None, global_step))
          last_eval_end = now()
          train_state['last_eval_time'] = last_eval_end
          train_state['accumulated_eval_time'] = eval_watch.accumulated
          val_hit = workload.has_reached_validation_target(result)
          if val_hit and time_to_target is None:
            time_to_target = clock.accumulated
          train_state['validation_goal_reached'] |= val_hit
          train_state['test_goal_reached'] |= workload.has_reached_test_target(
              result)
          result.update({
              'score': clock.accumulated,
              'total_duration': last_eval_end - global_start,
              'accumulated_submission_time': clock.accumulated,
              'accumulated_eval_time': eval_watch.accumulated,
              'accumulated_logging_time': logging_watch.accumulated,
          })
          eval_results.append((global_step, result))
          with logging_watch.measure():
            _record_eval(logger, result, global_step, config.preemption_count)
            listener.on_eval(global_step, result, train_state)
          train_state['accumulated_logging_time'] = logging_watch.accumulated
          _save_checkpoint(
              checkpointer, global_step=global_step, params=params,
              optimizer_state=optimizer_state, model_state=model_state,
              config=config, rng=rng, clock=clock, eval_watch=eval_watch,
              logging_watch=logging_watch, total_duration=now() - global_start,
              eval_results=eval_results, time_to_target=time_to_target,
              train_state=train_state, input_position=input_queue.consumed,
              logger=logger)

      stop_reason = _stop_reason(train_state, global_step, config)
      # Everything since the step ended (eval, logging, progress) stays off the clock.
      train_state['last_step_end_time'] = now()

  finally:
    prefetcher.close()  # No thread outlives the trial, crashed or not.
    # A crash or Ctrl-C must not lose the rows buffered since the last eval.
    if logger is not None:
      logger.flush()

  result = TrialResult(
      stop_reason=stop_reason,
      global_step=global_step,
      accumulated_submission_time=clock.accumulated,
      accumulated_eval_time=eval_watch.accumulated,
      accumulated_logging_time=logging_watch.accumulated,
      total_duration=now() - global_start,
      validation_goal_reached=train_state['validation_goal_reached'],
      test_goal_reached=train_state['test_goal_reached'],
      time_to_validation_target=time_to_target,
      eval_results=eval_results,
  )
  if logger is not None:
    logger.append_scalar_metrics({'score': clock.accumulated},
                                 global_step=global_step,
                                 preemption_count=config.preemption_count)
    logger.finish()
  listener.on_end(result)
  return result
