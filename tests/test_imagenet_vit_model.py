"""The imagenet_vit ViT-S/16 and its variants: parameter tree, forward, dropout.

The full-size trees are checked with ``jax.eval_shape`` (nothing allocated)
against ``tests/data/imagenet_vit_params.json``, a listing written from this
model after it was found identical, path for path and shape for shape, to the
reference JAX model's (mlcommons/algorithmic-efficiency, all four variants).
Forward passes use a two-layer, narrow copy of the same module code on 32x32
images so the file runs in seconds on a CPU.
"""

from __future__ import annotations

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import pytest

from workloads.imagenet_vit.model import VARIANTS, ViT, variant_options

LISTING = pathlib.Path(__file__).parent / 'data' / 'imagenet_vit_params.json'

# The workloads' published sizes: (parameters, leaves).
EXPECTED_SIZES = {
    'imagenet_vit': (22_122_472, 200),
    'imagenet_vit_glu': (50_452_456, 224),
    'imagenet_vit_post_ln': (22_121_704, 198),
    'imagenet_vit_map': (23_896_552, 215),
}

# Same module code, scaled down: the variants' code paths at a tiny cost.
SMALL = dict(num_classes=1000, width=32, depth=2, mlp_dim=64, num_heads=2,
             head_zeroinit=False)  # A random head, so dropout shows in the logits.


def _param_shapes(model: ViT, image_size: int = 224) -> dict:
  variables = jax.eval_shape(
      lambda: model.init({'params': jax.random.PRNGKey(0)},
                         jnp.ones((1, image_size, image_size, 3))))
  assert set(variables) == {'params'}  # No batch stats or other state.
  flat = jax.tree_util.tree_flatten_with_path(variables['params'])[0]
  return {'/'.join(key.key for key in path): list(leaf.shape) for path, leaf in flat}


@pytest.fixture(scope='module')
def listing() -> dict:
  return json.loads(LISTING.read_text())


def test_variant_options_cover_the_four_workloads():
  assert set(VARIANTS) == set(EXPECTED_SIZES)
  assert variant_options('imagenet_vit') == {
      'use_glu': False, 'use_post_layer_norm': False, 'use_map': False}
  assert variant_options('imagenet_vit_glu')['use_glu']
  assert variant_options('imagenet_vit_post_ln')['use_post_layer_norm']
  assert variant_options('imagenet_vit_map')['use_map']
  variant_options('imagenet_vit_map')['use_map'] = False  # A copy each call.
  assert variant_options('imagenet_vit_map')['use_map']
  with pytest.raises(ValueError, match='imagenet_vit_glu'):
    variant_options('imagenet_vit_gelu')


@pytest.mark.parametrize('name', sorted(EXPECTED_SIZES))
def test_parameter_tree_matches_reference_listing(name, listing):
  shapes = _param_shapes(ViT(**variant_options(name)))
  count = sum(math.prod(shape) for shape in shapes.values())
  assert (count, len(shapes)) == EXPECTED_SIZES[name]
  assert shapes == listing[name]


@pytest.mark.parametrize('name', sorted(EXPECTED_SIZES))
def test_forward_gives_logits_and_dropout_only_when_training(name):
  model = ViT(**SMALL, **variant_options(name))
  images = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  params = model.init({'params': jax.random.PRNGKey(0)}, images)['params']
  # 32x32 images make a 2x2 patch grid; the parameter tree does not depend on it.
  assert _param_shapes(model, image_size=32) == _param_shapes(model, image_size=224)

  def run(train, rate, rng=None):
    rngs = {} if rng is None else {'dropout': rng}
    return model.apply({'params': params}, images, train=train,
                       dropout_rate=rate, rngs=rngs)

  evaluated = run(False, 0.0)
  assert evaluated.shape == (2, 1000)
  assert bool(jnp.all(jnp.isfinite(evaluated)))
  # Eval mode ignores the rate and needs no rng.
  assert jnp.array_equal(run(False, 0.5), evaluated)
  assert jnp.array_equal(run(True, 0.0), evaluated)
  key = jax.random.PRNGKey(2)
  dropped = run(True, 0.5, key)
  assert not jnp.allclose(dropped, evaluated)
  assert jnp.array_equal(run(True, 0.5, key), dropped)  # Same key, same mask.
  assert not jnp.allclose(run(True, 0.5, jax.random.PRNGKey(3)), dropped)


def _flat_by_path(params) -> dict:
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {'/'.join(key.key for key in path): leaf for path, leaf in flat}


def test_dropout_rate_may_be_traced():
  """A submission may pass ``dropout_rate`` as a jit argument."""
  model = ViT(**SMALL)
  images = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  params = model.init({'params': jax.random.PRNGKey(0)}, images)['params']

  @jax.jit
  def forward(params, rate, rng):
    return model.apply({'params': params}, images, train=True,
                       dropout_rate=rate, rngs={'dropout': rng})

  key = jax.random.PRNGKey(2)
  kept = forward(params, jnp.float32(0.0), key)
  evaluated = model.apply({'params': params}, images, train=False)
  assert jnp.allclose(kept, evaluated, atol=1e-6)
  assert not jnp.allclose(forward(params, jnp.float32(0.3), key), evaluated)
  assert forward._cache_size() == 1  # pylint: disable=protected-access


def test_head_starts_at_zero_and_posemb_is_not_a_parameter():
  model = ViT(**{**SMALL, 'head_zeroinit': True})
  images = jnp.ones((1, 32, 32, 3))
  params = model.init({'params': jax.random.PRNGKey(0)}, images)['params']
  assert not jnp.any(params['head']['kernel'])
  assert jnp.array_equal(model.apply({'params': params}, images), jnp.zeros((1, 1000)))
  assert not any('pos' in path for path in _flat_by_path(params))
