"""Fast tests of the fastmri U-Net (trees, init, forward passes, channel dropout).

tests/data/fastmri*_params.txt list every parameter (path and shape) of
the variants at 320x320 (fastmri_tanh has fastmri's tree); they were
written from the AlgoPerf JAX reference module (``UNet`` of
``fastmri_jax/models.py``), and this model gives the same listings, so a
change to a name or shape here breaks submissions that key on them.

A real init compiles one random draw per leaf, which costs tens of seconds
of a 2-core CPU; tests that need values jit an init that returns only the
small leaves (XLA then drops the kernel draws) and draw the kernels with
numpy.
"""

import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from algoperf import spec
from workloads.classification import param_types_from_params
from workloads.fastmri import model as unet

DATA = Path(__file__).parent / 'data'
VARIANTS = sorted(unet.VARIANT_OPTIONS)
# Parameters, leaves, listing.
COUNTS = {'fastmri': (7_756_097, 24, 'fastmri_params.txt'),
          'fastmri_model_size': (7_692_929, 19, 'fastmri_model_size_params.txt'),
          'fastmri_tanh': (7_756_097, 24, 'fastmri_params.txt'),
          'fastmri_layernorm': (7_761_985, 60, 'fastmri_layernorm_params.txt')}
SMALL = (2, 32, 32)


def _flat(tree):
  return {'/'.join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def _unflat(flat):
  return traverse_util.unflatten_dict({tuple(k.split('/')): v for k, v in flat.items()})


def _listing(file_name):
  shapes = {}
  for line in (DATA / file_name).read_text().splitlines():
    path, shape = line.split()
    shapes[path] = tuple(int(d) for d in shape.split('x'))
  return shapes


def _model(name):
  return unet.UNet(**unet.variant_options(name))


def _shapes(model, shape=(1, 320, 320)):
  return jax.eval_shape(
    lambda key: model.init({'params': key}, jnp.zeros(shape), train=False),
    jax.random.PRNGKey(0))


@functools.lru_cache(maxsize=None)
def _params(name):
  """Real init values but for the kernels, drawn by numpy at the LeCun scale."""
  model = _model(name)

  def init(key):
    variables = model.init({'params': key}, jnp.zeros(SMALL), train=False)
    return {k: v for k, v in _flat(variables['params']).items() if not k.endswith('/kernel')}

  params = dict(jax.jit(init)(jax.random.PRNGKey(0)))
  rng = np.random.default_rng(0)
  for path, leaf in _flat(_shapes(model, SMALL)['params']).items():
    if path.endswith('/kernel'):
      fan_in = math.prod(leaf.shape[:-1])
      params[path] = jnp.asarray(
        rng.standard_normal(leaf.shape, dtype=np.float32) / math.sqrt(fan_in))
  return _unflat(params)


@functools.lru_cache(maxsize=None)
def _jitted_apply(model, **kwargs):
  return jax.jit(lambda params, x, rngs: model.apply({'params': params}, x, rngs=rngs,
                                                     **kwargs))


@pytest.fixture(scope='module')
def images():
  return jax.random.normal(jax.random.PRNGKey(1), SMALL, jnp.float32)


# --- options --------------------------------------------------------------------


def test_variant_options():
  assert unet.variant_options('fastmri') == {}
  assert unet.variant_options('fastmri_model_size') == {'num_pool_layers': 3,
                                                        'num_channels': 64}
  assert unet.variant_options('fastmri_tanh') == {'use_tanh': True}
  assert unet.variant_options('fastmri_layernorm') == {'use_layer_norm': True}
  unet.variant_options('fastmri')['use_tanh'] = True  # A copy.
  assert unet.variant_options('fastmri') == {}
  with pytest.raises(ValueError, match='fastmri_tanh'):
    unet.variant_options('fastmri_gelu')
  model = unet.UNet()
  assert (model.num_channels, model.num_pool_layers, model.use_tanh,
          model.use_layer_norm, model.out_channels) == (32, 4, False, False, 1)


# --- trees (no values) ----------------------------------------------------------


@pytest.mark.parametrize('name', VARIANTS)
def test_tree_matches_reference_listing(name):
  variables = _shapes(_model(name))
  assert set(variables) == {'params'}  # No batch norm: no model state.
  params = _flat(variables['params'])
  count, leaves, listing = COUNTS[name]
  assert len(params) == leaves
  assert sum(math.prod(v.shape) for v in params.values()) == count
  assert all(v.dtype == jnp.float32 for v in params.values())
  assert {k: v.shape for k, v in params.items()} == _listing(listing)


def test_parameter_types_name_convs_biases_and_layer_norms():
  types = _flat(param_types_from_params(_shapes(_model('fastmri_layernorm'))['params']))
  assert types['Conv_0/bias'] == spec.ParameterType.BIAS
  assert types['Conv_0/kernel'] == spec.ParameterType.CONV_WEIGHT
  assert types['TransposeConvBlock_0/ConvTranspose_0/kernel'] == spec.ParameterType.CONV_WEIGHT
  assert types['ConvBlock_3/LayerNorm_1/scale'] == spec.ParameterType.LAYER_NORM_SCALE
  assert types['ConvBlock_3/LayerNorm_1/bias'] == spec.ParameterType.LAYER_NORM_BIAS
  assert sum(t == spec.ParameterType.CONV_WEIGHT for t in types.values()) == 23


# --- init values -----------------------------------------------------------------


def test_biases_start_at_zero_and_layer_norm_scales_at_one():
  flat = _flat(_params('fastmri_layernorm'))
  for path, value in flat.items():
    if path.endswith('/bias'):
      np.testing.assert_array_equal(value, 0.0, err_msg=path)
    elif path.endswith('/scale'):
      np.testing.assert_array_equal(value, 1.0, err_msg=path)
  assert _flat(_params('fastmri'))['Conv_0/bias'].shape == (1,)


# --- forward passes ----------------------------------------------------------------


@pytest.mark.parametrize('name', VARIANTS)
def test_eval_forward_gives_an_image_per_example(name, images):
  out = _jitted_apply(_model(name), train=False)(_params(name), images, {})
  assert out.shape == SMALL and out.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(out)))


