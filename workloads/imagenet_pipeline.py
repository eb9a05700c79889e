"""The ImageNet input pipeline on the prepared tfds datasets: seekable train order.

Reads the TFRecord shards of ``imagenet2012`` 5.1.0 (train, validation) and
``imagenet_v2/matched-frequency`` 3.0.0 (test) as ``tfds`` prepared them
under ``data_dir`` (``algoperf datasets imagenet --data_dir DIR``), taking
file names and per-shard example counts from the datasets' metadata, so the
order of the examples is ours to define. Preprocessing follows the
reference's: a random distorted-bounding-box crop (its area and aspect-ratio
ranges, attempts and fallback to the centre crop), bicubic resize, random
horizontal flip, and for ViT RandAugment and mixup; eval is a padded centre
crop (224 of 256) resized. Images are normalised with the ImageNet mean and
standard deviation of 0-255 pixels.

Train order, chosen so that a resume can jump to any batch:

* Each process reads only its share of the train files (file ``i`` goes to
  process ``i % process_count``) and makes its rows of every global batch
  from them: local batch ``n`` is positions ``[n L, (n + 1) L)`` of this
  process's endless stream of examples (``L`` rows a process).
* The stream is a sequence of epochs over the process's files. Epoch ``e``
  reads the files in a permutation drawn from (seed, process, e), records
  in file order, then permutes each block of ``B = 16 L`` consecutive
  records (as many as the reference's shuffle buffer holds) by a
  permutation drawn from (seed, process, e, block). Blocks never straddle
  an epoch; an epoch's last block may be short.
* Every random choice about an example (crop, flip, RandAugment) is a
  stateless TF op seeded by (seed, process, stream position); the mixup
  coefficient of batch ``n`` by (seed, n), the same on every process.

So stream position ``k`` is a pure function of the seed and ``k``, and
starting at batch ``n`` is arithmetic: ``k = n L`` gives the epoch and the
block that holds it, the block's first record gives the file (through the
epoch's file permutation and the shard lengths) and the record within it.
The pipeline opens that file, skips records up to the block's start
without decoding them, permutes that block as usual and drops its first
``k`` mod ``B`` examples before decoding. A resume therefore reads at most
one file and decodes nothing it does not yield, whatever ``n`` is, and
yields exactly what an uninterrupted run would have.

Eval splits are read in file order: each process decodes a contiguous share
of the first ``num_examples`` examples and pads its last batches with rows
of weight 0, so every process yields the same number of batches (eval steps
are collective) and every example counts once.

TensorFlow is imported on first use (and kept off the GPUs, which JAX uses).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence, Tuple

import jax
import numpy as np

from algoperf.errors import ConfigError

IMAGENET2012 = 'imagenet2012'
IMAGENET2012_VERSION = '5.1.0'
IMAGENET_V2 = 'imagenet_v2/matched-frequency'
IMAGENET_V2_VERSION = '3.0.0'

NUM_CLASSES = 1000
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# The reference's train crop: sample_distorted_bounding_box settings.
AREA_RANGE = (0.08, 1.0)
ASPECT_RATIO_RANGE = (0.75, 4.0 / 3.0)
MIN_OBJECT_COVERED = 0.1
CROP_ATTEMPTS = 10
# The reference crops 224 of 256 (its resize size) around the centre.
CENTER_CROP_FRACTION = 224 / 256
# The reference's ViT settings.
RANDAUGMENT_NUM_LAYERS = 2
RANDAUGMENT_MAGNITUDE = 10
VIT_MIXUP_ALPHA = 0.2
# Records in a shuffle block, in local batches (the reference's buffer: 16).
BLOCK_BATCHES = 16

_EVAL_SPLITS = {'eval_train': 'train', 'validation': 'validation', 'test': 'test'}
# Large enough to be endless: epochs and batch indices are int64.
_ENDLESS = 2**62
# Tags of the independent random streams drawn from one seed.
_FILES, _BLOCKS, _EXAMPLES, _MIXUP = 1, 2, 3, 4
_READ_BUFFER_BYTES = 8 << 20


class DatasetMissingError(ConfigError):
  """A prepared ImageNet dataset is not where the run looks for it."""


# --- TensorFlow ----------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _tf() -> Any:
  """``tensorflow``, imported once and kept off the GPUs (JAX holds them)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass  # TF was already initialised by the caller; its choice stands.
  return tf


