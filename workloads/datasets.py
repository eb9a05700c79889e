"""Dataset recipes: what ``algoperf datasets NAME`` explains, prepares and verifies.

A recipe knows, for one dataset, where its files come from (a download, a
Debian package, a manual download of archives behind a registration), how to
turn them into what the workload reads, and which splits with how many
examples a complete copy holds. ``verify`` compares a folder with those
counts, so a run never starts on a partial dataset.

Workload names map to their dataset (``imagenet_resnet_silu`` -> ``imagenet``).
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Callable, Dict, List, Optional

from algoperf.errors import ConfigError


class DatasetError(ConfigError):
  """A dataset is missing, incomplete, or cannot be prepared here."""


@dataclasses.dataclass(frozen=True)
class SplitCheck:
  """One split of a dataset folder against the count a complete copy has."""

  split: str
  expected: int
  found: Optional[int]  # None: the split is missing.

  @property
  def ok(self) -> bool:
    return self.found == self.expected


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How to get, prepare and verify one dataset."""

  name: str
  workloads: str  # Which workloads read it (for the help text).
  counts: Dict[str, int]
  instructions: Callable[[str], str]
  # Split -> example count found in ``data_dir`` (missing splits absent);
  # raises DatasetError when the folder holds nothing usable.
  count_splits: Callable[[str, Optional[str]], Dict[str, int]]
  # Prepares the dataset in ``data_dir``; None when nothing needs preparing.
  prepare: Optional[Callable[[str, Optional[str]], None]] = None
  default_data_dir: Optional[str] = None

  def verify(self, data_dir: str, imagenet_v2_data_dir: Optional[str] = None,
             counts: Optional[Dict[str, int]] = None) -> List[SplitCheck]:
    """Each split's expected and found example count (``counts`` overrides the
    expected ones, for tests on tiny copies)."""
    found = self.count_splits(data_dir, imagenet_v2_data_dir)
    expected = self.counts if counts is None else counts
    return [SplitCheck(split, n, found.get(split)) for split, n in expected.items()]


def _counts_of(module: str) -> Callable[[str, Optional[str]], Dict[str, int]]:
  """``split_counts(data_dir)`` of a workload's data module, imported on use."""

  def count(data_dir: str, _: Optional[str]) -> Dict[str, int]:
    try:
      return importlib.import_module(module).split_counts(data_dir)
    except ConfigError as e:
      raise DatasetError(str(e)) from e

  return count


def _prepare_of(module: str) -> Callable[[str, Optional[str]], None]:
  """``prepare(data_dir)`` of a workload's data module, imported on use."""

  def prepare(data_dir: str, _: Optional[str]) -> None:
    try:
      importlib.import_module(module).prepare(data_dir)
    except ConfigError as e:
      raise DatasetError(str(e)) from e

  return prepare


def _instructions_of(module: str) -> Callable[[str], str]:
  """``instructions(data_dir)`` of a workload's data module, imported on use."""
  return lambda data_dir: importlib.import_module(module).instructions(data_dir)


# --- fashion_mnist -----------------------------------------------------------------


def _fashion_mnist_instructions(data_dir: str) -> str:
  return ('Fashion-MNIST: four gzipped IDX files (train/t10k images and labels).\n'
          'On Debian or Ubuntu: `apt-get install dataset-fashion-mnist` installs them '
          'to /usr/share/datasets/fashion-mnist/ (the default --data_dir); any folder '
          'holding the same four files works. Nothing needs preparing.')


def _fashion_mnist_counts(data_dir: str, _: Optional[str]) -> Dict[str, int]:
  from workloads.fashion_mnist import data  # pylint: disable=import-outside-toplevel
  try:
    splits = data.load_raw(data_dir)
  except (ConfigError, FileNotFoundError) as e:
    raise DatasetError(str(e)) from e
  return {split: len(labels) for split, (_, labels) in splits.items()}


# --- mnist1d -----------------------------------------------------------------------


def _mnist1d_instructions(data_dir: str) -> str:
  return ('MNIST-1D is generated locally by the `mnist1d` package (installed with '
          'this benchmark) from a fixed seed: nothing to download, --data_dir is '
          'not used.')


def _mnist1d_counts(data_dir: str, _: Optional[str]) -> Dict[str, int]:
  from workloads.mnist1d import data  # pylint: disable=import-outside-toplevel
  return {split: len(labels) for split, (_, labels) in data.load_splits().items()}


# --- imagenet ----------------------------------------------------------------------

_IMAGENET_ARCHIVES = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')


def _imagenet_manual_dir(data_dir: str) -> Path:
  return Path(data_dir).expanduser() / 'downloads' / 'manual'


def _imagenet_instructions(data_dir: str) -> str:
  from workloads import imagenet_pipeline as p  # pylint: disable=import-outside-toplevel
  manual = _imagenet_manual_dir(data_dir)
  return (
      f'ImageNet: tfds `{p.IMAGENET2012}` {p.IMAGENET2012_VERSION} (train, '
      f'validation) and `{p.IMAGENET_V2}` {p.IMAGENET_V2_VERSION} (the test split).\n'
      '1. ImageNet is a manual download: register at https://image-net.org/download-images, '
      f'download {" and ".join(_IMAGENET_ARCHIVES)} (about 150 GB) and put them in '
      f'{manual}/.\n'
      f'2. `algoperf datasets imagenet --data_dir {data_dir} --prepare` converts them '
      'into tfds records (hours; needs about 150 GB more) and downloads and prepares '
      'ImageNet-v2 (1.2 GB, needs the internet), then verifies every split.\n'
      f'3. Run with `--data_dir {data_dir}` (and `--imagenet_v2_data_dir` if '
      'ImageNet-v2 was prepared in another folder).')


