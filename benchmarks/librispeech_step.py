"""One training step of each LibriSpeech model, and an eval: time and memory.

A step is what a submission's ``update_params`` does: the workload's
``model_fn`` in train mode (dropout, SpecAugment, batch-norm statistics
updated), the CTC loss over target tokens, the gradient and a NAdamW update
(``algoperf.optimizers.nadamw``), jitted as one function on a synthetic
batch of the real shape (320,000 samples, 256 target ids). Prints the
compile time, the median step time of ``--repeats`` runs after a warm-up,
the compiled step's memory analysis (arguments, outputs, temporaries) and
the time of an eval of ``--eval_examples`` synthetic utterances (forward
pass, greedy CTC decoding, detokenising and word error rate), first call
(with its compile) and a second one.

Usage:
  python benchmarks/librispeech_step.py [--batch_size 2] [--repeats 5]
      [--eval_examples 4] [--workload librispeech_conformer ...]
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

import workloads  # noqa: E402  pylint: disable=wrong-import-position
from algoperf import optimizers, spec  # noqa: E402  pylint: disable=wrong-import-position

_CLASSES = {
    'librispeech_conformer':
        'workloads.librispeech_conformer.workload:LibriSpeechConformerWorkload',
    'librispeech_deepspeech':
        'workloads.librispeech_deepspeech.workload:LibriSpeechDeepSpeechWorkload',
}


def _workload(name: str) -> spec.Workload:
  """The synthetic workload ``name``, registered or not (yet)."""
  if name in workloads.list_workloads():
    return workloads.get_workload(name, synthetic=True)
  import importlib  # pylint: disable=import-outside-toplevel
  module, _, cls = _CLASSES[name].partition(':')
  return getattr(importlib.import_module(module), cls)(synthetic=True)


def _mib(num_bytes: float) -> str:
  return f'{num_bytes / 2**20:.1f} MiB'


def measure(name: str, batch_size: int, repeats: int, eval_examples: int) -> Dict[str, Any]:
  """Compiles and times one training step and an eval of workload ``name``."""
  workload = _workload(name)
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  optimizer = optimizers.nadamw(1e-3, weight_decay=1e-4)
  optimizer_state = optimizer.init(params)
  batch = next(workload._build_input_queue(  # pylint: disable=protected-access
      jax.random.PRNGKey(1), 'train', None, batch_size))

  def step(params, model_state, optimizer_state, batch, rng):
    def loss(p):
      logits, new_state = workload.model_fn(
          p, batch, model_state, spec.ForwardPassMode.TRAIN, rng,
          update_batch_norm=True)
      losses = workload.loss_fn(batch['targets'], logits, batch.get('weights'))
      return losses['summed'] / losses['n_valid_examples'], new_state

    (value, new_state), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, optimizer_state = optimizer.update(grads, optimizer_state, params)
    return optax.apply_updates(params, updates), new_state, optimizer_state, value

  rng = jax.random.PRNGKey(2)
  started = time.perf_counter()
  compiled = jax.jit(step).lower(params, model_state, optimizer_state, batch,
                                 rng).compile()
  compile_sec = time.perf_counter() - started
  memory = compiled.memory_analysis()
  jax.block_until_ready(compiled(params, model_state, optimizer_state, batch, rng))
  times: List[float] = []
  for _ in range(repeats):
    started = time.perf_counter()
    jax.block_until_ready(compiled(params, model_state, optimizer_state, batch, rng))
    times.append(time.perf_counter() - started)

  eval_sec = []
  for _ in range(2):  # The first includes the eval step's compile.
    started = time.perf_counter()
    workload._eval_model_on_split(  # pylint: disable=protected-access
        'validation', eval_examples, eval_examples, params, model_state, None, None)
    eval_sec.append(time.perf_counter() - started)
  return {
      'workload': name,
      'compile_sec': compile_sec,
      'step_sec': statistics.median(times),
      'argument_bytes': getattr(memory, 'argument_size_in_bytes', float('nan')),
      'output_bytes': getattr(memory, 'output_size_in_bytes', float('nan')),
      'temp_bytes': getattr(memory, 'temp_size_in_bytes', float('nan')),
      'eval_first_sec': eval_sec[0],
      'eval_sec': eval_sec[1],
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workload', action='append', default=None)
  parser.add_argument('--batch_size', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--eval_examples', type=int, default=4)
  args = parser.parse_args(argv)
  names = args.workload or list(_CLASSES)
  print(f'{jax.device_count()} {jax.devices()[0].platform} device(s), '
        f'batch size {args.batch_size}, median of {args.repeats} steps, eval of '
        f'{args.eval_examples} utterances')
  for name in names:
    row = measure(name, args.batch_size, args.repeats, args.eval_examples)
    print(f'{name:<24} step {row["step_sec"] * 1e3:8.1f} ms  compile '
          f'{row["compile_sec"]:5.1f} s  arguments {_mib(row["argument_bytes"])}, '
          f'outputs {_mib(row["output_bytes"])}, temporaries {_mib(row["temp_bytes"])}; '
          f'eval {row["eval_sec"]:.1f} s ({row["eval_first_sec"]:.1f} s with compile)',
          flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
