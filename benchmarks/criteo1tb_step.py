"""One training step of a criteo1tb model: compile time, step time and XLA's memory analysis.

A step is what a submission's ``update_params`` does: the workload's
``model_fn`` in train mode, the sigmoid cross-entropy, the gradient (dense
over the whole embedding table, as in JAX) and a NAdamW update
(``algoperf.optimizers.nadamw``), jitted as one function with the params and
optimizer state donated, as the baselines do, on a synthetic batch of the
real format. Prints the compile time, the median step time of ``--repeats``
runs after a warm-up, and the compiled step's memory analysis.

The full-size model holds 539M parameters (2 GiB) and NAdamW two moments of
the same size: about 9 GiB of host memory on a CPU. ``--vocab_size``
shrinks the table for a quick run.

Usage:
  python benchmarks/criteo1tb_step.py [--batch_size 2] [--repeats 5]
      [--workload criteo1tb --workload criteo1tb_resnet] [--vocab_size 65536]
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
from workloads.criteo1tb import workload as criteo  # noqa: E402  pylint: disable=wrong-import-position

CLASSES = {cls.workload_name: cls for cls in (
    criteo.Criteo1TbDlrmSmallWorkload, criteo.Criteo1TbDlrmSmallTestWorkload,
    criteo.Criteo1TbDlrmSmallLayerNormWorkload, criteo.Criteo1TbDlrmSmallResNetWorkload,
    criteo.Criteo1TbDlrmSmallEmbedInitWorkload)}


def _mib(num_bytes: float) -> str:
  return f'{num_bytes / 2**20:.1f} MiB'


def measure(name: str, batch_size: int, repeats: int,
            vocab_size: Optional[int] = None) -> Dict[str, Any]:
  """Compiles and times one training step of workload ``name``."""
  workload = CLASSES[name](synthetic=True, vocab_size=vocab_size)
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  optimizer = optimizers.nadamw(1e-3, weight_decay=1e-4)
  optimizer_state = optimizer.init(params)
  batch = next(workload._build_input_queue(  # pylint: disable=protected-access
      jax.random.PRNGKey(1), 'train', None, batch_size))

  def step(params, optimizer_state, batch, rng):
    def loss(p):
      logits, _ = workload.model_fn(p, batch, model_state, spec.ForwardPassMode.TRAIN,
                                    rng, update_batch_norm=True, dropout_rate=0.0)
      losses = workload.loss_fn(batch['targets'], logits, batch['weights'])
      return losses['summed'] / losses['n_valid_examples']

    value, grads = jax.value_and_grad(loss)(params)
    updates, optimizer_state = optimizer.update(grads, optimizer_state, params)
    return optax.apply_updates(params, updates), optimizer_state, value

  rng = jax.random.PRNGKey(2)
  started = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, optimizer_state, batch, rng).compile()
  compile_sec = time.perf_counter() - started
  memory = compiled.memory_analysis()
  params, optimizer_state, _ = jax.block_until_ready(
      compiled(params, optimizer_state, batch, rng))
  times: List[float] = []
  for _ in range(repeats):
    started = time.perf_counter()
    params, optimizer_state, value = jax.block_until_ready(
        compiled(params, optimizer_state, batch, rng))
    times.append(time.perf_counter() - started)
  return {
      'workload': name,
      'vocab_size': workload.vocab_size,
      'loss': float(value),
      'compile_sec': compile_sec,
      'step_sec': statistics.median(times),
      'argument_bytes': getattr(memory, 'argument_size_in_bytes', float('nan')),
      'output_bytes': getattr(memory, 'output_size_in_bytes', float('nan')),
      'alias_bytes': getattr(memory, 'alias_size_in_bytes', float('nan')),
      'temp_bytes': getattr(memory, 'temp_size_in_bytes', float('nan')),
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workload', action='append', default=None,
                      choices=sorted(CLASSES))
  parser.add_argument('--batch_size', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--vocab_size', type=int, default=None,
                      help='rows of the embedding table (default: the workload\'s)')
  args = parser.parse_args(argv)
  names = args.workload or ['criteo1tb']
  print(f'{jax.device_count()} {jax.devices()[0].platform} device(s), '
        f'batch size {args.batch_size}, median of {args.repeats} steps')
  for name in names:
    row = measure(name, args.batch_size, args.repeats, args.vocab_size)
    print(f'{name:<20} table {row["vocab_size"]:>9} rows  step '
          f'{row["step_sec"] * 1e3:8.1f} ms  compile {row["compile_sec"]:5.1f} s  '
          f'arguments {_mib(row["argument_bytes"])}, outputs {_mib(row["output_bytes"])} '
          f'(aliased {_mib(row["alias_bytes"])}), temporaries {_mib(row["temp_bytes"])}',
          flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
