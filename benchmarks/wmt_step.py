"""One training step of each wmt model, and the eval's decoding: time and memory.

A step is what a submission's ``update_params`` does: the workload's
``model_fn`` in train mode (dropout 0.1, the default), the token loss, the
gradient and a NAdamW update (``algoperf.optimizers.nadamw``), jitted as
one function on a synthetic packed batch of the real shape (``batch_size``
rows of 256 tokens). Prints the compile time, the median step time of
``--repeats`` runs after a warm-up and the compiled step's memory analysis;
then the time of one synthetic eval split of ``--eval_examples`` pairs
(loss, accuracy and BLEU, beam search of 4 beams up to ``--decode_length``
tokens: 256, the real data's, by default; an untrained model never ends a
sentence early), once with its compilation and once without.

Usage:
  python benchmarks/wmt_step.py [--batch_size 2] [--repeats 5]
      [--workload wmt --workload wmt_glu_tanh] [--eval_examples 2]
      [--decode_length 256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402  pylint: disable=wrong-import-position
import optax  # noqa: E402  pylint: disable=wrong-import-position

from algoperf import optimizers, spec  # noqa: E402  pylint: disable=wrong-import-position
from workloads.wmt import workload as wmt  # noqa: E402  pylint: disable=wrong-import-position

CLASSES = {
    'wmt': wmt.WmtWorkload,
    'wmt_post_ln': wmt.WmtWorkloadPostLN,
    'wmt_attention_temp': wmt.WmtWorkloadAttentionTemp,
    'wmt_glu_tanh': wmt.WmtWorkloadGLUTanH,
}


def _mib(num_bytes: float) -> str:
  return f'{num_bytes / 2**20:.1f} MiB'


def measure_step(workload: wmt.WmtWorkload, params: Any, batch_size: int,
                 repeats: int) -> Dict[str, Any]:
  """Compiles and times one training step of ``workload``."""
  optimizer = optimizers.nadamw(1e-3, weight_decay=1e-4)
  optimizer_state = optimizer.init(params)
  batch = next(workload._build_input_queue(  # pylint: disable=protected-access
      jax.random.PRNGKey(1), 'train', None, batch_size))

  def step(params, optimizer_state, batch, rng):
    def loss(p):
      logits, _ = workload.model_fn(p, batch, None, spec.ForwardPassMode.TRAIN, rng,
                                    update_batch_norm=True)
      losses = workload.loss_fn(batch['targets'], logits, batch['weights'])
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
      'compile_sec': compile_sec,
      'step_sec': statistics.median(times),
      'argument_bytes': getattr(memory, 'argument_size_in_bytes', float('nan')),
      'output_bytes': getattr(memory, 'output_size_in_bytes', float('nan')),
      'temp_bytes': getattr(memory, 'temp_size_in_bytes', float('nan')),
  }


def measure_eval(workload: wmt.WmtWorkload, params: Any, examples: int) -> Dict[str, Any]:
  """Seconds of one synthetic eval split of ``examples`` pairs: first (compiling), then again."""
  times = []
  for _ in range(2):
    started = time.perf_counter()
    result = workload._eval_model_on_split(  # pylint: disable=protected-access
        'validation', examples, examples, params, None, None, None)
    times.append(time.perf_counter() - started)
  return {'first_eval_sec': times[0], 'eval_sec': times[1], 'bleu': result['bleu']}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workload', action='append', default=None,
                      choices=sorted(CLASSES))
  parser.add_argument('--batch_size', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--eval_examples', type=int, default=2,
                      help='pairs of the timed eval split (0: no eval)')
  parser.add_argument('--decode_length', type=int, default=256,
                      help='decoded length in the timed eval (synthetic evals '
                      'otherwise stop at 64)')
  args = parser.parse_args(argv)
  names = args.workload or ['wmt']
  print(f'{jax.device_count()} {jax.devices()[0].platform} device(s), '
        f'batch size {args.batch_size} x 256 tokens, median of {args.repeats} steps')
  for name in names:
    workload = CLASSES[name](synthetic=True)
    params, _ = workload.init_model_fn(jax.random.PRNGKey(0))
    row = measure_step(workload, params, args.batch_size, args.repeats)
    print(f'{name:<18} step {row["step_sec"] * 1e3:8.1f} ms  compile '
          f'{row["compile_sec"]:5.1f} s  arguments {_mib(row["argument_bytes"])}, '
          f'outputs {_mib(row["output_bytes"])}, temporaries {_mib(row["temp_bytes"])}',
          flush=True)
    if args.eval_examples:
      workload.synthetic_max_predict_length = args.decode_length
      timing = measure_eval(workload, params, args.eval_examples)
      print(f'{name:<18} eval of {args.eval_examples} pairs (beam search, '
            f'{args.decode_length} tokens): '
            f'{timing["first_eval_sec"]:.1f} s with compilation, '
            f'{timing["eval_sec"]:.1f} s after', flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
