"""The wmt Transformer and its variants: parameter tree, forward, masks, dropout, cache.

The full-size trees are checked with ``jax.eval_shape`` (nothing allocated)
against ``tests/data/wmt*_params.txt``, listings written from the AlgoPerf
JAX reference model (``path shape`` per leaf; ``wmt_attention_temp`` has
``wmt``'s). Forward passes use a one-layer, narrow copy of the same module
code with a 64-token vocabulary, so the file runs in seconds on a CPU.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from workloads.wmt import model as wmt_model
from workloads.wmt.model import Transformer, variant_options

DATA = Path(__file__).parent / 'data'
# (parameters, leaves, listing) of each workload.
EXPECTED = {
    'wmt': (133_521_408, 185, 'wmt_params.txt'),
    'wmt_attention_temp': (133_521_408, 185, 'wmt_params.txt'),
    'wmt_post_ln': (133_517_312, 181, 'wmt_post_ln_params.txt'),
    'wmt_glu_tanh': (146_116_608, 209, 'wmt_glu_tanh_params.txt'),
}
SMALL = dict(vocab_size=64, emb_dim=32, num_heads=4, num_layers=1, qkv_dim=32,
             mlp_dim=48)
VARIANTS = sorted(EXPECTED)


def _shapes(module: Transformer) -> dict:
  tokens = jnp.ones((1, module.max_len), jnp.int32)
  variables = jax.eval_shape(
      lambda: module.init({'params': jax.random.PRNGKey(0)}, tokens, tokens))
  assert set(variables) == {'params'}  # No model state.
  flat = jax.tree_util.tree_flatten_with_path(variables['params'])[0]
  return {'/'.join(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def _listing(name: str) -> dict:
  shapes = {}
  for line in (DATA / name).read_text().splitlines():
    path, shape = line.split()
    shapes[path] = tuple(int(d) for d in shape.split('x'))
  return shapes


def _sentences(rng: np.random.Generator, batch: int, low: int = 4,
               high: int = 20) -> np.ndarray:
  """Rows of random ids ending in EOS, zero-padded to 256."""
  rows = np.zeros((batch, 256), np.int32)
  for row in rows:
    n = int(rng.integers(low, high))
    row[:n] = rng.integers(3, SMALL['vocab_size'], n)
    row[n - 1] = 2
  return rows


@functools.lru_cache(maxsize=None)
def _apply(model: Transformer, **kwargs):
  """``model.apply`` with these keyword arguments, jitted once per session."""
  return jax.jit(lambda variables, *args: model.apply(variables, *args, **kwargs))


@functools.lru_cache(maxsize=None)
def _forwards(model: Transformer):
  """``(eval logits, train logits at a traced rate)``: one compiled function."""

  @jax.jit
  def run(p, inputs, targets, rate, key):
    evaluated = model.apply({'params': p}, inputs, targets)
    trained = model.apply({'params': p}, inputs, targets, train=True,
                          dropout_rate=rate, rngs={'dropout': key})
    return evaluated, trained

  return run


def _logits(model: Transformer, p, inputs, targets):
  return _forwards(model)(p, inputs, targets, 0.0, jax.random.PRNGKey(0))[0]


def _numpy_params(model: Transformer, seed: int = 0):
  """Random parameters of the model's tree, drawn by numpy (no init to compile).

  Kernels at the LeCun scale, the embedding at 1, LayerNorms as initialised:
  values of the right size for forward passes; the real initialisers have a
  test of their own.
  """
  tokens = jnp.ones((1, 256), jnp.int32)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens, tokens)['params']
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == 'scale':
      return jnp.ones(leaf.shape, jnp.float32)
    if name == 'bias':
      return jnp.zeros(leaf.shape, jnp.float32)
    fan_in = 1 if name == 'embedding' else math.prod(leaf.shape[:-1])
    if path[-2].key == 'out':  # (heads, head_dim, width): both are fan-in.
      fan_in = math.prod(leaf.shape[:2])
    elif name == 'kernel' and len(leaf.shape) == 3:  # (width, heads, head_dim).
      fan_in = leaf.shape[0]
    values = rng.standard_normal(leaf.shape).astype(np.float32) / math.sqrt(fan_in)
    return jnp.asarray(values)

  return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture(scope='module')
def small():
  rng = np.random.default_rng(0)
  inputs, targets = _sentences(rng, 3), _sentences(rng, 3)
  models = {name: Transformer(**SMALL, **variant_options(name)) for name in VARIANTS}
  params = {name: _numpy_params(models[name]) for name in VARIANTS}
  params['wmt_attention_temp'] = params['wmt']  # The same tree.
  return models, params, jnp.asarray(inputs), jnp.asarray(targets)


def test_variant_options():
  assert variant_options('wmt') == {}
  assert variant_options('wmt_post_ln') == {'pre_ln': False}
  assert variant_options('wmt_attention_temp') == {'attention_temp': 4.0}
  assert variant_options('wmt_glu_tanh') == {'glu': True, 'activation': 'tanh'}
  variant_options('wmt')['glu'] = True  # A copy each call.
  assert variant_options('wmt') == {}
  with pytest.raises(ValueError, match='wmt_glu_tanh'):
    variant_options('wmt_glu')
  model = Transformer()
  assert (model.vocab_size, model.emb_dim, model.num_heads, model.num_layers,
          model.qkv_dim, model.mlp_dim, model.max_len) == (32000, 1024, 16, 6,
                                                           1024, 1024, 256)
  assert (model.activation, model.glu, model.attention_temp, model.pre_ln) == (
      'relu', False, 1.0, True)


@pytest.mark.parametrize('name', VARIANTS)
def test_parameter_tree_matches_the_reference_listing(name):
  count, leaves, listing = EXPECTED[name]
  shapes = _shapes(Transformer(**variant_options(name)))
  assert (sum(math.prod(s) for s in shapes.values()), len(shapes)) == (count, leaves)
  assert shapes == _listing(listing)


@pytest.mark.parametrize('name', VARIANTS)
def test_forward_gives_logits_dropout_only_when_training(name, small):
  models, params, inputs, targets = small
  run = _forwards(models[name])
  key = jax.random.PRNGKey(2)
  evaluated, kept = run(params[name], inputs, targets, 0.0, key)
  assert evaluated.shape == (3, 256, 64) and evaluated.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(evaluated)))
  np.testing.assert_allclose(kept, evaluated, atol=1e-5)  # Rate 0: no dropout.
  # The rate is traced (as submissions pass it): new rates reuse the program.
  same, dropped = run(params[name], inputs, targets, 0.3, key)
  assert jnp.array_equal(same, evaluated)  # Eval ignores the rate.
  assert not jnp.allclose(dropped, evaluated, atol=1e-3)
  assert jnp.array_equal(run(params[name], inputs, targets, 0.3, key)[1], dropped)
  other = run(params[name], inputs, targets, 0.3, jax.random.PRNGKey(3))[1]
  assert not jnp.allclose(other, dropped, atol=1e-3)
  assert run._cache_size() == 1  # pylint: disable=protected-access


def test_the_variants_compute_differently_on_the_same_tree(small):
  models, params, inputs, targets = small
  base = _logits(models['wmt'], params['wmt'], inputs, targets)
  hot = _logits(models['wmt_attention_temp'], params['wmt'], inputs, targets)
  assert not jnp.allclose(base, hot, atol=1e-3)
  post = _shapes(Transformer(**SMALL, **variant_options('wmt_post_ln')))
  assert not any('encoder_layernorm' in k or 'encoderdecoder_layernorm' in k
                 for k in post)
  glu = _shapes(Transformer(**SMALL, **variant_options('wmt_glu_tanh')))
  assert glu['encoder/encoderblock_0/MlpBlock_0/Dense_1/kernel'] == (32, 48)
  assert glu['encoder/encoderblock_0/MlpBlock_0/Dense_2/kernel'] == (48, 32)


_PACKED_KEYS = ('inputs', 'targets', 'inputs_position', 'targets_position',
                'inputs_segmentation', 'targets_segmentation')


def _pack_row(pairs):
  """One packed row (the reference's keys) of ``pairs`` of unpadded id arrays."""
  row = {key: np.zeros((1, 256), np.int32) for key in _PACKED_KEYS}
  offsets = {'inputs': 0, 'targets': 0}
  for segment, pair in enumerate(pairs, start=1):
    for key, ids in zip(('inputs', 'targets'), pair):
      span = slice(offsets[key], offsets[key] + len(ids))
      row[key][0, span] = ids
      row[f'{key}_position'][0, span] = np.arange(len(ids))
      row[f'{key}_segmentation'][0, span] = segment
      offsets[key] += len(ids)
  return [jnp.asarray(row[key]) for key in _PACKED_KEYS]


def test_packed_pairs_do_not_see_each_other(small):
  """In a packed row, a pair's logits depend on its own tokens only.

  The first pair gets the logits it gets alone. The second pair's first
  decoder input is the first pair's EOS (the shift runs across the row, as
  in the reference), so it is compared with itself after another first pair
  of the same lengths.
  """
  models, params, inputs, targets = small
  model, p = models['wmt'], params['wmt']

  def unpadded(i):
    return (np.asarray(inputs[i][inputs[i] > 0]), np.asarray(targets[i][targets[i] > 0]))

  first, last = unpadded(0), unpadded(1)
  other = tuple(np.where(ids == 2, 2, (ids + 7) % 61 + 3) for ids in first)
  forward = _apply(model)
  packed = forward({'params': p}, *_pack_row([first, last]))
  alone = _logits(model, p, inputs, targets)
  n_first, n_last = len(first[1]), len(last[1])
  np.testing.assert_allclose(packed[0, :n_first], alone[0, :n_first], atol=2e-5)
  swapped = forward({'params': p}, *_pack_row([other, last]))
  span = slice(n_first, n_first + n_last)
  np.testing.assert_allclose(swapped[0, span], packed[0, span], atol=2e-5)
  assert not np.allclose(swapped[0, :n_first], packed[0, :n_first], atol=1e-3)


@pytest.mark.parametrize('name', ['wmt', 'wmt_post_ln'])
def test_one_token_at_a_time_with_the_cache_gives_the_full_logits(name, small):
  models, params, inputs, targets = small
  p = params[name]
  decoder = Transformer(**SMALL, **variant_options(name), decoding=True)
  steps = 8
  cache = jax.eval_shape(decoder.init, jax.random.PRNGKey(0), inputs,
                         jnp.ones((3, steps), jnp.int32))['cache']
  cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), cache)
  encoded = _apply(models[name], method='encode')({'params': p}, inputs)
  step = _apply(decoder, mutable=('cache',), method='decode')
  previous = jnp.zeros((3, 1), jnp.int32)  # The start token.
  logits = []
  for t in range(steps):
    out, variables = step({'params': p, 'cache': cache}, encoded, inputs, previous)
    cache = variables['cache']
    logits.append(out[:, 0])
    previous = targets[:, t:t + 1]
  full = _logits(models[name], p, inputs, targets)[:, :steps]
  np.testing.assert_allclose(jnp.stack(logits, axis=1), full, atol=2e-5)


