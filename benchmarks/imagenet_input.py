"""Examples per second of the ImageNet input pipeline (workloads/imagenet_pipeline.py).

Writes a small ImageNet in the prepared tfds format (tests/imagenet_files.py)
with images of a typical ImageNet size (375 x 500 by default) to a temporary
folder, then times three pipelines at 224 x 224: training with the ResNet
augmentation (random crop, flip), training with the ViT augmentation (adds
RandAugment and mixup) and eval (centre crop). Each is timed over
``--batches`` batches after ``--warmup`` batches (graph building and the
first reads), on this machine's CPUs; tf.data uses all of them.

Usage:
  python benchmarks/imagenet_input.py [--examples 512] [--batch_size 32]
      [--batches 24] [--warmup 4] [--image_shape 375x500] [--data_dir DIR]

``--data_dir`` keeps the written dataset there (and reuses it if present)
instead of a temporary folder, e.g. to time another pipeline on the same
files.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.imagenet_files import write_tiny_imagenet  # noqa: E402  pylint: disable=wrong-import-position
from workloads import imagenet_pipeline as ip  # noqa: E402  pylint: disable=wrong-import-position


def _image_shape(text: str) -> Tuple[int, int]:
  height, width = text.lower().split('x')
  return int(height), int(width)


def examples_per_second(batches: Iterator[Dict], batch_size: int, warmup: int,
                        count: int) -> float:
  """Examples a second over ``count`` batches, after ``warmup`` untimed ones."""
  for _ in range(warmup):
    next(batches)
  started = time.perf_counter()
  for _ in range(count):
    next(batches)
  return count * batch_size / (time.perf_counter() - started)


def _endless(source: Iterable[Dict]) -> Iterator[Dict]:
  """Pass after pass of a re-iterable eval source (as evals do)."""
  return itertools.chain.from_iterable(itertools.repeat(source))


def pipelines(data_dir: str, batch_size: int,
              validation: int) -> Dict[str, Callable[[], Iterator[Dict]]]:
  """Name -> a function starting that pipeline's batches."""
  return {
      'train (ResNet: crop, flip)': lambda: ip.train_batches(
          data_dir, (0, 1), batch_size),
      'train (ViT: + RandAugment, mixup)': lambda: ip.train_batches(
          data_dir, (0, 1), batch_size, randaugment=True,
          mixup_alpha=ip.VIT_MIXUP_ALPHA),
      'eval (centre crop)': lambda: _endless(ip.eval_batches(
          data_dir, 'validation', validation, batch_size)),
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--examples', type=int, default=512, help='train examples')
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--batches', type=int, default=24)
  parser.add_argument('--warmup', type=int, default=4)
  parser.add_argument('--image_shape', type=_image_shape, default=(375, 500))
  parser.add_argument('--data_dir', default=None)
  args = parser.parse_args(argv)
  # As many as train: an eval pass long enough that starting it is noise.
  validation = args.examples
  with tempfile.TemporaryDirectory() as scratch:
    data_dir = args.data_dir or scratch
    if not (Path(data_dir) / ip.IMAGENET2012 / ip.IMAGENET2012_VERSION).is_dir():
      started = time.perf_counter()
      write_tiny_imagenet(Path(data_dir), train=args.examples, validation=validation,
                          test=args.batch_size, train_shards=8, validation_shards=2,
                          image_shape=args.image_shape)
      print(f'wrote {args.examples} + {validation} JPEGs of {args.image_shape[0]}x'
            f'{args.image_shape[1]} in {time.perf_counter() - started:.1f} s')
    counts = ip.split_counts(data_dir)
    print(f'{counts["train"]} train, {counts["validation"]} validation examples; '
          f'batch {args.batch_size}, {args.batches} batches after {args.warmup}')
    for name, start in pipelines(data_dir, args.batch_size,
                                 counts['validation']).items():
      rate = examples_per_second(start(), args.batch_size, args.warmup, args.batches)
      print(f'{name:<36} {rate:8.1f} examples/s', flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
