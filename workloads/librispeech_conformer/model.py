"""The Conformer (Gulati et al., 2020) of librispeech_conformer and its variants.

Raw audio in, per-frame logits over the 1024 SentencePiece ids out (id 0 is
the CTC blank): the log-mel frontend (``frontend.py``), SpecAugment in
training, two stride-2 convolutions (4x fewer frames), a dense projection
with sinusoidal positions, then conformer blocks::

  x = x + 0.5 * FeedForward(x)
  x = x + SelfAttention(x)
  x = x + Convolution(x)        # gated, depthwise, padding-aware batch norm
  x = x + 0.5 * FeedForward(x)
  x = LayerNorm(x)              # unless use_post_layer_norm is False

and a final layer norm and dense layer. Module names follow the AlgoPerf JAX
reference, so parameter paths, shapes and initial values match it (e.g. the
output layer ``Dense_0``, ``ConformerBlock_3/ConvolutionBlock_0/BatchNorm_0``);
32,321,792 parameters in 154 leaves, 4,096 batch-norm statistics in 8.

Two of the reference's quirks are kept on purpose: the attention
"temperature" multiplies the attention *output*, and queries are scaled by a
learned per-dimension ``QueryScaler`` (1 at init) on top of 1/sqrt(depth).

Call it like the reference::

  variables = model.init({'params': key}, audio, paddings, train=False)
  (logits, logit_paddings), state = model.apply(
      variables, audio, paddings, train=True, rngs={'dropout': key},
      mutable=['batch_stats'])
"""

from __future__ import annotations

import functools
import math
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from workloads.classification import Dropout
from workloads.librispeech_conformer import frontend
from workloads.librispeech_conformer.layers import (Conv2dSubsampling, LayerNorm,
                                                    MaskedBatchNorm, activation)
from workloads.librispeech_conformer.spec_augment import SpecAug

DROPOUT_RATE = 0.1  # The reference's default for every dropout layer.

# What each workload sets on Conformer; options not named keep their default.
VARIANT_OPTIONS: Dict[str, Dict[str, Any]] = {
    'librispeech_conformer': {},
    'librispeech_conformer_attention_temperature': {'attention_temperature': 1.6},
    'librispeech_conformer_layernorm': {'use_post_layer_norm': False},
    'librispeech_conformer_gelu': {'activation': 'gelu'},
}


def variant_options(workload_name: str) -> Dict[str, Any]:
  """The Conformer keyword arguments of workload ``workload_name`` (a copy)."""
  if workload_name not in VARIANT_OPTIONS:
    raise ValueError(
        f'Unknown librispeech_conformer variant {workload_name!r}; known: '
        f'{", ".join(sorted(VARIANT_OPTIONS))}.')
  return dict(VARIANT_OPTIONS[workload_name])


_xavier = nn.initializers.xavier_uniform()


def sinusoidal_positions(length: int, dim: int) -> jax.Array:
  """``(1, length, dim)``: sines in the first half, cosines in the second.

  Timescales run geometrically from 1 to 10,000 (an odd ``dim`` gets a zero
  last column).
  """
  half = dim // 2
  position = jnp.arange(length, dtype=jnp.float32)[None, :, None]
  step = math.log(10_000.0) / jnp.maximum(jnp.float32(half) - 1, 1)
  inverse = jnp.exp(jnp.arange(half, dtype=jnp.float32) * -step)
  angles = position * inverse[None, None, :]
  signal = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=2)
  return jnp.pad(signal, ((0, 0), (0, 0), (0, dim % 2)))


class Subsample(nn.Module):
  """Two stride-2 convolutions, flatten (frequency x channels), dense, positions."""

  encoder_dim: int

  @nn.compact
  def __call__(self, features: jax.Array, paddings: jax.Array, train: bool,
               dropout_rate: Any) -> Tuple[jax.Array, jax.Array]:
    x = features[..., None]
    x, paddings = Conv2dSubsampling(1, self.encoder_dim, name='Conv2dSubsampling_0')(
        x, paddings)
    x, paddings = Conv2dSubsampling(self.encoder_dim, self.encoder_dim,
                                    name='Conv2dSubsampling_1')(x, paddings)
    batch, frames, freq, channels = x.shape
    x = x.reshape(batch, frames, freq * channels)
    x = nn.Dense(self.encoder_dim, kernel_init=_xavier, name='Dense_0')(x)
    x = x + sinusoidal_positions(frames, self.encoder_dim)
    return Dropout(name='Dropout_0')(x, dropout_rate, train), paddings


