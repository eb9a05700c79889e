"""The log-mel frontend both LibriSpeech models start with (no parameters).

Raw 16 kHz audio (int16-scale float samples, shape ``(batch, samples)``) and
its paddings (1.0 past the end of each utterance) become normalised log-mel
features ``(batch, frames, 80)`` and frame paddings, with the reference's
settings (lingvo's ASR frontend): 25 ms frames (400 samples, plus one for
the pre-emphasis) every 10 ms (160 samples), no end padding, HTK-style
pre-emphasis 0.97, a periodic Hann window, a 512-point power spectrum, 80
mel bands over 125-7600 Hz (``tf.signal``'s triangular filters), log with a
floor of 1e-5, then per-band normalisation by the training set's mean and
standard deviation. 320,000 samples give 1,998 frames.

A frame counts as padding only if all of its samples are padding.
"""

from __future__ import annotations

import functools
import math
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

SAMPLE_RATE = 16_000
FRAME_STEP = 160  # 10 ms.
WINDOW = 400  # 25 ms, the samples each spectrum sees after pre-emphasis.
FRAME_SIZE = WINDOW + 1  # One more sample feeds the pre-emphasis.
FFT_SIZE = 512
NUM_MEL_BINS = 80
LOWER_EDGE_HZ = 125.0
UPPER_EDGE_HZ = 7600.0
PREEMPHASIS = 0.97
LOG_FLOOR = 1e-5
# Samples are int16 values; the frontend works on [-1, 1).
INPUT_SCALE = 2.0**-15

# Per-band mean and standard deviation of the log-mel features over the
# LibriSpeech training set (the reference's constants, as float32 values).
MEL_MEAN = np.asarray([
    -7.6047816, -7.1206226, -6.8864245, -6.8705769, -6.9667721, -7.1084094, -6.9528027, -6.7839942,
    -6.6195521, -6.4876266, -6.412066, -6.3940477, -6.4244871, -6.3993711, -6.5158272, -6.7138,
    -6.8476877, -6.9885001, -6.9221387, -7.1461487, -7.2040401, -7.0537553, -7.3140383, -7.1223249,
    -7.3025141, -7.1212144, -7.2425733, -7.1730537, -7.0979414, -7.0887475, -6.9849911, -6.8787732,
    -6.7602754, -6.6300945, -6.5145769, -6.4245057, -6.3565135, -6.3178763, -6.266077, -6.2468328,
    -6.2821527, -6.1908388, -6.2484355, -6.147264, -6.0924726, -6.0171003, -5.9250402, -5.8535833,
    -5.8209109, -5.811893, -5.8078375, -5.7714629, -5.7453732, -5.7705655, -5.7765641, -5.7831674,
    -5.7954087, -5.7994823, -5.8023477, -5.8047118, -5.8168182, -5.88448, -5.9727106, -6.044466,
    -6.1284866, -6.2257586, -6.3157496, -6.3906116, -6.4928598, -6.5498457, -6.605432, -6.6508379,
    -6.6691761, -6.672689, -6.6842346, -6.6974578, -6.7547183, -6.7949142, -6.863421, -6.9418654,
], np.float32)
MEL_STDDEV = np.asarray([
    3.4353282, 3.5962932, 3.7012472, 3.7369206, 3.7535105, 3.6936293, 3.6922498, 3.7641523,
    3.8419716, 3.8999848, 3.929424, 3.931741, 3.9139585, 3.9031599, 3.8692, 3.8155081,
    3.764497, 3.7099106, 3.6965086, 3.6003766, 3.5493226, 3.5465121, 3.450036, 3.4712813,
    3.4084611, 3.4408135, 3.4104881, 3.4217639, 3.4312851, 3.4199209, 3.4305806, 3.4382665,
    3.4580367, 3.4817991, 3.4958711, 3.5036793, 3.5047574, 3.4988735, 3.4930561, 3.4822943,
    3.4594305, 3.461277, 3.4559064, 3.4755423, 3.497155, 3.5326557, 3.5705199, 3.5920312,
    3.5969074, 3.5913501, 3.5865932, 3.5826809, 3.5837743, 3.5895791, 3.5819314, 3.583787,
    3.5861185, 3.588959, 3.5922148, 3.5939455, 3.5856631, 3.5884113, 3.5921023, 3.587049,
    3.580657, 3.5731068, 3.5617533, 3.5498073, 3.5527375, 3.5475366, 3.538785, 3.5256178,
    3.5031836, 3.4922726, 3.4879646, 3.4725595, 3.4558389, 3.4351828, 3.4284294, 3.4299171,
], np.float32)


