"""The background input prefetcher: order, placement, errors, shutdown, no leaks."""

import gc
import itertools
import threading

import jax
import numpy as np
import pytest

from algoperf import jax_sharding_utils
from algoperf.prefetch import Prefetcher
from algoperf.runner import SubmissionFailure, TrialConfig, train_once
from tests.fakes import ToyWorkload, make_submission


def _prefetch_threads():
  return {t for t in threading.enumerate() if t.name == 'algoperf-prefetch'}


class _Source:
  """An infinite counting iterator that records pulls and whether it was closed."""

  def __init__(self):
    self.pulled = 0
    self.closed = threading.Event()

  def __iter__(self):
    return self

  def __next__(self):
    self.pulled += 1
    return self.pulled - 1

  def close(self):
    self.closed.set()


def test_yields_the_source_in_order_then_stops():
  before = _prefetch_threads()
  with Prefetcher(range(50), buffer_size=3, place=None) as batches:
    assert list(batches) == list(range(50))
    assert next(batches, 'done') == 'done'
  assert _prefetch_threads() == before


def test_places_numpy_leaves_along_the_batch_axis_and_keeps_jax_arrays():
  placed = jax.device_put(np.ones(8), jax_sharding_utils.get_replicate_sharding())
  batch = {'inputs': np.arange(16, dtype=np.float32).reshape(8, 2),
           'weights': placed}
  with Prefetcher([batch]) as batches:
    out = next(batches)
  assert isinstance(out['inputs'], jax.Array)
  assert out['inputs'].sharding == jax_sharding_utils.get_batch_dim_sharding()
  np.testing.assert_array_equal(out['inputs'], batch['inputs'])
  assert out['weights'] is placed


def test_reads_at_most_buffer_size_plus_one_ahead():
  source = _Source()
  batches = Prefetcher(source, buffer_size=2, place=None)
  assert [next(batches) for _ in range(5)] == [0, 1, 2, 3, 4]
  batches.close()  # Joins the thread: ``pulled`` is final.
  # 5 consumed, 2 waiting in the buffer, 1 in the thread's hands.
  assert 5 <= source.pulled <= 5 + 2 + 1
  assert source.closed.is_set()


def test_source_errors_reach_the_consumer_with_their_type():
  before = _prefetch_threads()

  def broken():
    yield 1
    yield 2
    raise ValueError('disk on fire')

  batches = Prefetcher(broken(), place=None)
  assert next(batches) == 1 and next(batches) == 2
  with pytest.raises(ValueError, match='disk on fire'):
    next(batches)
  assert _prefetch_threads() == before  # Closed after the error.
  with pytest.raises(StopIteration):
    next(batches)


def test_place_errors_reach_the_consumer():
  def place(batch):
    raise TypeError(f'cannot place {batch}')

  with Prefetcher([7], place=place) as batches:
    with pytest.raises(TypeError, match='cannot place 7'):
      next(batches)


def test_close_stops_the_thread_and_closes_the_source():
  before = _prefetch_threads()
  source = _Source()
  batches = Prefetcher(source, buffer_size=1, place=None)
  next(batches)
  batches.close()
  batches.close()  # Twice is fine.
  assert _prefetch_threads() == before
  assert source.closed.is_set()
  with pytest.raises(StopIteration):
    next(batches)


def test_an_abandoned_prefetcher_is_collected_with_its_thread():
  before = _prefetch_threads()
  source = _Source()
  batches = Prefetcher(source, place=None)
  next(batches)
  del batches
  gc.collect()
  assert _prefetch_threads() == before
  assert source.closed.is_set()


def test_rejects_an_empty_buffer():
  with pytest.raises(ValueError, match='buffer_size'):
    Prefetcher([], buffer_size=0)


def _config(**kw):
  return TrialConfig(global_batch_size=8, hyperparameters=None, rng_seed=0,
                     budget_sec=1e9, **kw)


def test_the_runner_leaves_no_thread_behind():
  before = _prefetch_threads()
  result = train_once(ToyWorkload(validation_target=2.0, test_target=2.0),
                      make_submission(), _config(max_global_steps=3))
  assert result.global_step == 3
  assert _prefetch_threads() == before


def test_the_runner_leaves_no_thread_behind_when_the_submission_crashes():
  before = _prefetch_threads()
  steps = itertools.count()

  def crash(**kwargs):
    if next(steps) == 2:
      raise RuntimeError('submission bug')

  with pytest.raises(SubmissionFailure, match='submission bug'):
    train_once(ToyWorkload(validation_target=2.0, test_target=2.0),
               make_submission(update_hook=crash), _config(max_global_steps=5))
  assert _prefetch_threads() == before


def test_the_submission_sees_the_queue_in_order():
  """Prefetching changes no batch: the runner's batches are the source's."""
  workload = ToyWorkload(validation_target=2.0, test_target=2.0)
  seen = []

  def record(**kwargs):
    seen.append(np.asarray(kwargs['batch']['inputs']))

  train_once(workload, make_submission(update_hook=record),
             _config(max_global_steps=6))
  expected = workload._build_input_queue(None, 'train', None, 8)  # pylint: disable=protected-access
  for got in seen:
    np.testing.assert_array_equal(got, np.asarray(next(expected)['inputs']))
  assert len(seen) == 6
