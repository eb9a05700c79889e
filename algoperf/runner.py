"""One trial: the timed train/eval loop.

The rules (docs/RULES.md, "Timing rules"): the clock starts after data, model
and optimizer initialisation; ``data_selection``, ``update_params`` and
``prepare_for_eval`` run on the clock; evaluation, logging and checkpointing
run off it. The clock runs through the steps without waiting for the device,
so the device may run ahead of the host as in a bare loop; a reading that
decides something (an eval is due, the budget, the stop, a checkpoint) first
waits for the state the submission returned. The budget is checked after
every step on the unsynced reading, which can only be low, and confirmed with
a synced one; the device is synced at least every ``sync_interval_sec`` so it
never falls far behind. An eval is due when ``eval_period_time_sec`` of wall
time has passed since the previous eval ended (the first step always
evaluates); no eval runs and nothing is recorded once the budget is spent.

A hook that never returns is stopped once the budget and a grace are spent
(``algoperf/watchdog.py``); a trial whose loss is NaN or infinite at an eval
stops there (``diverged``); an exception from a hook ends the trial with a
``SubmissionFailure`` that names the hook and the step.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax

from algoperf import (checkpoints, distributed, fence, layout, prefetch, spec,
                      watchdog)
from algoperf.clock import SubmissionClock, Stopwatch, block_until_ready
from algoperf.submission import Submission
from algoperf.trial_state import EvalResult, TrainStateView, TrialState

DEFAULT_SYNC_INTERVAL_SEC = 1.0
# Eval metrics whose non-finite value means the trial diverged.
# The losses an eval reports (LibriSpeech's is ctc_loss, as the reference's).
_LOSS_KEYS = ('train/loss', 'validation/loss', 'test/loss',
              'train/ctc_loss', 'validation/ctc_loss', 'test/ctc_loss')


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
  imagenet_v2_data_dir: Optional[str] = None
  # The device is synced at least this often, so it never runs far ahead.
  sync_interval_sec: float = DEFAULT_SYNC_INTERVAL_SEC
  # Seconds a hook may run past the budget before the trial is stopped
  # (None: watchdog.default_grace(budget_sec)).
  hook_grace_sec: Optional[float] = None


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
  # One line on why, where the stop reason alone does not say it.
  message: str = ''

  def summary(self) -> Dict[str, Any]:
    """A JSON-serialisable digest (without the per-eval rows)."""
    out = dataclasses.asdict(self)
    del out['eval_results']
    out['num_evals'] = len(self.eval_results)
    return out


class SubmissionFailure(Exception):
  """A submission hook raised: the trial cannot go on.

  ``hook`` and ``global_step`` say where; the original exception is
  ``__cause__`` (with its traceback).
  """

  def __init__(self, hook: str, global_step: int, error: BaseException):
    super().__init__(f'{hook} raised {type(error).__name__} at step '
                     f'{global_step}: {error}')
    self.hook = hook
    self.global_step = global_step
    self.error = error


class Listener:
  """Hooks the runner calls off the clock; the base class does nothing."""

  def on_start(self, workload: spec.Workload, config: TrialConfig) -> None:
    pass

  def on_step(self, global_step: int, train_state: TrainStateView) -> None:
    pass

  def on_eval(self, global_step: int, result: EvalResult,
              train_state: TrainStateView) -> None:
    pass

  def on_end(self, result: TrialResult) -> None:
    pass


_KEYS_PER_BLOCK = 64


@functools.partial(jax.jit, static_argnums=2)
def _key_block(rng: jax.Array, first_step: int,
               num_steps: int) -> Tuple[jax.Array, ...]:
  """The (select, update) keys of ``num_steps`` steps from ``first_step``, flat.

  Step ``s``'s keys are ``split(fold_in(rng, s), 4)[:2]``; the other two
  (prepare-for-eval, eval) are needed only at evals (``_eval_keys``).
  """
  steps = first_step + jax.numpy.arange(num_steps)
  keys = jax.vmap(
      lambda step: jax.random.split(jax.random.fold_in(rng, step), 4))(steps)
  return tuple(keys[i, j] for i in range(num_steps) for j in range(2))


@jax.jit
def _eval_keys(rng: jax.Array, step: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """Step ``step``'s (prepare-for-eval, eval) keys: ``split(fold_in(rng, step), 4)[2:]``."""
  keys = jax.random.split(jax.random.fold_in(rng, step), 4)
  return keys[2], keys[3]


