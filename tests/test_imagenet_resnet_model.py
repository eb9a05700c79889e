"""Fast tests of the imagenet_resnet ResNet-50 (shapes, init, batch norm).

tests/data/imagenet_resnet_params.json lists every parameter and batch-norm
statistic (path -> shape) of the model at 224x224; it was written from this
model after checking that the AlgoPerf JAX reference module gives the same
listing, so a change to a name or shape here breaks submissions that key on
them.

A full real init costs about 20 s of a 2-core CPU, nearly all of it drawing
25M random numbers for the kernels, so the tests that need values jit an
init that returns only the small leaves (XLA then drops the kernel draws) and
draw the kernels with numpy.
"""

import functools
import json
import math
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from workloads.imagenet_resnet import model as resnet

LISTING = Path(__file__).parent / 'data' / 'imagenet_resnet_params.json'
VARIANTS = sorted(resnet.VARIANT_OPTIONS)
SMALL = (2, 32, 32, 3)  # Reaches the global pool at 1x1: cheap, still valid.


def _flat(tree):
  return {'/'.join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def _unflat(flat):
  return traverse_util.unflatten_dict(
    {tuple(k.split('/')): v for k, v in flat.items()})


def _init_without_kernels(model, shape=SMALL):
  """The model's own init, less the conv and dense kernels (flat dicts)."""

  def init(key):
    variables = model.init(key, jnp.ones(shape, jnp.float32))
    return {col: {k: v for k, v in _flat(variables[col]).items()
                  if not k.endswith('/kernel')}
            for col in variables}

  return jax.jit(init)(jax.random.PRNGKey(0))


def _variables(model, shape=SMALL):
  """Real init values, with kernels drawn by numpy at the LeCun scale."""
  small = _init_without_kernels(model, shape)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.ones(shape, jnp.float32))
  rng = np.random.default_rng(0)
  params = dict(small['params'])
  for path, leaf in _flat(shapes['params']).items():
    if path.endswith('/kernel'):
      fan_in = math.prod(leaf.shape[:-1])
      params[path] = jnp.asarray(
        rng.standard_normal(leaf.shape, dtype=np.float32) / math.sqrt(fan_in))
  return {'params': _unflat(params), 'batch_stats': _unflat(small['batch_stats'])}


@pytest.fixture(scope='module')
def base():
  model = resnet.ResNet50()
  return model, _variables(model)


@pytest.fixture(scope='module')
def images():
  return jax.random.normal(jax.random.PRNGKey(1), SMALL, jnp.float32)


@functools.lru_cache(maxsize=None)
def _jitted_apply(model, **kwargs):
  """model.apply with these keyword arguments, jitted once per test session."""
  return jax.jit(lambda variables, x: model.apply(variables, x, **kwargs))


def _eval(model):
  return _jitted_apply(model, update_batch_norm=False, mutable=False)


def _max_change(a, b):
  return max(float(jnp.max(jnp.abs(x - y)))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# --- options -------------------------------------------------------------------


def test_variant_options():
  assert resnet.variant_options('imagenet_resnet') == {}
  assert resnet.variant_options('imagenet_resnet_silu') == {'activation': 'silu'}
  assert resnet.variant_options('imagenet_resnet_gelu') == {'activation': 'gelu'}
  assert resnet.variant_options('imagenet_resnet_large_bn_init') == {
    'bn_init_scale': 8.0}
  # A copy: a caller editing it must not change the table.
  resnet.variant_options('imagenet_resnet')['activation'] = 'gelu'
  assert resnet.variant_options('imagenet_resnet') == {}
  with pytest.raises(ValueError, match='imagenet_resnet_silu'):
    resnet.variant_options('imagenet_resnet_swish')
  model = resnet.ResNet50()
  assert (model.num_classes, model.activation, model.bn_init_scale,
          model.dtype) == (1000, 'relu', 0.0, jnp.float32)


# --- trees (no values) ---------------------------------------------------------


@pytest.mark.parametrize('name', VARIANTS)
def test_tree_matches_reference_listing(name):
  model = resnet.ResNet50(**resnet.variant_options(name))
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.ones((1, 224, 224, 3), jnp.float32))
  assert set(shapes) == {'params', 'batch_stats'}
  params, stats = _flat(shapes['params']), _flat(shapes['batch_stats'])
  assert len(params) == 161
  assert sum(math.prod(v.shape) for v in params.values()) == 25_557_032
  assert len(stats) == 106
  assert sum(math.prod(v.shape) for v in stats.values()) == 53_120
  assert all(v.dtype == jnp.float32 for v in [*params.values(), *stats.values()])
  expected = json.loads(LISTING.read_text())
  assert {k: list(v.shape) for k, v in params.items()} == expected['params']
  assert {k: list(v.shape) for k, v in stats.items()} == expected['batch_stats']


