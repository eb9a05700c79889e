"""One training step of the fastmri U-Net: time and XLA's memory analysis.

A step is what a submission's ``update_params`` does: the workload's
``model_fn`` in train mode, the L1 loss, the gradient and a NAdamW update
(``algoperf.optimizers.nadamw``), jitted as one function on a synthetic
batch of the real shape (320 x 320 slices). Prints the compile time, the
median step time of ``--repeats`` runs after a warm-up, and the compiled
step's memory analysis (arguments, outputs, temporaries).

Usage:
  python benchmarks/fastmri_step.py [--batch_size 2] [--repeats 5]
      [--workload fastmri --workload fastmri_layernorm]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402  pylint: disable=wrong-import-position
import optax  # noqa: E402  pylint: disable=wrong-import-position

from algoperf import optimizers, spec  # noqa: E402  pylint: disable=wrong-import-position
from workloads.fastmri import workload as fastmri  # noqa: E402  pylint: disable=wrong-import-position

WORKLOADS = {cls.workload_name: cls for cls in (
    fastmri.FastMRIWorkload, fastmri.FastMRIModelSizeWorkload,
    fastmri.FastMRITanhWorkload, fastmri.FastMRILayerNormWorkload)}


def _mib(num_bytes: float) -> str:
  return f'{num_bytes / 2**20:.1f} MiB'


def measure(workload: spec.Workload, batch_size: int, repeats: int,
            params: Optional[Any] = None) -> Dict[str, Any]:
  """Compiles and times one training step of ``workload`` (synthetic data).

  ``params``: the parameters to step from (default: the workload's init).
  """
  if params is None:
    params, _ = workload.init_model_fn(jax.random.PRNGKey(0))
  optimizer = optimizers.nadamw(1e-3, weight_decay=1e-4)
  optimizer_state = optimizer.init(params)
  batch = next(workload._build_input_queue(  # pylint: disable=protected-access
      jax.random.PRNGKey(1), 'train', None, batch_size))

  def step(params, optimizer_state, batch, rng):
    def loss(p):
      outputs, _ = workload.model_fn(p, batch, None, spec.ForwardPassMode.TRAIN, rng,
                                     update_batch_norm=True, dropout_rate=0.0)
      losses = workload.loss_fn(batch['targets'], outputs, batch.get('weights'))
      return losses['summed'] / losses['n_valid_examples']

    value, grads = jax.value_and_grad(loss)(params)
    updates, optimizer_state = optimizer.update(grads, optimizer_state, params)
    return optax.apply_updates(params, updates), optimizer_state, value

  rng = jax.random.PRNGKey(2)
  started = time.perf_counter()
  compiled = jax.jit(step).lower(params, optimizer_state, batch, rng).compile()
  compile_sec = time.perf_counter() - started
  memory = compiled.memory_analysis()
  jax.block_until_ready(compiled(params, optimizer_state, batch, rng))
  times: List[float] = []
  for _ in range(repeats):
    started = time.perf_counter()
    jax.block_until_ready(compiled(params, optimizer_state, batch, rng))
    times.append(time.perf_counter() - started)
  return {
      'workload': workload.workload_name,
      'compile_sec': compile_sec,
      'step_sec': statistics.median(times),
      'argument_bytes': getattr(memory, 'argument_size_in_bytes', float('nan')),
      'output_bytes': getattr(memory, 'output_size_in_bytes', float('nan')),
      'temp_bytes': getattr(memory, 'temp_size_in_bytes', float('nan')),
  }


def render(row: Dict[str, Any]) -> str:
  return (f'{row["workload"]:<20} step {row["step_sec"] * 1e3:8.1f} ms  compile '
          f'{row["compile_sec"]:5.1f} s  arguments {_mib(row["argument_bytes"])}, '
          f'outputs {_mib(row["output_bytes"])}, temporaries {_mib(row["temp_bytes"])}')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workload', action='append', default=None,
                      choices=sorted(WORKLOADS))
  parser.add_argument('--batch_size', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args(argv)
  names = args.workload or ['fastmri']
  print(f'{jax.device_count()} {jax.devices()[0].platform} device(s), '
        f'batch size {args.batch_size}, median of {args.repeats} steps')
  for name in names:
    row = measure(WORKLOADS[name](synthetic=True), args.batch_size, args.repeats)
    print(render(row), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
