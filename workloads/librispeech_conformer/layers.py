"""Layers both LibriSpeech models use: their layer norm, padding-aware batch
norm and strided-convolution subsampling.

Parameter and statistic names (``scale``, ``bias``, ``kernel``; ``mean``,
``var`` in ``batch_stats``) and initialisers are the reference's, so trees
and initial values line up with it.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]

ACTIVATIONS: Dict[str, Activation] = {
    'relu': nn.relu,
    'tanh': nn.tanh,
    'swish': nn.swish,
    # flax's default, the tanh approximation, as the reference's GELU variant.
    'gelu': nn.gelu,
}


def activation(name: str) -> Activation:
  """The activation function called ``name``."""
  if name not in ACTIVATIONS:
    raise ValueError(f'Unknown activation {name!r}; known: {", ".join(ACTIVATIONS)}.')
  return ACTIVATIONS[name]


class LayerNorm(nn.Module):
  """Layer norm over the last axis that multiplies by ``1 + scale``.

  ``scale`` starts at 0 (so the layer starts as a plain normalisation), as in
  the reference; epsilon 1e-6.
  """

  dim: int
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param('scale', nn.initializers.zeros, (self.dim,))
    bias = self.param('bias', nn.initializers.zeros, (self.dim,))
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    normed = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
    return normed * (1 + scale) + bias


class MaskedBatchNorm(nn.Module):
  """Batch norm over every axis but the last, counting unpadded positions only.

  The output is ``(x - mean) * (1 + scale) / sqrt(var + epsilon) + bias``,
  zero at padded positions. ``scale`` and ``bias`` start at 0; the running
  ``mean`` (from 0) and ``var`` (from 1) follow ``momentum`` (lingvo's
  defaults, 0.999 and epsilon 1e-3, as the reference). The running
  statistics keep their ``(dim,)`` shape.
  """

  dim: int
  momentum: float = 0.999
  epsilon: float = 1e-3

  @nn.compact
  def __call__(self, x: jax.Array, paddings: jax.Array, use_running_average: bool,
               update_stats: bool = True) -> jax.Array:
    """``paddings`` has ``x``'s shape less the channel axis.

    ``use_running_average`` normalises with the running statistics (and
    updates nothing); otherwise the batch's unpadded statistics normalise,
    and with ``update_stats`` the running ones move towards them (the
    ``batch_stats`` collection must then be mutable).
    """
    running_mean = self.variable('batch_stats', 'mean',
                                 lambda: jnp.zeros((self.dim,), jnp.float32))
    running_var = self.variable('batch_stats', 'var',
                                lambda: jnp.ones((self.dim,), jnp.float32))
    scale = self.param('scale', nn.initializers.zeros, (self.dim,))
    bias = self.param('bias', nn.initializers.zeros, (self.dim,))
    keep = (1.0 - paddings)[..., None]
    if use_running_average:
      mean, var = running_mean.value, running_var.value
    else:
      axes = tuple(range(x.ndim - 1))
      count = jnp.maximum(jnp.sum(keep), 1.0)
      mean = jnp.sum(x * keep, axis=axes) / count
      var = jnp.sum(jnp.square(x - mean) * keep, axis=axes) / count
      if update_stats and not self.is_initializing():
        m = self.momentum
        running_mean.value = m * running_mean.value + (1 - m) * mean
        running_var.value = m * running_var.value + (1 - m) * var
    out = (x - mean) * ((1 + scale) / jnp.sqrt(var + self.epsilon)) + bias
    return out * keep


class Conv2dSubsampling(nn.Module):
  """A 3x3 convolution with stride 2 over (time, frequency), bias, activation.

  Input ``(batch, time, freq, channels)`` and time paddings; the output has
  half the time and frequency steps (rounded up) and every other padding.
  Padded output frames are zero.
  """

  input_channels: int
  output_channels: int
  activation: str = 'relu'

  @nn.compact
  def __call__(self, x: jax.Array,
               paddings: jax.Array) -> Tuple[jax.Array, jax.Array]:
    kernel = self.param('kernel', nn.initializers.xavier_uniform(),
                        (3, 3, self.input_channels, self.output_channels))
    bias = self.param('bias', nn.initializers.zeros, (self.output_channels,))
    y = jax.lax.conv_general_dilated(
        x, kernel, window_strides=(2, 2), padding='SAME',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    y = activation(self.activation)(y + bias)
    # Output frame t sees input frames 2t-1..2t+1; it is padding where 2t is.
    out_paddings = paddings[:, ::2]
    return y * (1.0 - out_paddings)[:, :, None, None], out_paddings

