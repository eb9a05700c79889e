"""The runner's per-step keys: derived in blocks, equal to the per-step derivation."""

import jax
import numpy as np

from algoperf import runner


def test_block_keys_equal_split_of_fold_in_across_blocks():
  rng = jax.random.split(jax.random.PRNGKey(7))[0]
  keys = runner._StepKeys(rng)  # pylint: disable=protected-access
  block = runner._KEYS_PER_BLOCK  # pylint: disable=protected-access
  # In order across a block boundary, then a jump back (a resumed trial
  # starts mid-way; nothing assumes step 0).
  for step in [0, 1, block - 1, block, block + 1, 3 * block + 5, 2]:
    expected = jax.random.split(jax.random.fold_in(rng, step), 4)
    got = tuple(keys(step)) + tuple(keys.at_eval(step))
    assert len(got) == 4
    for j in range(4):
      np.testing.assert_array_equal(np.asarray(got[j]), np.asarray(expected[j]))
