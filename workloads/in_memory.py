"""The data source of datasets that fit in host memory (the small workloads).

Two batch streams over numpy arrays, each yielding this process's rows
(``workloads.batching.local_positions``) of every global batch:

* ``shuffled_batches``: endless training batches, one permutation per epoch,
  incomplete final batches dropped. It can start at any batch index: the
  permutations of the epochs before it are drawn (the generator must advance
  through them for the order to stay the one a run from step 0 sees) but no
  batch is gathered, so a resume costs one permutation per skipped epoch
  (about 1 ms for 60,000 examples) instead of rebuilding every batch.
* ``padded_batches``: a split in order, the last batch padded with weight-0
  rows, so every eval batch has one shape and each example counts once.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator

import numpy as np


def shuffled_batches(inputs: np.ndarray, labels: np.ndarray, batch_size: int,
                     seed: np.random.SeedSequence, positions: np.ndarray,
                     start: int = 0) -> Iterator[Dict[str, Any]]:
  """This process's rows of each shuffled global batch, from batch ``start`` on.

  Every process draws the same permutations (same seed), so the processes'
  rows together form the batch a single process would have read.
  """
  num = len(inputs)
  steps_per_epoch = num // batch_size
  if steps_per_epoch == 0:
    raise ValueError(
        f'global_batch_size {batch_size} exceeds the {num} training examples.')
  if start < 0:
    raise ValueError(f'start must be >= 0, got {start}.')
  generator = np.random.default_rng(seed)
  epoch, first = divmod(int(start), steps_per_epoch)
  for _ in range(epoch):
    generator.permutation(num)
  weights = np.ones((len(positions),), np.float32)
  while True:
    order = generator.permutation(num)
    for i in range(first, steps_per_epoch):
      idx = order[i * batch_size:(i + 1) * batch_size][positions]
      yield {'inputs': inputs[idx], 'targets': labels[idx], 'weights': weights}
    first = 0


def padded_batches(inputs: np.ndarray, labels: np.ndarray, batch_size: int,
                   repeat: bool,
                   positions: np.ndarray) -> Iterator[Dict[str, Any]]:
  """This process's rows of each in-order global batch, zero-padded past the end.

  Padding sits at the end of the last global batch, so each process's real
  rows are a prefix of its local rows.
  """
  num = len(inputs)
  local_size = len(positions)
  while True:
    for start in range(0, num, batch_size):
      idx = start + positions
      idx = idx[idx < num]
      n = len(idx)
      x, y = inputs[idx], labels[idx]
      weights = np.zeros((local_size,), np.float32)
      weights[:n] = 1.0
      if n < local_size:
        x = np.concatenate(
            [x, np.zeros((local_size - n, *x.shape[1:]), x.dtype)])
        y = np.concatenate([y, np.zeros((local_size - n,), y.dtype)])
      yield {'inputs': x, 'targets': y, 'weights': weights}
    if not repeat:
      return
