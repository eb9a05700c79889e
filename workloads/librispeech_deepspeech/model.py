"""DeepSpeech 2 (Amodei et al., 2016) of librispeech_deepspeech and its variants.

Raw audio in, per-frame logits over the 1024 SentencePiece ids out: the
log-mel frontend and SpecAugment of the Conformer
(``workloads/librispeech_conformer``), two stride-2 convolutions and a dense
projection, six bidirectional LSTM layers (each after a padding-aware batch
norm, 256 units a direction), three feed-forward layers, a final layer norm
and the output layer ``Dense_0``; residual connections around the LSTM and
feed-forward layers. Module names follow the AlgoPerf JAX reference, so
parameter paths, shapes and initial values match it: 18,381,312 parameters
in 178 leaves, 9,216 batch-norm statistics in 18.

Kept from the reference on purpose: with residual connections the
feed-forward layers' dropout is always 0.1 (the reference does not pass the
rate on there); without them it is the given rate.

Call it like the reference::

  variables = model.init({'params': key}, audio, paddings, train=False)
  (logits, logit_paddings), state = model.apply(
      variables, audio, paddings, train=True, rngs={'dropout': key},
      mutable=['batch_stats'])
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from workloads.classification import Dropout
from workloads.librispeech_conformer import frontend
from workloads.librispeech_conformer.layers import (Conv2dSubsampling, LayerNorm,
                                                    MaskedBatchNorm, activation)
from workloads.librispeech_conformer.spec_augment import SpecAug
from workloads.librispeech_deepspeech.lstm import LSTM

DROPOUT_RATE = 0.1  # The reference's default for every dropout layer.

# What each workload sets on DeepSpeech; options not named keep their default.
VARIANT_OPTIONS: Dict[str, Dict[str, Any]] = {
    'librispeech_deepspeech': {},
    'librispeech_deepspeech_tanh': {'activation': 'tanh'},
    'librispeech_deepspeech_no_resnet': {'enable_residual_connections': False},
    'librispeech_deepspeech_norm_and_spec_aug': {
        'layernorm_everywhere': True, 'enable_decoder_layer_norm': False,
        'freq_mask_count': 4, 'time_mask_count': 15},
}


def variant_options(workload_name: str) -> Dict[str, Any]:
  """The DeepSpeech keyword arguments of workload ``workload_name`` (a copy)."""
  if workload_name not in VARIANT_OPTIONS:
    raise ValueError(
        f'Unknown librispeech_deepspeech variant {workload_name!r}; known: '
        f'{", ".join(sorted(VARIANT_OPTIONS))}.')
  return dict(VARIANT_OPTIONS[workload_name])


_xavier = nn.initializers.xavier_uniform()


def _normalise(x: jax.Array, paddings: jax.Array, dim: int, layer_norm: bool,
               momentum: float, epsilon: float, use_running_average: bool) -> jax.Array:
  """``LayerNorm_0`` or padding-aware ``BatchNorm_0`` of ``x``.

  Must be called inside a parent's compact method, which adopts the module.
  A batch norm normalising with the batch's statistics always updates the
  running ones, as the reference's does.
  """
  if layer_norm:
    return LayerNorm(dim, name='LayerNorm_0')(x)
  return MaskedBatchNorm(dim, momentum, epsilon, name='BatchNorm_0')(
      x, paddings, use_running_average, update_stats=True)


class Subsample(nn.Module):
  """Two stride-2 convolutions, flatten (frequency x channels), dense, dropout."""

  encoder_dim: int
  activation: str = 'relu'

  @nn.compact
  def __call__(self, features: jax.Array, paddings: jax.Array, train: bool,
               dropout_rate: Any) -> Tuple[jax.Array, jax.Array]:
    x = features[..., None]
    x, paddings = Conv2dSubsampling(1, self.encoder_dim, self.activation,
                                    name='Conv2dSubsampling_0')(x, paddings)
    x, paddings = Conv2dSubsampling(self.encoder_dim, self.encoder_dim, self.activation,
                                    name='Conv2dSubsampling_1')(x, paddings)
    batch, frames, freq, channels = x.shape
    x = x.reshape(batch, frames, freq * channels)
    x = nn.Dense(self.encoder_dim, kernel_init=_xavier, name='Dense_0')(x)
    return Dropout(name='Dropout_0')(x, dropout_rate, train), paddings


class BatchRNN(nn.Module):
  """Normalisation, then a bidirectional LSTM of ``encoder_dim // 2`` units a way."""

  encoder_dim: int
  layernorm_everywhere: bool
  batch_norm_momentum: float
  batch_norm_epsilon: float
  bidirectional: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, paddings: jax.Array,
               use_running_average_bn: bool) -> jax.Array:
    lengths = jnp.sum(1.0 - paddings, axis=-1).astype(jnp.int32)
    x = _normalise(x, paddings, self.encoder_dim, self.layernorm_everywhere,
                   self.batch_norm_momentum, self.batch_norm_epsilon,
                   use_running_average_bn)
    return LSTM(self.encoder_dim // 2, self.bidirectional, name='LSTM_0')(x, lengths)


class FeedForwardModule(nn.Module):
  """Normalisation, dense, activation, zero at padding, dropout."""

  encoder_dim: int
  activation: str
  layernorm_everywhere: bool
  batch_norm_momentum: float
  batch_norm_epsilon: float

  @nn.compact
  def __call__(self, x: jax.Array, paddings: jax.Array, train: bool,
               use_running_average_bn: bool, dropout_rate: Any) -> jax.Array:
    x = _normalise(x, paddings, self.encoder_dim, self.layernorm_everywhere,
                   self.batch_norm_momentum, self.batch_norm_epsilon,
                   use_running_average_bn)
    x = nn.Dense(self.encoder_dim, kernel_init=_xavier, name='Dense_0')(x)
    x = activation(self.activation)(x) * (1.0 - paddings)[..., None]
    return Dropout(name='Dropout_0')(x, dropout_rate, train)


class Deepspeech(nn.Module):
  """Audio ``(batch, samples)`` and paddings to ``(logits, logit_paddings)``.

  Options (the variants change ``activation``, ``enable_residual_connections``
  or, together, the normalisation and SpecAugment settings; see
  :data:`VARIANT_OPTIONS`; the sizes exist for small test models):
    vocab_size: width of the output layer ``Dense_0``.
    encoder_dim, num_lstm_layers, num_ffn_layers: the sizes.
    activation: 'relu' or 'tanh', in the convolutions and feed-forward layers.
    enable_residual_connections: around each LSTM and feed-forward layer.
    enable_decoder_layer_norm: ``LayerNorm_0`` before the output layer.
    layernorm_everywhere: layer norms instead of batch norms (no model state).
    use_specaug, freq_mask_count, freq_mask_max_bins, time_mask_count,
    time_mask_max_ratio: SpecAugment in training.
  """

  vocab_size: int = 1024
  encoder_dim: int = 512
  num_lstm_layers: int = 6
  num_ffn_layers: int = 3
  activation: str = 'relu'
  enable_residual_connections: bool = True
  enable_decoder_layer_norm: bool = True
  layernorm_everywhere: bool = False
  bidirectional: bool = True
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
      dropout_rate: Any = DROPOUT_RATE,
      use_running_average_bn: Optional[bool] = None,
  ) -> Tuple[jax.Array, jax.Array]:
    """Logits ``(batch, frames, vocab_size)`` and their paddings.

    Args:
      audio, audio_paddings: ``(batch, samples)`` float32.
      train: dropout and SpecAugment on (rngs ``dropout`` needed); batch
        norms normalise with the batch's statistics and update the running
        ones (``batch_stats`` mutable).
      dropout_rate: may be traced; None means 0.1.
      use_running_average_bn: when given, decides alone whether batch norms
        use the running statistics (never updated then); the reference has
        no such option, and None keeps its behaviour.
    """
    if dropout_rate is None:
      dropout_rate = DROPOUT_RATE
    running = (not train) if use_running_average_bn is None else use_running_average_bn
    x, paddings = frontend.log_mel_features(audio, audio_paddings)
    if train and self.use_specaug:
      x, paddings = SpecAug(self.freq_mask_count, self.freq_mask_max_bins,
                            self.time_mask_count, self.time_mask_max_ratio,
                            name='specaug')(x, paddings)
    x, paddings = Subsample(self.encoder_dim, self.activation, name='Subsample_0')(
        x, paddings, train, dropout_rate)
    for i in range(self.num_lstm_layers):
      y = BatchRNN(self.encoder_dim, self.layernorm_everywhere,
                   self.batch_norm_momentum, self.batch_norm_epsilon,
                   self.bidirectional, name=f'BatchRNN_{i}')(x, paddings, running)
      x = x + y if self.enable_residual_connections else y
    for i in range(self.num_ffn_layers):
      rate = DROPOUT_RATE if self.enable_residual_connections else dropout_rate
      y = FeedForwardModule(self.encoder_dim, self.activation, self.layernorm_everywhere,
                            self.batch_norm_momentum, self.batch_norm_epsilon,
                            name=f'FeedForwardModule_{i}')(
                                x, paddings, train, running, rate)
      x = x + y if self.enable_residual_connections else y
    if self.enable_decoder_layer_norm:
      x = LayerNorm(self.encoder_dim, name='LayerNorm_0')(x)
    logits = nn.Dense(self.vocab_size, kernel_init=_xavier, name='Dense_0')(x)
    return logits, paddings
