"""Fast tests of the ogbg GraphNet (parameter tree, forward pass, dropout).

tests/data/ogbg_params.txt and ogbg_model_size_params.txt list every
parameter (path, shape) of the AlgoPerf JAX reference model, written from
the reference in a scratch folder; ogbg_gelu and ogbg_silu share ogbg's. The
tree is compared without computing anything (``jax.eval_shape``); behaviour
is tested on a narrow GNN (same code, small widths) so that each compile
takes a fraction of a second.
"""

import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest
from flax import traverse_util

from workloads.ogbg import model as gnn

DATA = Path(__file__).parent / 'data'
LISTINGS = {'ogbg': 'ogbg_params.txt', 'ogbg_gelu': 'ogbg_params.txt',
            'ogbg_silu': 'ogbg_params.txt',
            'ogbg_model_size': 'ogbg_model_size_params.txt'}
COUNTS = {'ogbg': (66, 3_554_176), 'ogbg_gelu': (66, 3_554_176),
          'ogbg_silu': (66, 3_554_176), 'ogbg_model_size': (78, 2_571_648)}
SMALL = {'latent_dim': 8, 'hidden_dims': (8,), 'num_message_passing_steps': 2}


def _listing(name):
  lines = (DATA / LISTINGS[name]).read_text().splitlines()
  return {path: tuple(int(d) for d in shape.split('x'))
          for path, shape in (line.split() for line in lines if not line.startswith('#'))}