# --- the prepared datasets -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SplitFiles:
  """The shards of one prepared split, in the metadata's order."""

  paths: Tuple[str, ...]
  lengths: Tuple[int, ...]

  @property
  def num_examples(self) -> int:
    return sum(self.lengths)


def dataset_dir(data_dir: str, name: str, version: str) -> Path:
  """Where tfds prepares dataset ``name`` (``name/config`` allowed) at ``version``."""
  return Path(data_dir) / name / version


@functools.lru_cache(maxsize=None)
def _info(directory: str) -> Any:
  """The tfds ``DatasetInfo`` of a prepared dataset folder (read once)."""
  _tf()
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  return tfds.builder_from_directory(directory).info


def _prepared_info(data_dir: Optional[str], name: str, version: str) -> Any:
  """The metadata of ``name:version`` under ``data_dir``, or a one-line error."""
  if not data_dir:
    raise DatasetMissingError(
        f'No data folder given for {name}:{version}; run `algoperf datasets '
        'imagenet --data_dir DIR` and pass --data_dir DIR (or --synthetic_data '
        'for random images of the real shapes).')
  directory = dataset_dir(data_dir, name, version)
  if not (directory / 'dataset_info.json').is_file():
    raise DatasetMissingError(
        f'The prepared dataset {name}:{version} is missing: {directory} has no '
        'dataset_info.json. Run `algoperf datasets imagenet --data_dir '
        f'{data_dir}` to prepare it (or pass --synthetic_data for random '
        'images of the real shapes).')
  return _info(str(directory))


def split_files(data_dir: Optional[str], name: str, version: str,
                split: str) -> SplitFiles:
  """The shard paths and example counts of ``split`` of a prepared dataset."""
  info = _prepared_info(data_dir, name, version)
  if split not in info.splits:
    raise DatasetMissingError(
        f'{dataset_dir(data_dir, name, version)} has no {split!r} split; run '
        f'`algoperf datasets imagenet --data_dir {data_dir}` to prepare it.')
  found = info.splits[split]
  directory = dataset_dir(data_dir, name, version)
  return SplitFiles(tuple(str(directory / f) for f in found.filenames),
                    tuple(int(n) for n in found.shard_lengths))


def _eval_source(data_dir: str, split: str,
                 imagenet_v2_data_dir: Optional[str]) -> SplitFiles:
  if split not in _EVAL_SPLITS:
    raise ValueError(f'Unknown eval split {split!r}; use one of {tuple(_EVAL_SPLITS)}.')
  if split == 'test':
    return split_files(imagenet_v2_data_dir or data_dir, IMAGENET_V2,
                       IMAGENET_V2_VERSION, 'test')
  return split_files(data_dir, IMAGENET2012, IMAGENET2012_VERSION,
                     _EVAL_SPLITS[split])


def _features(files: SplitFiles) -> Any:
  """The tfds features of the dataset that holds ``files`` (to parse records)."""
  return _info(str(Path(files.paths[0]).parent)).features


