"""ResNet-50 for the imagenet_resnet workload and its three variants.

The parameter and batch-norm trees follow the AlgoPerf JAX reference module
for module names, shapes and collections, because submissions select
parameters by path (e.g. the output layer ``Dense_0``, or every
``BatchNorm_*`` scale) and checkpoints must line up. 25,557,032 parameters
in 161 leaves; 53,120 batch-norm statistics in 106 leaves.

Call it like the reference::

  variables = model.init(rng, images)            # {'params', 'batch_stats'}
  logits, new_state = model.apply(variables, images, update_batch_norm=True,
                                  mutable=['batch_stats'])   # train step
  logits = model.apply(variables, images, update_batch_norm=False,
                       mutable=False)                        # eval
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]

# Activations by option value. nn.gelu is the tanh approximation (flax's
# default), which is what the reference's GELU variant trains with.
ACTIVATIONS: Dict[str, Activation] = {
  'relu': nn.relu,
  'silu': nn.silu,
  'gelu': nn.gelu,
}

# What each workload sets on ResNet50; options not named keep their default.
VARIANT_OPTIONS: Dict[str, Dict[str, Any]] = {
  'imagenet_resnet': {},
  'imagenet_resnet_silu': {'activation': 'silu'},
  'imagenet_resnet_gelu': {'activation': 'gelu'},
  'imagenet_resnet_large_bn_init': {'bn_init_scale': 8.0},
}


def variant_options(workload_name: str) -> Dict[str, Any]:
  """The ResNet50 keyword arguments of workload ``workload_name`` (a copy)."""
  if workload_name not in VARIANT_OPTIONS:
    raise ValueError(
      f'Unknown imagenet_resnet variant {workload_name!r}; known: '
      f'{", ".join(sorted(VARIANT_OPTIONS))}.')
  return dict(VARIANT_OPTIONS[workload_name])


def _batch_norm(
  name: str,
  use_running_average: bool,
  dtype: Any,
  scale_init: nn.initializers.Initializer = nn.initializers.ones,
) -> nn.BatchNorm:
  """The reference's batch norm: momentum 0.9 (running stats), epsilon 1e-5.

  Must be called inside a parent's compact method, which adopts it.
  """
  return nn.BatchNorm(
    use_running_average=use_running_average,
    momentum=0.9,
    epsilon=1e-5,
    dtype=dtype,
    scale_init=scale_init,
    name=name,
  )


class BottleneckResNetBlock(nn.Module):
  """1x1 conv down to ``filters``, 3x3, 1x1 up to ``4 * filters``, + shortcut.

  The stride sits on the 3x3 conv (the "v1.5" placement). The last batch norm
  of the residual branch starts with scale ``bn_init_scale`` (0 by default,
  so each block starts as the identity on its shortcut, up to the final
  activation).
  """

  filters: int
  strides: Tuple[int, int] = (1, 1)
  activation: str = 'relu'
  bn_init_scale: float = 0.0
  use_running_average: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = ACTIVATIONS[self.activation]
    layers = (
      (self.filters, (1, 1), (1, 1)),
      (self.filters, (3, 3), self.strides),
      (4 * self.filters, (1, 1), (1, 1)),
    )
    y = x
    for i, (features, kernel, strides) in enumerate(layers):
      last = i == len(layers) - 1
      y = nn.Conv(features, kernel, strides, use_bias=False, dtype=self.dtype,
                  name=f'Conv_{i}')(y)
      scale_init = (nn.initializers.constant(self.bn_init_scale) if last
                    else nn.initializers.ones)
      y = _batch_norm(f'BatchNorm_{i}', self.use_running_average, self.dtype,
                      scale_init)(y)
      if not last:  # The last activation comes after the sum.
        y = act(y)

    shortcut = x
    # A projection only where the shape changes: the first block of each
    # stage (channels x4 in stage 1, resolution halved in the others).
    if shortcut.shape != y.shape or self.strides != (1, 1):
      shortcut = nn.Conv(4 * self.filters, (1, 1), self.strides,
                         use_bias=False, dtype=self.dtype,
                         name='Conv_proj')(shortcut)
      shortcut = _batch_norm('BatchNorm_proj', self.use_running_average,
                             self.dtype)(shortcut)
    return act(shortcut + y)


class ResNet50(nn.Module):
  """ResNet-50 v1.5 for 224x224 RGB images (NHWC), logits of ``num_classes``.

  Fully convolutional up to the global average pool, so smaller images work
  too (a 32x32 input reaches the pool at 1x1), which keeps tests cheap.

  Options (the workload variants change only ``activation`` and
  ``bn_init_scale``; see :data:`VARIANT_OPTIONS`):
    num_classes: size of the output layer ``Dense_0``.
    activation: 'relu', 'silu' or 'gelu' (tanh approximation), everywhere.
    bn_init_scale: initial scale of each block's last batch norm.
    dtype: computation dtype of convs, batch norms and the output layer
      (parameters are float32 regardless), float32 as in the reference.
  """

  num_classes: int = 1000
  activation: str = 'relu'
  bn_init_scale: float = 0.0
  dtype: Any = jnp.float32
  stage_sizes: Tuple[int, ...] = (3, 4, 6, 3)
  num_filters: int = 64

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    update_batch_norm: bool = True,
    use_running_average_bn: Optional[bool] = None,
  ) -> jax.Array:
    """Logits for images ``x`` of shape (batch, height, width, 3).

    Args:
      x: the images.
      update_batch_norm: with ``use_running_average_bn`` left None, True
        normalises with the batch's statistics and updates the running ones
        (apply with ``mutable=['batch_stats']``), False normalises with the
        running statistics and changes nothing (``mutable=False`` works).
      use_running_average_bn: when given, decides on its own which
        statistics normalise: True the running ones (never updated), False
        the batch's (the running ones are then updated, so ``batch_stats``
        must be mutable even if ``update_batch_norm`` is False).
    """
    if use_running_average_bn is None:
      use_running_average_bn = not update_batch_norm
    act = ACTIVATIONS[self.activation]

    x = nn.Conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)],
                use_bias=False, dtype=self.dtype, name='Conv_init')(x)
    x = _batch_norm('BatchNorm_init', use_running_average_bn, self.dtype)(x)
    x = act(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    # Blocks are numbered across stages (BottleneckResNetBlock_0 .. _15), as
    # flax's automatic naming numbered them in the reference.
    block_index = 0
    for stage, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        downsample = stage > 0 and j == 0
        x = BottleneckResNetBlock(
          filters=self.num_filters * 2**stage,
          strides=(2, 2) if downsample else (1, 1),
          activation=self.activation,
          bn_init_scale=self.bn_init_scale,
          use_running_average=use_running_average_bn,
          dtype=self.dtype,
          name=f'BottleneckResNetBlock_{block_index}',
        )(x)
        block_index += 1

    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype,
                    kernel_init=nn.initializers.normal(stddev=0.01),
                    name='Dense_0')(x)
