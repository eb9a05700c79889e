"""Eval metric states: merge batch by batch, finish on the host (hand-worked numbers)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from workloads import metrics


def test_average_weights_padding_out_even_when_it_is_nan():
  state = metrics.Average.from_values(jnp.array([1.0, 2.0, jnp.nan]),
                                      jnp.array([1.0, 1.0, 0.0]))
  assert state.compute() == pytest.approx(1.5)
  # (1 + 2 + 6) / 3 after merging a batch whose one value is 6.
  merged = state.merge(metrics.Average.from_values(jnp.array([6.0])))
  assert merged.compute() == pytest.approx(3.0)
  assert metrics.Average.from_sum(10.0, 4.0).compute() == pytest.approx(2.5)
  with pytest.raises(ValueError, match='no examples'):
    metrics.Average.from_values(jnp.array([1.0]), jnp.array([0.0])).compute()


def test_accuracy_from_logits_and_merge_inside_jit():
  logits = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.0, 1.0]])
  labels = jnp.array([1, 1, 1, 0])
  weights = jnp.array([1.0, 1.0, 1.0, 0.0])  # The last (wrong) row is padding.

  @jax.jit
  def step(logits, labels, weights):
    return {'accuracy': metrics.Accuracy.from_logits(logits, labels, weights)}

  first = step(logits, labels, weights)
  assert isinstance(first['accuracy'], metrics.Accuracy)
  assert first['accuracy'].compute() == pytest.approx(2 / 3)
  merged = metrics.merge_all([first, step(logits[:1], labels[:1], weights[:1])])
  # 2 of 3, then 1 of 1: 3 of 4.
  assert metrics.compute_all(merged) == {'accuracy': pytest.approx(0.75)}


def test_collected_keeps_weighted_rows_and_finishes_with_its_function():
  def mean_abs_error(predictions, labels):
    return float(np.mean(np.abs(predictions - labels)))

  state = metrics.Collected(mean_abs_error)
  state.add(jnp.array([1.0, 0.0]), predictions=jnp.array([1.0, 99.0]),
            labels=jnp.array([0.0, 0.0]))
  other = metrics.Collected(mean_abs_error).add(
      jnp.array([1.0]), predictions=jnp.array([3.0]), labels=jnp.array([0.0]))
  merged = state.merge(other)
  # Rows kept: |1 - 0| and |3 - 0|; the padded 99 is dropped.
  np.testing.assert_array_equal(merged.arrays()['predictions'], [1.0, 3.0])
  assert merged.compute() == pytest.approx(2.0)
