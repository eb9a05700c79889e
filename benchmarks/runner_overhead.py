"""What the harness costs: `algoperf run`'s training loop against a bare jitted loop.

Both sides train the same workload (same model through ``workload.model_fn`` and
``workload.loss_fn``, same data iterator ``workload._build_input_queue``) with
the same optimizer: the NAdamW baseline, built by ``submissions/nadamw``'s own
``init_optimizer_state`` with the first point of its search space.

(a) bare: a jitted step written here (loss, gradient, the gradient norm the
    submission also computes, optimizer update), called in a plain Python loop
    with no per-step device sync. Measured twice: taking batches straight from
    the iterator (the plain loop a user would write), and through the same
    background prefetcher the runner uses (``algoperf/prefetch.py``), which
    isolates the harness's own cost: the ratio to that one is the overhead.
(b) runner: ``runner.train_once`` with the real submission, a metrics logger
    writing CSVs into a temporary folder and the listeners (first-step timer,
    progress printer), as ``algoperf run`` wires them (minus folders, meta
    data and checkpoints, which happen before the first step or at evals).

Each repeat runs ``--steps`` timed steps of each side, in this one process,
in an order that rotates from one repeat to the next. Step 1 (compilation, and the runner's first eval) is not
timed. Reaching the targets does not stop the runner here (every run trains
``steps + 1`` steps). Evals are not switched off: the runner's time between its first eval
and the end of step ``steps + 1`` counts, minus the time of any eval that falls
inside it (so "steps/s" is training steps only, each with the runner's
per-step work: random keys, clock syncs, data selection, bookkeeping,
listeners).

A last, profiled runner run splits the runner's per-step wall time into data
(``data_selection``, i.e. taking a prefetched batch), update (the
``update_params`` call: dispatch and the submission's Python; XLA:CPU may
also run a small step inside the call), clock sync (waiting for the device in
the clock's syncs: at least once a second, and when the budget might be
spent), logging (the progress listener and the submission's metrics rows,
with the device wait of their float() every 100 steps) and other (the
runner's own bookkeeping: random keys, train state, stop checks). The runner
does not wait for the device after each step, so when the device is the
bottleneck the host's wait for a full queue lands in whichever of these
phases blocks first: then the split says where the host waited, and only the
whole step time is the cost. The profiling adds two ``perf_counter`` calls
per phase, about a microsecond per step; its steps/s is printed next to the
others to show that.

Usage (run it on an otherwise idle machine; it prints a table):
  python benchmarks/runner_overhead.py [--workload fashion_mnist] [--steps 300]
      [--repeats 5] [--json PATH] [--synthetic_data]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
  sys.path.insert(0, str(_REPO))

import jax  # pylint: disable=wrong-import-position
import optax  # pylint: disable=wrong-import-position

import workloads  # pylint: disable=wrong-import-position
from algoperf import (clock, jax_sharding_utils, prefetch, progress,  # pylint: disable=wrong-import-position
                      recorder, runner, spec, startup, submission_utils,
                      tuning)
from algoperf.submission import Submission, load_submission  # pylint: disable=wrong-import-position

_SUBMISSION = _REPO / 'submissions' / 'nadamw'
PHASES = ('data', 'update', 'clock sync', 'logging', 'other')


# --- (a) the bare loop ----------------------------------------------------------


def _bare_step(workload, opt_update_fn, params, optimizer_state, model_state,
               batch, rng, step, label_smoothing, dropout_rate):
  """One NAdamW step, the computation of ``submission_utils.train_step``."""
  rng = jax.random.fold_in(rng, step)
  loss, grad, new_state = submission_utils.mean_loss_and_grad(
      workload, params, model_state, batch, rng, label_smoothing, dropout_rate)
  grad_norm = optax.tree.norm(grad)  # The submission logs it; same work here.
  updates, optimizer_state = opt_update_fn(grad, optimizer_state, params)
  params = optax.apply_updates(params, updates)
  return params, optimizer_state, new_state, loss, grad_norm


_jitted_bare_step = jax.jit(_bare_step, static_argnums=(0, 1),
                            donate_argnums=(2, 3, 4))


def run_bare(workload: spec.Workload, submission: Submission,
             hyperparameters: Any, batch_size: int, steps: int,
             seed: int, prefetched: bool = False) -> float:
  """Steps per second of ``steps`` bare steps after a compiled first one."""
  rng = jax.random.PRNGKey(seed)
  data_rng, init_rng, opt_rng, step_rng = jax.random.split(rng, 4)
  batches = workload._build_input_queue(  # pylint: disable=protected-access
      data_rng, 'train', None, global_batch_size=batch_size)
  if prefetched:
    batches = prefetch.Prefetcher(batches)
  params, model_state = workload.init_model_fn(init_rng)
  optimizer_state, opt_update_fn = submission.init_optimizer_state(
      workload, params, model_state, hyperparameters, opt_rng)
  # Committed from the start, so step 2 does not compile again.
  optimizer_state = jax_sharding_utils.replicate(optimizer_state)
  extra = (hyperparameters.label_smoothing, hyperparameters.dropout_rate)

  def step(state, i):
    return _jitted_bare_step(workload, opt_update_fn, *state[:3],
                             next(batches), step_rng, i, *extra)

  try:
    state = step((params, optimizer_state, model_state), 0)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for i in range(1, steps + 1):
      state = step(state, i)
    jax.block_until_ready(state)
    return steps / (time.perf_counter() - start)
  finally:
    if prefetched:
      batches.close()


# --- (b) the runner -------------------------------------------------------------


class _Phases:
  """Accumulates perf_counter time per phase while ``active``.

  A phase inside another (the submission's metrics logging inside
  ``update_params``) counts for itself only, not for the outer phase.
  """

  def __init__(self):
    self.active = False
    self.seconds = dict.fromkeys(PHASES, 0.0)
    self._inner_seconds: List[float] = []  # Per open phase: its nested time.

  def timed(self, phase: str, fn: Callable) -> Callable:
    @functools.wraps(fn)  # Keeps the signature: the runner inspects it.
    def wrapper(*args, **kwargs):
      start = time.perf_counter()
      self._inner_seconds.append(0.0)
      try:
        return fn(*args, **kwargs)
      finally:
        elapsed = time.perf_counter() - start
        nested = self._inner_seconds.pop()
        if self.active:
          self.seconds[phase] += elapsed - nested
        if self._inner_seconds:
          self._inner_seconds[-1] += elapsed
    return wrapper


class _Window(runner.Listener):
  """Forwards to the progress printer; marks the timed window of steps 2..N+1.

  The window opens when the step-1 eval (and its logging) is done and closes
  when step N+1 has ended; evals inside it are measured and left out.
  """

  def __init__(self, inner: runner.Listener, last_step: int,
               phases: Optional[_Phases]):
    self._inner = inner
    self._last_step = last_step
    self._phases = phases
    self._step_end: Dict[int, float] = {}
    self._phases_at_step_end: Dict[str, float] = {}
    self.start = self.end = 0.0
    self.eval_seconds = 0.0
    if phases is not None:
      self._inner_on_step = phases.timed('logging', inner.on_step)
    else:
      self._inner_on_step = inner.on_step

  def on_start(self, workload, config):
    self._inner.on_start(workload, config)

  def on_step(self, global_step, train_state):
    now = time.perf_counter()
    self._step_end[global_step] = now
    if self._phases is not None:
      self._phases_at_step_end = dict(self._phases.seconds)
    if global_step == self._last_step:
      self.end = now
      if self._phases is not None:
        self._phases.active = False
    self._inner_on_step(global_step, train_state)

  def on_eval(self, global_step, result, train_state):
    self._inner.on_eval(global_step, result, train_state)
    now = time.perf_counter()
    if global_step == 1:
      self.start = now
      if self._phases is not None:
        self._phases.active = True
    elif global_step < self._last_step:
      self.eval_seconds += now - self._step_end[global_step]
      if self._phases is not None:
        # What ran since the step ended (eval, its logging) is left out.
        self._phases.seconds = dict(self._phases_at_step_end)

  def on_end(self, result):
    self._inner.on_end(result)


def run_runner(workload: spec.Workload, submission: Submission,
               hyperparameters: Any, batch_size: int, steps: int, seed: int,
               profile: bool = False) -> Tuple[float, Optional[Dict[str, float]]]:
  """Steps per second of ``steps`` runner steps; with ``profile``, seconds per phase."""
  phases = _Phases() if profile else None
  restore = submission_utils.log_train_metrics
  sync = clock.block_until_ready
  if phases is not None:
    # NadamW logs loss and grad norm every 100 steps; float() on them waits
    # for the device, which is logging's cost, not the update's.
    submission_utils.log_train_metrics = phases.timed(
        'logging', submission_utils.log_train_metrics)
    submission = dataclasses.replace(
        submission,
        data_selection=phases.timed('data', submission.data_selection),
        update_params=phases.timed('update', submission.update_params))
    sync = phases.timed('clock sync', clock.block_until_ready)
  config = runner.TrialConfig(
      global_batch_size=batch_size, hyperparameters=hyperparameters,
      rng_seed=seed, budget_sec=1e9, eval_batch_size=workload.eval_batch_size,
      max_global_steps=steps + 1)
  listener = startup.FirstStepTimer(
      progress.ProgressPrinter(stream=io.StringIO()), stream=io.StringIO())
  window = _Window(listener, steps + 1, phases)
  try:
    with tempfile.TemporaryDirectory() as folder:
      logger = recorder.MetricsLogger(Path(folder))
      if phases is not None:
        # The submission's loss/grad-norm rows, written from update_params.
        logger.append_scalar_metrics = phases.timed(
            'logging', logger.append_scalar_metrics)
      result = runner.train_once(workload, submission, config, logger=logger,
                                 listener=window, sync=sync)
  finally:
    submission_utils.log_train_metrics = restore
  if not window.end:
    raise RuntimeError(f'The runner stopped before step {steps + 1}: '
                       f'{result.stop_reason!r}.')
  seconds = window.end - window.start - window.eval_seconds
  split = None
  if phases is not None:
    split = dict(phases.seconds)
    split['other'] = seconds - sum(split.values())
    split = {k: v / steps for k, v in split.items()}
  return steps / seconds, split


# --- driver ---------------------------------------------------------------------


def measure(workload_name: str, steps: int, repeats: int,
            synthetic: bool = False, profile: bool = True,
            log: Callable[[str], None] = print) -> Dict[str, Any]:
  """Runs the comparison; returns every figure (what ``--json`` writes)."""
  workload = workloads.get_workload(workload_name, synthetic=synthetic)
  # Every run trains exactly steps + 1 steps, even past the targets.
  workload.has_reached_validation_target = lambda result: False
  workload.has_reached_test_target = lambda result: False
  submission = load_submission(_SUBMISSION)
  space = tuning.load_search_space(_SUBMISSION / 'tuning_search_space.json')
  hyperparameters = tuning.generate_points(space, 1)[0]
  batch_size = submission.get_batch_size(
      workloads.get_base_workload_name(workload_name))
  args = (workload, submission, hyperparameters, batch_size, steps)
  # Untimed warm-up of both: data loading, eval compilation, caches.
  run_bare(*args, seed=0)
  run_bare(*args, seed=0, prefetched=True)
  run_runner(*args, seed=0)
  bare: List[float] = []
  bare_prefetched: List[float] = []
  ran: List[float] = []
  sides = (
      (bare, lambda seed: run_bare(*args, seed=seed)),
      (bare_prefetched, lambda seed: run_bare(*args, seed=seed, prefetched=True)),
      (ran, lambda seed: run_runner(*args, seed=seed)[0]),
  )
  for i in range(repeats):
    # The order rotates, so that no side always runs first or last (the
    # machine's speed drifts over seconds).
    for k in range(len(sides)):
      results, measure_side = sides[(i + k) % len(sides)]
      results.append(measure_side(i + 1))
    log(f'  repeat {i + 1}: bare {bare[-1]:8.2f}   bare+prefetch '
        f'{bare_prefetched[-1]:8.2f}   runner {ran[-1]:8.2f} steps/s   ratios '
        f'{ran[-1] / bare[-1]:.4f} / {ran[-1] / bare_prefetched[-1]:.4f}')
  out: Dict[str, Any] = {
      'workload': workload_name,
      'synthetic_data': synthetic,
      'steps': steps,
      'repeats': repeats,
      'batch_size': batch_size,
      'devices': [str(d) for d in jax.devices()],
      'bare_steps_per_sec': bare,
      'bare_prefetch_steps_per_sec': bare_prefetched,
      'runner_steps_per_sec': ran,
      'bare_median': statistics.median(bare),
      'bare_prefetch_median': statistics.median(bare_prefetched),
      'runner_median': statistics.median(ran),
      'paired_ratio_median': statistics.median(r / b for r, b in zip(ran, bare)),
      'paired_ratio_prefetch_median': statistics.median(
          r / b for r, b in zip(ran, bare_prefetched)),
  }
  out['ratio'] = out['runner_median'] / out['bare_median']
  out['ratio_prefetch'] = out['runner_median'] / out['bare_prefetch_median']
  if profile:
    rate, split = run_runner(*args, seed=repeats + 1, profile=True)
    out['profiled_runner_steps_per_sec'] = rate
    out['runner_split_sec_per_step'] = split
  return out


def format_table(out: Dict[str, Any]) -> str:
  """The human-readable summary of :func:`measure`'s figures."""
  lines = [
      f'{out["workload"]}{" (synthetic)" if out["synthetic_data"] else ""}, '
      f'batch {out["batch_size"]}, {out["steps"]} timed steps x '
      f'{out["repeats"]} repeats, devices {", ".join(out["devices"])}',
      f'{"":<24}{"median steps/s":>16}{"all repeats":>14}',
  ]
  for key, name in (('bare', 'bare jitted loop'),
                    ('bare_prefetch', 'bare loop + prefetch'),
                    ('runner', 'algoperf runner')):
    if f'{key}_steps_per_sec' not in out:
      continue
    figures = ' '.join(f'{v:.2f}' for v in out[f'{key}_steps_per_sec'])
    lines.append(f'{name:<24}{out[f"{key}_median"]:>16.2f}  {figures}')
  lines.append(f'ratio runner / bare: {out["ratio"]:.4f} (median of paired '
               f'ratios {out["paired_ratio_median"]:.4f})')
  if 'ratio_prefetch' in out:
    lines.append(f'ratio runner / (bare + prefetch): {out["ratio_prefetch"]:.4f} '
                 f'(median of paired ratios '
                 f'{out["paired_ratio_prefetch_median"]:.4f})')
  split = out.get('runner_split_sec_per_step')
  if split:
    total = sum(split.values())
    lines.append(f'runner time per step (profiled run, '
                 f'{out["profiled_runner_steps_per_sec"]:.2f} steps/s):')
    for phase in PHASES:
      lines.append(f'  {phase:<12}{split[phase] * 1e3:9.3f} ms '
                   f'{100 * split[phase] / total:6.1f} %')
  return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workload', default='fashion_mnist')
  parser.add_argument('--steps', type=int, default=300,
                      help='timed steps per repeat and side (default 300)')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--synthetic_data', action='store_true',
                      help='random data of the real shapes (no dataset needed)')
  parser.add_argument('--no_profile', action='store_true',
                      help='skip the profiled run that splits the runner\'s time')
  parser.add_argument('--json', default=None, metavar='PATH',
                      help='also write every figure as JSON')
  args = parser.parse_args(argv)
  if args.steps < 1 or args.repeats < 1:
    parser.error('--steps and --repeats must be >= 1')
  out = measure(args.workload, args.steps, args.repeats,
                synthetic=args.synthetic_data, profile=not args.no_profile)
  print(format_table(out))
  if args.json:
    Path(args.json).write_text(json.dumps(out, indent=2) + '\n')
    print(f'Wrote {args.json}')


if __name__ == '__main__':
  main()
