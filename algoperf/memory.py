"""`algoperf check --memory`: will one training step fit in device memory?

Out-of-memory is what ends most first runs of a large workload, and usually
only after minutes of data loading and compiling. This module answers before
that, without running anything or allocating the model:

1. the workload (synthetic data) gives abstract ``(params, model_state)``
   through ``jax.eval_shape(workload.init_model_fn, rng)``;
2. the submission's ``init_optimizer_state`` runs under ``jax.eval_shape``
   too (its non-array leaves, e.g. an optax ``update`` function, are kept
   as they are and handed back to ``update_params`` unchanged);
3. one small synthetic batch gives the batch's structure and dtypes; its
   leading axis becomes the real global batch size, sharded along the batch
   axis as the runner places batches;
4. ``update_params``, called with the keyword arguments the runner passes at
   step 0, is wrapped in one ``jax.jit``, lowered on those abstract values
   and compiled; ``memory_analysis()`` of the compiled step gives its
   argument, output, temporary and generated-code bytes.

The submission's own ``jax.jit`` calls are traced inside the outer one. Their
``donate_argnums`` would be ignored there (donation only acts at the top
level), so the inputs they donate are donated by the outer jit instead: the
estimate then counts the buffers the real step reuses once, as XLA reports in
``alias_size_in_bytes``.

The pure functions (:func:`total_step_bytes`, :func:`format_bytes`,
:func:`parse_bytes`, :func:`device_limit`, :func:`render_table`,
:func:`verdict`, ...) do the arithmetic and the report;
:func:`estimate_step_memory` does the compiling.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

_UNITS = {
    '': 1, 'b': 1,
    'k': 2**10, 'kib': 2**10, 'kb': 10**3,
    'm': 2**20, 'mib': 2**20, 'mb': 10**6,
    'g': 2**30, 'gib': 2**30, 'gb': 10**9,
    't': 2**40, 'tib': 2**40, 'tb': 10**12,
}

TOTAL_FORMULA = 'arguments + outputs - aliased + temporaries + generated code'


class MemoryCheckError(Exception):
  """The step could not be estimated; ``hook`` names the part that failed."""

  def __init__(self, hook: str, message: str):
    super().__init__(message)
    self.hook = hook


@dataclasses.dataclass(frozen=True)
class DeviceLimit:
  """The memory one device may use, and where the number comes from."""

  bytes: Optional[int]  # None: unknown
  source: str


@dataclasses.dataclass(frozen=True)
class StepMemory:
  """What one compiled training step of a submission needs, per device.

  ``param_bytes``, ``model_state_bytes`` and ``optimizer_state_bytes`` are
  one full copy of each (the runner replicates them, so every device holds
  one); ``batch_bytes`` is the whole global batch (each device holds
  ``1 / num_devices`` of it). The ``*_bytes`` of the compiled step are XLA's
  per-device numbers.
  """

  workload: str
  global_batch_size: int
  num_devices: int
  platform: str
  num_params: int
  param_bytes: int
  model_state_bytes: int
  optimizer_state_bytes: int
  batch_bytes: int
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  generated_code_bytes: int
  limit: DeviceLimit
  # XLA's own peak estimate where the backend reports one (else None). Not
  # printed: on the CPU backend it leaves out the temporaries.
  peak_bytes: Optional[int] = None
  # Which of params / model state / optimizer state the step donates.
  donated: Tuple[str, ...] = ()
  compile_sec: float = 0.0

  @property
  def total_bytes(self) -> int:
    """The estimate compared with the limit: see :func:`total_step_bytes`."""
    return total_step_bytes(self.argument_bytes, self.output_bytes,
                            self.alias_bytes, self.temp_bytes,
                            self.generated_code_bytes)

  @property
  def fits(self) -> bool:
    """True when the estimate is within the limit (or the limit is unknown)."""
    return self.limit.bytes is None or self.total_bytes <= self.limit.bytes


# --- arithmetic ------------------------------------------------------------------


def total_step_bytes(argument: int, output: int, alias: int, temp: int,
                     generated_code: int = 0) -> int:
  """Device memory one step holds at its peak: inputs, outputs, scratch and code.

  An output that reuses a donated input's buffer (``alias``) is counted once,
  not as both an argument and an output.
  """
  return int(argument) + int(output) - int(alias) + int(temp) + int(generated_code)


def format_bytes(n: Optional[float]) -> str:
  """``n`` bytes in binary units: ``'512 B'``, ``'1.5 KiB'``, ``'97.5 MiB'``."""
  if n is None:
    return 'unknown'
  sign = '-' if n < 0 else ''
  n = abs(float(n))
  for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
    if n < 1024 or unit == 'TiB':
      return f'{sign}{n:.0f} {unit}' if unit == 'B' else f'{sign}{n:.1f} {unit}'
    n /= 1024
  raise AssertionError('unreachable')


def parse_bytes(text: str) -> int:
  """A byte count from ``'1000000'``, ``'512MiB'``, ``'1.5 GiB'``, ``'2G'`` or ``'2GB'``.

  Single letters (K, M, G, T) and ``KiB``... are powers of 1024; ``KB``...
  powers of 1000. Raises ``ValueError`` for anything else, zero or less.
  """
  match = re.fullmatch(r'\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([a-zA-Z]*)\s*', str(text))
  unit = match.group(2).lower() if match else None
  if match is None or unit not in _UNITS:
    raise ValueError(f'expected a size in bytes such as 8000000000, 8GiB or 512MiB; '
                     f'got {text!r}')
  value = int(float(match.group(1)) * _UNITS[unit])
  if value <= 0:
    raise ValueError(f'a memory limit must be positive, got {text!r}')
  return value


def tree_size(tree: Any) -> Tuple[int, int]:
  """``(elements, bytes)`` of the array leaves of ``tree`` (anything with shape and dtype)."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  count = nbytes = 0
  for leaf in jax.tree.leaves(tree):
    if not (hasattr(leaf, 'shape') and hasattr(leaf, 'dtype')):
      continue
    size = math.prod(leaf.shape)
    count += size
    nbytes += size * np.dtype(leaf.dtype).itemsize
  return count, nbytes