def _skip_decoding() -> Any:
  """The tfds decoder that leaves an image as its JPEG bytes (decoded later, cropped)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  return tfds.decode.SkipDecoding()


def split_counts(data_dir: str,
                 imagenet_v2_data_dir: Optional[str] = None) -> Dict[str, int]:
  """Example counts of ``train``, ``validation`` and ``test`` from the metadata.

  Raises:
    DatasetMissingError: a prepared dataset (or split) is not there.
  """
  return {
      'train': split_files(data_dir, IMAGENET2012, IMAGENET2012_VERSION,
                           'train').num_examples,
      'validation': split_files(data_dir, IMAGENET2012, IMAGENET2012_VERSION,
                                'validation').num_examples,
      'test': split_files(imagenet_v2_data_dir or data_dir, IMAGENET_V2,
                          IMAGENET_V2_VERSION, 'test').num_examples,
  }


# --- random keys ---------------------------------------------------------------------


def _root_key(seed: Sequence[int]) -> np.ndarray:
  """A (2,) int64 TF seed from any sequence of non-negative integers."""
  words = np.random.SeedSequence([int(w) % 2**64 for w in seed]).generate_state(
      2, np.uint64)
  return words.view(np.int64)


def _fold(key: Any, *data: Any) -> Any:
  """``key`` with ``data`` folded in, one value after another."""
  tf = _tf()
  for value in data:
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(value, tf.int64))
  return key


# --- preprocessing -------------------------------------------------------------------


def _normalize(image: Any) -> Any:
  tf = _tf()
  mean = tf.constant(MEAN_RGB, tf.float32, shape=[1, 1, 3])
  stddev = tf.constant(STDDEV_RGB, tf.float32, shape=[1, 1, 3])
  return (tf.cast(image, tf.float32) - mean) / stddev


def _center_window(shape: Any) -> Any:
  """``[y, x, h, w]`` of the reference's padded centre crop of a ``[h, w, c]`` image."""
  tf = _tf()
  height, width = shape[0], shape[1]
  size = tf.cast(CENTER_CROP_FRACTION * tf.cast(tf.minimum(height, width), tf.float32),
                 tf.int32)
  return tf.stack([(height - size + 1) // 2, (width - size + 1) // 2, size, size])


def _random_window(shape: Any, seed: Any) -> Any:
  """A random crop window as the reference draws it, or its centre-crop fallback."""
  tf = _tf()
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]], tf.float32),
      seed=seed, min_object_covered=MIN_OBJECT_COVERED,
      aspect_ratio_range=ASPECT_RATIO_RANGE, area_range=AREA_RANGE,
      max_attempts=CROP_ATTEMPTS, use_image_if_no_bounding_boxes=True)
  # The whole image means no attempt met the constraints (or it was drawn):
  # the reference then takes the eval crop instead. Choosing the window
  # first decodes the JPEG once where the reference decodes it twice.
  whole = tf.reduce_all(tf.equal(size[:2], shape[:2]))
  window = tf.stack([begin[0], begin[1], size[0], size[1]])
  return tf.where(whole, _center_window(shape), window)


def _decode_crop_resize(image_bytes: Any, window: Any, image_size: int) -> Any:
  """Decodes only ``window`` of the JPEG and resizes it bicubically (float32)."""
  tf = _tf()
  image = tf.io.decode_and_crop_jpeg(image_bytes, window, channels=3)
  image = tf.image.resize(image, [image_size, image_size],
                          method=tf.image.ResizeMethod.BICUBIC)
  return tf.reshape(image, [image_size, image_size, 3])


def preprocess_train(image_bytes: Any, seed: Any, image_size: int = 224,
                     randaugment: bool = False) -> Any:
  """One JPEG as a normalised float32 ``[image_size, image_size, 3]`` train image.

  ``seed``: a (2,) int64 stateless seed; the same seed, the same image.
  """
  tf = _tf()
  crop_seed, flip_seed, augment_seed = (_fold(seed, i) for i in range(3))
  shape = tf.io.extract_jpeg_shape(image_bytes)
  image = _decode_crop_resize(image_bytes, _random_window(shape, crop_seed),
                              image_size)
  image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
  if randaugment:
    from workloads import randaugment as augment  # pylint: disable=import-outside-toplevel

    # RandAugment works on pixels; bicubic resizing can overshoot [0, 255].
    pixels = tf.cast(tf.clip_by_value(image, 0.0, 255.0), tf.uint8)
    image = augment.distort_image_with_randaugment(
        pixels, RANDAUGMENT_NUM_LAYERS, RANDAUGMENT_MAGNITUDE, augment_seed)
  return _normalize(image)


def preprocess_eval(image_bytes: Any, image_size: int = 224) -> Any:
  """One JPEG as a normalised float32 eval image: centre crop, resized."""
  tf = _tf()
  window = _center_window(tf.io.extract_jpeg_shape(image_bytes))
  return _normalize(_decode_crop_resize(image_bytes, window, image_size))