def test_odd_sizes_are_reflect_padded_back_to_the_input_size():
  model = _model('fastmri')
  x = jax.random.normal(jax.random.PRNGKey(2), (1, 20, 28))  # 20 -> 10 -> 5 -> 2 -> 1.
  params = _params('fastmri')  # The tree does not depend on the image size.
  assert _jitted_apply(model, train=False)(params, x, {}).shape == (1, 20, 28)


def test_train_without_dropout_is_the_eval_pass(images):
  model, params = _model('fastmri'), _params('fastmri')
  evaluated = _jitted_apply(model, train=False)(params, images, {})
  trained = _jitted_apply(model, train=True, dropout_rate=0.0)(params, images, {})
  np.testing.assert_array_equal(trained, evaluated)
  key = {'dropout': jax.random.PRNGKey(3)}
  dropped = _jitted_apply(model, train=True, dropout_rate=0.5)(params, images, key)
  assert not np.allclose(dropped, evaluated, atol=1e-3)


def test_channel_dropout_drops_whole_channels_and_scales_the_rest():
  layer = unet.ChannelDropout()
  x = jnp.ones((4, 5, 6, 16))
  rate = 0.25

  @jax.jit
  def apply(x, rate, key):  # The rate is traced.
    return layer.apply({}, x, rate, True, rngs={'dropout': key})

  out = np.asarray(apply(x, rate, jax.random.PRNGKey(0)))
  per_channel = out.reshape(4, 30, 16)
  # Each (example, channel) is all 0 or all 1 / (1 - rate).
  assert np.all(per_channel.min(axis=1) == per_channel.max(axis=1))
  kept = np.unique(out[out != 0])
  assert len(kept) == 1 and np.isclose(kept[0], 1 / (1 - rate), rtol=1e-6)
  assert 0 < (per_channel[:, 0] == 0).mean() < 0.6
  np.testing.assert_array_equal(layer.apply({}, x, rate, False), x)  # Eval: no rng needed.
  np.testing.assert_array_equal(layer.apply({}, x, 0.0, True), x)
  # A rate of 1 drops everything, with a finite gradient.
  grad = jax.grad(lambda x: apply(x, 1.0, jax.random.PRNGKey(1)).sum())(x)
  assert not np.asarray(apply(x, 1.0, jax.random.PRNGKey(1))).any()
  assert bool(jnp.all(jnp.isfinite(grad)))
