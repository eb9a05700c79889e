"""The encoder-decoder Transformer of the ``wmt`` workloads (and its variants).

Module names, shapes and initialisers follow the AlgoPerf JAX reference model,
so that the parameter tree matches it path for path (``shared_embedding``,
``encoder/encoderblock_3/MultiHeadDotProductAttention_0/query/kernel``, ...):
submissions select parameters by those paths, and checkpoints carry over.
At the workload's size (6 + 6 layers, width 1024, 16 heads, MLP 1024, a
32,000-token vocabulary shared by both sides and the output layer) the base
model has 133,521,408 parameters in 185 leaves.

What the model does, as the reference:

* pre-LN blocks by default (``x + f(LN(x))``), with a final LayerNorm on
  each side; post-LN (``LN(x + f(x))``, no final norms) for ``wmt_post_ln``;
* queries multiplied by ``attention_temp`` before attention (4 for
  ``wmt_attention_temp``, which keeps the parameter tree of ``wmt``);
* a ReLU MLP, or a tanh one with a multiplicative gate (``wmt_glu_tanh``);
* a fixed sinusoidal position table (no parameters), positions of packed
  sequences taken from the batch; padding is token 0;
* dropout at ``dropout_rate`` after the embeddings, after each attention
  (none inside it), inside the MLP and after it; the rate is a call
  argument and may be traced;
* logits: the decoder output times the transposed shared embedding, divided
  by ``sqrt(emb_dim)``.

``Transformer(decoding=True)`` runs the decoder one token at a time, keeping
keys and values in the ``cache`` collection, for beam search (decode.py).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from workloads.classification import Dropout

# The reference's dropout rate when model_fn is given none.
DROPOUT_RATE = 0.1

ACTIVATIONS: Dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'tanh': jnp.tanh,
}

# What each workload changes; options not named keep their default.
VARIANT_OPTIONS: Dict[str, Dict[str, Any]] = {
    'wmt': {},
    'wmt_post_ln': {'pre_ln': False},
    'wmt_attention_temp': {'attention_temp': 4.0},
    'wmt_glu_tanh': {'glu': True, 'activation': 'tanh'},
}


def variant_options(workload_name: str) -> Dict[str, Any]:
  """The ``Transformer`` keyword arguments of workload ``workload_name`` (a copy)."""
  if workload_name not in VARIANT_OPTIONS:
    raise ValueError(
        f'Unknown wmt variant {workload_name!r}; known: '
        f'{", ".join(sorted(VARIANT_OPTIONS))}.')
  return dict(VARIANT_OPTIONS[workload_name])


# Every dense layer of the reference: Glorot kernels, tiny random biases.
_KERNEL_INIT = nn.initializers.xavier_uniform()
_BIAS_INIT = nn.initializers.normal(stddev=1e-6)
_EMBEDDING_INIT = nn.initializers.normal(stddev=1.0)


@dataclasses.dataclass(frozen=True)
class LayerOptions:
  """What every encoder and decoder block is built with."""

  num_heads: int
  qkv_dim: int
  mlp_dim: int
  activation: str
  glu: bool
  attention_temp: float
  pre_ln: bool


def sinusoidal_table(max_len: int, features: int, min_scale: float = 1.0,
                     max_scale: float = 10_000.0) -> np.ndarray:
  """The fixed position table, ``(1, max_len, features)`` float32.

  The first half of the features is ``sin(position * rate)``, the second
  half ``cos`` of the same, at ``features // 2`` rates spaced geometrically
  from ``min_scale`` down to ``min_scale / max_scale``.
  """
  half = features // 2
  log_step = -np.log(max_scale / min_scale) / (half - 1)
  rates = min_scale * np.exp(np.arange(half) * log_step)
  angles = np.arange(max_len)[:, None] * rates[None, :]
  table = np.zeros((max_len, features), np.float32)
  table[:, :half] = np.sin(angles)
  table[:, half:2 * half] = np.cos(angles)
  return table[None]


def shift_right(tokens: jax.Array) -> jax.Array:
  """``tokens`` one step later along axis 1, a 0 (the start token) first."""
  return jnp.pad(tokens, ((0, 0), (1, 0)))[:, :-1]


class AddPositionEmbs(nn.Module):
  """Adds the sinusoidal table: by position, or by the packed ``positions``.

  With ``decoding`` the input is one token and the table row is the cache's
  ``cache_index``, which each call advances.
  """

  max_len: int
  decoding: bool = False

  @nn.compact
  def __call__(self, x: jax.Array,
               positions: Optional[jax.Array] = None) -> jax.Array:
    if x.ndim != 3:
      raise ValueError(f'Expected (batch, length, features), got {x.shape}.')
    table = jnp.asarray(sinusoidal_table(self.max_len, x.shape[-1]))
    rows = table[:, :x.shape[1]]
    if self.decoding:
      initialized = self.has_variable('cache', 'cache_index')
      index = self.variable('cache', 'cache_index',
                            lambda: jnp.array(0, dtype=jnp.uint32))
      if initialized:  # At init the whole table is used, to get the shapes.
        position = index.value
        index.value = position + 1
        start = jnp.array((0, position, 0), jnp.int32)
        rows = jax.lax.dynamic_slice(table, start, (1, 1, x.shape[-1]))
    if positions is None:
      return x + rows
    return x + jnp.take(rows[0], positions, axis=0)


class MlpBlock(nn.Module):
  """Dense(mlp_dim), activation [times a gate], dropout, Dense(width), dropout.

  The gate (``glu``) is a second projection of the block's *input*, named
  ``Dense_1``; the output layer is then ``Dense_2``.
  """

  options: LayerOptions

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, dropout_rate: Any) -> jax.Array:
    opts = self.options
    dense = functools.partial(nn.Dense, kernel_init=_KERNEL_INIT,
                              bias_init=_BIAS_INIT)
    h = ACTIVATIONS[opts.activation](dense(opts.mlp_dim, name='Dense_0')(x))
    if opts.glu:
      h = h * dense(opts.mlp_dim, name='Dense_1')(x)
    h = Dropout(name='Dropout_0')(h, dropout_rate, train)
    out = dense(x.shape[-1], name='Dense_2' if opts.glu else 'Dense_1')(h)
    return Dropout(name='Dropout_1')(out, dropout_rate, train)


def _attention(options: LayerOptions, name: str,
               decoding: bool = False) -> nn.MultiHeadDotProductAttention:
  # No biases and no dropout inside: the reference drops the attention's
  # output instead (the caller does).
  return nn.MultiHeadDotProductAttention(
      num_heads=options.num_heads,
      qkv_features=options.qkv_dim,
      kernel_init=_KERNEL_INIT,
      bias_init=_BIAS_INIT,
      use_bias=False,
      broadcast_dropout=False,
      dropout_rate=0.0,
      deterministic=True,
      decode=decoding,
      name=name)


class Encoder1DBlock(nn.Module):
  """Self-attention then the MLP, each with a residual (pre- or post-LN)."""

  options: LayerOptions

  @nn.compact
  def __call__(self, inputs: jax.Array, mask: Optional[jax.Array], train: bool,
               dropout_rate: Any) -> jax.Array:
    opts = self.options
    first_norm = nn.LayerNorm(name='LayerNorm_0')
    second_norm = nn.LayerNorm(name='LayerNorm_1')
    attention = _attention(opts, 'MultiHeadDotProductAttention_0')
    mlp = MlpBlock(opts, name='MlpBlock_0')

    x = first_norm(inputs) if opts.pre_ln else inputs
    x = attention(opts.attention_temp * x, x, mask=mask)
    x = Dropout(name='Dropout_0')(x, dropout_rate, train) + inputs
    if not opts.pre_ln:
      x = first_norm(x)
    if opts.pre_ln:
      return x + mlp(second_norm(x), train, dropout_rate)
    return second_norm(x + mlp(x, train, dropout_rate))


class EncoderDecoder1DBlock(nn.Module):
  """Causal self-attention, attention over the encoding, the MLP; residuals."""

  options: LayerOptions
  decoding: bool = False

  @nn.compact
  def __call__(self, targets: jax.Array, encoded: jax.Array,
               self_mask: Optional[jax.Array], cross_mask: Optional[jax.Array],
               train: bool, dropout_rate: Any) -> jax.Array:
    opts = self.options
    norms = [nn.LayerNorm(name=f'LayerNorm_{i}') for i in range(3)]
    self_attention = _attention(opts, 'MultiHeadDotProductAttention_0',
                                decoding=self.decoding)
    cross_attention = _attention(opts, 'MultiHeadDotProductAttention_1')
    mlp = MlpBlock(opts, name='MlpBlock_0')

    def pre(norm, value):
      return norm(value) if opts.pre_ln else value

    def post(norm, value):
      return value if opts.pre_ln else norm(value)

    x = pre(norms[0], targets)
    x = self_attention(opts.attention_temp * x, x, mask=self_mask)
    x = post(norms[0], Dropout(name='Dropout_0')(x, dropout_rate, train) + targets)
    y = pre(norms[1], x)
    y = cross_attention(opts.attention_temp * y, encoded, mask=cross_mask)
    y = post(norms[1], Dropout(name='Dropout_1')(y, dropout_rate, train) + x)
    z = mlp(pre(norms[2], y), train, dropout_rate)
    return post(norms[2], y + z)


class Encoder(nn.Module):
  """Embedding, positions, dropout, the blocks [, final LayerNorm if pre-LN]."""

  options: LayerOptions
  num_layers: int
  max_len: int
  embedding: nn.Module

  @nn.compact
  def __call__(self, inputs: jax.Array, positions: Optional[jax.Array],
               mask: jax.Array, train: bool, dropout_rate: Any) -> jax.Array:
    if inputs.ndim != 2:
      raise ValueError(f'Expected (batch, length) token ids, got {inputs.shape}.')
    x = self.embedding(inputs.astype(jnp.int32))
    x = AddPositionEmbs(self.max_len, name='posembed_input')(x, positions)
    x = Dropout(name='Dropout_0')(x, dropout_rate, train)
    for layer in range(self.num_layers):
      x = Encoder1DBlock(self.options, name=f'encoderblock_{layer}')(
          x, mask, train, dropout_rate)
    if self.options.pre_ln:
      x = nn.LayerNorm(name='encoder_layernorm')(x)
    return x


class Decoder(nn.Module):
  """Shifted target embedding, positions, the blocks, logits by the embedding."""

  options: LayerOptions
  num_layers: int
  max_len: int
  embedding: nn.Module
  decoding: bool = False

  @nn.compact
  def __call__(self, encoded: jax.Array, targets: jax.Array,
               positions: Optional[jax.Array], self_mask: Optional[jax.Array],
               cross_mask: jax.Array, train: bool, dropout_rate: Any) -> jax.Array:
    if encoded.ndim != 3 or targets.ndim != 2:
      raise ValueError(f'Expected an encoding (batch, length, width) and target '
                       f'ids (batch, length), got {encoded.shape}, {targets.shape}.')
    y = targets.astype(jnp.int32)
    if not self.decoding:  # Teacher forcing: position t sees targets < t.
      y = shift_right(y)
    y = self.embedding(y)
    y = AddPositionEmbs(self.max_len, decoding=self.decoding,
                        name='posembed_output')(y, positions)
    y = Dropout(name='Dropout_0')(y, dropout_rate, train)
    for layer in range(self.num_layers):
      y = EncoderDecoder1DBlock(self.options, decoding=self.decoding,
                                name=f'encoderdecoderblock_{layer}')(
          y, encoded, self_mask, cross_mask, train, dropout_rate)
    if self.options.pre_ln:
      y = nn.LayerNorm(name='encoderdecoder_layernorm')(y)
    logits = self.embedding.attend(y.astype(jnp.float32))
    # The shared table has unit-variance rows: rescale as the reference.
    return logits / jnp.sqrt(y.shape[-1])


def _segment_mask(query_segments: jax.Array, key_segments: jax.Array) -> jax.Array:
  """True where query and key belong to the same packed example."""
  return nn.make_attention_mask(query_segments, key_segments, jnp.equal)


class Transformer(nn.Module):
  """Sequence to sequence Transformer; the defaults are the ``wmt`` workload's.

  Call as ``model.apply({'params': p}, inputs, targets, ..., train=...,
  dropout_rate=..., rngs={'dropout': key})``: logits ``(batch, length,
  vocab_size)`` of each target position given the targets before it.
  ``inputs``/``targets`` are int token ids, 0 for padding; packed batches
  pass ``*_positions`` and ``*_segmentation`` too. Dropout applies only with
  ``train=True`` (then it needs the ``dropout`` rng unless the rate is 0).
  """

  vocab_size: int = 32_000
  emb_dim: int = 1024
  num_heads: int = 16
  num_layers: int = 6
  qkv_dim: int = 1024
  mlp_dim: int = 1024
  max_len: int = 256
  activation: str = 'relu'
  glu: bool = False
  attention_temp: float = 1.0
  pre_ln: bool = True
  decoding: bool = False

  def setup(self) -> None:
    if self.activation not in ACTIVATIONS:
      raise ValueError(f'Unknown activation {self.activation!r}; known: '
                       f'{", ".join(sorted(ACTIVATIONS))}.')
    options = LayerOptions(self.num_heads, self.qkv_dim, self.mlp_dim,
                           self.activation, self.glu, float(self.attention_temp),
                           self.pre_ln)
    # One table: input embedding, target embedding and output layer.
    self.shared_embedding = nn.Embed(self.vocab_size, self.emb_dim,
                                     embedding_init=_EMBEDDING_INIT)
    self.encoder = Encoder(options, self.num_layers, self.max_len,
                           self.shared_embedding)
    self.decoder = Decoder(options, self.num_layers, self.max_len,
                           self.shared_embedding, decoding=self.decoding)

  def encode(self, inputs: jax.Array, inputs_positions: Optional[jax.Array] = None,
             inputs_segmentation: Optional[jax.Array] = None, train: bool = False,
             dropout_rate: Any = 0.0) -> jax.Array:
    """The encoding ``(batch, length, emb_dim)`` of ``inputs``."""
    mask = nn.make_attention_mask(inputs > 0, inputs > 0)
    if inputs_segmentation is not None:
      mask = nn.combine_masks(
          mask, _segment_mask(inputs_segmentation, inputs_segmentation))
    return self.encoder(inputs, inputs_positions, mask, train, dropout_rate)

  def decode(self, encoded: jax.Array, inputs: jax.Array, targets: jax.Array,
             targets_positions: Optional[jax.Array] = None,
             inputs_segmentation: Optional[jax.Array] = None,
             targets_segmentation: Optional[jax.Array] = None,
             train: bool = False, dropout_rate: Any = 0.0) -> jax.Array:
    """Logits of ``targets`` given ``encoded`` (``inputs`` only for its padding).

    With ``decoding``, ``targets`` is the previous token ``(batch, 1)`` and
    the causal structure comes from the cache instead of a mask.
    """
    if self.decoding:
      self_mask = None
      cross_mask = nn.make_attention_mask(jnp.ones_like(targets) > 0, inputs > 0)
    else:
      self_mask = nn.combine_masks(
          nn.make_attention_mask(targets > 0, targets > 0),
          nn.make_causal_mask(targets))
      cross_mask = nn.make_attention_mask(targets > 0, inputs > 0)
    # As the reference: the segment masks depend on the inputs' segmentation.
    if inputs_segmentation is not None:
      self_mask = nn.combine_masks(
          self_mask, _segment_mask(targets_segmentation, targets_segmentation))
      cross_mask = nn.combine_masks(
          cross_mask, _segment_mask(targets_segmentation, inputs_segmentation))
    return self.decoder(encoded, targets, targets_positions, self_mask,
                        cross_mask, train, dropout_rate)

  def __call__(self, inputs: jax.Array, targets: jax.Array,
               inputs_positions: Optional[jax.Array] = None,
               targets_positions: Optional[jax.Array] = None,
               inputs_segmentation: Optional[jax.Array] = None,
               targets_segmentation: Optional[jax.Array] = None,
               train: bool = False, dropout_rate: Any = 0.0) -> jax.Array:
    encoded = self.encode(inputs, inputs_positions, inputs_segmentation,
                          train, dropout_rate)
    return self.decode(encoded, inputs, targets, targets_positions,
                       inputs_segmentation, targets_segmentation, train,
                       dropout_rate)
