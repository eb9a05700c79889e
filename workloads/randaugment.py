"""RandAugment (https://arxiv.org/abs/1909.13719) for the ImageNet ViT inputs.

TensorFlow ops on one uint8 ``[H, W, 3]`` image, meant to run inside a
``tf.data`` map. The op set, the level-to-argument mapping and the way ops
are picked follow the reference's ``randaugment.py``: each of
``num_layers`` layers picks one of 16 ops uniformly and always applies it
with the shared ``magnitude`` (the reference draws a per-op probability but
never uses it). Geometric ops leave grey (128) where they uncover pixels.

Unlike the reference, every random draw is stateless and derived from the
``seed`` argument, so the output is a pure function of ``(image, seed)``;
the distributions are the reference's. Two reference quirks are kept on
purpose, since they shape the data the reference trains on: ``contrast``
blends towards ``pixel count / 256`` rather than the mean grey level, and
the solarize threshold is taken modulo 256 (magnitude 10 gives threshold 0,
i.e. a full inversion).

Geometric ops use ``tf.raw_ops.ImageProjectiveTransformV3`` (core
TensorFlow), not tensorflow-addons.
"""

from __future__ import annotations

import math
from typing import Callable, List, NamedTuple, Sequence

import tensorflow as tf

# Levels run from 0 to this; ``magnitude`` is a level.
MAX_LEVEL = 10.0
# Grey used where geometric ops and cutout leave no image content.
REPLACE_VALUE = 128
# Half-side of the cutout square and largest translation (pixels) at MAX_LEVEL.
CUTOUT_CONST = 40
TRANSLATE_CONST = 100


# --- colour and histogram ops -------------------------------------------------


def blend(image1: tf.Tensor, image2: tf.Tensor, factor: float) -> tf.Tensor:
  """``image1 + factor * (image2 - image1)`` in float, clipped to uint8.

  ``factor`` 0 gives ``image1``, 1 gives ``image2``; above 1 extrapolates
  past ``image2``. The result is truncated to uint8, as the reference does.
  """
  if factor == 0.0:
    return tf.convert_to_tensor(image1)
  if factor == 1.0:
    return tf.convert_to_tensor(image2)
  start = tf.cast(image1, tf.float32)
  mixed = start + factor * (tf.cast(image2, tf.float32) - start)
  # Interpolation stays within [0, 255]; only extrapolation needs the clip,
  # and clipping an in-range value changes nothing.
  return tf.cast(tf.clip_by_value(mixed, 0.0, 255.0), tf.uint8)


def invert(image: tf.Tensor) -> tf.Tensor:
  """Each pixel ``v`` becomes ``255 - v``."""
  return 255 - tf.convert_to_tensor(image)


def solarize(image: tf.Tensor, threshold: int = 128) -> tf.Tensor:
  """Inverts the pixels at or above ``threshold``; keeps those below it."""
  # Compare in int32 so that a threshold of 256 means "invert nothing".
  below = tf.cast(image, tf.int32) < threshold
  return tf.where(below, image, 255 - image)


def solarize_add(image: tf.Tensor, addition: int = 0,
                 threshold: int = 128) -> tf.Tensor:
  """Adds ``addition`` (clipped to [0, 255]) to the pixels below ``threshold``."""
  wide = tf.cast(image, tf.int32)
  added = tf.cast(tf.clip_by_value(wide + addition, 0, 255), tf.uint8)
  return tf.where(wide < threshold, added, image)


def posterize(image: tf.Tensor, bits: int) -> tf.Tensor:
  """Keeps the top ``bits`` bits of each pixel and zeroes the rest."""
  shift = tf.cast(8 - bits, image.dtype)
  return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def _grey(image: tf.Tensor) -> tf.Tensor:
  """The luma of ``image`` as a uint8 ``[H, W, 1]`` image."""
  return tf.image.rgb_to_grayscale(image)


def color(image: tf.Tensor, factor: float) -> tf.Tensor:
  """PIL's Color: blends from the greyscale image (0) to the image (1)."""
  return blend(tf.image.grayscale_to_rgb(_grey(image)), image, factor)


