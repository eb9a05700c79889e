"""Multi-host runs: start ``jax.distributed`` and keep every process in step.

A multi-host run is one program launched once per host (process). After
``initialize`` the device mesh spans every process's devices, and every
jitted step is a collective: all processes must make the same control-flow
decisions (evaluate now? stop? skip this trial?) or they wait on each other
forever. ``agree`` makes process 0's value everybody's; ``on_primary`` runs
file-system work on process 0 and tells the others whether it failed.

With one process (the usual case) every helper is a plain function call: no
collective, no cost.

How a run becomes multi-host, first match wins:

* ``--coordinator_address``, ``--num_processes``, ``--process_id`` (each
  falls back to ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
  ``JAX_PROCESS_ID``; JAX reads the first itself, the other two are ours);
* a SLURM step or an Open MPI job with more than one task (``srun``,
  ``mpirun``): JAX's own cluster detection fills in all three. A single-task
  job (e.g. one run of a ``submitit`` sweep) stays single-process.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, TypeVar

from algoperf.errors import ConfigError

T = TypeVar('T')

# JAX's default; a shorter wait would fail slow cluster starts.
DEFAULT_INIT_TIMEOUT_SEC = 300


def _env_int(name: str) -> Optional[int]:
  text = os.environ.get(name)
  if text is None or not text.strip():
    return None
  try:
    return int(text)
  except ValueError:
    raise ConfigError(f'{name}={text!r} is not an integer.') from None


def _launcher_task_count() -> int:
  """Tasks of the SLURM step or Open MPI job around this process (1 if none).

  The variables are those JAX's cluster detection reads (jax 0.10).
  """
  slurm = ('SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_NTASKS',
           'SLURM_PROCID', 'SLURM_LOCALID')
  if all(name in os.environ for name in slurm):
    return _env_int('SLURM_NTASKS') or 1
  if 'OMPI_MCA_orte_hnp_uri' in os.environ:
    return _env_int('OMPI_COMM_WORLD_SIZE') or 1
  return 1


def initialize(coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None,
               timeout_sec: int = DEFAULT_INIT_TIMEOUT_SEC) -> bool:
  """Starts ``jax.distributed`` if this is a multi-host launch; returns whether it did.

  Must run before anything touches a JAX device (even ``jax.devices()``).
  Arguments left ``None`` come from the environment (see the module doc).
  ``num_processes == 1`` means a single-process run: nothing is started.

  Raises:
    ConfigError: inconsistent settings (e.g. a process id but no process
      count, or an id outside ``[0, num_processes)``).
    RuntimeError: JAX was already used in this process.
  """
  import jax  # pylint: disable=import-outside-toplevel

  coordinator_address = (coordinator_address
                         or os.environ.get('JAX_COORDINATOR_ADDRESS') or None)
  if num_processes is None:
    num_processes = _env_int('JAX_NUM_PROCESSES')
  if process_id is None:
    process_id = _env_int('JAX_PROCESS_ID')
  explicit = (coordinator_address, num_processes, process_id) != (None,) * 3
  if num_processes == 1 or (not explicit and _launcher_task_count() <= 1):
    return False
  if jax.distributed.is_initialized():
    return True  # Already started by the caller (e.g. a notebook or a test).
  if num_processes is not None and num_processes < 1:
    raise ConfigError(f'--num_processes must be at least 1, got {num_processes}.')
  if process_id is not None and num_processes is not None and not (
      0 <= process_id < num_processes):
    raise ConfigError(
        f'--process_id {process_id} is outside [0, {num_processes}): number the '
        'processes 0, 1, ..., num_processes - 1.')
  # Cross-process collectives on CPU need an implementation; gloo ships with
  # jaxlib (it is the default since jax 0.5, set here for older defaults).
  if not jax.config.jax_cpu_collectives_implementation:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_sec)
  except (ValueError, TypeError) as e:
    # JAX names the missing piece ("coordinator_address should be defined.").
    raise ConfigError(
        f'Cannot start a multi-host run: {e} Pass --coordinator_address '
        'HOST:PORT (of process 0), --num_processes N and --process_id I to '
        'every process, or launch with srun/mpirun.') from e
  return True


def process_count() -> int:
  """How many processes take part in the run (1 unless multi-host)."""
  import jax  # pylint: disable=import-outside-toplevel

  return jax.process_count()


def is_primary() -> bool:
  """Whether this is process 0, the one that writes logs and keeps the clock."""
  import jax  # pylint: disable=import-outside-toplevel

  return jax.process_index() == 0


def agree(value: T) -> T:
  """Process 0's ``value`` on every process; ``value`` itself with one process.

  ``value`` is a Python scalar (bool, int, float) or a tuple/list/dict of
  them; the result has the same structure and types. Every process must call
  this at the same point of the program (it is a collective). Floats are
  sent bit for bit as float64 (clock readings keep their precision); ints are
  exact up to 2**53.
  """
  import jax  # pylint: disable=import-outside-toplevel

  if jax.process_count() == 1:
    return value
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  leaves, treedef = jax.tree.flatten(value)
  # Sent as uint32 words: with x64 disabled JAX would round float64 to float32.
  words = np.asarray(leaves, np.float64).view(np.uint32)
  shared = np.asarray(multihost_utils.broadcast_one_to_all(words), np.uint32)
  numbers = shared.view(np.float64)
  return jax.tree.unflatten(
      treedef, [type(leaf)(x) for leaf, x in zip(leaves, numbers)])


def agree_text(text: Optional[str]) -> str:
  """Process 0's ``text`` on every process (others may pass None); a collective.

  For values only process 0 can know, such as the path of a trial folder
  whose name depends on what process 0 found on disk.
  """
  import jax  # pylint: disable=import-outside-toplevel

  if jax.process_count() == 1:
    return text or ''
  data = tuple((text or '').encode('utf-8')) if is_primary() else ()
  size = agree(len(data))
  if size == 0:
    return ''
  if not is_primary():
    data = (0,) * size
  return bytes(agree(data)).decode('utf-8')


def everywhere(flag: bool) -> bool:
  """Whether ``flag`` is true on every process; a collective.

  Unlike ``agree`` (process 0 decides), every process has a say: e.g. whether
  each host sees a folder that process 0 created.
  """
  import jax  # pylint: disable=import-outside-toplevel

  if jax.process_count() == 1:
    return bool(flag)
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  return bool(np.all(multihost_utils.process_allgather(np.asarray(bool(flag)))))


def on_primary(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Optional[T]:
  """Calls ``fn`` on process 0 only and returns its result (None elsewhere).

  For work only process 0 does (creating the log folder), whose failure must
  stop every process: if ``fn`` raises on process 0, it re-raises there and
  the other processes raise ``ConfigError`` pointing at process 0's output,
  instead of waiting forever in the next collective.
  """
  primary = is_primary()
  result, error = None, None
  if primary:
    try:
      result = fn(*args, **kwargs)
    except Exception as e:  # pylint: disable=broad-except
      error = e
  if agree(error is not None):
    if error is not None:
      raise error
    raise ConfigError(
        f'process 0 failed in {getattr(fn, "__name__", fn)}; its output says why.')
  return result


__all__ = ['DEFAULT_INIT_TIMEOUT_SEC', 'agree', 'agree_text', 'everywhere',
           'initialize', 'is_primary', 'on_primary', 'process_count']