class FeedForwardModule(nn.Module):
  """Layer norm, dense x4 wide, activation, dropout, dense back, dropout."""

  encoder_dim: int
  expansion: int = 4
  activation: str = 'swish'

  @nn.compact
  def __call__(self, x: jax.Array, keep: jax.Array, train: bool,
               dropout_rate: Any) -> jax.Array:
    """``keep``: ``(batch, frames, 1)``, 0 at padded frames."""
    x = LayerNorm(self.encoder_dim, name='LayerNorm_0')(x)
    x = nn.Dense(self.encoder_dim * self.expansion, kernel_init=_xavier,
                 name='Dense_0')(x)
    x = activation(self.activation)(x)
    x = Dropout(name='Dropout_0')(x, dropout_rate, train) * keep
    x = nn.Dense(self.encoder_dim, kernel_init=_xavier, name='Dense_1')(x) * keep
    return Dropout(name='Dropout_1')(x, dropout_rate, train)


class QueryScaler(nn.Module):
  """Scales each query dimension by ``softplus(scale) / softplus(0)`` (1 at init)."""

  dim: int

  @nn.compact
  def __call__(self, query: jax.Array) -> jax.Array:
    scale = self.param('scale', nn.initializers.zeros, (self.dim,))
    # 1 / softplus(0) = 1 / ln 2, written out as the reference does.
    return query * (jnp.float32(1.442695041) * jax.nn.softplus(scale))


def _scaled_query_attention(query: jax.Array, key: jax.Array, value: jax.Array,
                            mask: Optional[jax.Array] = None,
                            dtype: Any = jnp.float32, precision: Any = None,
                            temperature: float = 1.0) -> jax.Array:
  """Dot-product attention with a ``QueryScaler`` on the queries.

  Called by ``nn.MultiHeadDotProductAttention`` inside its own scope, so the
  scaler's parameter sits at ``MultiHeadDotProductAttention_0/QueryScaler_0``.
  """
  query = QueryScaler(query.shape[-1], name='QueryScaler_0')(query)
  weights = nn.attention.dot_product_attention_weights(
      query, key, mask=mask, deterministic=True, dtype=dtype, precision=precision)
  out = jnp.einsum('...hqk,...khd->...qhd', weights, value, precision=precision)
  return out * temperature


class MultiHeadedSelfAttention(nn.Module):
  """Layer norm, then self-attention over the unpadded frames, then dropout."""

  encoder_dim: int
  num_heads: int
  attention_temperature: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, paddings: jax.Array, train: bool,
               dropout_rate: Any) -> jax.Array:
    valid = paddings < 1.0
    mask = nn.make_attention_mask(valid, valid, dtype=jnp.float32)
    x = LayerNorm(self.encoder_dim, name='LayerNorm_0')(x)
    attend = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads,
        qkv_features=self.encoder_dim,
        kernel_init=_xavier,
        bias_init=nn.initializers.zeros,
        use_bias=True,
        broadcast_dropout=False,
        dropout_rate=0.0,
        deterministic=True,
        attention_fn=functools.partial(_scaled_query_attention,
                                       temperature=self.attention_temperature),
        name='MultiHeadDotProductAttention_0')
    x = attend(x, mask=mask)
    return Dropout(name='Dropout_0')(x, dropout_rate, train)


class ConvolutionBlock(nn.Module):
  """Layer norm, gated linear unit, depthwise conv, batch norm, activation, dense."""

  encoder_dim: int
  kernel_size: int = 5
  activation: str = 'swish'
  batch_norm_momentum: float = 0.999
  batch_norm_epsilon: float = 0.001

  @nn.compact
  def __call__(self, x: jax.Array, paddings: jax.Array, train: bool,
               update_batch_norm: bool, use_running_average_bn: bool,
               dropout_rate: Any) -> jax.Array:
    x = LayerNorm(self.encoder_dim, name='LayerNorm_0')(x)
    values = nn.Dense(self.encoder_dim, kernel_init=_xavier, name='Dense_0')(x)
    gates = nn.Dense(self.encoder_dim, kernel_init=_xavier, name='Dense_1')(x)
    x = values * jax.nn.sigmoid(gates) * (1.0 - paddings)[..., None]
    x = nn.Conv(self.encoder_dim, (self.kernel_size,), strides=(1,), padding='SAME',
                feature_group_count=self.encoder_dim, use_bias=False,
                kernel_init=_xavier, name='Conv_0')(x)
    x = MaskedBatchNorm(self.encoder_dim, self.batch_norm_momentum,
                        self.batch_norm_epsilon, name='BatchNorm_0')(
                            x, paddings, use_running_average_bn, update_batch_norm)
    x = activation(self.activation)(x)
    x = nn.Dense(self.encoder_dim, kernel_init=_xavier, name='Dense_2')(x)
    return Dropout(name='Dropout_0')(x, dropout_rate, train)