def host_memory_bytes(meminfo: str | os.PathLike = '/proc/meminfo') -> Optional[int]:
  """The host's total RAM: ``MemTotal`` of ``meminfo``, else ``os.sysconf``; None if neither."""
  try:
    with open(meminfo, encoding='ascii') as f:
      for line in f:
        if line.startswith('MemTotal:'):
          return int(line.split()[1]) * 1024  # The file says kB, meaning KiB.
  except (OSError, ValueError, IndexError):
    pass
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    return None


def device_limit(devices: Sequence[Any], *, override: Optional[int] = None,
                 host_bytes: Optional[int] = None) -> DeviceLimit:
  """The memory each of ``devices`` (this process's) may use.

  ``override`` (``--memory_limit_bytes``) wins. Else the smallest
  ``memory_stats()['bytes_limit']`` of the devices (GPU, TPU). CPU devices
  report none: they share the host's RAM (``host_bytes``, default
  :func:`host_memory_bytes`), so each gets an equal share of it.
  """
  if override is not None:
    return DeviceLimit(int(override), '--memory_limit_bytes')
  limits = []
  for device in devices:
    try:
      stats = device.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None  # Some backends raise instead of returning None.
    if stats and stats.get('bytes_limit'):
      limits.append(int(stats['bytes_limit']))
  platform = devices[0].platform if devices else 'cpu'
  if devices and len(limits) == len(devices):
    where = (f'bytes_limit of each {platform.upper()} device' if len(devices) == 1
             else f'smallest bytes_limit of {len(devices)} {platform.upper()} devices')
    return DeviceLimit(min(limits), where)
  host = host_memory_bytes() if host_bytes is None else host_bytes
  if host is None:
    return DeviceLimit(None, 'unknown: the devices report no memory limit and '
                       'the host RAM cannot be read')
  n = max(1, len(devices))
  if n == 1:
    return DeviceLimit(host, f'host RAM {format_bytes(host)}, 1 {platform.upper()} device')
  return DeviceLimit(host // n, f'host RAM {format_bytes(host)} shared by {n} '
                     f'{platform.upper()} devices: 1/{n} each')