def num_frames(num_samples: int) -> int:
  """Frames of ``num_samples`` samples (whole frames only, as the reference)."""
  return max((num_samples - FRAME_SIZE) // FRAME_STEP + 1, 0)


def _hertz_to_mel(hertz: np.ndarray) -> np.ndarray:
  return 1127.0 * np.log1p(np.asarray(hertz, np.float64) / 700.0)


@functools.lru_cache(maxsize=None)
def mel_matrix(num_spectrogram_bins: int = FFT_SIZE // 2 + 1,
               num_mel_bins: int = NUM_MEL_BINS) -> np.ndarray:
  """``(spectrogram bins, mel bins)`` triangular filters, as ``tf.signal`` builds them.

  Bands are evenly spaced on the HTK mel scale between the edges; the DC bin
  gets no weight.
  """
  nyquist = SAMPLE_RATE / 2.0
  bin_hz = np.linspace(0.0, nyquist, num_spectrogram_bins)[1:]
  bin_mel = _hertz_to_mel(bin_hz)[:, None]
  edges = np.linspace(_hertz_to_mel(LOWER_EDGE_HZ), _hertz_to_mel(UPPER_EDGE_HZ),
                      num_mel_bins + 2)
  lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
  rising = (bin_mel - lower) / (center - lower)
  falling = (upper - bin_mel) / (upper - center)
  weights = np.maximum(0.0, np.minimum(rising, falling))
  return np.pad(weights, ((1, 0), (0, 0))).astype(np.float32)


def _frames(x: jax.Array, count: int) -> jax.Array:
  """``(batch, count, FRAME_SIZE)``: frame ``i`` is ``x[:, 160 i : 160 i + 401]``.

  Cut from rows of 160 samples: three consecutive rows (480 samples) hold a
  whole frame, so framing is a reshape and a concatenation, exact and cheap.
  """
  rows_needed = count + 2
  total = rows_needed * FRAME_STEP
  x = x[:, :total]
  x = jnp.pad(x, ((0, 0), (0, total - x.shape[1])))
  rows = x.reshape(x.shape[0], rows_needed, FRAME_STEP)
  joined = jnp.concatenate([rows[:, :count], rows[:, 1:count + 1], rows[:, 2:count + 2]],
                           axis=-1)
  return joined[..., :FRAME_SIZE]


def _hann_window() -> np.ndarray:
  # Periodic (as tf.signal.hann_window): 0.5 - 0.5 cos(2 pi n / N).
  n = np.arange(WINDOW)
  return (0.5 - 0.5 * np.cos(2.0 * math.pi * n / WINDOW)).astype(np.float32)


def log_mel_features(audio: jax.Array,
                     paddings: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """Normalised log-mel features and frame paddings of padded audio.

  Args:
    audio: ``(batch, samples)`` samples on the int16 scale.
    paddings: ``(batch, samples)``, 1.0 where a sample is padding.

  Returns:
    ``(features, frame_paddings)`` of shapes ``(batch, frames, 80)`` and
    ``(batch, frames)``.
  """
  audio = jnp.asarray(audio, jnp.float32)
  paddings = jnp.asarray(paddings, jnp.float32)
  count = num_frames(audio.shape[1])
  # Padding samples contribute nothing, whatever the batch holds there.
  signal = audio * (1.0 - paddings) * INPUT_SCALE
  frames = _frames(signal, count)
  frame_paddings = jnp.min(_frames(paddings, count), axis=-1)

  # HTK pre-emphasis: the first sample is scaled, each later one has 0.97 of
  # its predecessor taken away; the last sample of a frame only feeds it.
  emphasised = jnp.concatenate(
      [frames[..., :1] * (1.0 - PREEMPHASIS),
       frames[..., 1:WINDOW] - PREEMPHASIS * frames[..., :WINDOW - 1]], axis=-1)
  windowed = emphasised * _hann_window()
  spectrum = jnp.fft.rfft(windowed, FFT_SIZE, axis=-1)
  power = jnp.square(jnp.real(spectrum)) + jnp.square(jnp.imag(spectrum))
  mel = jnp.einsum('btf,fn->btn', power, mel_matrix(power.shape[-1]))
  log_mel = jnp.log(jnp.maximum(mel, LOG_FLOOR))
  return (log_mel - MEL_MEAN) / MEL_STDDEV, frame_paddings
