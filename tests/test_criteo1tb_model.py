"""Fast tests of the criteo1tb DLRM models (trees, init, forward passes).

tests/data/criteo1tb_params.json lists every parameter (path -> shape) of
each variant's full-size model, written from the AlgoPerf JAX reference
modules with ``jax.eval_shape``; this model's init values and outputs were
also checked equal to the reference's, bit for bit, on a small table. The
full-size trees are only ever traced here (never allocated: the table alone
is 2 GiB); values are tested on a table of 1,024 rows.
"""

import functools
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from workloads.criteo1tb import model as dlrm

LISTING = Path(__file__).parent / 'data' / 'criteo1tb_params.json'
VARIANTS = sorted(dlrm.VARIANT_OPTIONS)
SMALL_VOCAB = 1024
# Parameters and leaves of each full-size variant.
COUNTS = {
  'criteo1tb': (539_267_457, 17),
  'criteo1tb_layernorm': (539_275_137, 33),
  'criteo1tb_resnet': (538_121_473, 17),
  'criteo1tb_embed_init': (539_267_457, 17),
  'criteo1tb_test': (10_785_153, 17),
}


def _flat(tree):
  return {'/'.join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def _inputs(batch=4, seed=0):
  rng = np.random.default_rng(seed)
  dense = np.log1p(rng.integers(0, 50, (batch, 13))).astype(np.float32)
  ids = rng.integers(0, 40_000_000, (batch, 26)).astype(np.float32)
  return jnp.asarray(np.concatenate([dense, ids], axis=1))


def _small(name):
  return dlrm.make_model(**{**dlrm.variant_options(name), 'vocab_size': SMALL_VOCAB})


@functools.lru_cache(maxsize=None)
def _params(name):
  """Initial params of the small-table model of variant ``name`` (once a session)."""
  model = _small(name)
  return jax.jit(lambda k: model.init({'params': k}, _inputs(), train=False))(
    jax.random.PRNGKey(0))['params']


@functools.lru_cache(maxsize=None)
def _logits(name):
  """Jitted ``(params, x, rate, key) -> (eval logits, train logits)``."""
  model = _small(name)

  def both(params, x, rate, key):
    run = lambda train: model.apply({'params': params}, x, train=train,  # noqa: E731
                                    dropout_rate=rate, rngs={'dropout': key})
    return run(False), run(True)

  return jax.jit(both)


# --- options -------------------------------------------------------------------


def test_variant_options():
  assert dlrm.variant_options('criteo1tb') == {}
  assert dlrm.variant_options('criteo1tb_test') == {'vocab_size': 65_536}
  assert dlrm.variant_options('criteo1tb_layernorm') == {'use_layer_norm': True}
  assert dlrm.variant_options('criteo1tb_embed_init') == {
    'embedding_init_multiplier': 1.0}
  assert dlrm.variant_options('criteo1tb_resnet')['use_resnet'] is True
  dlrm.variant_options('criteo1tb')['vocab_size'] = 3  # A copy.
  assert dlrm.variant_options('criteo1tb') == {}
  with pytest.raises(ValueError, match='criteo1tb_layernorm'):
    dlrm.variant_options('criteo1tb_ln')
  model = dlrm.make_model()
  assert isinstance(model, dlrm.DlrmSmall)
  assert (model.vocab_size, model.embed_dim, tuple(model.mlp_bottom_dims),
          tuple(model.mlp_top_dims)) == (4_194_304, 128, (512, 256, 128),
                                         (1024, 1024, 512, 256, 1))
  assert isinstance(dlrm.make_model(**dlrm.variant_options('criteo1tb_resnet')),
                    dlrm.DLRMResNet)


# --- trees (no values) ---------------------------------------------------------


@pytest.mark.parametrize('name', VARIANTS)
def test_tree_matches_reference_listing(name):
  model = dlrm.make_model(**dlrm.variant_options(name))
  shapes = jax.eval_shape(lambda k: model.init({'params': k}, _inputs(2), train=False),
                          jax.random.PRNGKey(0))
  assert set(shapes) == {'params'}  # No model state.
  params = _flat(shapes['params'])
  count, leaves = COUNTS[name]
  assert len(params) == leaves
  assert sum(math.prod(v.shape) for v in params.values()) == count
  assert all(v.dtype == jnp.float32 for v in params.values())
  expected = json.loads(LISTING.read_text())[name]
  assert {k: list(v.shape) for k, v in params.items()} == expected
  vocab = dlrm.variant_options(name).get('vocab_size', dlrm.VOCAB_SIZE)
  assert params['embedding_table'].shape == (vocab, 128)  # One unchunked table.


# --- init values ---------------------------------------------------------------


@pytest.mark.parametrize('name', ['criteo1tb', 'criteo1tb_resnet', 'criteo1tb_embed_init'])
def test_the_table_starts_uniform_at_the_variants_scale(name):
  table = np.asarray(_params(name)['embedding_table'])
  scale = 1.0 if name == 'criteo1tb_embed_init' else 1 / math.sqrt(SMALL_VOCAB)
  assert table.min() >= 0 and table.max() < scale
  assert abs(table.mean() - scale / 2) < 0.01 * scale
  assert table.std() > 0.25 * scale


def test_dense_layers_start_at_the_reference_scales():
  params = _flat(_params('criteo1tb'))
  # Top layers: normal kernels of std sqrt(2 / (fan_in + fan_out)).
  kernel = np.asarray(params['Dense_4/kernel'])
  assert abs(kernel.std() - math.sqrt(2 / 2048)) < 0.02 * math.sqrt(2 / 2048)
  # Bottom layers: Glorot-uniform kernels, normal biases of std sqrt(1 / width).
  bound = math.sqrt(6 / (512 + 256))
  assert np.abs(np.asarray(params['Dense_1/kernel'])).max() <= bound
  assert abs(np.asarray(params['Dense_0/bias']).std() - math.sqrt(1 / 512)) < 0.01
  assert params['Dense_3/kernel'].shape == (128 + 27 * 28 // 2, 1024)
  ln = _flat(_params('criteo1tb_layernorm'))
  for path, value in ln.items():
    if path.startswith('LayerNorm_'):
      np.testing.assert_array_equal(value, 1.0 if path.endswith('scale') else 0.0)


# --- forward passes ------------------------------------------------------------


def test_dot_interact_is_the_upper_triangle_of_pairwise_products():
  features = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 3))
  got = np.asarray(dlrm.dot_interact(features))
  f = np.asarray(features)
  want = [[f[b, i] @ f[b, j] for i in range(4) for j in range(i, 4)] for b in range(2)]
  np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize('name', sorted(set(VARIANTS) - {'criteo1tb_test'}))