def suggest_batch_size(m: StepMemory) -> Optional[int]:
  """A rough global batch size that would fit, or None (none would, or no limit).

  Assumes the batch and the temporaries (mostly activations) grow in
  proportion to the batch while the state does not. Temporaries also hold
  some state-sized buffers (gradients, updates), so this errs on the large
  side: a starting point, not a promise.
  """
  if m.limit.bytes is None:
    return None
  batch_per_device = m.batch_bytes // max(1, m.num_devices)
  varying = m.temp_bytes + batch_per_device
  fixed = m.total_bytes - varying
  if varying <= 0 or m.limit.bytes <= fixed:
    return None
  n = max(1, m.num_devices)
  # Below the size that did not fit, whatever the proportion says.
  size = min(int(m.global_batch_size * (m.limit.bytes - fixed) / varying),
             m.global_batch_size - 1)
  if size < n:
    return None
  # A power of two where the device count allows: batch sizes usually are.
  power = 2 ** int(math.log2(size))
  if power >= n and power % n == 0:
    return power
  return size - size % n


# --- the report ------------------------------------------------------------------


def render_table(m: StepMemory) -> List[str]:
  """The table ``algoperf check --memory`` prints for one workload (indented lines)."""
  n = m.num_devices
  per_device_batch = m.batch_bytes // max(1, n)
  devices = f'{n} {m.platform.upper()} device' + ('s' if n != 1 else '')

  def row(label: str, value: Optional[float], note: str = '') -> str:
    text = f'    {label:<24}{format_bytes(value):>12}'
    return text + (f'  {note}' if note else '')

  donated = ('donated ' + ', '.join(m.donated) + ': outputs reuse their '
             'buffers') if m.donated else 'nothing donated: no buffer reused'
  lines = [
      f'  {m.workload}: one training step at global batch size '
      f'{m.global_batch_size} on {devices} (compiled in {m.compile_sec:.1f} s, '
      'not run)',
      f'    {"parameters":<24}{format_bytes(m.param_bytes):>12}  '
      f'{m.num_params:,} parameters',
      row('model state', m.model_state_bytes),
      row('optimizer state', m.optimizer_state_bytes),
      row('batch', m.batch_bytes,
          f'global; {format_bytes(per_device_batch)} per device' if n > 1 else ''),
      '    compiled step (XLA memory_analysis, per device):',
      row('  arguments', m.argument_bytes,
          'params, model state, optimizer state, batch, rng'),
      row('  outputs', m.output_bytes, 'new params, model state, optimizer state'),
      row('  aliased', m.alias_bytes, donated),
      row('  temporaries', m.temp_bytes, 'activations, gradients, scratch'),
      row('  generated code', m.generated_code_bytes),
      row('total estimate', m.total_bytes, '= ' + TOTAL_FORMULA),
  ]
  lines.append(row('limit per device', m.limit.bytes, m.limit.source))
  if n > 1:
    lines.append('    Parameters and state are one full copy (replicated: every '
                 'device holds one); the compiled numbers are per device.')
  lines.append('    Not included: batches the input pipeline prefetches, '
               'evaluation, and memory the framework reserves.')
  return lines


def verdict(m: StepMemory) -> Tuple[bool, str]:
  """``(fits, one line)``: the result line of the memory check."""
  if m.limit.bytes is None:
    return True, (f'OK (needs ~{format_bytes(m.total_bytes)} per device; the '
                  'device memory is unknown, so whether it fits is not checked: '
                  'pass --memory_limit_bytes to compare)')
  share = 100.0 * m.total_bytes / m.limit.bytes
  if m.fits:
    percent = '<1%' if share < 1 else f'{share:.0f}%'
    return True, (f'OK (fits: ~{format_bytes(m.total_bytes)} of '
                  f'{format_bytes(m.limit.bytes)} per device, {percent})')
  suggestion = suggest_batch_size(m)
  fix = (f'pass a smaller --global_batch_size (roughly {suggestion} might fit) '
         'or use a device with more memory' if suggestion is not None else
         'even a tiny batch would not fit beside the parameters and optimizer '
         'state: use a device with more memory (a smaller --global_batch_size '
         'will not be enough)')
  return False, (
      f'FAIL: memory: one training step at global batch size '
      f'{m.global_batch_size} needs ~{format_bytes(m.total_bytes)} per device '
      f'(arguments {format_bytes(m.argument_bytes)} + outputs '
      f'{format_bytes(m.output_bytes)} - aliased {format_bytes(m.alias_bytes)} '
      f'+ temporaries {format_bytes(m.temp_bytes)} + code '
      f'{format_bytes(m.generated_code_bytes)}) but the limit is '
      f'{format_bytes(m.limit.bytes)} ({m.limit.source}); {fix}.')


# --- the estimate ----------------------------------------------------------------


