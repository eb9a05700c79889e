"""SSIM as the fastmri workload computes it: hand-checked cases and scikit-image.

scikit-image's ``structural_similarity`` with the settings the reference
copies (7x7 uniform window, sample covariance, K1 0.01, K2 0.03, the data
range given) is the model; ours runs in float32 inside a jitted step, so
they agree to float32 rounding (about 1e-5 at most).
"""

import numpy as np
import pytest
import scipy.ndimage

import jax
import jax.numpy as jnp

from workloads.fastmri import ssim as ours

skimage_metrics = pytest.importorskip('skimage.metrics')


def _skimage(im1, im2, data_range):
  return skimage_metrics.structural_similarity(
      np.float64(im1), np.float64(im2), data_range=float(data_range), win_size=7,
      K1=0.01, K2=0.03, gaussian_weights=False, use_sample_covariance=True)


def test_identical_images_score_one():
  image = np.random.default_rng(0).standard_normal((2, 40, 40)).astype(np.float32)
  values = ours.structural_similarity(image, image, jnp.array([1.0, 7.0]))
  np.testing.assert_allclose(values, 1.0, atol=1e-6)


def test_two_constant_images_score_the_luminance_term():
  # Constant images a and b: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
  # with C1 = (0.01 L)^2. a = 0.2, b = 0.3, L = 1: 0.1201 / 0.1301.
  a, b = np.full((16, 16), 0.2, np.float32), np.full((16, 16), 0.3, np.float32)
  assert float(ours.structural_similarity(a, b, 1.0)) == pytest.approx(0.1201 / 0.1301,
                                                                      rel=1e-5)
  # The data range enters only through C1 and C2: L = 10 gives C1 = 0.01.
  assert float(ours.structural_similarity(a, b, 10.0)) == pytest.approx(0.13 / 0.14,
                                                                       rel=1e-5)
  # (float32 0.2 and 0.3 are not quite 0.2 and 0.3.)
  assert float(_skimage(a, b, 1.0)) == pytest.approx(0.1201 / 0.1301, rel=1e-7)


def test_the_uniform_filter_is_scipys_reflect_mode_box_mean():
  image = np.random.default_rng(1).standard_normal((3, 30, 25)).astype(np.float32)
  want = scipy.ndimage.uniform_filter(np.float64(image), size=(1, 7, 7), mode='reflect')
  np.testing.assert_allclose(ours.uniform_filter(image), want, atol=1e-5)


def _pairs(seed, batch=6, size=64):
  """Targets (noise, or smooth like anatomy) and outputs from close to far."""
  rng = np.random.default_rng(seed)
  targets = rng.standard_normal((batch, size, size))
  if seed % 2:
    targets = scipy.ndimage.gaussian_filter(targets, (0, 3, 3)) * 8
  noise = np.linspace(0.05, 2.0, batch)[:, None, None]
  outputs = targets + noise * rng.standard_normal(targets.shape)
  return np.float32(outputs), np.float32(targets), rng


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_it_agrees_with_scikit_image(seed):
  outputs, targets, rng = _pairs(seed)
  data_range = rng.uniform(1, 12, len(targets)).astype(np.float32)
  got = np.asarray(jax.jit(ours.structural_similarity)(outputs, targets, data_range))
  want = [_skimage(o, t, r) for o, t, r in zip(outputs, targets, data_range)]
  np.testing.assert_allclose(got, want, atol=2e-5)
  assert np.ptp(want) > 0.2  # A real range of scores was checked.


def test_ssim_undoes_the_normalisation_and_uses_the_volume_max():
  outputs, targets, rng = _pairs(5, batch=4)
  mean = rng.uniform(2e-5, 1e-4, 4).astype(np.float32)
  std = rng.uniform(1e-5, 5e-5, 4).astype(np.float32)
  volume_max = (mean + 6 * std).astype(np.float32)
  volume_max[3] = 0.0  # Padding rows have 0: it counts as 1.
  got = np.asarray(jax.jit(ours.ssim)(outputs, targets, mean, std, volume_max))
  ranges = np.where(volume_max == 0, 1.0, volume_max)
  want = [_skimage(o * s + m, t * s + m, r)
          for o, t, m, s, r in zip(outputs, targets, mean, std, ranges)]
  np.testing.assert_allclose(got, want, atol=2e-5)
  # Defaults: mean 0, std 1, range 1.
  np.testing.assert_allclose(ours.ssim(outputs, targets),
                             ours.structural_similarity(outputs, targets, 1.0), atol=1e-7)


def test_values_are_clamped_to_ssims_bounds():
  # Rounding can put a score a hair outside [-1, 1]; ssim() cuts it back,
  # as the reference does, and changes nothing inside.
  image = np.random.default_rng(2).standard_normal((1, 20, 20)).astype(np.float32)
  # Around 3, so the luminance term is about 1 and the structure decides.
  outputs = np.concatenate([image, image]) + 3
  targets = np.concatenate([image, -image]) + 3
  raw = ours.structural_similarity(outputs, targets, 1.0)
  values = ours.ssim(outputs, targets)
  np.testing.assert_array_equal(values, jnp.clip(raw, -1.0, 1.0))
  assert float(values[0]) == pytest.approx(1.0, abs=1e-6)
  assert -1.0 <= float(values[1]) < -0.8  # Anti-correlated.