# --- init values ---------------------------------------------------------------


@pytest.mark.parametrize('name', VARIANTS)
def test_last_batch_norm_of_each_block_starts_at_bn_init_scale(name):
  options = resnet.variant_options(name)
  expected_last = options.get('bn_init_scale', 0.0)
  small = _init_without_kernels(resnet.ResNet50(**options))
  scales = {k: v for k, v in small['params'].items() if k.endswith('/scale')}
  last = {k for k in scales if k.endswith('/BatchNorm_2/scale')}
  assert len(scales) == 53 and len(last) == 16
  for path, value in scales.items():
    want = expected_last if path in last else 1.0  # _init, _0, _1, _proj: ones.
    np.testing.assert_array_equal(value, np.full(value.shape, want), err_msg=path)
  for path, value in small['params'].items():
    if path.endswith('/bias'):
      np.testing.assert_array_equal(value, 0.0, err_msg=path)
  for path, value in small['batch_stats'].items():
    np.testing.assert_array_equal(value, 1.0 if path.endswith('/var') else 0.0)


# --- forward passes ------------------------------------------------------------


@pytest.mark.parametrize('name', VARIANTS)
def test_eval_forward_gives_logits(name, base, images):
  _, variables = base  # Variants share the tree, so they share the values.
  model = resnet.ResNet50(**resnet.variant_options(name))
  logits = _eval(model)(variables, images)
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))


def test_train_mode_updates_batch_stats_running_average_does_not(base, images):
  model, variables = base
  train = _jitted_apply(model, update_batch_norm=True, mutable=('batch_stats',))
  frozen = _jitted_apply(model, update_batch_norm=True,
                         use_running_average_bn=True, mutable=('batch_stats',))

  logits, new_state = train(variables, images)
  assert logits.shape == (2, 1000)
  assert set(new_state) == {'batch_stats'}
  assert (jax.tree.structure(new_state['batch_stats'])
          == jax.tree.structure(variables['batch_stats']))
  # Every statistic moves (momentum 0.9 towards the batch's statistics).
  for path, old in _flat(variables['batch_stats']).items():
    new = _flat(new_state['batch_stats'])[path]
    assert float(jnp.max(jnp.abs(new - old))) > 0, path

  frozen_logits, same_state = frozen(variables, images)
  assert _max_change(same_state['batch_stats'], variables['batch_stats']) == 0
  # Normalising with the running statistics is what eval does.
  eval_logits = _eval(model)(variables, images)
  np.testing.assert_allclose(frozen_logits, eval_logits, rtol=1e-5, atol=1e-5)
  assert not np.allclose(frozen_logits, logits, atol=1e-3)


def test_batch_statistics_without_update_need_mutable_stats(base, images):
  # As in the reference: normalising with the batch's statistics always
  # writes the running ones, so this combination needs mutable batch_stats.
  model, variables = base
  with pytest.raises(flax.errors.ModifyScopeVariableError):
    model.apply(variables, images, update_batch_norm=False,
                use_running_average_bn=False, mutable=False)