def mixup(inputs: Any, labels: Any, seed: Any, alpha: float) -> Tuple[Any, Any]:
  """Mixes each row with the previous one (cyclically) by one Beta(alpha, alpha) weight.

  Returns the mixed inputs and the mixed one-hot targets (float32 rows of
  width 1000), as the reference's mixup does.
  """
  tf = _tf()
  draws = [tf.random.stateless_gamma((1,), _fold(seed, i), alpha) for i in range(2)]
  # Two Gamma(alpha) draws make a Beta(alpha, alpha) one.
  weight = tf.squeeze(draws[0] / (draws[0] + draws[1]))
  targets = tf.one_hot(labels, NUM_CLASSES, dtype=tf.float32)
  mixed_inputs = weight * inputs + (1.0 - weight) * tf.roll(inputs, 1, axis=0)
  mixed_targets = weight * targets + (1.0 - weight) * tf.roll(targets, 1, axis=0)
  return mixed_inputs, mixed_targets


# --- the train order -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StreamStart:
  """Where in the stream of one process a given example position lies."""

  epoch: int
  first_file: int  # Index into the epoch's file permutation.
  skip_records: int  # Records of that file before the block starts.
  block: int  # Block index within the epoch.
  drop: int  # Examples of the permuted block before the position.


def locate(position: int, file_lengths: Sequence[int], block_size: int) -> StreamStart:
  """Where stream position ``position`` lies, given the epoch's files in reading order.

  ``file_lengths``: the record counts of the files of the position's epoch,
  in the order that epoch reads them (every epoch has the same total).
  """
  epoch_length = sum(file_lengths)
  epoch, within = divmod(position, epoch_length)
  block, drop = divmod(within, block_size)
  block_start = block * block_size
  ends = np.cumsum(file_lengths)
  first_file = int(np.searchsorted(ends, block_start, side='right'))
  skip = block_start - (int(ends[first_file - 1]) if first_file else 0)
  return StreamStart(epoch, first_file, skip, block, drop)


class TrainOrder:
  """The seekable example order of one process (see the module docstring).

  Builds ``(stream position, serialized record)`` datasets from any
  position on; decoding is left to the caller.
  """

  def __init__(self, files: SplitFiles, seed: Sequence[int], block_size: int,
               process_index: int = 0, process_count: int = 1) -> None:
    if len(files.paths) < process_count:
      raise ValueError(
          f'{len(files.paths)} train files cannot be shared by {process_count} '
          'processes: every process needs at least one.')
    tf = _tf()
    self.paths = files.paths[process_index::process_count]
    self.lengths = np.asarray(files.lengths[process_index::process_count], np.int64)
    self.epoch_length = int(self.lengths.sum())
    self.block_size = int(block_size)
    key = _fold(tf.constant(_root_key(seed)), process_index)
    self._file_key = _fold(key, _FILES)
    self._block_key = _fold(key, _BLOCKS)
    self.example_key = _fold(key, _EXAMPLES)

  def file_order(self, epoch: Any) -> Any:
    """The permutation of this process's files that epoch ``epoch`` reads them in."""
    tf = _tf()
    return tf.random.experimental.stateless_shuffle(
        tf.range(len(self.paths), dtype=tf.int64), _fold(self._file_key, epoch))

  def locate(self, position: int) -> StreamStart:
    """:func:`locate` for this process's files (the epoch's order computed here)."""
    epoch = position // self.epoch_length
    order = self.file_order(epoch).numpy()
    return locate(position, self.lengths[order], self.block_size)

  def _epoch(self, epoch: Any, start: StreamStart) -> Any:
    """One epoch's ``(position, record)`` pairs from ``start`` (its fields as tensors)."""
    tf = _tf()
    epoch = tf.cast(epoch, tf.int64)
    order = self.file_order(epoch)[start.first_file:]
    records = tf.data.TFRecordDataset(
        tf.gather(tf.constant(self.paths), order),
        buffer_size=_READ_BUFFER_BYTES).skip(start.skip_records)
    first = epoch * self.epoch_length
    size = self.block_size

    def permute(block: Any, rows: Any) -> Tuple[Any, Any]:
      count = tf.shape(rows, out_type=tf.int64)[0]
      shuffled = tf.random.experimental.stateless_shuffle(
          tf.range(count), _fold(self._block_key, epoch, block))
      positions = first + block * size + tf.range(count)
      return positions, tf.gather(rows, shuffled)

    blocks = tf.data.Dataset.zip(
        tf.data.Dataset.range(start.block, _ENDLESS), records.batch(size))
    # The next block is read while this one is decoded: no stall at each block.
    return blocks.map(permute).prefetch(1).unbatch().skip(start.drop)

  def records(self, position: int) -> Any:
    """The endless ``(position, record)`` dataset from stream position ``position`` on."""
    tf = _tf()
    start = self.locate(position)
    rest = tf.data.Dataset.range(start.epoch + 1, _ENDLESS).flat_map(
        lambda epoch: self._epoch(epoch, StreamStart(0, 0, 0, 0, 0)))
    return self._epoch(start.epoch, start).concatenate(rest)