class ConformerBlock(nn.Module):
  """One encoder layer: half feed-forward, attention, convolution, half feed-forward."""

  encoder_dim: int
  num_heads: int
  kernel_size: int
  expansion: int
  activation: str
  attention_temperature: float
  use_post_layer_norm: bool
  batch_norm_momentum: float
  batch_norm_epsilon: float

  @nn.compact
  def __call__(self, x: jax.Array, paddings: jax.Array, train: bool,
               update_batch_norm: bool, use_running_average_bn: bool,
               dropout_rate: Any) -> jax.Array:
    keep = (1.0 - paddings)[..., None]
    feed_forward = functools.partial(FeedForwardModule, self.encoder_dim,
                                     self.expansion, self.activation)
    x = x + 0.5 * feed_forward(name='FeedForwardModule_0')(x, keep, train, dropout_rate)
    x = x + MultiHeadedSelfAttention(
        self.encoder_dim, self.num_heads, self.attention_temperature,
        name='MultiHeadedSelfAttention_0')(x, paddings, train, dropout_rate)
    x = x + ConvolutionBlock(
        self.encoder_dim, self.kernel_size, self.activation,
        self.batch_norm_momentum, self.batch_norm_epsilon,
        name='ConvolutionBlock_0')(x, paddings, train, update_batch_norm,
                                   use_running_average_bn, dropout_rate)
    x = x + 0.5 * feed_forward(name='FeedForwardModule_1')(x, keep, train, dropout_rate)
    if self.use_post_layer_norm:
      x = LayerNorm(self.encoder_dim, name='LayerNorm_0')(x)
    return x


class Conformer(nn.Module):
  """Audio ``(batch, samples)`` and paddings to ``(logits, logit_paddings)``.

  Options (the variants change ``attention_temperature``,
  ``use_post_layer_norm`` or ``activation``; see :data:`VARIANT_OPTIONS`; the
  sizes exist for small test models of the same code):
    vocab_size: width of the output layer ``Dense_0``.
    encoder_dim, num_attention_heads, num_encoder_layers,
    convolution_kernel_size, feed_forward_expansion_factor: the sizes.
    activation: 'swish' (the reference's default) or 'gelu' (tanh approx.).
    attention_temperature: factor on the attention output.
    use_post_layer_norm: a layer norm at the end of each block.
    use_specaug, freq_mask_count, freq_mask_max_bins, time_mask_count,
    time_mask_max_ratio: SpecAugment in training.
    batch_norm_momentum, batch_norm_epsilon: of the convolution blocks.
  """

  vocab_size: int = 1024
  encoder_dim: int = 512
  num_attention_heads: int = 8
  num_encoder_layers: int = 4
  convolution_kernel_size: int = 5
  feed_forward_expansion_factor: int = 4
  activation: str = 'swish'
  attention_temperature: float = 1.0
  use_post_layer_norm: bool = True
  use_specaug: bool = True
  freq_mask_count: int = 2
  freq_mask_max_bins: int = 27
  time_mask_count: int = 10
  time_mask_max_ratio: float = 0.05
  batch_norm_momentum: float = 0.999
  batch_norm_epsilon: float = 0.001

  @nn.compact
  def __call__(
      self,
      audio: jax.Array,
      audio_paddings: jax.Array,
      train: bool,
      update_batch_norm: Optional[bool] = None,
      use_running_average_bn: Optional[bool] = None,
      dropout_rate: Any = DROPOUT_RATE,
  ) -> Tuple[jax.Array, jax.Array]:
    """Logits ``(batch, frames, vocab_size)`` and their paddings.

    Args:
      audio, audio_paddings: ``(batch, samples)`` float32.
      train: dropout and SpecAugment on (rngs ``dropout`` needed).
      update_batch_norm: update the running statistics when normalising with
        the batch's (default: ``train``).
      use_running_average_bn: normalise with the running statistics
        (default: ``not train``).
      dropout_rate: of every dropout layer; may be traced; None means 0.1.
    """
    if update_batch_norm is None:
      update_batch_norm = train
    if use_running_average_bn is None:
      use_running_average_bn = not train
    if dropout_rate is None:
      dropout_rate = DROPOUT_RATE
    x, paddings = frontend.log_mel_features(audio, audio_paddings)
    if train and self.use_specaug:
      x, paddings = SpecAug(self.freq_mask_count, self.freq_mask_max_bins,
                            self.time_mask_count, self.time_mask_max_ratio,
                            name='specaug')(x, paddings)
    x, paddings = Subsample(self.encoder_dim, name='Subsample_0')(
        x, paddings, train, dropout_rate)
    for i in range(self.num_encoder_layers):
      x = ConformerBlock(
          encoder_dim=self.encoder_dim,
          num_heads=self.num_attention_heads,
          kernel_size=self.convolution_kernel_size,
          expansion=self.feed_forward_expansion_factor,
          activation=self.activation,
          attention_temperature=self.attention_temperature,
          use_post_layer_norm=self.use_post_layer_norm,
          batch_norm_momentum=self.batch_norm_momentum,
          batch_norm_epsilon=self.batch_norm_epsilon,
          name=f'ConformerBlock_{i}',
      )(x, paddings, train, update_batch_norm, use_running_average_bn, dropout_rate)
    x = LayerNorm(self.encoder_dim, name='LayerNorm_0')(x)
    logits = nn.Dense(self.vocab_size, kernel_init=_xavier, name='Dense_0')(x)
    return logits, paddings
