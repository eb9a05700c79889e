"""RandAugment ops on hand-made images, and the policy's contract.

Each op is checked against values worked out by hand; the policy is checked
for shape and dtype, determinism in the seed, and that at the pipeline's
magnitude (10) a layer's output is one of the reference's 16 ops with the
reference's arguments.
"""

import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')

from workloads import randaugment as ra  # noqa: E402  (after the skip)

GREY = ra.REPLACE_VALUE


def _run(x):
  return np.asarray(x).astype(np.int64)


def _random_image(height, width, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _channel_image(*planes):
  """A uint8 image whose channel ``c`` is ``planes[c]`` (all the same shape)."""
  return np.stack([np.asarray(p, np.uint8) for p in planes], axis=-1)


def _row(values):
  """A 1 x N x 3 image with ``values`` along the row in every channel."""
  return np.repeat(np.asarray(values, np.uint8)[None, :, None], 3, axis=-1)


# --- colour and histogram ops -------------------------------------------------


def test_invert():
  np.testing.assert_array_equal(_run(ra.invert(_row([0, 1, 128, 255]))),
                                _run(_row([255, 254, 127, 0])))


def test_solarize_inverts_at_and_above_the_threshold():
  out = ra.solarize(_row([0, 127, 128, 200, 255]), threshold=128)
  np.testing.assert_array_equal(_run(out), _run(_row([0, 127, 127, 55, 0])))
  image = _row([0, 200, 255])
  np.testing.assert_array_equal(_run(ra.solarize(image, 256)), _run(image))
  np.testing.assert_array_equal(_run(ra.solarize(image, 0)),
                                _run(ra.invert(image)))


def test_solarize_add_below_the_threshold_with_clipping():
  out = ra.solarize_add(_row([0, 100, 127, 128, 255]), addition=110)
  np.testing.assert_array_equal(_run(out), _run(_row([110, 210, 237, 128, 255])))
  out = ra.solarize_add(_row([100, 150]), addition=200, threshold=128)
  np.testing.assert_array_equal(_run(out), _run(_row([255, 150])))


def test_posterize_keeps_the_top_bits():
  image = _row([0b10110111, 0b01111111, 255, 3])
  np.testing.assert_array_equal(_run(ra.posterize(image, 4)),
                                _run(_row([0b10110000, 0b01110000, 240, 0])))
  np.testing.assert_array_equal(_run(ra.posterize(image, 1)),
                                _run(_row([128, 0, 128, 0])))
  np.testing.assert_array_equal(_run(ra.posterize(image, 8)), _run(image))


def test_blend_endpoints_interpolation_and_clipped_extrapolation():
  black, image = _row([0, 0, 0]), _row([10, 100, 200])
  np.testing.assert_array_equal(_run(ra.blend(black, image, 0.0)), _run(black))
  np.testing.assert_array_equal(_run(ra.blend(black, image, 1.0)), _run(image))
  np.testing.assert_array_equal(_run(ra.blend(black, image, 0.5)),
                                _run(_row([5, 50, 100])))
  np.testing.assert_array_equal(_run(ra.blend(black, image, 1.9)),
                                _run(_row([19, 190, 255])))


def test_brightness_blends_from_black():
  image = _row([10, 101, 200])
  np.testing.assert_array_equal(_run(ra.brightness(image, 0.0)), 0)
  np.testing.assert_array_equal(_run(ra.brightness(image, 1.0)), _run(image))
  # 101 * 0.5 = 50.5 truncates to 50.
  np.testing.assert_array_equal(_run(ra.brightness(image, 0.5)),
                                _run(_row([5, 50, 100])))


@pytest.mark.parametrize('side, flat', [(16, 1), (64, 16), (80, 25), (300, 255)])
def test_contrast_blends_from_the_references_flat_level(side, flat):
  # The reference's flat level is pixel count / 256 (capped at 255), not the
  # mean grey level; see workloads/randaugment.py.
  image = _random_image(side, side)
  np.testing.assert_array_equal(_run(ra.contrast(image, 0.0)), flat)
  np.testing.assert_array_equal(_run(ra.contrast(image, 1.0)), _run(image))


def test_color_blends_from_greyscale():
  image = _random_image(6, 5)
  grey = _run(ra.color(image, 0.0))
  np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
  np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
  np.testing.assert_array_equal(_run(ra.color(image, 1.0)), _run(image))


def test_sharpness_smooths_the_interior_and_keeps_the_border():
  image = np.zeros((5, 5, 3), np.uint8)
  image[2, 2] = 255
  image[0, 0] = 255  # A border pixel: kept as it is.
  expected = np.zeros((5, 5, 3), np.int64)
  expected[1:4, 1:4] = 19  # 255 / 13 = 19.6, truncated.
  expected[2, 2] = 98  # 255 * 5 / 13 = 98.1, truncated.
  expected[1, 1] = 39  # Also sees the corner pixel: 2 * 255 / 13 = 39.2.
  expected[0, 0] = 255
  np.testing.assert_array_equal(_run(ra.sharpness(image, 0.0)), expected)
  np.testing.assert_array_equal(_run(ra.sharpness(image, 1.0)), _run(image))


def test_autocontrast_stretches_each_channel_and_keeps_flat_ones():
  two_level = np.array([[50, 100], [100, 50]])
  image = _channel_image(two_level, np.full((2, 2), 7), [[0, 255], [3, 9]])
  out = _run(ra.autocontrast(image))
  np.testing.assert_array_equal(out[..., 0], [[0, 255], [255, 0]])
  np.testing.assert_array_equal(out[..., 1], 7)
  np.testing.assert_array_equal(out[..., 2], [[0, 255], [3, 9]])


def test_equalize():
  # Channel 0: 512 zeros, 256 fifties, 256 nineties. step = (1024 - 256) // 255
  # = 3; lut[50] = (512 + 1) // 3 = 171, lut[90] = (768 + 1) // 3 = 256 -> 255.
  plane = np.zeros((32, 32), np.int64)
  plane[16:24] = 50
  plane[24:] = 90
  # Channel 1: two halves of 512 pixels; step = 512 // 255 = 2,
  # lut[20] = (512 + 1) // 2 = 256 -> 255. Channel 2 is flat: step 0, kept.
  halves = np.where(np.arange(32)[:, None] < 16, 10, 20) + 0 * plane
  image = _channel_image(plane, halves, np.full((32, 32), 33))
  out = _run(ra.equalize(image))
  np.testing.assert_array_equal(out[..., 0], np.select(
      [plane == 0, plane == 50], [0, 171], 255))
  np.testing.assert_array_equal(out[..., 1], np.where(halves == 10, 0, 255))
  np.testing.assert_array_equal(out[..., 2], 33)


# --- geometric ops ------------------------------------------------------------


def test_translate_by_whole_pixels_fills_with_grey():
  image = _random_image(5, 7)
  out = _run(ra.translate_x(image, 2.0))
  np.testing.assert_array_equal(out[:, :-2], _run(image)[:, 2:])
  np.testing.assert_array_equal(out[:, -2:], GREY)
  out = _run(ra.translate_x(image, -3.0))
  np.testing.assert_array_equal(out[:, 3:], _run(image)[:, :-3])
  np.testing.assert_array_equal(out[:, :3], GREY)
  out = _run(ra.translate_y(image, 1.0))
  np.testing.assert_array_equal(out[:-1], _run(image)[1:])
  np.testing.assert_array_equal(out[-1:], GREY)
  np.testing.assert_array_equal(_run(ra.translate_x(image, 100.0)), GREY)


def test_shear_by_one_pixel_per_row_or_column():
  image = _random_image(4, 6)
  expected_x = np.full((4, 6, 3), GREY, np.int64)
  expected_y = np.full((4, 6, 3), GREY, np.int64)
  for y in range(4):
    for x in range(6):
      if x + y < 6:
        expected_x[y, x] = image[y, x + y]
      if x + y < 4:
        expected_y[y, x] = image[y + x, x]
  np.testing.assert_array_equal(_run(ra.shear_x(image, 1.0)), expected_x)
  np.testing.assert_array_equal(_run(ra.shear_y(image, 1.0)), expected_y)
  np.testing.assert_array_equal(_run(ra.shear_x(image, 0.0)), _run(image))


def test_rotate_by_right_angles():
  image = _random_image(5, 5)
  np.testing.assert_array_equal(_run(ra.rotate(image, 0.0)), _run(image))
  np.testing.assert_array_equal(_run(ra.rotate(image, 90.0)),
                                _run(np.rot90(image, 1)))
  np.testing.assert_array_equal(_run(ra.rotate(image, 180.0)),
                                _run(image[::-1, ::-1]))


def test_rotate_fills_uncovered_corners_with_grey():
  out = _run(ra.rotate(np.zeros((9, 9, 3), np.uint8), 45.0))
  np.testing.assert_array_equal(out[0, 0], GREY)
  np.testing.assert_array_equal(out[4, 4], 0)


def _span(mask_1d):
  """(first, stop) of the True entries of ``mask_1d``."""
  where = np.flatnonzero(mask_1d)
  return int(where[0]), int(where[-1]) + 1


@pytest.mark.parametrize('seed', range(6))
def test_cutout_fills_a_clipped_square_with_grey(seed):
  height, width, pad = 10, 13, 2
  image = np.zeros((height, width, 3), np.uint8)
  out = _run(ra.cutout(image, pad, tf.constant([seed, 1])))
  changed = np.any(out != 0, axis=-1)
  np.testing.assert_array_equal(out[changed], GREY)
  rows, cols = _span(changed.any(1)), _span(changed.any(0))
  assert changed.sum() == (rows[1] - rows[0]) * (cols[1] - cols[0])
  # Rows [cy - pad, cy + pad) for some centre row cy, cut at the edges.
  assert any(rows == (max(0, c - pad), min(height, c + pad))
             for c in range(height))
  assert any(cols == (max(0, c - pad), min(width, c + pad))
             for c in range(width))
  again = _run(ra.cutout(image, pad, tf.constant([seed, 1])))
  np.testing.assert_array_equal(out, again)


def test_cutout_edge_sizes():
  image = _random_image(6, 8)
  np.testing.assert_array_equal(
      _run(ra.cutout(image, 0, tf.constant([1, 2]))), _run(image))
  np.testing.assert_array_equal(
      _run(ra.cutout(image, 20, tf.constant([1, 2]))), GREY)


# --- the policy ---------------------------------------------------------------


def _distort(image, seed, num_layers=2, magnitude=10):
  return _run(ra.distort_image_with_randaugment(
      tf.constant(image), num_layers, magnitude, tf.constant(seed)))


@pytest.mark.parametrize('shape', [(32, 32), (24, 40), (41, 17)])
def test_shape_and_dtype_are_kept(shape):
  image = tf.constant(_random_image(*shape))
  for seed in range(4):
    out = ra.distort_image_with_randaugment(image, 2, 10, tf.constant([seed, 9]))
    assert out.dtype == tf.uint8 and tuple(out.shape) == (*shape, 3)


def test_dynamic_shapes_inside_tf_data():
  images = tf.data.Dataset.range(3).map(
      lambda i: tf.zeros(tf.stack([20 + i, 30 - i, 3]), tf.uint8))
  seeds = tf.data.Dataset.range(3).map(lambda i: tf.stack([i, 4]))
  out = tf.data.Dataset.zip((images, seeds)).map(
      lambda x, s: ra.distort_image_with_randaugment(x, 2, 10, s))
  assert out.element_spec.dtype == tf.uint8
  assert [tuple(x.shape) for x in out] == [(20, 30, 3), (21, 29, 3), (22, 28, 3)]


@pytest.mark.parametrize('dtype', [np.int32, np.int64])
def test_deterministic_in_the_seed(dtype):
  image = _random_image(32, 24)
  seed = np.array([5, 6], dtype)
  np.testing.assert_array_equal(_distort(image, seed), _distort(image, seed))
  assert not np.array_equal(_distort(image, seed),
                            _distort(image, np.array([7, 8], dtype)))


def test_seeds_give_varied_outputs():
  image = _random_image(16, 16)
  outs = {_distort(image, [s, 0], num_layers=1).tobytes() for s in range(12)}
  assert len(outs) >= 6


def test_zero_layers_is_the_identity():
  image = _random_image(12, 20)
  np.testing.assert_array_equal(_distort(image, [1, 2], num_layers=0),
                                _run(image))


def _magnitude_10_outcomes(image):
  """The 15 non-random outcomes of one layer at magnitude 10 (both signs)."""
  outs = [ra.autocontrast(image), ra.equalize(image), ra.invert(image),
          ra.posterize(image, 4),
          ra.solarize(image, 0),  # 256 wraps to 0 in the reference.
          ra.color(image, 1.9), ra.contrast(image, 1.9),
          ra.brightness(image, 1.9), ra.sharpness(image, 1.9),
          ra.solarize_add(image, 110)]
  for sign in (1.0, -1.0):
    outs += [ra.rotate(image, 30.0 * sign), ra.shear_x(image, 0.3 * sign),
             ra.shear_y(image, 0.3 * sign),
             ra.translate_x(image, 100.0 * sign),
             ra.translate_y(image, 100.0 * sign)]
  return [_run(o) for o in outs]


def _is_cutout_of(out, image, pad):
  changed = np.any(out != image, axis=-1)
  rows, cols = changed.any(1).sum(), changed.any(0).sum()
  return bool(np.all(out[changed] == GREY) and rows <= 2 * pad
              and cols <= 2 * pad)


def test_one_layer_at_magnitude_10_is_one_of_the_references_ops():
  image = _random_image(48, 40, seed=3)
  outcomes = _magnitude_10_outcomes(image)
  for seed in range(16):
    out = _distort(image, [seed, 3], num_layers=1)
    assert (any(np.array_equal(out, o) for o in outcomes)
            or _is_cutout_of(out, _run(image), 40)), seed


def test_level_mapping_at_magnitude_5():
  assert ra._enhance_factor(5.0) == pytest.approx(1.0)
  assert ra._solarize_threshold(5.0) == 128
  assert ra._solarize_threshold(10.0) == 0