# --- train --------------------------------------------------------------------------


def _local_rows(global_batch_size: int) -> int:
  count = jax.process_count()
  if global_batch_size <= 0 or global_batch_size % count:
    raise ValueError(f'global_batch_size {global_batch_size} must be a positive '
                     f'multiple of the process count ({count}).')
  return global_batch_size // count


def _deterministic(dataset: Any) -> Any:
  tf = _tf()
  options = tf.data.Options()
  options.deterministic = True
  return dataset.with_options(options)


def train_dataset(data_dir: str, seed: Sequence[int], global_batch_size: int,
                  start: int = 0, *, randaugment: bool = False,
                  mixup_alpha: Optional[float] = None, image_size: int = 224,
                  block_batches: int = BLOCK_BATCHES) -> Any:
  """The tf.data dataset behind :func:`train_batches` (this process's rows)."""
  tf = _tf()
  rows = _local_rows(global_batch_size)
  files = split_files(data_dir, IMAGENET2012, IMAGENET2012_VERSION, 'train')
  order = TrainOrder(files, seed, block_batches * rows, jax.process_index(),
                     jax.process_count())
  features = _features(files)
  skip_image = {'image': _skip_decoding()}

  def decode(position: Any, record: Any) -> Dict[str, Any]:
    example = features.deserialize_example(record, decoders=skip_image)
    image = preprocess_train(example['image'], _fold(order.example_key, position),
                             image_size, randaugment)
    return {'inputs': image, 'targets': tf.cast(example['label'], tf.int32)}

  batches = order.records(int(start) * rows).map(
      decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(
          rows, drop_remainder=True)
  if mixup_alpha is not None:
    mixup_key = _fold(tf.constant(_root_key(seed)), _MIXUP)

    def mix(index: Any, batch: Dict[str, Any]) -> Dict[str, Any]:
      inputs, targets = mixup(batch['inputs'], batch['targets'],
                              _fold(mixup_key, index), mixup_alpha)
      return {'inputs': inputs, 'targets': targets}

    batches = tf.data.Dataset.zip(
        tf.data.Dataset.range(int(start), _ENDLESS), batches).map(
            mix, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return _deterministic(batches.prefetch(tf.data.AUTOTUNE))


def train_batches(data_dir: str, seed: Sequence[int], global_batch_size: int,
                  start: int = 0, *, randaugment: bool = False,
                  mixup_alpha: Optional[float] = None, image_size: int = 224,
                  block_batches: int = BLOCK_BATCHES) -> Iterator[Dict[str, np.ndarray]]:
  """This process's rows of global train batches ``start``, ``start + 1``, ... (endless).

  Each batch: ``inputs`` float32 ``[rows, image_size, image_size, 3]``
  normalised, ``targets`` int32 class ids (float32 ``[rows, 1000]`` mixed
  one-hot rows with ``mixup_alpha``), ``weights`` float32 ones; ``rows`` is
  ``global_batch_size // jax.process_count()``. A pure function of ``seed``
  and the batch index: ``start=n`` yields what ``start=0`` yields from its
  ``n``-th batch on, after reading at most one file and one shuffle block
  of ``block_batches`` local batches.
  """
  # Built now, not at the first batch: a missing dataset fails here.
  dataset = train_dataset(data_dir, seed, global_batch_size, start,
                          randaugment=randaugment, mixup_alpha=mixup_alpha,
                          image_size=image_size, block_batches=block_batches)
  return _with_weights(dataset, _local_rows(global_batch_size))


def _with_weights(dataset: Any, rows: int) -> Iterator[Dict[str, np.ndarray]]:
  weights = np.ones((rows,), np.float32)
  for batch in dataset.as_numpy_iterator():
    batch['weights'] = weights
    yield batch


# --- eval --------------------------------------------------------------------------------


def _first_examples(files: SplitFiles, first: int, count: int) -> Any:
  """Records ``[first, first + count)`` of ``files`` read in order (no decoding)."""
  tf = _tf()
  if count == 0:
    return tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string))
  ends = np.cumsum(files.lengths)
  opened = int(np.searchsorted(ends, first, side='right'))
  skip = first - (int(ends[opened - 1]) if opened else 0)
  last = int(np.searchsorted(ends, first + count, side='left'))
  paths = list(files.paths[opened:last + 1])
  return tf.data.TFRecordDataset(paths, buffer_size=_READ_BUFFER_BYTES).skip(
      skip).take(count)


