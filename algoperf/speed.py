"""The laptop benchmark's machine-speed factor: a short, fixed calibration.

The small workloads' budgets are seconds on one reference machine. On a
slower (or busier) machine the same submission needs more seconds, and a
fixed budget would turn "slower machine" into "missed target". So before a
trial of a small workload, off every clock, the runner times a fixed piece of
work of the same kind as those workloads' training steps: gradient steps of a
small 2-D CNN on 28x28 inputs and of a small 1-D CNN on length-40 sequences
(the shapes of fashion_mnist and mnist1d), at batch 128, compiled first and
then timed over a fixed number of steps (median of three repeats). Its ratio
to the same measurement on the reference machine is the *speed factor*:

  factor = measured seconds / reference seconds   (> 1: slower than the reference)

A small workload's budget is its nominal budget times the factor; the factor
is recorded in ``meta_data_<p>.json`` (``speed_factor``), and ``algoperf
score`` divides each trial's times by it, so scores are in reference-machine
seconds. The AlgoPerf versions' workloads keep their fixed budgets (their
reference hardware is fixed by the benchmark).

The calibration is self-contained (it does not use the workloads' code), so
editing a workload never changes what the factor means; its reference value
lives with the small workloads' facts (``algoperf/benchmarks/small_workloads.json``,
``calibration``) and must be measured again whenever this module's work
changes (``CALIBRATION_VERSION``).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, Dict, List, Tuple

# Bump when the calibration work changes: the reference seconds must then be
# measured again on the reference machine (scripts/set_targets.py --calibrate).
CALIBRATION_VERSION = 1
_BATCH = 128
_STEPS_2D = 8
_STEPS_1D = 80
_REPEATS = 3


@dataclasses.dataclass(frozen=True)
class Calibration:
  """One calibration: seconds of each repeat and their median."""

  seconds: float
  samples: Tuple[float, ...]
  version: int = CALIBRATION_VERSION

  def factor(self, reference_seconds: float) -> float:
    """This machine's speed relative to the reference (> 1: slower)."""
    return self.seconds / float(reference_seconds)


def _models() -> List[Tuple[Callable[..., Any], Any, Any, Any, int]]:
  """(jitted step, params, inputs, one-hot labels, steps per repeat) of both models."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  def conv(x, w, strides, padding, dims):
    return jax.lax.conv_general_dilated(x, w, strides, padding,
                                        dimension_numbers=dims)

  def forward_2d(p, x):
    dims = ('NHWC', 'HWIO', 'NHWC')
    for name in ('c1', 'c2'):
      x = jax.nn.relu(conv(x, p[name], (1, 1), 'VALID', dims))
      x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                (1, 2, 2, 1), 'VALID')
    x = x.reshape(x.shape[0], -1)
    return jax.nn.relu(x @ p['d1']) @ p['d2']

  def forward_1d(p, x):
    dims = ('NWC', 'WIO', 'NWC')
    for name, stride in (('c1', 1), ('c2', 2), ('c3', 2)):
      x = jax.nn.relu(conv(x, p[name], (stride,), 'SAME', dims))
    x = x.reshape(x.shape[0], -1)
    return jax.nn.relu(x @ p['d1']) @ p['d2']

  def make_step(forward):
    def loss(p, x, y):
      return -jnp.mean(jnp.sum(jax.nn.log_softmax(forward(p, x)) * y, -1))

    def step(p, x, y):
      grads = jax.grad(loss)(p, x, y)
      return jax.tree.map(lambda a, g: a - 0.01 * g, p, grads)

    return jax.jit(step)

  # numpy, not jax.random: each eager jax op compiles, and eleven of them
  # took longer than the calibration itself.
  generator = np.random.default_rng(0)

  def normal(shape, scale):
    return jnp.asarray(generator.standard_normal(shape, np.float32) * scale)

  params_2d = {'c1': normal((3, 3, 1, 16), 0.3),
               'c2': normal((3, 3, 16, 32), 0.1),
               'd1': normal((800, 128), 0.03),
               'd2': normal((128, 10), 0.1)}
  params_1d = {'c1': normal((5, 1, 32), 0.3),
               'c2': normal((5, 32, 32), 0.1),
               'c3': normal((5, 32, 32), 0.1),
               'd1': normal((320, 128), 0.05),
               'd2': normal((128, 10), 0.1)}
  labels = jnp.asarray(np.eye(10, dtype=np.float32)[np.arange(_BATCH) % 10])
  return [
      (make_step(forward_2d), params_2d, normal((_BATCH, 28, 28, 1), 1.0),
       labels, _STEPS_2D),
      (make_step(forward_1d), params_1d, normal((_BATCH, 40, 1), 1.0),
       labels, _STEPS_1D),
  ]


def measure(repeats: int = _REPEATS,
            now: Callable[[], float] = time.perf_counter) -> Calibration:
  """Times the calibration work on this machine (compilation not timed)."""
  import jax  # pylint: disable=import-outside-toplevel

  models = _models()
  states = []
  for step, params, x, y, _ in models:
    params = step(params, x, y)  # Compiles.
    states.append(params)
  jax.block_until_ready(states)
  samples = []
  for _ in range(repeats):
    start = now()
    for i, (step, _, x, y, steps) in enumerate(models):
      params = states[i]
      for _ in range(steps):
        params = step(params, x, y)
      states[i] = params
    jax.block_until_ready(states)
    samples.append(now() - start)
  return Calibration(seconds=statistics.median(samples), samples=tuple(samples))


def reference() -> Dict[str, Any]:
  """The reference machine's calibration (``small_workloads.json``)."""
  from algoperf import benchmarks  # pylint: disable=import-outside-toplevel

  return benchmarks.small_calibration()


__all__ = ['CALIBRATION_VERSION', 'Calibration', 'measure', 'reference']
