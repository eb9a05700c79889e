"""The U-Net of the fastmri workload and its three variants.

Module names, shapes and initialisers follow the AlgoPerf JAX reference
module, because submissions select parameters by path (the output layer is
``Conv_0``) and checkpoints must line up: the encoder blocks are
``ConvBlock_0`` .. ``ConvBlock_{P-1}``, the bottleneck ``ConvBlock_P``, the
decoder alternates ``TransposeConvBlock_i`` (upsampling) and
``ConvBlock_{P+1+i}``, and a 1x1 ``Conv_0`` (with bias) maps to one channel.
The default model (32 channels, 4 pool layers) has 7,756,097 parameters in
24 leaves; it has no batch norm, so there is no model state.

Call it like the reference::

  variables = model.init({'params': key}, images, train=False)   # {'params'}
  out = model.apply(variables, images, train=True, dropout_rate=0.1,
                    rngs={'dropout': key})                        # (N, H, W)
"""

from __future__ import annotations

from typing import Any, Callable, Dict

import flax.linen as nn
import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]

# What each workload sets on UNet; options not named keep their default.
VARIANT_OPTIONS: Dict[str, Dict[str, Any]] = {
  'fastmri': {},
  'fastmri_model_size': {'num_pool_layers': 3, 'num_channels': 64},
  'fastmri_tanh': {'use_tanh': True},
  'fastmri_layernorm': {'use_layer_norm': True},
}


def variant_options(workload_name: str) -> Dict[str, Any]:
  """The UNet keyword arguments of workload ``workload_name`` (a copy)."""
  if workload_name not in VARIANT_OPTIONS:
    raise ValueError(
      f'Unknown fastmri variant {workload_name!r}; known: '
      f'{", ".join(sorted(VARIANT_OPTIONS))}.')
  return dict(VARIANT_OPTIONS[workload_name])


def _activation(use_tanh: bool) -> Activation:
  if use_tanh:
    return jnp.tanh
  return lambda x: jax.nn.leaky_relu(x, negative_slope=0.2)


def _instance_norm() -> nn.InstanceNorm:
  """Per-example, per-channel normalisation over H and W, nothing learnt.

  The original fastMRI model uses PyTorch's InstanceNorm2d without affine
  parameters; epsilon 1e-5 is PyTorch's. No parameters means no entry in the
  parameter tree, as in the reference. Must be called inside a compact method.
  """
  return nn.InstanceNorm(epsilon=1e-5, use_bias=False, use_scale=False)


class ChannelDropout(nn.Module):
  """Dropout of whole channels (PyTorch's Dropout2d): one mask entry per (N, C).

  ``rate`` may be a tracer (it only enters arithmetic); a Python 0, or eval
  mode, returns ``x`` without drawing random numbers. The mask is drawn as
  the reference draws it (``bernoulli`` of the keep probability over
  ``(N, 1, 1, C)``, from this module's ``dropout`` rng), so with the same
  key the same channels drop.
  """

  @nn.compact
  def __call__(self, x: jax.Array, rate: Any, train: bool) -> jax.Array:
    if not train or (isinstance(rate, (int, float)) and rate == 0):
      return x
    keep = 1.0 - rate  # A Python float stays one: the reference's rounding.
    shape = (x.shape[0], 1, 1, x.shape[-1])
    mask = jax.random.bernoulli(self.make_rng('dropout'), keep, shape)
    # A keep of 0 drops everything; the guard keeps the gradient finite there.
    safe_keep = jnp.where(keep > 0, keep, 1.0).astype(x.dtype)
    return jnp.where(mask, x / safe_keep, jnp.zeros_like(x))


class ConvBlock(nn.Module):
  """Two rounds of 3x3 conv (no bias), normalisation, activation, channel dropout.

  The normalisation is an instance norm, or with ``use_layer_norm`` a
  LayerNorm over H, W and C with a scale and bias per channel.
  """

  out_channels: int
  use_tanh: bool = False
  use_layer_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True,
               dropout_rate: Any = 0.0) -> jax.Array:
    """``(N, H, W, C_in)`` to ``(N, H, W, out_channels)``."""
    act = _activation(self.use_tanh)
    for i in range(2):
      x = nn.Conv(self.out_channels, kernel_size=(3, 3), strides=(1, 1),
                  use_bias=False, name=f'Conv_{i}')(x)
      if self.use_layer_norm:
        x = nn.LayerNorm(reduction_axes=(1, 2, 3), name=f'LayerNorm_{i}')(x)
      else:
        x = _instance_norm()(x)
      x = act(x)
      x = ChannelDropout(name=f'Dropout_{i}')(x, dropout_rate, train)
    return x


class TransposeConvBlock(nn.Module):
  """A 2x2, stride-2 transposed conv (no bias), instance norm, activation.

  Doubles H and W. The instance norm stays in the layer-norm variant too, as
  in the reference.
  """

  out_channels: int
  use_tanh: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """``(N, H, W, C_in)`` to ``(N, 2H, 2W, out_channels)``."""
    x = nn.ConvTranspose(self.out_channels, kernel_size=(2, 2), strides=(2, 2),
                         use_bias=False, name='ConvTranspose_0')(x)
    return _activation(self.use_tanh)(_instance_norm()(x))


class UNet(nn.Module):
  """A U-Net from single-channel images ``(N, H, W)`` to images ``(N, H, W)``.

  Options (the workload variants; see :data:`VARIANT_OPTIONS`):
    num_channels: channels of the first block, doubled at each pool.
    num_pool_layers: 2x2 average pools on the way down (upsamplings back).
    use_tanh: tanh activations instead of leaky ReLU (slope 0.2).
    use_layer_norm: LayerNorm instead of instance norm in the conv blocks.

  Any H and W work: a decoder output one row or column short of its skip
  connection is reflect-padded on the bottom or right.
  """

  num_channels: int = 32
  num_pool_layers: int = 4
  use_tanh: bool = False
  use_layer_norm: bool = False
  out_channels: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True,
               dropout_rate: Any = 0.0) -> jax.Array:
    """The reconstruction; dropout (``dropout_rate``, maybe traced) only if ``train``."""

    def conv_block(channels: int, index: int) -> ConvBlock:
      return ConvBlock(channels, self.use_tanh, self.use_layer_norm,
                       name=f'ConvBlock_{index}')

    depth = self.num_pool_layers
    skips = []
    out = x[..., None]
    channels = self.num_channels
    for i in range(depth):
      out = conv_block(channels, i)(out, train, dropout_rate)
      skips.append(out)
      out = nn.avg_pool(out, window_shape=(2, 2), strides=(2, 2))
      channels *= 2
    out = conv_block(channels, depth)(out, train, dropout_rate)

    for i in range(depth):
      channels //= 2
      skip = skips.pop()
      out = TransposeConvBlock(channels, self.use_tanh,
                               name=f'TransposeConvBlock_{i}')(out)
      pad_bottom = skip.shape[1] - out.shape[1]
      pad_right = skip.shape[2] - out.shape[2]
      if pad_bottom or pad_right:  # An odd size was floored by the pool.
        out = jnp.pad(out, ((0, 0), (0, pad_bottom), (0, pad_right), (0, 0)),
                      mode='reflect')
      out = jnp.concatenate((out, skip), axis=-1)
      out = conv_block(channels, depth + 1 + i)(out, train, dropout_rate)

    out = nn.Conv(self.out_channels, kernel_size=(1, 1), strides=(1, 1),
                  name='Conv_0')(out)
    return out.squeeze(-1)