def default_hyperparameters(submission: Any) -> Any:
  """The first point of the ``tuning_search_space.json`` beside the submission, or None.

  The point ``algoperf check``'s dry run uses; None (self-tuning) without a file.
  """
  from algoperf import tuning  # pylint: disable=import-outside-toplevel

  path = Path(submission.path).parent / 'tuning_search_space.json'
  if not path.is_file():
    return None
  space = tuning.load_search_space(path)
  return tuning.generate_points(
      space, min(5, len(space.points)) if space.is_list else 5)[0]


def _is_array(leaf: Any) -> bool:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  # Tracers are jax.Array instances too.
  return isinstance(leaf, (jax.Array, np.ndarray))


def _placed(tree: Any, sharding: Any) -> Any:
  """``tree``'s abstract values as ``ShapeDtypeStruct``s with ``sharding``."""
  import jax  # pylint: disable=import-outside-toplevel

  return jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding,
                                     weak_type=getattr(s, 'weak_type', False)),
      tree)


def abstract_batch(example: Any, global_batch_size: int, batch_sharding: Any,
                   replicated: Any) -> Any:
  """``example`` (a small real batch) with every leading axis ``global_batch_size``.

  Every batch leaf has the batch as its leading axis (the runner shards them
  all along it); scalar leaves stay scalars, replicated.
  """
  import jax  # pylint: disable=import-outside-toplevel

  def grow(leaf: Any) -> Any:
    shape = tuple(getattr(leaf, 'shape', ()))
    if not shape:
      return jax.ShapeDtypeStruct((), leaf.dtype, sharding=replicated)
    return jax.ShapeDtypeStruct((int(global_batch_size), *shape[1:]), leaf.dtype,
                                sharding=batch_sharding)

  return jax.tree.map(grow, example)


def _donated_inputs(traced: Any) -> List[int]:
  """Indices of the traced function's inputs that a jit inside it donates."""
  closed = traced.jaxpr
  invars = list(closed.jaxpr.invars)
  position = {id(v): i for i, v in enumerate(invars)}
  out = set()
  for eqn in closed.eqns:
    for var, donated in zip(eqn.invars, eqn.params.get('donated_invars') or ()):
      if donated and id(var) in position:
        out.add(position[id(var)])
  return sorted(out)


def _small_batch(workload: Any, rng: Any, size: int) -> Any:
  """One synthetic batch of ``size`` examples, for its structure and dtypes."""
  queue = workload._build_input_queue(  # pylint: disable=protected-access
      rng, 'train', None, size)
  try:
    return next(iter(queue))
  finally:
    close = getattr(queue, 'close', None)
    if callable(close):
      close()


def _hook_error(hook: str, error: BaseException, folder: Path) -> MemoryCheckError:
  """A ``MemoryCheckError`` naming ``hook``, the exception and where it was raised."""
  from algoperf import check  # pylint: disable=import-outside-toplevel

  where = check._location(error, folder)  # pylint: disable=protected-access
  message = f'{type(error).__name__}: {check._short(error)}'  # pylint: disable=protected-access
  if type(error).__name__ in ('ConcretizationTypeError', 'TracerBoolConversionError',
                              'TracerArrayConversionError',
                              'TracerIntegerConversionError'):
    message += (' (the memory check traces the step without running it, so a '
                'value read on the host, e.g. float(loss) or .item() outside '
                '`if workload.metrics_logger is not None`, cannot be estimated)')
  if where:
    message += f' (at {where})'
  return MemoryCheckError(hook, message)