def process_share(num_examples: int, process_index: int,
                  process_count: int) -> Tuple[int, int]:
  """``[begin, end)``: the contiguous part of ``num_examples`` a process evaluates."""
  per_process = math.ceil(num_examples / process_count)
  begin = min(process_index * per_process, num_examples)
  return begin, min(begin + per_process, num_examples)


class EvalBatches:
  """This process's padded eval batches of one split; each ``iter`` is a new pass.

  The tf.data graph is built once; every pass yields ``len(self)`` batches
  of ``rows`` rows, the padding rows (inputs 0, targets 0) with weight 0.
  """

  def __init__(self, files: SplitFiles, num_examples: int, global_batch_size: int,
               image_size: int) -> None:
    tf = _tf()
    if num_examples > files.num_examples:
      raise ValueError(f'Cannot evaluate on {num_examples} examples: the split '
                       f'has {files.num_examples}.')
    self.rows = _local_rows(global_batch_size)
    count = jax.process_count()
    begin, end = process_share(num_examples, jax.process_index(), count)
    self.num_batches = math.ceil(math.ceil(num_examples / count) / self.rows)
    features = _features(files)
    skip_image = {'image': _skip_decoding()}

    def decode(record: Any) -> Dict[str, Any]:
      example = features.deserialize_example(record, decoders=skip_image)
      return {'inputs': preprocess_eval(example['image'], image_size),
              'targets': tf.cast(example['label'], tf.int32),
              'weights': tf.constant(1.0, tf.float32)}

    padding = tf.data.Dataset.from_tensors({
        'inputs': tf.zeros([image_size, image_size, 3], tf.float32),
        'targets': tf.constant(0, tf.int32),
        'weights': tf.constant(0.0, tf.float32)}).repeat(
            self.num_batches * self.rows - (end - begin))
    examples = _first_examples(files, begin, end - begin).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    self._dataset = _deterministic(
        examples.concatenate(padding).batch(self.rows).prefetch(tf.data.AUTOTUNE))

  def __len__(self) -> int:
    return self.num_batches

  def __iter__(self) -> Iterator[Dict[str, np.ndarray]]:
    return self._dataset.as_numpy_iterator()


def eval_batches(data_dir: str, split: str, num_examples: int,
                 global_batch_size: int, *, imagenet_v2_data_dir: Optional[str] = None,
                 image_size: int = 224) -> Iterable[Dict[str, np.ndarray]]:
  """This process's rows of the padded eval batches of ``split`` (re-iterable).

  ``split``: ``eval_train`` (the first ``num_examples`` train examples, in
  file order, with eval preprocessing), ``validation`` (imagenet2012) or
  ``test`` (ImageNet-v2 under ``imagenet_v2_data_dir``, else ``data_dir``).
  Every process yields the same number of batches of
  ``global_batch_size // process_count`` rows; across processes each of the
  ``num_examples`` examples appears once with weight 1.
  """
  files = _eval_source(data_dir, split, imagenet_v2_data_dir)
  return EvalBatches(files, int(num_examples), int(global_batch_size), int(image_size))


__all__ = ['DatasetMissingError', 'EvalBatches', 'IMAGENET2012', 'IMAGENET2012_VERSION',
           'IMAGENET_V2', 'IMAGENET_V2_VERSION', 'TrainOrder', 'eval_batches',
           'locate', 'mixup', 'preprocess_eval', 'preprocess_train', 'split_counts',
           'split_files', 'train_batches', 'train_dataset']
