"""How the runner hands state and batches to a submission: the jit or the pmap contract.

The current reference (v0.6) runs every hook on global arrays: parameters
replicated over the mesh, batches sharded along their leading axis, and the
submission's jitted step sees one logical array per leaf (``JitLayout``: the
runner changes nothing).

The v0.5 reference ran submissions written with ``jax.pmap`` (``PmapLayout``):

- parameters, model state and the optimizer state carry a leading device
  axis (``flax.jax_utils.replicate``); the submission replicates its own
  optimizer state in ``init_optimizer_state``;
- every batch is reshaped to ``(local devices, per-device batch, ...)``;
- the submission calls ``workload.model_fn`` and ``workload.loss_fn`` per
  device inside its ``pmap`` (axis name ``batch``);
- evals run on the unreplicated parameters (the first device's copy).

The clock, the logs and the rules are the same for both: only what crosses
the hook boundary changes shape.
"""

from __future__ import annotations

from typing import Any

import jax

from algoperf.errors import ConfigError


class JitLayout:
  """The current contract: what the workload makes is what the hooks get."""

  name = 'jit'

  def to_submission(self, tree: Any) -> Any:
    """The form of the workload's ``(params, model_state)`` the hooks get."""
    return tree

  def settle(self, tree: Any) -> Any:
    """The state as the submission's step will return it (before the clock starts)."""
    return tree

  def batch(self, batch: Any) -> Any:
    """The form of one train batch ``next(input_queue)`` returns."""
    return batch

  def to_workload(self, tree: Any) -> Any:
    """The form of the submission's ``(params, model_state)`` evals take."""
    return tree

  def host_copy(self, tree: Any) -> Any:
    """One logical value per leaf (for checks that compare with the model's shapes)."""
    return tree


class PmapLayout(JitLayout):
  """The v0.5 contract: a leading device axis on state and batches."""

  name = 'pmap'

  def __init__(self) -> None:
    self.num_devices = jax.local_device_count()

  def to_submission(self, tree: Any) -> Any:
    from flax import jax_utils  # pylint: disable=import-outside-toplevel

    return self.settle(jax_utils.replicate(tree))

  def settle(self, tree: Any) -> Any:
    """Places replicated leaves as ``pmap`` returns them (no value changes).

    ``flax.jax_utils.replicate`` and ``pmap``'s outputs split the device
    axis over meshes with different axis names, so the state the second
    step gets differs from the first's and ``pmap`` compiles again, on the
    clock. Placing the replicated state as ``pmap`` will (mesh axis
    ``batch``, the contract's axis name) before the clock starts avoids it.
    """
    from jax.sharding import Mesh, NamedSharding  # pylint: disable=import-outside-toplevel
    from jax.sharding import PartitionSpec as P  # pylint: disable=import-outside-toplevel

    sharding = NamedSharding(Mesh(jax.local_devices(), ('batch',)), P('batch'))

    def place(leaf: Any) -> Any:
      if (isinstance(leaf, jax.Array) and leaf.ndim
          and leaf.shape[0] == self.num_devices
          and isinstance(leaf.sharding, NamedSharding)
          and leaf.sharding.spec and leaf.sharding.spec[0] is not None
          and leaf.sharding != sharding):
        return jax.device_put(leaf, sharding)
      return leaf

    return jax.tree.map(place, tree)

  def batch(self, batch: Any) -> Any:
    n = self.num_devices

    def split(leaf: Any) -> Any:
      shape = getattr(leaf, 'shape', None)
      if shape is None or not shape or shape[0] % n:
        return leaf
      return leaf.reshape((n, shape[0] // n, *shape[1:]))

    return jax.tree.map(split, batch)

  def to_workload(self, tree: Any) -> Any:
    from algoperf import jax_sharding_utils  # pylint: disable=import-outside-toplevel

    return jax_sharding_utils.replicate(self.host_copy(tree))

  def host_copy(self, tree: Any) -> Any:
    def first(leaf: Any) -> Any:
      if isinstance(leaf, jax.Array) and leaf.ndim and leaf.shape[0] == self.num_devices:
        return leaf[0]
      return leaf

    return jax.tree.map(first, tree)


def for_api(api: str) -> JitLayout:
  """The layout of a submission's ``api`` (``'jit'`` or ``'pmap'``)."""
  if api == 'pmap':
    check_pmap_supported()
    return PmapLayout()
  if api == 'jit':
    return JitLayout()
  raise ValueError(f'Unknown submission API {api!r}; expected jit or pmap.')


def check_pmap_supported() -> None:
  """Raises ``ConfigError`` where the pmap contract cannot run (several processes)."""
  if jax.process_count() > 1:
    raise ConfigError(
        'This submission uses jax.pmap (the v0.5 contract), which this runner '
        f'supports on one process only; this run has {jax.process_count()}. '
        'Run it on one host, or port it to jit (see docs/RULES.md).')