def estimate_step_memory(
    submission: Any,
    workload_name: str,
    *,
    global_batch_size: Optional[int] = None,
    hyperparameters: Any = None,
    memory_limit_bytes: Optional[int] = None,
    rng_seed: int = 0,
    use_search_space: bool = True,
) -> StepMemory:
  """Compiles (does not run) one ``update_params`` step and measures its memory.

  ``submission``: a loaded :class:`algoperf.submission.Submission` (jit
  style). ``global_batch_size`` overrides the submission's
  ``get_batch_size``. ``hyperparameters`` None means the first point of the
  search space beside the submission (none, or ``use_search_space`` False:
  None, as under self-tuning).
  ``memory_limit_bytes`` replaces the devices' own limit. Raises
  :class:`MemoryCheckError` naming the hook (or step) that failed.
  """
  import jax  # pylint: disable=import-outside-toplevel

  import workloads  # pylint: disable=import-outside-toplevel
  from algoperf import fence, jax_sharding_utils  # pylint: disable=import-outside-toplevel
  from algoperf import trial_state  # pylint: disable=import-outside-toplevel
  from algoperf.submission import (SubmissionError, check_divisible,  # pylint: disable=import-outside-toplevel
                                   resolve_global_batch_size)

  folder = Path(submission.path).parent
  if submission.api != 'jit':
    raise MemoryCheckError(
        'api', 'the memory check supports jit-style submissions only; this one '
        'uses jax.pmap (the v0.5 contract), whose per-device step cannot be '
        'compiled ahead of time this way. Run `algoperf check` without --memory '
        'for a dry run, or pass --submission_api jit if it is in fact jit-style.')
  if hyperparameters is None and use_search_space:
    hyperparameters = default_hyperparameters(submission)
  started = time.perf_counter()
  workload = workloads.get_workload(workload_name, synthetic=True)
  base = workloads.get_base_workload_name(workload_name)
  try:
    batch_size = resolve_global_batch_size(submission, workload_name, base,
                                           global_batch_size, force=True)
    check_divisible(batch_size, jax.device_count(), 'global batch size')
  except SubmissionError as e:
    raise MemoryCheckError('get_batch_size', str(e)) from e
  except Exception as e:  # pylint: disable=broad-except
    raise _hook_error('get_batch_size', e, folder) from e

  replicated = jax_sharding_utils.get_replicate_sharding()
  batch_sharding = jax_sharding_utils.get_batch_dim_sharding()
  fenced = fence.fence(workload)
  # The runner's keys have the same shape and dtype; their values do not matter.
  rng = jax.random.PRNGKey(rng_seed)
  model_rng, opt_rng, data_rng = jax.random.split(rng, 3)

  params, model_state = _placed(
      jax.eval_shape(workload.init_model_fn, model_rng), replicated)
  num_params, param_bytes = tree_size(params)

  # Non-array leaves (optax update functions, Python numbers) cannot leave
  # eval_shape; they are kept aside and handed to update_params as they are.
  kept: Dict[str, Any] = {}

  def init(p: Any, s: Any) -> List[Any]:
    out = submission.init_optimizer_state(fenced, p, s, hyperparameters, opt_rng)
    leaves, kept['treedef'] = jax.tree_util.tree_flatten(out)
    kept['is_array'] = [_is_array(leaf) for leaf in leaves]
    kept['static'] = [None if a else leaf
                      for leaf, a in zip(leaves, kept['is_array'])]
    return [leaf for leaf, a in zip(leaves, kept['is_array']) if a]

  try:
    opt_arrays = _placed(jax.eval_shape(init, params, model_state), replicated)
  except Exception as e:  # pylint: disable=broad-except
    raise _hook_error('init_optimizer_state', e, folder) from e

  example = _small_batch(workload, data_rng, jax.device_count())
  batch = abstract_batch(example, batch_size, batch_sharding, replicated)
  step_rng = jax.ShapeDtypeStruct(rng.shape, rng.dtype, sharding=replicated)

  # One flat list of inputs, so donation can be decided leaf by leaf.
  parts = {'params': params, 'model state': model_state,
           'optimizer state': opt_arrays, 'batch': batch, 'rng': step_rng}
  flat, defs, spans = [], {}, {}
  for name, tree in parts.items():
    leaves, defs[name] = jax.tree_util.tree_flatten(tree)
    spans[name] = (len(flat), len(flat) + len(leaves))
    flat += leaves
  train_state = ({'train_state': trial_state.TrainStateView(trial_state.TrialState(
      params=None, optimizer_state=None, model_state=None, rng_seed=rng_seed,
      rng_key=[]))} if submission.needs_train_state else {})

  def unflatten(name: str, values: Sequence[Any]) -> Any:
    start, end = spans[name]
    return jax.tree_util.tree_unflatten(defs[name], list(values[start:end]))

  def step(*values: Any) -> List[Any]:
    arrays = iter(unflatten('optimizer state', values))
    optimizer_state = jax.tree_util.tree_unflatten(
        kept['treedef'], [next(arrays) if a else s
                          for a, s in zip(kept['is_array'], kept['static'])])
    out = submission.update_params(
        workload=fenced,
        current_param_container=unflatten('params', values),
        current_params_types=workload.model_params_types,
        model_state=unflatten('model state', values),
        hyperparameters=hyperparameters,
        batch=unflatten('batch', values),
        loss_type=workload.loss_type,
        optimizer_state=optimizer_state,
        eval_results=[],
        global_step=0,
        rng=values[spans['rng'][0]],
        **train_state,
    )
    # The optimizer state's functions are not outputs XLA can hold.
    return [leaf for leaf in jax.tree.leaves(out) if _is_array(leaf)]

  try:
    traced = jax.jit(step).trace(*flat)
    donate = _donated_inputs(traced)
    with warnings.catch_warnings():
      # Expected for inputs (e.g. the batch) no output can reuse.
      warnings.filterwarnings('ignore', message='Some donated buffers')
      lowered = (jax.jit(step, donate_argnums=tuple(donate)).trace(*flat)
                 if donate else traced).lower()
  except Exception as e:  # pylint: disable=broad-except
    raise _hook_error('update_params', e, folder) from e
  try:
    stats = lowered.compile().memory_analysis()
  except Exception as e:  # pylint: disable=broad-except
    from algoperf.check import _short  # pylint: disable=import-outside-toplevel

    raise MemoryCheckError('compile', f'XLA could not compile the step: '
                           f'{type(e).__name__}: {_short(e)}') from e
  if stats is None:
    raise MemoryCheckError('compile', f'the {jax.default_backend()} backend '
                           'reports no memory analysis for compiled steps.')
  donated = tuple(name for name, (start, end) in spans.items()
                  if name in ('params', 'model state', 'optimizer state')
                  and end > start and any(start <= i < end for i in donate))
  peak = getattr(stats, 'peak_memory_in_bytes', None)
  return StepMemory(
      workload=workload_name,
      global_batch_size=batch_size,
      num_devices=jax.device_count(),
      platform=jax.devices()[0].platform,
      num_params=num_params,
      param_bytes=param_bytes,
      model_state_bytes=tree_size(model_state)[1],
      optimizer_state_bytes=tree_size(opt_arrays)[1],
      batch_bytes=tree_size(batch)[1],
      argument_bytes=int(stats.argument_size_in_bytes),
      output_bytes=int(stats.output_size_in_bytes),
      alias_bytes=int(stats.alias_size_in_bytes),
      temp_bytes=int(stats.temp_size_in_bytes),
      generated_code_bytes=int(stats.generated_code_size_in_bytes),
      limit=device_limit(jax.local_devices(), override=memory_limit_bytes),
      peak_bytes=int(peak) if peak and peak > 0 else None,
      donated=donated,
      compile_sec=time.perf_counter() - started,
  )