def _imagenet_counts(data_dir: str, imagenet_v2_data_dir: Optional[str]) -> Dict[str, int]:
  from workloads import imagenet_pipeline as p  # pylint: disable=import-outside-toplevel
  counts: Dict[str, int] = {}
  try:
    counts.update(p.split_counts(data_dir, imagenet_v2_data_dir))
  except ConfigError as e:
    raise DatasetError(str(e)) from e
  return counts


def _imagenet_prepare(data_dir: str, imagenet_v2_data_dir: Optional[str]) -> None:
  from workloads import imagenet_pipeline as p  # pylint: disable=import-outside-toplevel
  manual = _imagenet_manual_dir(data_dir)
  missing = [name for name in _IMAGENET_ARCHIVES if not (manual / name).is_file()]
  if missing:
    raise DatasetError(
        f'{", ".join(missing)} not found in {manual}: ImageNet cannot be '
        'downloaded automatically. Register at https://image-net.org/download-images, '
        f'download the archives into {manual}/ and run this command again.')
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise DatasetError('Preparing ImageNet needs tensorflow-datasets: '
                       '`pip install -e ".[tf]"`.') from e
  config = tfds.download.DownloadConfig(manual_dir=str(manual))
  print(f'Preparing {p.IMAGENET2012} {p.IMAGENET2012_VERSION} in {data_dir} '
        '(this takes hours)...', flush=True)
  tfds.builder(f'{p.IMAGENET2012}:{p.IMAGENET2012_VERSION}',
               data_dir=data_dir).download_and_prepare(download_config=config)
  v2_dir = imagenet_v2_data_dir or data_dir
  print(f'Downloading and preparing {p.IMAGENET_V2} {p.IMAGENET_V2_VERSION} in '
        f'{v2_dir}...', flush=True)
  tfds.builder(f'{p.IMAGENET_V2}:{p.IMAGENET_V2_VERSION}',
               data_dir=v2_dir).download_and_prepare()


RECIPES: Dict[str, Recipe] = {
    'fashion_mnist': Recipe(
        name='fashion_mnist', workloads='fashion_mnist',
        counts={'train': 50_000, 'validation': 10_000, 'test': 10_000},
        instructions=_fashion_mnist_instructions, count_splits=_fashion_mnist_counts,
        default_data_dir='/usr/share/datasets/fashion-mnist/'),
    'mnist1d': Recipe(
        name='mnist1d', workloads='mnist1d',
        counts={'train': 8_000, 'validation': 1_000, 'test': 1_000},
        instructions=_mnist1d_instructions, count_splits=_mnist1d_counts),
    'imagenet': Recipe(
        name='imagenet', workloads='imagenet_resnet*, imagenet_vit*',
        counts={'train': 1_281_167, 'validation': 50_000, 'test': 10_000},
        instructions=_imagenet_instructions, count_splits=_imagenet_counts,
        prepare=_imagenet_prepare),
    'criteo1tb': Recipe(
        name='criteo1tb', workloads='criteo1tb*',
        counts={'train': 4_195_197_692, 'validation': 83_274_637,
                'test': 95_000_000},
        instructions=_instructions_of('workloads.criteo1tb.data'),
        count_splits=_counts_of('workloads.criteo1tb.data')),
    'ogbg': Recipe(
        name='ogbg', workloads='ogbg*',
        counts={'train': 350_343, 'validation': 43_793, 'test': 43_793},
        instructions=_instructions_of('workloads.ogbg.data'),
        count_splits=_counts_of('workloads.ogbg.data'),
        prepare=_prepare_of('workloads.ogbg.data')),
    'fastmri': Recipe(
        name='fastmri', workloads='fastmri*',
        counts={'train': 34_742, 'validation': 3_554, 'test': 3_581},
        instructions=_instructions_of('workloads.fastmri.data'),
        count_splits=_counts_of('workloads.fastmri.data')),
    'librispeech': Recipe(
        name='librispeech', workloads='librispeech_conformer*, librispeech_deepspeech*',
        counts={'train': 263_840, 'validation': 5_348, 'test': 2_472},
        instructions=_instructions_of('workloads.librispeech_conformer.data'),
        count_splits=_counts_of('workloads.librispeech_conformer.data'),
        prepare=_prepare_of('workloads.librispeech_conformer.data')),
    'wmt': Recipe(
        name='wmt', workloads='wmt*',
        counts={'train': 5_906_184, 'validation': 3_000, 'test': 3_003},
        instructions=_instructions_of('workloads.wmt.data'),
        count_splits=_counts_of('workloads.wmt.data'),
        prepare=_prepare_of('workloads.wmt.data')),
}


def recipe_for(name: str) -> Recipe:
  """The recipe of a dataset name or of a workload name (its variants too)."""
  if name in RECIPES:
    return RECIPES[name]
  for dataset in sorted(RECIPES, key=len, reverse=True):
    if name.startswith(dataset):
      return RECIPES[dataset]
  raise DatasetError(
      f'Unknown dataset {name!r}. Known: {", ".join(sorted(RECIPES))} (or a '
      'workload name such as imagenet_resnet).')