def test_initial_values_follow_the_reference_initialisers():
  model = Transformer(**SMALL)
  tokens = jnp.ones((1, 256), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), tokens, tokens)['params']
  embedding = params['shared_embedding']['embedding']
  assert abs(float(jnp.std(embedding)) - 1.0) < 0.1  # normal(1.0).
  block = params['encoder']['encoderblock_0']
  dense = block['MlpBlock_0']['Dense_0']
  limit = math.sqrt(6 / (32 + 48))  # Glorot uniform.
  assert float(jnp.max(jnp.abs(dense['kernel']))) <= limit
  assert float(jnp.max(jnp.abs(dense['bias']))) < 1e-5  # normal(1e-6).
  assert set(block['MultiHeadDotProductAttention_0']) == {'query', 'key', 'value', 'out'}
  assert all(set(v) == {'kernel'} for v in block['MultiHeadDotProductAttention_0'].values())
  np.testing.assert_array_equal(block['LayerNorm_0']['scale'], 1.0)


def test_the_position_table_is_sinusoidal_and_not_a_parameter():
  table = wmt_model.sinusoidal_table(256, 8)
  assert table.shape == (1, 256, 8)
  np.testing.assert_allclose(table[0, :, 0], np.sin(np.arange(256)), atol=1e-6)
  np.testing.assert_allclose(table[0, :, 4], np.cos(np.arange(256)), atol=1e-6)
  # The slowest of the 4 rates is 1/10000.
  np.testing.assert_allclose(table[0, :, 3], np.sin(np.arange(256) / 1e4), atol=1e-6)
  assert not any('pos' in k for k in _shapes(Transformer(**SMALL)))
