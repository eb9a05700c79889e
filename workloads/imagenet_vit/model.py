"""ViT-S/16 of the AlgoPerf ``imagenet_vit`` workloads.

The parameter tree (module names, shapes) and the arithmetic follow the
reference JAX model, so submissions that key on parameter names (``head``,
``Transformer/encoderblock_3/...``) and checkpoints carry over. Every module is
named explicitly: the names are part of the interface, and explicit names do
not shift when a branch adds or skips a layer.

Inputs are NHWC float32 images, already normalised per channel by the input
pipeline (ImageNet mean ``(0.485, 0.456, 0.406) * 255`` and standard deviation
``(0.229, 0.224, 0.225) * 255`` on 0..255 pixels); the model itself does no
scaling. Height and width must be multiples of the patch size; the position
embedding is computed, not learnt, so any such size works (224 in the
workload, smaller in tests).
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from workloads.classification import Dropout

# What each AlgoPerf workload name changes; everything else is ViT-S/16.
VARIANTS: Dict[str, Dict[str, bool]] = {
    'imagenet_vit': {},
    'imagenet_vit_glu': {'use_glu': True},
    'imagenet_vit_post_ln': {'use_post_layer_norm': True},
    'imagenet_vit_map': {'use_map': True},
}


def variant_options(name: str) -> Dict[str, bool]:
  """The ``ViT`` options of workload ``name`` (all three flags, as a new dict).

  >>> ViT(**variant_options('imagenet_vit_map')).use_map
  True
  """
  if name not in VARIANTS:
    raise ValueError(
        f'Unknown ViT workload {name!r}; known: {", ".join(sorted(VARIANTS))}.')
  options = {'use_glu': False, 'use_post_layer_norm': False, 'use_map': False}
  options.update(VARIANTS[name])
  return options


def sincos_posemb_2d(height: int,
                     width: int,
                     channels: int,
                     temperature: float = 10_000.0,
                     dtype: Any = jnp.float32) -> jax.Array:
  """Fixed 2-D sine-cosine position embedding, shape ``(1, height*width, channels)``.

  Tokens are the patch grid in row-major order. The channels are four equal
  blocks: sin and cos of the column index, then sin and cos of the row index,
  each at ``channels // 4`` frequencies spaced geometrically from 1 down to
  ``1 / temperature`` (the MoCo v3 layout the reference uses).
  """
  if channels % 4:
    raise ValueError(f'sincos posemb needs channels divisible by 4, got {channels}.')
  quarter = channels // 4
  exponents = jnp.arange(quarter) / (quarter - 1)
  frequencies = 1.0 / (temperature**exponents)
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing='ij')
  col_angles = jnp.outer(cols.reshape(-1), frequencies)
  row_angles = jnp.outer(rows.reshape(-1), frequencies)
  table = jnp.concatenate(
      [jnp.sin(col_angles), jnp.cos(col_angles),
       jnp.sin(row_angles), jnp.cos(row_angles)], axis=1)
  return table.astype(dtype)[None]


# The reference's feed-forward layers: Glorot kernels, near-zero random biases.
_mlp_dense = functools.partial(
    nn.Dense,
    kernel_init=nn.initializers.xavier_uniform(),
    bias_init=nn.initializers.normal(stddev=1e-6))


def _attention(num_heads: int, train: bool, name: str) -> nn.Module:
  # Attention-weight dropout stays at flax's default 0: the reference drops
  # only the attention output, which the caller does.
  return nn.MultiHeadDotProductAttention(
      num_heads=num_heads,
      kernel_init=nn.initializers.xavier_uniform(),
      deterministic=not train,
      name=name)


class MlpBlock(nn.Module):
  """Dense(mlp_dim)-gelu[-gate]-dropout-Dense(width) feed-forward block.

  With ``use_glu`` the activated hidden is multiplied by a second projection
  *of the activated hidden* (kernel ``(mlp_dim, mlp_dim)``), as the reference
  does; this is what makes the glu variant ~50M parameters rather than ~29M.
  """

  mlp_dim: Optional[int] = None  # None: 4x the input width.
  use_glu: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, dropout_rate: Any = 0.0) -> jax.Array:
    width = x.shape[-1]
    hidden_dim = self.mlp_dim or 4 * width
    h = nn.gelu(_mlp_dense(hidden_dim, name='Dense_0')(x))
    if self.use_glu:
      h = h * _mlp_dense(hidden_dim, name='Dense_1')(h)
    h = Dropout(name='Dropout_0')(h, dropout_rate, train)
    return _mlp_dense(width, name='Dense_2' if self.use_glu else 'Dense_1')(h)


class Encoder1DBlock(nn.Module):
  """One transformer layer: self-attention then MLP, each with a residual.

  Pre-LN (default): ``x + drop(attn(LN(x)))``, then ``x + drop(mlp(LN(x)))``.
  Post-LN: ``LN(x + drop(attn(x)))``, then ``LN(x + drop(mlp(x)))``. Both keep
  the reference's names (``LayerNorm_0`` is the first norm in either order).
  """

  mlp_dim: Optional[int] = None
  num_heads: int = 6
  use_glu: bool = False
  use_post_layer_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, dropout_rate: Any = 0.0) -> jax.Array:
    attention = _attention(self.num_heads, train, 'MultiHeadDotProductAttention_1')
    mlp = MlpBlock(mlp_dim=self.mlp_dim, use_glu=self.use_glu, name='MlpBlock_3')
    first_norm = nn.LayerNorm(name='LayerNorm_0')
    second_norm = nn.LayerNorm(name='LayerNorm_2')
    attention_drop = Dropout(name='Dropout_0')
    mlp_drop = Dropout(name='Dropout_1')

    if self.use_post_layer_norm:
      x = first_norm(x + attention_drop(attention(x), dropout_rate, train))
      y = mlp(x, train, dropout_rate)
      return second_norm(x + mlp_drop(y, dropout_rate, train))

    x = x + attention_drop(attention(first_norm(x)), dropout_rate, train)
    y = mlp(second_norm(x), train, dropout_rate)
    return x + mlp_drop(y, dropout_rate, train)


class Encoder(nn.Module):
  """``depth`` encoder blocks; a final LayerNorm only in the pre-LN order."""

  depth: int = 12
  mlp_dim: Optional[int] = None
  num_heads: int = 6
  use_glu: bool = False
  use_post_layer_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, dropout_rate: Any = 0.0) -> jax.Array:
    for index in range(self.depth):
      x = Encoder1DBlock(
          mlp_dim=self.mlp_dim,
          num_heads=self.num_heads,
          use_glu=self.use_glu,
          use_post_layer_norm=self.use_post_layer_norm,
          name=f'encoderblock_{index}')(x, train, dropout_rate)
    if self.use_post_layer_norm:
      return x  # Each post-LN block already ends in a LayerNorm.
    return nn.LayerNorm(name='encoder_layernorm')(x)


class MAPHead(nn.Module):
  """Multi-head attention pooling: one learnt probe attends over the tokens.

  The reference never applies dropout here (its MLP is called in its
  deterministic mode whatever the workload's ``train``), so neither does this.
  """

  mlp_dim: Optional[int] = None
  num_heads: int = 6

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    batch, _, width = x.shape
    probe = self.param('probe', nn.initializers.xavier_uniform(), (1, 1, width), x.dtype)
    probe = jnp.broadcast_to(probe, (batch, 1, width))
    x = _attention(self.num_heads, False, 'MultiHeadDotProductAttention_0')(probe, x)
    y = nn.LayerNorm(name='LayerNorm_0')(x)
    x = x + MlpBlock(mlp_dim=self.mlp_dim, name='MlpBlock_0')(y, train=False)
    return x[:, 0]


class ViT(nn.Module):
  """Vision transformer; the defaults are the workload's ViT-S/16.

  Call as ``model.apply({'params': p}, images, train=..., dropout_rate=...,
  rngs={'dropout': key})``. ``dropout_rate`` may be a traced value (it only
  enters arithmetic); with ``train=False`` nothing is dropped and no rng is
  needed. Dropout sits where the reference's does: after the position
  embedding and on each attention and MLP branch (inside the MLP too).
  """

  num_classes: int = 1000
  patch_size: Tuple[int, int] = (16, 16)
  width: int = 384
  depth: int = 12
  mlp_dim: Optional[int] = 1536
  num_heads: int = 6
  # True: a tanh Dense(width) "pre_logits" layer before the head; an int: that
  # many units; False/0: none.
  rep_size: Union[int, bool] = True
  # A zero head makes the initial logits 0, i.e. a uniform prediction.
  head_zeroinit: bool = True
  use_glu: bool = False
  use_post_layer_norm: bool = False
  use_map: bool = False  # Attention pooling instead of the mean of the tokens.

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, dropout_rate: Any = 0.0) -> jax.Array:
    x = nn.Conv(
        self.width,
        self.patch_size,
        strides=self.patch_size,
        padding='VALID',
        name='conv_patch_extract')(x)
    batch, grid_h, grid_w, channels = x.shape
    x = x.reshape(batch, grid_h * grid_w, channels)
    x = x + sincos_posemb_2d(grid_h, grid_w, channels, dtype=x.dtype)
    x = Dropout(name='Dropout_0')(x, dropout_rate, train)

    x = Encoder(
        depth=self.depth,
        mlp_dim=self.mlp_dim,
        num_heads=self.num_heads,
        use_glu=self.use_glu,
        use_post_layer_norm=self.use_post_layer_norm,
        name='Transformer')(x, train, dropout_rate)

    if self.use_map:
      x = MAPHead(mlp_dim=self.mlp_dim, num_heads=self.num_heads, name='MAPHead_0')(x)
    else:
      x = jnp.mean(x, axis=1)

    if self.rep_size:
      rep_size = self.width if self.rep_size is True else self.rep_size
      x = nn.tanh(nn.Dense(rep_size, name='pre_logits')(x))

    if self.num_classes:
      head_init = nn.initializers.zeros if self.head_zeroinit else nn.initializers.lecun_normal()
      x = nn.Dense(self.num_classes, kernel_init=head_init, name='head')(x)
    return x
