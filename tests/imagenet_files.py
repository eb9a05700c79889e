"""A tiny ImageNet on disk, in the format ``tfds`` prepares the real one in.

``write_tiny_imagenet(root)`` prepares ``imagenet2012`` 5.1.0 (train and
validation) and ``imagenet_v2/matched-frequency`` 3.0.0 (test) under
``root`` with tfds itself: builders with the real ones' names, versions,
config and feature spec, so the folders hold what ``algoperf datasets
imagenet`` leaves (TFRecord shards, ``dataset_info.json``,
``features.json``), only smaller. Images are real JPEGs; every example has
its own label and file name, so a test can tell which ones it was given:

* train example ``i``: label ``i % 1000``, file ``train_{i:05d}.JPEG``;
* validation example ``i``: label ``(500 + i) % 1000``;
* test example ``i``: label ``(900 + i) % 1000``.

Needs tensorflow and tensorflow-datasets (imported when called).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Iterator, Sequence, Tuple

import numpy as np

# First label of each split: distinct labels across splits (for up to 500,
# 400 and 100 examples).
LABEL_OFFSETS = {'train': 0, 'validation': 500, 'test': 900}


def label_of(split: str, index: int) -> int:
  """The label ``write_tiny_imagenet`` gives example ``index`` of ``split``."""
  return (LABEL_OFFSETS[split] + index) % 1000


def tiny_image(split: str, index: int, shape: Tuple[int, int]) -> np.ndarray:
  """A uint8 RGB image, different for every (split, index): noise on a gradient."""
  generator = np.random.default_rng([list(LABEL_OFFSETS).index(split), index])
  height, width = shape
  ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
  base = np.broadcast_to(ramp, (height, width, 3)) * generator.uniform(0.2, 1, 3)
  noise = generator.normal(0, 20, (height, width, 3))
  return np.clip(base + noise, 0, 255).astype(np.uint8)


def _builder_class(name: str, version: str, config: str | None,
                   counts: Dict[str, int], shards: Dict[str, int],
                   image_shape: Tuple[int, int]) -> type:
  """A generator builder named like the real one, writing ``counts`` examples."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(num_classes=1000),
            'file_name': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'))

  def _split_generators(self, dl_manager):
    del dl_manager
    # Only the split being generated (see _generate_splits below).
    return {split: self._generate_examples(split) for split in self.tiny_splits}

  def _generate_examples(self, split: str) -> Iterator[Tuple[str, Dict[str, Any]]]:
    for i in range(counts[split]):
      yield f'{split}_{i:05d}', {
          'image': tiny_image(split, i, image_shape),
          'label': label_of(split, i),
          'file_name': f'{split}_{i:05d}.JPEG',
      }

  def _generate_splits(self, dl_manager, download_config):
    # tfds takes one shard count for all splits; generate one split at a time
    # to give each its own (as the real datasets have: 1024 and 64 shards).
    infos = []
    for split, count in shards.items():
      self.tiny_splits = (split,)
      infos.extend(tfds.core.GeneratorBasedBuilder._generate_splits(  # pylint: disable=protected-access
          self, dl_manager, dataclasses.replace(download_config, num_shards=count)))
    return infos

  attributes = {
      '__module__': __name__,
      # No checksums file to look for (and no source file to find it by).
      'code_path': None,
      'VERSION': tfds.core.Version(version),
      'tiny_splits': tuple(counts),
      '_info': _info,
      '_split_generators': _split_generators,
      '_generate_examples': _generate_examples,
      '_generate_splits': _generate_splits,
  }
  if config is not None:
    attributes['BUILDER_CONFIGS'] = [tfds.core.BuilderConfig(name=config)]
  # The class name gives the dataset name, as tfds derives it.
  class_name = ''.join(part.capitalize() for part in name.split('_'))
  return type(class_name, (tfds.core.GeneratorBasedBuilder,), attributes,
              skip_registration=True)


def _prepare(root: Path, name: str, version: str, config: str | None,
             counts: Dict[str, int], shards: Dict[str, int],
             image_shape: Tuple[int, int]) -> None:
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  tfds.disable_progress_bar()  # Tests and benchmarks print their own lines.
  cls = _builder_class(name, version, config, counts, shards, image_shape)
  assert cls.name == name, (cls.name, name)
  builder = cls(data_dir=str(root), config=config)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      compute_stats=tfds.download.ComputeStatsMode.SKIP))


def write_tiny_imagenet(root: Path, *, train: int = 40, validation: int = 10,
                        test: int = 6, train_shards: int = 4,
                        validation_shards: int = 2,
                        image_shape: Sequence[int] = (48, 64)) -> None:
  """Prepares the tiny ``imagenet2012`` and ``imagenet_v2`` datasets under ``root``.

  ``image_shape`` is ``(height, width)`` of every image; the test split has
  one shard, like the real ImageNet-v2 prepared on one machine.
  """
  shape = (int(image_shape[0]), int(image_shape[1]))
  _prepare(Path(root), 'imagenet2012', '5.1.0', None,
           {'train': train, 'validation': validation},
           {'train': train_shards, 'validation': validation_shards}, shape)
  _prepare(Path(root), 'imagenet_v2', '3.0.0', 'matched-frequency',
           {'test': test}, {'test': 1}, shape)