def test_forward_passes_give_one_logit_and_dropout_only_in_train(name):
  params, x, key = _params(name), _inputs(), jax.random.PRNGKey(1)
  logits, train_logits = _logits(name)(params, x, 0.0, key)
  assert logits.shape == (4, 1) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  np.testing.assert_array_equal(train_logits, logits)  # Rate 0: no dropout.
  # A traced rate: the same compiled function, now with dropout in train only.
  eval_logits, train_logits = _logits(name)(params, x, 0.5, key)
  np.testing.assert_array_equal(eval_logits, logits)
  assert not np.allclose(train_logits, logits)


def test_ids_index_the_one_table_modulo_its_size():
  params, x, key = _params('criteo1tb'), _inputs(), jax.random.PRNGKey(1)
  logits, _ = _logits('criteo1tb')(params, x, 0.0, key)
  shifted = x.at[:, 13:].set(jnp.mod(x[:, 13:], SMALL_VOCAB) + 3 * SMALL_VOCAB)
  np.testing.assert_allclose(_logits('criteo1tb')(params, shifted, 0.0, key)[0],
                             logits, rtol=1e-6)
  # Every id matters: another row for one id changes that example's logit.
  other_id = (int(x[0, 13]) + 1) % SMALL_VOCAB
  other = _logits('criteo1tb')(params, x.at[0, 13].set(float(other_id)), 0.0, key)[0]
  assert not np.allclose(other[0], logits[0])
  np.testing.assert_array_equal(other[1:], logits[1:])
