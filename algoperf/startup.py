"""Start-up: the persistent compilation cache and the start-up clock.

Most of the time between `algoperf run` and the first training step is XLA
compiling the model's init, the submission's step and the eval step. JAX can
keep compiled executables on disk and load them in the next process. But
compilation is on the submission clock, as in the benchmark, so a cache would
make a run's score depend on what ran on the machine before it: scored runs
(`algoperf run`, `algoperf sweep`) use no persistent cache unless the user
asks for one (``--compilation_cache``, ``--compilation_cache_dir`` or
``JAX_COMPILATION_CACHE_DIR``), and each trial's ``meta_data`` records whether
one was used. `algoperf check`, which scores nothing, keeps one by default.
The cache lives outside the experiment folder (default
``~/.cache/algoperf/jax_cache``), which must hold nothing but submission
folders. Entries are keyed on the computation, the compiler options and the
device, so a changed model or JAX version compiles again; the folder can be
deleted at any time.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from algoperf.runner import Listener

# Every compile is worth keeping: on a CPU even the train step of a small
# model compiles in well under JAX's default threshold of 1 s, and those
# compiles are what the first step waits for.
_CACHE_OPTIONS = {
    'jax_persistent_cache_min_compile_time_secs': 0.0,
    'jax_persistent_cache_min_entry_size_bytes': 0,
}


def default_cache_dir() -> Path:
  """``$XDG_CACHE_HOME/algoperf/jax_cache`` (``~/.cache/algoperf/jax_cache``)."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join('~', '.cache')
  return Path(base).expanduser() / 'algoperf' / 'jax_cache'


def resolve_cache_dir(requested: Optional[bool], folder: Optional[str] = None,
                      ) -> Optional[Path]:
  """The compilation-cache folder a run should use, or None for no cache.

  ``requested``: True (``--compilation_cache``), False
  (``--nocompilation_cache``: off even if ``JAX_COMPILATION_CACHE_DIR`` is
  set) or None (not given: on only if ``folder`` or the environment names a
  folder). The folder is ``folder``, else ``JAX_COMPILATION_CACHE_DIR``, else
  ``default_cache_dir()``.
  """
  import jax  # pylint: disable=import-outside-toplevel

  from_env = jax.config.jax_compilation_cache_dir  # JAX reads the variable.
  if requested is False:
    return None
  if requested is None and not folder and not from_env:
    return None
  return Path(folder or from_env or default_cache_dir()).expanduser().resolve()


_IMPORTED_AT = time.perf_counter()


def seconds_since_process_start() -> float:
  """Seconds since this process started (its exec), or since this module was imported.

  On Linux the process start comes from ``/proc/self/stat`` (in clock ticks,
  10 ms), so interpreter start-up and imports count, as a user waiting for
  the first step sees them. Elsewhere the module's import time stands in.
  """
  try:
    with open('/proc/self/stat', 'rb') as f:
      # Field 22 is the start time; the command name (field 2) may hold
      # spaces, so count from its closing parenthesis.
      fields = f.read().rsplit(b')', 1)[1].split()
    started = int(fields[19]) / os.sysconf('SC_CLK_TCK')
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started
  except (OSError, ValueError, IndexError, AttributeError):
    return time.perf_counter() - _IMPORTED_AT


@contextlib.contextmanager
def compilation_cache(folder: Optional[Path]) -> Iterator[Optional[Path]]:
  """Within the block, compiled executables persist in ``folder``; None: no cache at all.

  The previous settings come back on exit, so a later run in the same
  process (tests, notebooks) uses its own setting.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from jax.experimental.compilation_cache import compilation_cache as cc  # pylint: disable=import-outside-toplevel

  if folder is None:
    options: Dict[str, Any] = {'jax_compilation_cache_dir': None,
                               'jax_enable_compilation_cache': False}
  else:
    options = {'jax_compilation_cache_dir': str(folder),
               'jax_enable_compilation_cache': True, **_CACHE_OPTIONS}
  saved = {name: getattr(jax.config, name) for name in options}
  for name, value in options.items():
    jax.config.update(name, value)
  # JAX reads the folder once, at the first compile; forget an earlier one.
  cc.reset_cache()
  try:
    yield folder
  finally:
    for name, value in saved.items():
      jax.config.update(name, value)
    cc.reset_cache()


# Whether a trial of this process has reached its first step (see FirstStepTimer).
_first_step_seen = False


class FirstStepTimer(Listener):
  """A runner listener that reports when the trial's first step ended.

  Forwards every call to ``inner`` (e.g. the progress printer). The first
  trial of a process measures from the process start (what a user waits for
  after typing the command); later trials from their own start. The seconds
  are in ``seconds`` (None before the first step) and printed as one line.
  """

  def __init__(self, inner: Any, label: str = '', stream: Any = None):
    self._inner = inner
    self._label = label
    self._stream = stream
    self._created = time.perf_counter()
    self.seconds: Optional[float] = None

  def on_start(self, workload: Any, config: Any) -> None:
    self._inner.on_start(workload, config)

  def on_step(self, global_step: int, train_state: Dict[str, Any]) -> None:
    if self.seconds is None:
      global _first_step_seen  # pylint: disable=global-statement
      if _first_step_seen:
        self.seconds, since = time.perf_counter() - self._created, 'trial'
      else:
        self.seconds, since = seconds_since_process_start(), 'command'
      _first_step_seen = True
      print(f'{self._label}first step done {self.seconds:.2f} s after the '
            f'{since} started', file=self._stream, flush=True)
    self._inner.on_step(global_step, train_state)

  def on_eval(self, global_step: int, result: Dict[str, Any],
              train_state: Dict[str, Any]) -> None:
    self._inner.on_eval(global_step, result, train_state)

  def on_end(self, result: Any) -> None:
    self._inner.on_end(result)