class _StepKeys:
  """Each step's keys: (select, update) for every step, (prepare, eval) at evals.

  The values of ``split(fold_in(rng, global_step), 4)``. The two every step
  needs are computed for 64 steps in one jitted call and handed out as
  separate arrays: deriving them per step costs a dispatch and a device round
  trip (6 dispatches done eagerly), about 0.15 ms of every step on a CPU; per
  block it is ~10 us a step, most of it making the block's 128 arrays.
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
    return self._keys[2 * offset:2 * offset + 2]

  def at_eval(self, global_step: int) -> Tuple[jax.Array, jax.Array]:
    """The (prepare-for-eval, eval) keys of ``global_step`` (off the clock)."""
    return _eval_keys(self._rng, global_step)


def _accepts_keyword(fn: Callable, name: str) -> bool:
  """Whether ``fn`` can be called with the keyword argument ``name``."""
  try:
    parameters = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):
    return False
  return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD
             for p in parameters)


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


def diverged_metric(result: EvalResult) -> Optional[str]:
  """The first eval loss (``train/loss``, ..., ``test/ctc_loss``) that is NaN or inf."""
  for key in _LOSS_KEYS:
    value = result.get(key)
    if value is None:
      continue
    try:
      finite = math.isfinite(float(value))
    except (TypeError, ValueError):
      continue
    if not finite:
      return key
  return None


class _Trial:
  """One trial's loop; ``train_once`` builds and runs it."""

  def __init__(self, workload: spec.Workload, submission: Submission,
               config: TrialConfig, logger: Any, listener: Listener,
               now: Callable[[], float],
               checkpointer: Optional[checkpoints.TrialCheckpointer],
               sync: Callable[[Any], None]):
    self.workload = fence.unwrap(workload)
    # The hooks get one read-only view for the whole trial (the same object
    # every call, so jit caches keyed on it hit).
    self.fenced = fence.fence(self.workload)
    self.submission = submission
    # What crosses the hook boundary: global arrays (jit) or a leading
    # device axis (pmap, the v0.5 contract).
    self.layout = layout.for_api(submission.api)
    self.config = config
    self.logger = logger
    self.listener = listener
    self.now = now
    self.checkpointer = checkpointer
    self.clock = SubmissionClock(now=now, sync_fn=sync)
    self.eval_watch = Stopwatch(now=now)
    self.logging_watch = Stopwatch(now=now)
    self.stop_reason = ''
    self.message = ''
    self.hook: Optional[str] = None  # The hook running now (for the watchdog).
    self.grace = (config.hook_grace_sec if config.hook_grace_sec is not None
                  else watchdog.default_grace(config.budget_sec))
    self.state: Optional[TrialState] = None
    self.view: TrainStateView
    self.global_start = now()
    self.last_eval_end: Optional[float] = None
    self.last_sync = 0.0

  # --- set-up (off the clock) ----------------------------------------------------

  def _set_up(self, dog: watchdog.HookWatchdog) -> None:
    config, workload = self.config, self.workload
    rng = jax.random.PRNGKey(config.rng_seed)
    # A key from a single 32-bit seed has a zero half; splitting once mixes it.
    rng, _ = jax.random.split(rng)
    data_rng, opt_init_rng, model_init_rng, rng = jax.random.split(rng, 4)
    params, model_state = self.layout.to_submission(
        workload.init_model_fn(model_init_rng))
    # Off the clock, but not unbounded: a trial may not hang here either.
    self.hook = 'init_optimizer_state'
    dog.watch(watchdog.wall_deadline(config.budget_sec + self.grace, self.now),
              lambda hook: (f'{hook} did not return within the budget plus '
                            f'{self.grace:.0f} s'))
    optimizer_state = self.submission.init_optimizer_state(
        self.fenced, params, model_state, config.hyperparameters, opt_init_rng)
    dog.watch(None)
    self.hook = None
    params, model_state, optimizer_state = _replicate_unplaced(
        self.layout.settle((params, model_state, optimizer_state)))
    self.state = TrialState(
        params=params, optimizer_state=optimizer_state, model_state=model_state,
        rng_seed=config.rng_seed, rng_key=checkpoints.key_data(rng),
        preemption_count=config.preemption_count)
    self.step_keys = _StepKeys(rng)
    self._restore()
    self._open_input_queue(data_rng, self.state.input_position)
    if self.logger is not None:
      workload.attach_metrics_logger(self.logger)
    self.view = TrainStateView(self.state, self.clock.read)
    # Once per trial: inspecting the signature every step costs ~10 us.
    self.train_state_kwarg = ({'train_state': self.view}
                              if self.submission.needs_train_state else {})

  def _open_input_queue(self, data_rng: jax.Array, start: int) -> None:
    """The train queue from batch ``start`` (a restored position) on.

    Built from the same data key as the first attempt, so it continues that
    attempt's sequence. A workload whose ``_build_input_queue`` takes
    ``start_position`` starts there directly; for any other the consumed
    batches are discarded (a replay, before the clock starts).
    """
    build = self.workload._build_input_queue  # pylint: disable=protected-access
    seekable = _accepts_keyword(build, 'start_position')
    queue = build(data_rng, 'train', data_dir=self.config.data_dir,
                  global_batch_size=self.config.global_batch_size,
                  **({'start_position': start} if seekable else {}))
    # The next batches are built in a background thread while the device trains.
    place = self.layout.batch
    self.prefetcher = prefetch.Prefetcher(
        queue, place=lambda batch: place(prefetch.place_on_device(batch)))
    # The submission's batches are counted: a checkpoint records the position.
    self.input_queue = checkpoints.CountingIterator(
        self.prefetcher, start=start if seekable else 0)
    if not seekable:
      self.input_queue.skip(start)

  def _restore(self) -> None:
    """Continues from ``config.resume_from_step``'s checkpoint, if any.

    The train queue is opened afterwards at the restored input position.
    """
    if self.checkpointer is None or self.config.resume_from_step is None:
      return
    fresh = self.state
    restored = self.checkpointer.restore(
        self.config.resume_from_step, params=fresh.params,
        optimizer_state=fresh.optimizer_state, model_state=fresh.model_state,
        rng_seed=self.config.rng_seed)
    if restored.rng_key != fresh.rng_key:
      raise checkpoints.CheckpointMismatchError(
          f'Checkpoint {self.checkpointer.directory / str(self.config.resume_from_step)} '
          'was written by a version of the runner that derives its random keys '
          'differently; pass --overwrite to start the trial afresh.')
    restored.preemption_count = self.config.preemption_count
    self.state = restored

  def _start(self) -> None:
    """Starts the clock (or continues a restored trial's totals)."""
    state = self.state
    # Initialisation may still be running on the device: it is not timed.
    block_until_ready((state.params, state.model_state, state.optimizer_state,
                       self.step_keys(state.global_step)))
    self.clock.load_state_dict({'accumulated': state.submission_time})
    self.eval_watch.accumulated = state.eval_time
    self.logging_watch.accumulated = state.logging_time
    self.global_start = self.now() - state.total_duration
    state.last_step_end_time = state.last_eval_time = self.now()
    if self.config.resume_from_step is not None:
      # The checkpoint was written right after an eval: the schedule goes on
      # from there instead of evaluating again at once.
      self.last_eval_end = self.now()
      self.stop_reason = self._stop_reason()
    self.clock.start()
    self.last_sync = self.now()

  # --- the loop ------------------------------------------------------------------

  def _step(self) -> None:
    """One ``data_selection`` + ``update_params``, on the running clock."""
    state, config, submission = self.state, self.config, self.submission
    select_rng, update_rng = self.step_keys(state.global_step)
    self.hook = 'data_selection'
    batch = submission.data_selection(
        self.fenced, self.input_queue, state.optimizer_state, state.params,
        state.model_state, config.hyperparameters, state.global_step,
        select_rng)
    self.hook = 'update_params'
    try:
      (state.optimizer_state, state.params,
       state.model_state) = submission.update_params(
           workload=self.fenced,
           current_param_container=state.params,
           current_params_types=self.workload.model_params_types,
           model_state=state.model_state,
           hyperparameters=config.hyperparameters,
           batch=batch,
           loss_type=self.workload.loss_type,
           optimizer_state=state.optimizer_state,
           eval_results=state.eval_results,
           global_step=state.global_step,
           rng=update_rng,
           **self.train_state_kwarg,
       )
    except spec.TrainingCompleteError:
      # The state of the raising call is dropped (it was never assigned).
      state.training_complete = True
    self.hook = None
    del batch
    state.global_step += 1
    if (config.max_global_steps is not None
        and state.global_step >= config.max_global_steps):
      state.training_complete = True
    end = state.last_step_end_time = self.now()
    # Unsynced, the reading can only be low: a spent budget is confirmed
    # after waiting for the device, and the device is waited for at least
    # every sync interval so it never falls far behind.
    reading = self.clock.read()
    if reading >= config.budget_sec or end - self.last_sync >= config.sync_interval_sec:
      reading = self.clock.sync(self._outputs())
      self.last_sync = self.now()
    state.is_time_remaining = reading < config.budget_sec
    self.listener.on_step(state.global_step, self.view)

  def _outputs(self) -> Tuple[Any, Any, Any]:
    state = self.state
    return (state.optimizer_state, state.params, state.model_state)

  def _eval_due(self) -> bool:
    state = self.state
    due = (self.last_eval_end is None
           or state.last_step_end_time - self.last_eval_end
           >= self.workload.eval_period_time_sec
           or state.training_complete)
    # Multi-host: every process follows process 0's clock and stop signal,
    # or one would evaluate (or stop) while another trains, and both hang.
    # One process: a no-op.
    (due, state.is_time_remaining, state.training_complete) = distributed.agree(
        (due, state.is_time_remaining, state.training_complete))
    return due and state.is_time_remaining

  def _pause_clock(self) -> None:
    """Waits for the device and stops the clock; the exact total is recorded."""
    self.clock.pause(self._outputs())
    self.state.submission_time = self.clock.accumulated

  def _prepare_for_eval(self) -> None:
    """The submission's ``prepare_for_eval`` (on the clock), if it has one."""
    prepare = self.submission.prepare_for_eval
    if prepare is None:
      return
    state = self.state
    self.clock.start()
    self.hook = 'prepare_for_eval'
    prep_rng, _ = self.step_keys.at_eval(state.global_step - 1)
    state.optimizer_state, state.params, state.model_state = prepare(
        workload=self.fenced,
        current_param_container=state.params,
        current_params_types=self.workload.model_params_types,
        model_state=state.model_state,
        hyperparameters=self.config.hyperparameters,
        loss_type=self.workload.loss_type,
        optimizer_state=state.optimizer_state,
        eval_results=state.eval_results,
        global_step=state.global_step,
        rng=prep_rng,
    )
    self.hook = None
    self._pause_clock()
    state.is_time_remaining = distributed.agree(  # Process 0's clock.
        state.submission_time < self.config.budget_sec)

  def _evaluate(self) -> None:
    """prepare_for_eval, then (time permitting) an eval, its log row and a checkpoint."""
    state = self.state
    self._pause_clock()
    self._prepare_for_eval()
    # The budget is checked before each eval: nothing is evaluated past it.
    if state.is_time_remaining:
      _, eval_rng = self.step_keys.at_eval(state.global_step - 1)
      with self.eval_watch.measure():
        params, model_state = self.layout.to_workload(
            (state.params, state.model_state))
        result = dict(self.workload.eval_model(
            self.config.eval_batch_size or self.workload.eval_batch_size,
            params, model_state, eval_rng, self.config.data_dir,
            self.config.imagenet_v2_data_dir, state.global_step))
      self.last_eval_end = state.last_eval_time = self.now()
      state.eval_time = self.eval_watch.accumulated
      self._record(result)
      self._save_checkpoint()

  def _record(self, result: EvalResult) -> None:
    """Targets, divergence, the eval row and the listeners (off every clock)."""
    state, workload = self.state, self.workload
    reached = workload.has_reached_validation_target(result)
    if reached and state.time_to_target is None:
      state.time_to_target = state.submission_time
    state.validation_goal_reached |= reached
    state.test_goal_reached |= workload.has_reached_test_target(result)
    result.update({
        'score': state.submission_time,
        'total_duration': self.last_eval_end - self.global_start,
        'accumulated_submission_time': state.submission_time,
        'accumulated_eval_time': state.eval_time,
        'accumulated_logging_time': state.logging_time,
    })
    state.eval_results.append((state.global_step, result))
    bad = diverged_metric(result)
    if bad is not None and not self.stop_reason:
      self.stop_reason = 'diverged'
      self.message = (f'{bad} is {float(result[bad])} at step '
                      f'{state.global_step}: the trial cannot reach its target')
    with self.logging_watch.measure():
      if self.logger is not None:
        self.logger.append_scalar_metrics(
            result, global_step=state.global_step,
            preemption_count=self.config.preemption_count, is_eval=True)
      self.listener.on_eval(state.global_step, result, self.view)
    state.logging_time = self.logging_watch.accumulated

  def _save_checkpoint(self) -> None:
    """Writes the trial's state (off every clock: it counts as no kind of time)."""
    if self.checkpointer is None or not self.checkpointer.saving:
      return
    state, logger = self.state, self.logger
    state.log_rows = None
    if logger is not None and getattr(logger, 'enabled', True):
      state.log_rows = {'measurements': logger.num_rows,
                        'eval_measurements': logger.num_eval_rows}
    state.input_position = self.input_queue.consumed
    state.total_duration = self.now() - self.global_start
    self.checkpointer.save(state)

  def _stop_reason(self) -> str:
    """Why the trial stops now ('' while it goes on)."""
    state = self.state
    if self.stop_reason:
      return self.stop_reason
    if not state.is_time_remaining:
      return 'budget'
    if state.validation_goal_reached and state.test_goal_reached:
      return 'targets'
    if state.training_complete:
      max_steps = self.config.max_global_steps
      reached_max = max_steps is not None and state.global_step >= max_steps
      return 'max_global_steps' if reached_max else 'training_complete'
    return ''

  def _remaining(self) -> Optional[float]:
    """Seconds until a running hook is stopped (None while the clock is paused)."""
    if not self.clock.running:
      return None
    return self.config.budget_sec + self.grace - self.clock.read()

  def _describe_timeout(self, hook: str) -> str:
    return (f'{hook} did not return: the trial was stopped {self.grace:.0f} s '
            f'after its budget of {self.config.budget_sec:.0f} s ran out')

  def run(self, on_stuck: Optional[Callable[[str], None]] = None) -> TrialResult:
    """Trains until a stop condition; returns how the trial ended."""
    dog = watchdog.HookWatchdog(lambda: self.hook, on_stuck=on_stuck,
                                hard_grace_sec=max(5.0, self.grace))
    self.prefetcher = None
    with dog:
      try:
        try:
          self._set_up(dog)
          self.listener.on_start(self.workload, self.config)
          self._start()
          dog.watch(self._remaining, self._describe_timeout)
          while not self.stop_reason:
            self._step()
            if self._eval_due():
              self._evaluate()  # Leaves the clock paused.
            self.stop_reason = self._stop_reason()
            if not self.stop_reason and not self.clock.running:
              self.clock.start()
              self.last_sync = self.now()
              dog.poke()
          self._stop_clock(wait=True)
          dog.disarm()
        except watchdog.HookTimeout as e:
          # The hook was interrupted: its outputs never came, nothing to wait on.
          self._stop_clock(wait=False)
          self.stop_reason, self.message = 'budget', e.message
          if self.state is not None:
            self.state.is_time_remaining = False
        except (KeyboardInterrupt, SubmissionFailure):
          raise
        except Exception as e:  # pylint: disable=broad-except
          if self.hook is None:
            raise  # The harness's own error: the traceback is the report.
          raise SubmissionFailure(self.hook, self._step_or_zero(), e) from e
      finally:
        dog.disarm()
        if self.prefetcher is not None:
          self.prefetcher.close()  # No thread outlives the trial, crashed or not.
        # A crash or Ctrl-C must not lose the rows buffered since the last eval.
        if self.logger is not None:
          self.logger.flush()
    return self._finish()

  def _stop_clock(self, wait: bool) -> None:
    """Pauses the clock for good (after waiting for the device if ``wait``)."""
    if self.clock.running:
      self.clock.pause(self._outputs() if wait else None)
      self.state.submission_time = self.clock.accumulated

  def _step_or_zero(self) -> int:
    return self.state.global_step if self.state is not None else 0

  def _finish(self) -> TrialResult:
    state = self.state
    if state is None:  # Stopped in init_optimizer_state: nothing trained.
      state = self.state = TrialState(
          params=None, optimizer_state=None, model_state=None,
          rng_seed=self.config.rng_seed, rng_key=[],
          preemption_count=self.config.preemption_count,
          is_time_remaining=False)
    result = TrialResult(
        stop_reason=self.stop_reason,
        global_step=state.global_step,
        accumulated_submission_time=state.submission_time,
        accumulated_eval_time=self.eval_watch.accumulated,
        accumulated_logging_time=self.logging_watch.accumulated,
        total_duration=self.now() - self.global_start,
        validation_goal_reached=state.validation_goal_reached,
        test_goal_reached=state.test_goal_reached,
        time_to_validation_target=state.time_to_target,
        eval_results=state.eval_results,
        message=self.message,
    )
    if self.logger is not None:
      last_eval_step = state.eval_results[-1][0] if state.eval_results else None
      # The last eval row already holds the final time when nothing ran after it.
      if last_eval_step != state.global_step:
        self.logger.append_scalar_metrics(
            {'score': state.submission_time}, global_step=state.global_step,
            preemption_count=self.config.preemption_count)
      self.logger.finish()
    self.listener.on_end(result)
    return result


