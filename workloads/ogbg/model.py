"""The GraphNet of the ogbg workload and its variants (jraph + flax).

An encode-process-decode graph network on molecules: node and edge features
are embedded to ``latent_dim``, ``num_message_passing_steps`` full GraphNet
blocks update edges, then nodes, then one global vector per graph (each update
an MLP of ``hidden_dims``: Dense, LayerNorm, activation, dropout, on its
concatenated inputs), and a Dense layer maps each graph's global vector to
128 task logits.

Parameter names and shapes follow the AlgoPerf JAX reference module, since
submissions select parameters by path and checkpoints must line up: the
embeddings are ``node_embedding`` and ``edge_embedding``; the MLP layers take
flax's automatic names in the order the reference creates them (per step: the
edge, node and global MLP, each layer a ``Dense_i`` then a ``LayerNorm_j``)
and the decoder is the last ``Dense``. ``ogbg``: 3,554,176 parameters in 66
leaves (``Dense_15`` decodes); ``ogbg_model_size``: 2,571,648 in 78
(``Dense_18`` decodes). There is no model state (no batch norm).

Call it like the reference::

  params = model.init(rng, graph, train=False)['params']
  logits = model.apply({'params': params}, graph, train=True,
                       dropout_rate=0.1, rngs={'dropout': key})
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from workloads.classification import dropout

NUM_OUTPUTS = 128
# The reference's default when model_fn is given no dropout rate.
DROPOUT_RATE = 0.1

Activation = Callable[[jax.Array], jax.Array]

# nn.gelu is the tanh approximation, as in the reference's GELU variant.
ACTIVATIONS: Dict[str, Activation] = {
  'relu': nn.relu,
  'gelu': nn.gelu,
  'silu': nn.silu,
}

# What each workload sets on GNN; options not named keep their default.
VARIANT_OPTIONS: Dict[str, Dict[str, Any]] = {
  'ogbg': {},
  'ogbg_gelu': {'activation': 'gelu'},
  'ogbg_silu': {'activation': 'silu'},
  'ogbg_model_size': {'latent_dim': 128, 'hidden_dims': (256, 256),
                      'num_message_passing_steps': 3},
}


def variant_options(workload_name: str) -> Dict[str, Any]:
  """The GNN keyword arguments of workload ``workload_name`` (a copy)."""
  if workload_name not in VARIANT_OPTIONS:
    raise ValueError(
      f'Unknown ogbg variant {workload_name!r}; known: '
      f'{", ".join(sorted(VARIANT_OPTIONS))}.')
  return dict(VARIANT_OPTIONS[workload_name])


class GNN(nn.Module):
  """GraphNet from a ``jraph.GraphsTuple`` to per-graph logits ``(n_graph, 128)``.

  The input's ``globals`` are ignored (the reference's pipeline leaves them
  ``{}``): every graph's global vector starts at zeros of width
  ``num_outputs``. Padding graphs get logits too; the loss masks them.

  Options (the variants change ``activation`` or the three sizes; see
  :data:`VARIANT_OPTIONS`):
    num_outputs: tasks, the width of the decoder ``Dense``.
    latent_dim: width of the node and edge embeddings.
    hidden_dims: the layers of every update MLP.
    num_message_passing_steps: GraphNet blocks.
    activation: 'relu', 'gelu' (tanh approximation) or 'silu'.
  """

  num_outputs: int = NUM_OUTPUTS
  latent_dim: int = 256
  hidden_dims: Tuple[int, ...] = (256,)
  num_message_passing_steps: int = 5
  activation: str = 'relu'

  def _mlp(self, train: bool, dropout_rate: Any) -> Callable[..., jax.Array]:
    """An update function: an MLP on its arguments concatenated (jraph's helper).

    Its layers are created in this module's scope when it is called, so they
    are numbered in call order, as the reference's are.
    """
    act = ACTIVATIONS[self.activation]

    @jraph.concatenated_args
    def update(inputs: jax.Array) -> jax.Array:
      x = inputs
      for features in self.hidden_dims:
        x = nn.Dense(features)(x)
        x = nn.LayerNorm()(x)
        x = act(x)
        if train:
          # A rate that may be traced (a submission passes it to jit).
          x = dropout(x, dropout_rate, self.make_rng('dropout'))
      return x

    return update

  @nn.compact
  def __call__(self, graph: jraph.GraphsTuple, train: bool,
               dropout_rate: Any = DROPOUT_RATE) -> jax.Array:
    """Logits ``(n_graph, num_outputs)``; dropout (rng ``'dropout'``) only if ``train``."""
    if self.activation not in ACTIVATIONS:
      raise ValueError(f'Unknown activation {self.activation!r}; use one of '
                       f'{", ".join(ACTIVATIONS)}.')
    n_graph = graph.n_node.shape[0]
    graph = graph._replace(globals=jnp.zeros((n_graph, self.num_outputs)))
    embed = jraph.GraphMapFeatures(
      embed_node_fn=nn.Dense(self.latent_dim, name='node_embedding'),
      embed_edge_fn=nn.Dense(self.latent_dim, name='edge_embedding'))
    graph = embed(graph)
    for _ in range(self.num_message_passing_steps):
      # jraph calls the edge, then the node, then the global update.
      block = jraph.GraphNetwork(
        update_edge_fn=self._mlp(train, dropout_rate),
        update_node_fn=self._mlp(train, dropout_rate),
        update_global_fn=self._mlp(train, dropout_rate))
      graph = block(graph)
    decode = jraph.GraphMapFeatures(embed_global_fn=nn.Dense(self.num_outputs))
    return decode(graph).globals


def init_graph(num_node_features: int = 9,
               num_edge_features: int = 3) -> jraph.GraphsTuple:
  """The one-node, one-edge graph the reference initialises the model with."""
  return jraph.GraphsTuple(
    n_node=jnp.asarray([1]), n_edge=jnp.asarray([1]),
    nodes=jnp.ones((1, num_node_features)),
    edges=jnp.ones((1, num_edge_features)),
    globals=jnp.zeros((1, NUM_OUTPUTS)),
    senders=jnp.asarray([0]), receivers=jnp.asarray([0]))