def contrast(image: tf.Tensor, factor: float) -> tf.Tensor:
  """PIL's Contrast, as the reference computes it.

  The reference means to blend from a flat image at the mean grey level,
  but divides the pixel *count* by 256 instead of averaging; that flat value,
  ``min(H * W / 256, 255)`` truncated, is kept so the augmented data match.
  """
  shape = tf.shape(image)
  count = tf.cast(shape[0] * shape[1], tf.float32)
  level = tf.cast(tf.clip_by_value(count / 256.0, 0.0, 255.0), tf.uint8)
  flat = tf.fill(shape, level)
  return blend(flat, image, factor)


def brightness(image: tf.Tensor, factor: float) -> tf.Tensor:
  """PIL's Brightness: blends from black (0) to the image (1)."""
  return blend(tf.zeros_like(image), image, factor)


def sharpness(image: tf.Tensor, factor: float) -> tf.Tensor:
  """PIL's Sharpness: blends from a smoothed image (0) to the image (1).

  The smoothing is PIL's SMOOTH 3x3 kernel on the interior; the one-pixel
  border keeps the original pixels.
  """
  image = tf.convert_to_tensor(image)
  kernel = tf.constant([[1., 1., 1.], [1., 5., 1.], [1., 1., 1.]]) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  smooth = tf.nn.depthwise_conv2d(tf.cast(image, tf.float32)[None], kernel,
                                  strides=[1, 1, 1, 1], padding='VALID')
  smooth = tf.cast(tf.clip_by_value(smooth[0], 0.0, 255.0), tf.uint8)
  # Put the smoothed interior back into the frame of the original border.
  padded = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
  interior = tf.pad(tf.ones_like(smooth, tf.bool), [[1, 1], [1, 1], [0, 0]])
  degenerate = tf.where(interior, padded, image)
  return blend(degenerate, image, factor)


def autocontrast(image: tf.Tensor) -> tf.Tensor:
  """Stretches each channel so its darkest pixel is 0 and brightest 255.

  A flat channel is left as is.
  """
  lo = tf.cast(tf.reduce_min(image, axis=[0, 1]), tf.float32)
  hi = tf.cast(tf.reduce_max(image, axis=[0, 1]), tf.float32)
  # The denominator is kept positive only to avoid inf for flat channels,
  # which are not scaled anyway.
  scale = 255.0 / tf.maximum(hi - lo, 1.0)
  offset = -lo * scale
  # ``v * scale + offset`` (not ``(v - lo) * scale``): the same float steps as
  # the reference, so the truncation to uint8 lands on the same values.
  stretched = tf.cast(image, tf.float32) * scale + offset
  stretched = tf.cast(tf.clip_by_value(stretched, 0.0, 255.0), tf.uint8)
  return tf.where(hi > lo, stretched, image)


def equalize(image: tf.Tensor) -> tf.Tensor:
  """PIL's Equalize on each channel: a lookup table from the histogram.

  Per channel, ``step`` is the pixel count minus the count of its brightest
  value, integer-divided by 255; a channel with ``step == 0`` is kept.
  Otherwise value ``v`` maps to ``(cumsum(hist)[v - 1] + step // 2) // step``
  (0 for ``v == 0``), clipped to 255.
  """
  channels = tf.transpose(tf.reshape(tf.cast(image, tf.int32), [-1, 3]))
  hist = tf.math.bincount(channels, minlength=256, maxlength=256, axis=-1)
  count = tf.shape(channels)[1]
  brightest = tf.reduce_max(channels, axis=1)
  top_count = tf.gather(hist, brightest, batch_dims=1)
  step = (count - top_count) // 255
  # A zero step is replaced by 1 only to keep the division defined; those
  # channels take the original values below.
  safe = tf.maximum(step, 1)[:, None]
  lut = (tf.cumsum(hist, axis=1) + safe // 2) // safe
  lut = tf.clip_by_value(tf.pad(lut[:, :-1], [[0, 0], [1, 0]]), 0, 255)
  mapped = tf.gather(lut, channels, batch_dims=1)
  result = tf.where((step > 0)[:, None], mapped, channels)
  return tf.reshape(tf.cast(tf.transpose(result), tf.uint8), tf.shape(image))


# --- geometric ops ------------------------------------------------------------


def _project(image: tf.Tensor, matrix: Sequence[tf.Tensor]) -> tf.Tensor:
  """Applies a projective map given as output-to-input ``[a0..a2, b0..b2]``.

  Output pixel ``(x, y)`` reads input ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``
  (nearest neighbour); reads outside the image give ``REPLACE_VALUE``.
  """
  row = [tf.cast(v, tf.float32) for v in matrix] + [tf.zeros([])] * 2
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=tf.stack(row)[None],
      output_shape=tf.shape(image)[:2], fill_value=float(REPLACE_VALUE),
      interpolation='NEAREST', fill_mode='CONSTANT')
  return out[0]


