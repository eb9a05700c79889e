"""Global batches from each process's rows: which rows a process reads, and placing them.

Every process reads only the rows of a global batch that its devices hold
(``local_positions``); ``placed`` turns those process-local rows into global
arrays split along the batch axis. Shared by every workload's data source.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Tuple

import jax
import numpy as np

from algoperf import jax_sharding_utils


def seed_words(rng: Any) -> Tuple[int, ...]:
  """A JAX key (raw uint32 or typed) or an int, as integers to seed numpy with."""
  if isinstance(rng, (int, np.integer)):
    return (int(rng),)
  if isinstance(rng, jax.Array) and jax.dtypes.issubdtype(
      rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.key_data(rng)
  words = np.asarray(jax.device_get(rng)).astype(np.uint32).ravel()
  return tuple(int(w) for w in words)


def checked_batch_size(global_batch_size: Any) -> int:
  """``global_batch_size`` as an int; ValueError unless a positive multiple of the device count."""
  global_batch_size = int(global_batch_size)
  if global_batch_size <= 0 or global_batch_size % jax.device_count():
    raise ValueError(
        f'global_batch_size {global_batch_size} must be a positive multiple '
        f'of the device count ({jax.device_count()}).')
  return global_batch_size


def local_positions(global_batch_size: int) -> np.ndarray:
  """Rows of a global batch held by this process's devices, ascending.

  Every process reads only these rows of each batch (``inputs[idx]`` for its
  part of ``idx``); ``jax.make_array_from_process_local_data`` then maps them
  to the devices in the same ascending order. One process: all rows.
  """
  if jax.process_count() == 1:
    return np.arange(global_batch_size)
  sharding = jax_sharding_utils.get_batch_dim_sharding()
  index_map = sharding.addressable_devices_indices_map((global_batch_size,))
  ranges = sorted({index[0].indices(global_batch_size)[:2]
                   for index in index_map.values()})
  return np.concatenate([np.arange(lo, hi) for lo, hi in ranges])


def placed(batches: Iterator[Dict[str, Any]], global_batch_size: int,
            num_batches: Optional[int] = None) -> Iterator[Dict[str, Any]]:
  """Global arrays, split along the batch axis, from each process's rows."""
  sharding = jax_sharding_utils.get_batch_dim_sharding()

  def place(local: np.ndarray) -> jax.Array:
    return jax.make_array_from_process_local_data(
        sharding, local, (global_batch_size, *local.shape[1:]))

  for i, batch in enumerate(batches):
    if num_batches is not None and i >= num_batches:
      return
    yield jax.tree.map(place, batch)
