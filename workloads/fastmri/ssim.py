"""SSIM of reconstructed MRI slices, computed as the AlgoPerf reference does.

The reference's SSIM is scikit-image's ``structural_similarity`` with its
defaults (as in the fastMRI paper, arXiv:1811.08839): a 7x7 uniform window
over symmetric-padded images, the sample covariance (49/48), K1 = 0.01,
K2 = 0.03, the mean over the image less a 3-pixel border. The data range is
the maximum of the slice's whole volume (``volume_max``, the ``max``
attribute of its file), and images are compared after undoing the
per-slice normalisation (``x * std + mean``). Per-slice values are clamped
to [-1, 1]; the split's metric is their mean over slices.

Pure jax.numpy functions of whole batches, to run inside a jitted eval step.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

WIN_SIZE = 7
K1 = 0.01
K2 = 0.03


def uniform_filter(images: jax.Array, size: int = WIN_SIZE) -> jax.Array:
  """The mean over a ``size`` x ``size`` window of each pixel of ``(..., H, W)``.

  Edges are padded symmetrically (``d c b a | a b c d``: scipy's 'reflect',
  which scikit-image uses), so the output has the input's shape. Separable:
  a box mean along H, then along W.
  """
  half = size // 2
  lead = images.ndim - 2
  padded = jnp.pad(images, [(0, 0)] * lead + [(half, half), (half, half)],
                   mode='symmetric')
  out = padded
  for axis in (lead, lead + 1):
    window = [1] * images.ndim
    window[axis] = size
    out = jax.lax.reduce_window(out, 0.0, jax.lax.add, tuple(window),
                                (1,) * images.ndim, 'VALID') / size
  return out


def structural_similarity(im1: jax.Array, im2: jax.Array,
                          data_range: jax.Array | float = 1.0,
                          win_size: int = WIN_SIZE, k1: float = K1,
                          k2: float = K2) -> jax.Array:
  """Mean SSIM of each pair of images ``(..., H, W)``: shape ``(...)``.

  ``data_range``: a scalar or one value per image (shape ``(...)``).
  """
  im1 = jnp.asarray(im1, jnp.float32)
  im2 = jnp.asarray(im2, jnp.float32)
  data_range = jnp.asarray(data_range, jnp.float32)[..., None, None]
  points = win_size**2
  cov_norm = points / (points - 1)  # Sample, not population, (co)variances.
  ux, uy = uniform_filter(im1, win_size), uniform_filter(im2, win_size)
  uxx = uniform_filter(im1 * im1, win_size)
  uyy = uniform_filter(im2 * im2, win_size)
  uxy = uniform_filter(im1 * im2, win_size)
  vx = cov_norm * (uxx - ux * ux)
  vy = cov_norm * (uyy - uy * uy)
  vxy = cov_norm * (uxy - ux * uy)
  c1 = (k1 * data_range)**2
  c2 = (k2 * data_range)**2
  numerator = (2 * ux * uy + c1) * (2 * vxy + c2)
  denominator = (ux**2 + uy**2 + c1) * (vx + vy + c2)
  s = numerator / denominator
  # Windows reaching into the padding are left out of the mean.
  pad = (win_size - 1) // 2
  return jnp.mean(s[..., pad:-pad, pad:-pad], axis=(-2, -1))


def ssim(logits: jax.Array, targets: jax.Array,
         mean: Optional[jax.Array] = None, std: Optional[jax.Array] = None,
         volume_max: Optional[jax.Array] = None) -> jax.Array:
  """Per-slice SSIM ``(batch,)`` of normalised outputs and targets ``(batch, H, W)``.

  ``mean``, ``std``: each slice's normalisation (default 0 and 1);
  ``volume_max``: the data range of each slice (default 1; a 0, as in
  padding rows, counts as 1 so that padding stays finite).
  """
  batch = logits.shape[0]
  ones = jnp.ones((batch,), jnp.float32)
  volume_max = ones if volume_max is None else jnp.asarray(volume_max, jnp.float32)
  volume_max = jnp.where(volume_max == 0, 1.0, volume_max)
  mean = jnp.zeros_like(ones) if mean is None else jnp.asarray(mean, jnp.float32)
  std = ones if std is None else jnp.asarray(std, jnp.float32)
  mean, std = mean.reshape(batch, 1, 1), std.reshape(batch, 1, 1)
  values = structural_similarity(logits * std + mean, targets * std + mean,
                                 volume_max)
  # SSIM's own bounds; numerical overshoot is cut back to them.
  return jnp.clip(values, -1.0, 1.0)