def rotate(image: tf.Tensor, degrees: tf.Tensor) -> tf.Tensor:
  """Rotates ``image`` about its centre by ``degrees`` (counter-clockwise)."""
  radians = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
  cos, sin = tf.cos(radians), tf.sin(radians)
  shape = tf.cast(tf.shape(image), tf.float32)
  cx, cy = (shape[1] - 1.0) / 2.0, (shape[0] - 1.0) / 2.0
  # The input point is the output point rotated about the centre (cx, cy).
  return _project(image, [cos, -sin, cx - (cos * cx - sin * cy),
                          sin, cos, cy - (sin * cx + cos * cy)])


def shear_x(image: tf.Tensor, level: tf.Tensor) -> tf.Tensor:
  """Shears along x: output ``(x, y)`` reads input ``(x + level * y, y)``."""
  return _project(image, [1.0, level, 0.0, 0.0, 1.0, 0.0])


def shear_y(image: tf.Tensor, level: tf.Tensor) -> tf.Tensor:
  """Shears along y: output ``(x, y)`` reads input ``(x, level * x + y)``."""
  return _project(image, [1.0, 0.0, 0.0, level, 1.0, 0.0])


def translate_x(image: tf.Tensor, pixels: tf.Tensor) -> tf.Tensor:
  """Moves the content ``pixels`` to the left (PIL's sign convention)."""
  return _project(image, [1.0, 0.0, pixels, 0.0, 1.0, 0.0])


def translate_y(image: tf.Tensor, pixels: tf.Tensor) -> tf.Tensor:
  """Moves the content ``pixels`` up (PIL's sign convention)."""
  return _project(image, [1.0, 0.0, 0.0, 0.0, 1.0, pixels])


