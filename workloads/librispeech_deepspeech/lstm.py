"""The bidirectional LSTM of DeepSpeech's recurrent layers.

The parameter tree is the reference's (its ``lstm.py`` stacks flax's
``OptimizedLSTMCell`` in scanned encoders)::

  LSTM/LSTMSequenceEncoder_0/cell/{ii,if,ig,io}/kernel   (input, hidden)
  LSTM/LSTMSequenceEncoder_0/cell/{hi,hf,hg,ho}/{kernel,bias}   (hidden, hidden)
  LSTM/LSTMSequenceEncoder_1/...                        the backward direction

with the same initialisers (LeCun normal input kernels, orthogonal recurrent
kernels, zero biases) and the same gates: ``i, f, o`` sigmoid, ``g`` tanh,
``c' = f c + i g``, ``h' = o tanh(c')``, from zero states.

The computation is arranged for speed: the input projections of every step
and both directions are one matrix product before the recurrence, and one
``lax.scan`` runs both directions together (the backward one on each
sequence reversed within its length, so padding stays at the end).
"""

from __future__ import annotations

from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

GATES = ('i', 'f', 'g', 'o')


class _DenseParams(nn.Module):
  """A dense layer's ``kernel`` (and ``bias``), created but not applied."""

  in_features: int
  features: int
  use_bias: bool
  kernel_init: nn.initializers.Initializer

  @nn.compact
  def __call__(self) -> Tuple[jax.Array, jax.Array]:
    kernel = self.param('kernel', self.kernel_init, (self.in_features, self.features))
    if not self.use_bias:
      return kernel, jnp.zeros((self.features,), kernel.dtype)
    return kernel, self.param('bias', nn.initializers.zeros, (self.features,))


class _CellParams(nn.Module):
  """One direction's LSTM weights, gates concatenated in (i, f, g, o) order.

  Returns the input kernel ``(in, 4 hidden)``, the recurrent kernel
  ``(hidden, 4 hidden)`` and the bias ``(4 hidden,)``.
  """

  in_features: int
  hidden_size: int

  @nn.compact
  def __call__(self) -> Tuple[jax.Array, jax.Array, jax.Array]:
    inputs, recurrent, biases = [], [], []
    for gate in GATES:
      kernel, _ = _DenseParams(self.in_features, self.hidden_size, False,
                               nn.initializers.lecun_normal(), name=f'i{gate}')()
      inputs.append(kernel)
      kernel, bias = _DenseParams(self.hidden_size, self.hidden_size, True,
                                  nn.initializers.orthogonal(), name=f'h{gate}')()
      recurrent.append(kernel)
      biases.append(bias)
    return (jnp.concatenate(inputs, -1), jnp.concatenate(recurrent, -1),
            jnp.concatenate(biases, -1))


class _SequenceEncoder(nn.Module):
  """Holds one direction's ``cell`` (the reference's module name and nesting)."""

  in_features: int
  hidden_size: int

  @nn.compact
  def __call__(self) -> Tuple[jax.Array, jax.Array, jax.Array]:
    return _CellParams(self.in_features, self.hidden_size, name='cell')()


def reverse_within_lengths(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Each sequence of ``(batch, time, ...)`` reversed over its first ``length`` steps.

  The padded steps stay at the end (in reverse order); applying it twice is
  the identity.
  """
  time = x.shape[1]
  index = (jnp.arange(time - 1, -1, -1)[None, :] + lengths[:, None]) % time
  index = index.reshape(index.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, index, axis=1)


def _recurrence(projected: jax.Array, recurrent: jax.Array) -> jax.Array:
  """Runs LSTMs over time from zero states; returns every step's ``h``.

  ``projected``: ``(directions, time, batch, 4 hidden)``, input projections
  plus bias; ``recurrent``: ``(directions, hidden, 4 hidden)``.
  """
  directions, _, batch, width = projected.shape
  hidden = width // 4
  zeros = jnp.zeros((directions, batch, hidden), projected.dtype)

  def step(carry, x_t):
    c, h = carry
    z = x_t + jnp.einsum('dbh,dhk->dbk', h, recurrent)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h

  _, outputs = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(projected, 0, 1))
  return jnp.swapaxes(outputs, 0, 1)  # (directions, time, batch, hidden)


class _Directions(nn.Module):
  """Forward (``LSTMSequenceEncoder_0``) and backward (``_1``) LSTMs, concatenated."""

  hidden_size: int
  bidirectional: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
    in_features = x.shape[-1]
    count = 2 if self.bidirectional else 1
    weights = [_SequenceEncoder(in_features, self.hidden_size,
                                name=f'LSTMSequenceEncoder_{d}')() for d in range(count)]
    w_input = jnp.stack([w[0] for w in weights])
    w_recurrent = jnp.stack([w[1] for w in weights])
    bias = jnp.stack([w[2] for w in weights])
    streams = [x] + ([reverse_within_lengths(x, lengths)] if self.bidirectional else [])
    time_major = jnp.stack([jnp.swapaxes(s, 0, 1) for s in streams])  # (d, t, b, in)
    projected = jnp.einsum('dtbi,dik->dtbk', time_major, w_input) + bias[:, None, None, :]
    outputs = jnp.swapaxes(_recurrence(projected, w_recurrent), 1, 2)  # (d, b, t, h)
    if not self.bidirectional:
      return outputs[0]
    return jnp.concatenate(
        [outputs[0], reverse_within_lengths(outputs[1], lengths)], axis=-1)


class LSTM(nn.Module):
  """``(batch, time, features)`` to ``(batch, time, 2 hidden)`` (``hidden`` if one-way).

  ``lengths``: ``(batch,)`` unpadded steps; the backward direction starts at
  each sequence's last unpadded step. Outputs at padded steps are not
  meaningful (the callers mask them).
  """

  hidden_size: int
  bidirectional: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
    return _Directions(self.hidden_size, self.bidirectional, name='LSTM')(x, lengths)
