"""DLRM-small for the criteo1tb workload and its variants.

Module names, parameter paths, shapes and initialisers follow the AlgoPerf
JAX reference, because submissions select parameters by path (the output
layer ``Dense_7``, the ``embedding_table``) and checkpoints must line up.
The base model has 539,267,457 parameters in 17 leaves: one unified
embedding table of 4,194,304 x 128 (536,870,912 of them, a single
``embedding_table`` leaf, not split into chunks), a bottom MLP
``Dense_0``..``Dense_2`` and a top MLP ``Dense_3``..``Dense_7``.

Inputs are float32 rows of 13 dense features followed by 26 categorical
ids (hashed ids stored as floats, as the input pipeline yields them). Every
id indexes the one table modulo ``vocab_size``.

Call it like the reference::

  params = model.init(rng, x, train=False)['params']
  logits = model.apply({'params': params}, x, train=True, dropout_rate=0.1,
                       rngs={'dropout': key})       # (batch, 1)
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from workloads.classification import Dropout

NUM_DENSE_FEATURES = 13
NUM_CATEGORICAL_FEATURES = 26
VOCAB_SIZE = 32 * 128 * 1024  # 4,194,304 rows in the unified table.
EMBED_DIM = 128

# What each workload sets; options not named keep the model's defaults.
# ``use_resnet`` picks DLRMResNet instead of DlrmSmall (see make_model).
VARIANT_OPTIONS: Dict[str, Dict[str, Any]] = {
  'criteo1tb': {},
  # The reference's small-vocabulary test workload (65,536 rows).
  'criteo1tb_test': {'vocab_size': 32 * 128 * 16},
  'criteo1tb_layernorm': {'use_layer_norm': True},
  'criteo1tb_resnet': {
    'use_resnet': True,
    'mlp_bottom_dims': (256, 256, 256),
    'mlp_top_dims': (256, 256, 256, 256, 1),
  },
  'criteo1tb_embed_init': {'embedding_init_multiplier': 1.0},
}


def variant_options(workload_name: str) -> Dict[str, Any]:
  """The :func:`make_model` keyword arguments of ``workload_name`` (a copy)."""
  if workload_name not in VARIANT_OPTIONS:
    raise ValueError(
      f'Unknown criteo1tb variant {workload_name!r}; known: '
      f'{", ".join(sorted(VARIANT_OPTIONS))}.')
  return dict(VARIANT_OPTIONS[workload_name])


def make_model(use_resnet: bool = False, **options: Any) -> nn.Module:
  """DlrmSmall, or DLRMResNet with ``use_resnet``; ``options`` are its fields."""
  return (DLRMResNet if use_resnet else DlrmSmall)(**options)


def _normal(stddev: Any) -> nn.initializers.Initializer:
  return jax.nn.initializers.normal(stddev=stddev)


def _split_features(x: jax.Array, num_dense: int):
  """``(dense float features, categorical ids as int32)``."""
  dense, categorical = jnp.split(x, [num_dense], axis=1)
  # The ids arrive as floats; int32 truncation matches the reference.
  return dense, jnp.asarray(categorical, jnp.int32)


def _lookup(table: jax.Array, ids: jax.Array, vocab_size: int) -> jax.Array:
  """Rows of the unified table for (batch, 26) ids: (batch, 26, embed_dim)."""
  rows = table[jnp.reshape(ids, [-1]) % vocab_size]
  return jnp.reshape(rows, (ids.shape[0], -1, table.shape[-1]))


def dot_interact(features: jax.Array) -> jax.Array:
  """Pairwise dot products of (batch, n, dim) features: the upper triangle.

  Returns (batch, n (n + 1) / 2): for each example, ``<f_i, f_j>`` for
  ``i <= j`` in row-major order (the diagonal included, as the reference).
  """
  products = jnp.matmul(features, jnp.transpose(features, (0, 2, 1)))
  rows, cols = jnp.triu_indices(features.shape[1])
  return products[:, rows, cols]


class DlrmSmall(nn.Module):
  """DLRM-small: bottom MLP, embedding lookups, dot interaction, top MLP.

  Options (the workload variants change ``vocab_size``, ``use_layer_norm``
  and ``embedding_init_multiplier``; see :data:`VARIANT_OPTIONS`):
    vocab_size: rows of the unified ``embedding_table``.
    num_dense_features: leading dense columns of the input (13).
    mlp_bottom_dims: widths of ``Dense_0``.. (the last must be ``embed_dim``,
      since the bottom output joins the embeddings in the interaction).
    mlp_top_dims: widths of the top MLP; the last (1) gives the logit.
    embed_dim: width of the table.
    use_layer_norm: a LayerNorm after every hidden ReLU and on the looked-up
      embeddings (``LayerNorm_0``.. in creation order).
    embedding_init_multiplier: the table starts uniform in
      ``[0, multiplier)``; None means ``1 / sqrt(vocab_size)``.
  """

  vocab_size: int = VOCAB_SIZE
  num_dense_features: int = NUM_DENSE_FEATURES
  mlp_bottom_dims: Sequence[int] = (512, 256, 128)
  mlp_top_dims: Sequence[int] = (1024, 1024, 512, 256, 1)
  embed_dim: int = EMBED_DIM
  use_layer_norm: bool = False
  embedding_init_multiplier: Optional[float] = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, dropout_rate: Any = 0.0) -> jax.Array:
    """Logits (batch, 1) for inputs (batch, 13 + 26); dropout only in ``train``."""
    dense, ids = _split_features(x, self.num_dense_features)
    # Explicit names equal to flax's automatic ones (Dense_i, LayerNorm_j
    # numbered in creation order): the reference's paths and init keys.
    counter = {'Dense': 0, 'LayerNorm': 0}

    def layer(kind: str, **kwargs: Any) -> nn.Module:
      name = f'{kind}_{counter[kind]}'
      counter[kind] += 1
      return (nn.Dense(name=name, **kwargs) if kind == 'Dense'
              else nn.LayerNorm(name=name))

    for width in self.mlp_bottom_dims:
      dense = layer('Dense', features=width,
                    kernel_init=jax.nn.initializers.glorot_uniform(),
                    bias_init=_normal(jnp.sqrt(1.0 / width)))(dense)
      dense = nn.relu(dense)
      if self.use_layer_norm:
        dense = layer('LayerNorm')(dense)
    bottom = dense
    batch_size = bottom.shape[0]

    if self.embedding_init_multiplier is None:
      scale = 1.0 / jnp.sqrt(self.vocab_size)
    else:
      scale = self.embedding_init_multiplier

    def table_init(key, shape, dtype=jnp.float32):
      return jax.nn.initializers.uniform(scale=1.0)(key, shape, dtype) * scale

    table = self.param('embedding_table', table_init,
                       [self.vocab_size, self.embed_dim])
    embedded = _lookup(table, ids, self.vocab_size)
    if self.use_layer_norm:
      embedded = layer('LayerNorm')(embedded)
    stack = jnp.concatenate(
      [jnp.reshape(bottom, (batch_size, -1, self.embed_dim)), embedded], axis=1)
    top = jnp.concatenate([bottom, dot_interact(stack)], axis=-1)

    fan_in = top.shape[1]
    last = len(self.mlp_top_dims) - 1
    for i, width in enumerate(self.mlp_top_dims):
      top = layer('Dense', features=width,
                  kernel_init=_normal(jnp.sqrt(2.0 / (fan_in + width))),
                  bias_init=_normal(jnp.sqrt(1.0 / width)))(top)
      if i < last:
        top = nn.relu(top)
        if self.use_layer_norm:
          top = layer('LayerNorm')(top)
      if i == last - 1:  # Dropout before the output layer only.
        top = Dropout(name='Dropout_0')(top, dropout_rate, train)
      fan_in = width
    return top


class DLRMResNet(nn.Module):
  """The residual DLRM variant: residual MLPs, no dot interaction.

  The bottom MLP's first layer maps the dense features to
  ``mlp_bottom_dims[0]``; each later layer adds ``relu(Dense(x))`` to ``x``.
  The top MLP takes the bottom output concatenated with the 26 flattened
  embeddings, then residual layers, then the logit. ``use_layer_norm`` and
  ``embedding_init_multiplier`` are accepted and unused, as in the
  reference; the table starts uniform in ``[0, 1 / sqrt(vocab_size))``.
  """

  vocab_size: int = VOCAB_SIZE
  num_dense_features: int = NUM_DENSE_FEATURES
  mlp_bottom_dims: Sequence[int] = (256, 256, 256)
  mlp_top_dims: Sequence[int] = (256, 256, 256, 256, 1)
  embed_dim: int = EMBED_DIM
  use_layer_norm: bool = False  # Unused.
  embedding_init_multiplier: Optional[float] = None  # Unused.

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, dropout_rate: Any = 0.0) -> jax.Array:
    """Logits (batch, 1) for inputs (batch, 13 + 26); dropout only in ``train``."""
    dense, ids = _split_features(x, self.num_dense_features)
    bottom_dims = self.mlp_bottom_dims
    bottom = nn.Dense(bottom_dims[0],
                      kernel_init=jax.nn.initializers.glorot_uniform(),
                      bias_init=_normal(1.0 / bottom_dims[0]**0.5),
                      name='Dense_0')(dense)
    bottom = nn.relu(bottom)
    index = 1
    for width in bottom_dims[1:]:
      bottom += nn.relu(nn.Dense(width,
                                 kernel_init=jax.nn.initializers.glorot_uniform(),
                                 bias_init=_normal(1.0 / width**0.5),
                                 name=f'Dense_{index}')(bottom))
      index += 1

    vocab_size = self.vocab_size

    def table_init(key, shape, dtype=jnp.float32):
      # Divided (not multiplied by the inverse), as the reference does.
      return jax.nn.initializers.uniform(scale=1.0)(key, shape, dtype) / jnp.sqrt(
        vocab_size)

    table = self.param('embedding_table', table_init,
                       [self.vocab_size, self.embed_dim])
    embedded = _lookup(table, ids, self.vocab_size)
    batch_size = bottom.shape[0]
    top = jnp.concatenate(
      [bottom, jnp.reshape(embedded, (batch_size, -1))], axis=1)

    top_dims = self.mlp_top_dims
    top = nn.Dense(top_dims[0],
                   kernel_init=_normal(jnp.sqrt(2.0 / (top.shape[1] + top_dims[0]))),
                   bias_init=_normal(jnp.sqrt(1.0 / top_dims[0])),
                   name=f'Dense_{index}')(top)
    top = nn.relu(top)
    index += 1
    last = len(top_dims) - 1
    for i in range(1, last):
      fan_in, width = top_dims[i - 1], top_dims[i]
      y = nn.Dense(width,
                   kernel_init=_normal(jnp.sqrt(2.0 / (fan_in + width))),
                   bias_init=_normal(jnp.sqrt(1.0 / width)),
                   name=f'Dense_{index}')(top)
      y = nn.relu(y)
      index += 1
      if i == last - 1:  # Dropout on the last residual branch only.
        y = Dropout(name='Dropout_0')(y, dropout_rate, train)
      top += y
    # The output layer is always one unit wide (the logit).
    return nn.Dense(1,
                    kernel_init=_normal(jnp.sqrt(2.0 / (top_dims[-2] + 1))),
                    bias_init=_normal(jnp.sqrt(1.0)),
                    name=f'Dense_{index}')(top)