def _in_span(index: tf.Tensor, start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor:
  return tf.logical_and(index >= start, index < stop)


def cutout(image: tf.Tensor, pad_size: int, seed: tf.Tensor) -> tf.Tensor:
  """Fills a square of side up to ``2 * pad_size`` with ``REPLACE_VALUE``.

  The square's centre is uniform over the pixels (stateless, from ``seed``);
  it covers rows ``[cy - pad_size, cy + pad_size)`` and likewise columns,
  cut off at the image's edges.
  """
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  # The reference draws the centre with stateful ops; same distribution here.
  row_seed, col_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  cy = tf.random.stateless_uniform([], row_seed, maxval=height, dtype=tf.int32)
  cx = tf.random.stateless_uniform([], col_seed, maxval=width, dtype=tf.int32)
  rows = _in_span(tf.range(height), cy - pad_size, cy + pad_size)
  cols = _in_span(tf.range(width), cx - pad_size, cx + pad_size)
  inside = tf.logical_and(rows[:, None], cols[None, :])[:, :, None]
  return tf.where(inside, tf.constant(REPLACE_VALUE, image.dtype), image)


# --- the policy ---------------------------------------------------------------


class _Draws(NamedTuple):
  """One layer's random draws: a sign for the signed ops, a cutout seed."""
  sign: tf.Tensor
  cutout_seed: tf.Tensor


def _fraction(level: float) -> float:
  return level / MAX_LEVEL


def _enhance_factor(level: float) -> float:
  """Blend factor of the enhance ops: 0.1 at level 0 to 1.9 at MAX_LEVEL."""
  return _fraction(level) * 1.8 + 0.1


def _solarize_threshold(level: float) -> int:
  """0 to 256 over the levels, modulo 256 like the reference's uint8 compare."""
  return int(_fraction(level) * 256) % 256


_Op = Callable[[tf.Tensor, float, _Draws], tf.Tensor]

# The reference's ops in its order, each with its level-to-argument mapping.
# Rotation, shear and translation take a random sign.
_OPS: List[_Op] = [
    lambda im, lv, d: autocontrast(im),
    lambda im, lv, d: equalize(im),
    lambda im, lv, d: invert(im),
    lambda im, lv, d: rotate(im, d.sign * (_fraction(lv) * 30.0)),
    lambda im, lv, d: posterize(im, int(_fraction(lv) * 4)),
    lambda im, lv, d: solarize(im, _solarize_threshold(lv)),
    lambda im, lv, d: color(im, _enhance_factor(lv)),
    lambda im, lv, d: contrast(im, _enhance_factor(lv)),
    lambda im, lv, d: brightness(im, _enhance_factor(lv)),
    lambda im, lv, d: sharpness(im, _enhance_factor(lv)),
    lambda im, lv, d: shear_x(im, d.sign * (_fraction(lv) * 0.3)),
    lambda im, lv, d: shear_y(im, d.sign * (_fraction(lv) * 0.3)),
    lambda im, lv, d: translate_x(im, d.sign * (_fraction(lv) * TRANSLATE_CONST)),
    lambda im, lv, d: translate_y(im, d.sign * (_fraction(lv) * TRANSLATE_CONST)),
    lambda im, lv, d: cutout(im, int(_fraction(lv) * CUTOUT_CONST),
                             d.cutout_seed),
    lambda im, lv, d: solarize_add(im, int(_fraction(lv) * 110)),
]
NUM_OPS = len(_OPS)


def _layer(image: tf.Tensor, level: float, seed: tf.Tensor) -> tf.Tensor:
  """One RandAugment layer: a uniformly chosen op, always applied."""
  op_seed, sign_seed, cutout_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  choice = tf.random.stateless_uniform([], op_seed, maxval=NUM_OPS,
                                       dtype=tf.int32)
  # The reference negates with probability 1/2 from a stateful draw; this is
  # the same coin, drawn statelessly.
  flip = tf.random.stateless_uniform([], sign_seed) < 0.5
  draws = _Draws(sign=tf.where(flip, -1.0, 1.0), cutout_seed=cutout_seed)
  branches = [lambda op=op: op(image, level, draws) for op in _OPS]
  out = tf.switch_case(choice, branches)
  return tf.ensure_shape(out, image.shape)


def distort_image_with_randaugment(image: tf.Tensor, num_layers: int,
                                   magnitude: int,
                                   seed: tf.Tensor) -> tf.Tensor:
  """Applies ``num_layers`` random RandAugment ops at ``magnitude`` to ``image``.

  Args:
    image: uint8 ``[H, W, 3]`` (``H`` and ``W`` may be dynamic).
    num_layers: how many ops to apply in sequence (N in the paper).
    magnitude: the level shared by all ops, 0 to 10 (M in the paper).
    seed: stateless seed, shape ``(2,)``, int32 or int64.

  Returns:
    The augmented uint8 ``[H, W, 3]`` image, a pure function of ``image``
    and ``seed``.
  """
  image = tf.convert_to_tensor(image)
  if num_layers <= 0:
    return image
  level = float(magnitude)
  layer_seeds = tf.random.experimental.stateless_split(seed, num_layers)
  for layer in range(num_layers):
    with tf.name_scope(f'randaugment_layer_{layer}'):
      image = _layer(image, level, layer_seeds[layer])
  return image