def _flat(tree):
  return {'/'.join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def _graphs(sizes, seed=0):
  """Random graphs with ``sizes`` = [(nodes, edges), ...], one GraphsTuple each."""
  rng = np.random.default_rng(seed)
  return [jraph.GraphsTuple(
      n_node=np.array([n]), n_edge=np.array([m]),
      nodes=rng.integers(0, 5, (n, 9)).astype(np.float32),
      edges=rng.integers(0, 3, (m, 3)).astype(np.float32),
      senders=rng.integers(0, n, m), receivers=rng.integers(0, n, m),
      globals=np.zeros((1, 128), np.float32)) for n, m in sizes]


def _graph(sizes, seed=0, pad_to=None):
  """The graphs of ``_graphs`` batched; ``pad_to`` = (n_node, n_edge, n_graph)."""
  graph = jraph.batch_np(_graphs(sizes, seed))
  return jraph.pad_with_graphs(graph, *pad_to) if pad_to else graph


@functools.lru_cache(maxsize=None)
def _small(activation='relu'):
  model = gnn.GNN(activation=activation, **SMALL)
  params = jax.jit(lambda k: model.init(k, gnn.init_graph(), train=False))(
      jax.random.PRNGKey(0))['params']
  return model, params


@functools.lru_cache(maxsize=None)
def _apply(model, train):
  return jax.jit(lambda p, g, rate, key: model.apply(
      {'params': p}, g, train=train, dropout_rate=rate, rngs={'dropout': key}))


# --- options -------------------------------------------------------------------------


def test_variant_options():
  assert gnn.variant_options('ogbg') == {}
  assert gnn.variant_options('ogbg_gelu') == {'activation': 'gelu'}
  assert gnn.variant_options('ogbg_silu') == {'activation': 'silu'}
  assert gnn.variant_options('ogbg_model_size') == {
      'latent_dim': 128, 'hidden_dims': (256, 256), 'num_message_passing_steps': 3}
  gnn.variant_options('ogbg')['activation'] = 'gelu'  # A copy.
  assert gnn.variant_options('ogbg') == {}
  with pytest.raises(ValueError, match='ogbg_model_size'):
    gnn.variant_options('ogbg_swish')
  model = gnn.GNN()
  assert (model.num_outputs, model.latent_dim, model.hidden_dims,
          model.num_message_passing_steps, model.activation) == (128, 256, (256,), 5, 'relu')
  assert gnn.DROPOUT_RATE == 0.1


# --- the tree (no values) ------------------------------------------------------------


@pytest.mark.parametrize('name', sorted(LISTINGS))
def test_tree_matches_the_reference_listing(name):
  model = gnn.GNN(**gnn.variant_options(name))
  shapes = jax.eval_shape(lambda k: model.init(k, gnn.init_graph(), train=False),
                          jax.random.PRNGKey(0))
  assert set(shapes) == {'params'}  # No batch statistics or other state.
  params = _flat(shapes['params'])
  leaves, count = COUNTS[name]
  assert len(params) == leaves
  assert sum(math.prod(v.shape) for v in params.values()) == count
  assert all(v.dtype == jnp.float32 for v in params.values())
  assert {k: tuple(v.shape) for k, v in params.items()} == _listing(name)


def test_the_decoder_is_the_last_dense():
  # Dense_15 (ogbg) and Dense_18 (ogbg_model_size) map 256 globals to 128 tasks.
  assert _listing('ogbg')['Dense_15/kernel'] == (256, 128)
  assert _listing('ogbg_model_size')['Dense_18/kernel'] == (256, 128)
  assert 'Dense_16/kernel' not in _listing('ogbg')


# --- forward passes --------------------------------------------------------------------


def test_logits_per_graph_slot_and_padding_changes_no_real_graph():
  model, params = _small()
  sizes = [(5, 4), (1, 0), (12, 13)]
  plain = _graph(sizes)
  padded = _graph(sizes, pad_to=(40, 60, 6))
  key = jax.random.PRNGKey(0)
  logits = _apply(model, False)(params, plain, 0.0, key)
  padded_logits = _apply(model, False)(params, padded, 0.0, key)
  assert logits.shape == (3, 128) and padded_logits.shape == (6, 128)
  assert bool(jnp.all(jnp.isfinite(padded_logits)))
  np.testing.assert_allclose(padded_logits[:3], logits, rtol=1e-5, atol=1e-6)
  # Graphs do not see each other: the last one alone gives its own logits.
  alone = _apply(model, False)(params, jraph.batch_np(_graphs(sizes)[2:]), 0.0, key)
  np.testing.assert_allclose(alone[0], logits[2], rtol=1e-5, atol=1e-6)


def test_input_globals_are_ignored():
  model, params = _small()
  graph = _graph([(4, 3), (6, 5)])
  key = jax.random.PRNGKey(0)
  a = _apply(model, False)(params, graph, 0.0, key)
  b = _apply(model, False)(params, graph._replace(globals={}), 0.0, key)
  np.testing.assert_array_equal(a, b)


def test_dropout_only_in_training_and_with_a_traced_rate():
  model, params = _small()
  graph = _graph([(6, 5), (9, 8)])
  key = jax.random.PRNGKey(3)
  evaluated = _apply(model, False)(params, graph, 0.5, key)
  train = _apply(model, True)
  # The rate is a traced argument of the jitted apply.
  np.testing.assert_allclose(train(params, graph, 0.0, key), evaluated, rtol=1e-6)
  dropped = train(params, graph, 0.5, key)
  assert not np.allclose(dropped, evaluated)
  np.testing.assert_array_equal(train(params, graph, 0.5, key), dropped)
  assert not np.allclose(train(params, graph, 0.5, jax.random.PRNGKey(4)), dropped)


def test_activations_differ():
  graph = _graph([(6, 5), (9, 8)])
  key = jax.random.PRNGKey(0)
  _, params = _small()  # The activation changes no parameter.
  outputs = {a: _apply(gnn.GNN(activation=a, **SMALL), False)(params, graph, 0.0, key)
             for a in ('relu', 'gelu', 'silu')}
  assert not np.allclose(outputs['relu'], outputs['gelu'])
  assert not np.allclose(outputs['gelu'], outputs['silu'])
  with pytest.raises(ValueError, match='swish'):
    gnn.GNN(activation='swish', **SMALL).init(key, gnn.init_graph(), train=False)


def test_init_values_follow_flax_defaults():
  _, params = _small()
  flat = _flat(params)
  for path, value in flat.items():
    if path.endswith('/bias'):
      np.testing.assert_array_equal(value, 0.0, err_msg=path)
    elif path.endswith('/scale'):
      np.testing.assert_array_equal(value, 1.0, err_msg=path)
  # LeCun normal kernels: variance 1 / fan_in.
  kernel = np.asarray(flat['Dense_0/kernel'])
  assert kernel.shape == (3 * 8 + 128, 8)
  assert 0.5 < kernel.std() * math.sqrt(kernel.shape[0]) < 1.5