def train_once(
    workload: spec.Workload,
    submission: Submission,
    config: TrialConfig,
    *,
    logger: Any = None,
    listener: Optional[Listener] = None,
    now: Callable[[], float] = time.perf_counter,
    checkpointer: Optional[checkpoints.TrialCheckpointer] = None,
    sync: Callable[[Any], None] = block_until_ready,
    on_stuck: Optional[Callable[[str], None]] = None,
) -> TrialResult:
  """Trains ``workload`` with ``submission`` until a stop condition; returns how it ended.

  ``logger`` (a ``recorder.MetricsLogger`` or None) receives one row per eval
  and is attached to the workload as ``workload.metrics_logger``.

  The submission's hooks get one ``fence.FencedWorkload`` view of the workload
  for the whole trial: it refuses what the rules forbid (input pipelines,
  evals, data). The runner itself uses the workload for the input queue and
  evals.

  ``checkpointer`` (a ``checkpoints.TrialCheckpointer`` or None) saves the
  trial's state after each eval, off the clock; with
  ``config.resume_from_step`` set, the trial continues from that checkpoint.

  ``now`` and ``sync`` (wait for the device) are the clock's; tests replace
  them. ``on_stuck(message)`` runs, from another thread, just before the
  process is ended because a hook is stuck in native code past its deadline.

  Raises:
    SubmissionFailure: a hook raised (the original error is its cause).
  """
  trial = _Trial(workload, submission, config, logger, listener or Listener(),
                 now, checkpointer, sync)
  return trial.run(on_stuck=on_stuck)


__all__ = ['DEFAULT_SYNC_INTERVAL_SEC', 'Listener', 'SubmissionFailure',
           'TrialConfig', 'TrialResult', 'diverged_metric', 'train_once']
