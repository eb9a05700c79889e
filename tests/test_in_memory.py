"""The in-memory data source: seekable training order, padded eval batches."""

import itertools

import jax
import numpy as np
import pytest

from workloads import registry
from workloads.in_memory import padded_batches, shuffled_batches


class _CountingArray:
  """An array that counts the rows gathered from it."""

  def __init__(self, array):
    self.array = array
    self.rows_gathered = 0

  def __len__(self):
    return len(self.array)

  def __getitem__(self, idx):
    self.rows_gathered += np.size(idx)
    return self.array[idx]


def _take(iterator, n):
  return list(itertools.islice(iterator, n))


def _stream(inputs, labels, start=0, batch=4):
  return shuffled_batches(inputs, labels, batch, np.random.SeedSequence(7),
                          np.arange(batch), start=start)


@pytest.mark.parametrize('start', [1, 4, 5, 11, 26])
def test_a_stream_started_at_n_is_the_tail_of_the_stream_from_zero(start):
  # 18 examples, batch 4: 4 batches per epoch (2 examples dropped each epoch).
  inputs = np.arange(18, dtype=np.float32)[:, None]
  labels = np.arange(18, dtype=np.int32)
  whole = _take(_stream(inputs, labels), start + 3)
  tail = _take(_stream(inputs, labels, start=start), 3)
  for got, want in zip(tail, whole[start:]):
    np.testing.assert_array_equal(got['targets'], want['targets'])
    np.testing.assert_array_equal(got['inputs'], want['inputs'])


def test_each_epoch_is_a_fresh_permutation_without_repeats():
  labels = np.arange(16, dtype=np.int32)
  epoch = _take(_stream(labels[:, None].astype(np.float32), labels), 8)
  first = np.concatenate([b['targets'] for b in epoch[:4]])
  second = np.concatenate([b['targets'] for b in epoch[4:]])
  assert sorted(first) == sorted(second) == list(range(16))
  assert not np.array_equal(first, second)


def test_starting_late_gathers_no_skipped_batch():
  inputs = _CountingArray(np.zeros((1000, 3), np.float32))
  labels = np.zeros((1000,), np.int32)
  stream = shuffled_batches(inputs, labels, 10, np.random.SeedSequence(0),
                            np.arange(10), start=100_000)
  next(stream)
  assert inputs.rows_gathered == 10  # Only the batch handed out.


def test_padded_batches_cover_the_split_once_with_weight_zero_padding():
  labels = np.arange(10, dtype=np.int32)
  batches = list(padded_batches(labels[:, None].astype(np.float32), labels, 4,
                                False, np.arange(4)))
  assert [b['weights'].tolist() for b in batches][-1] == [1, 1, 0, 0]
  real = np.concatenate([b['targets'][b['weights'] > 0] for b in batches])
  assert real.tolist() == list(range(10))


def test_a_workload_queue_resumes_at_a_start_position():
  workload = registry.get_workload_class('mnist1d')(synthetic=True)
  rng = jax.random.PRNGKey(3)
  whole = _take(workload._build_input_queue(rng, 'train', None, 64), 40)
  tail = _take(workload._build_input_queue(rng, 'train', None, 64,
                                           start_position=37), 3)
  for got, want in zip(tail, whole[37:]):
    np.testing.assert_array_equal(np.asarray(got['inputs']),
                                  np.asarray(want['inputs']))