def check_workload(submission: Any, workload_name: str, *,
                   emit: Callable[[str], None], hyperparameters: Any = None,
                   global_batch_size: Optional[int] = None,
                   memory_limit_bytes: Optional[int] = None) -> Any:
  """``algoperf check --memory`` on one workload: prints the table, returns the result.

  The result is a :class:`algoperf.check.WorkloadResult` whose ``ok`` says
  whether the step fits. ``hyperparameters`` are used as given (the check
  has already chosen them: None under self-tuning).
  """
  from algoperf.check import WorkloadResult  # pylint: disable=import-outside-toplevel

  try:
    estimate = estimate_step_memory(
        submission, workload_name, global_batch_size=global_batch_size,
        hyperparameters=hyperparameters, memory_limit_bytes=memory_limit_bytes,
        use_search_space=False)
  except MemoryCheckError as e:
    return WorkloadResult(workload_name, False, f'FAIL: {e.hook}: {e}', e.hook)
  except Exception as e:  # pylint: disable=broad-except
    # The harness's side (the workload, its synthetic batch): one line too.
    return WorkloadResult(workload_name, False, 'FAIL: memory check: (outside the '
                          f'hooks) {type(e).__name__}: {e}', 'runner')
  for line in render_table(estimate):
    emit(line)
  ok, message = verdict(estimate)
  return WorkloadResult(workload_name, ok, message, None if ok else 'memory')


__all__ = ['DeviceLimit', 'MemoryCheckError', 'StepMemory', 'TOTAL_FORMULA',
           'abstract_batch', 'check_workload', 'default_hyperparameters',
           'device_limit', 'estimate_step_memory', 'format_bytes',
           'host_memory_bytes', 'parse_bytes', 'render_table',
           'suggest_batch_size', 'total_step_bytes', 'tree_size', 'verdict']
