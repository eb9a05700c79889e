"""Fashion-MNIST from its IDX files: parsing, checking, splitting, normalising.

Debian's ``dataset-fashion-mnist`` package installs the four gzipped IDX files
under ``/usr/share/datasets/fashion-mnist/``; any folder holding the same four
files (gzipped or not) works as ``data_dir``.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from algoperf.errors import ConfigError

DEFAULT_DATA_DIR = '/usr/share/datasets/fashion-mnist/'
# Sub-folders of a general ``--data_dir`` that may hold the files.
_SUBDIRS = ('', 'fashion-mnist', 'fashion_mnist', 'FashionMNIST')
FILES = {
    'train_images': 'train-images-idx3-ubyte',
    'train_labels': 'train-labels-idx1-ubyte',
    'test_images': 't10k-images-idx3-ubyte',
    'test_labels': 't10k-labels-idx1-ubyte',
}
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
NUM_ORIGINAL_TRAIN = 60_000
NUM_TRAIN = 50_000
NUM_VALIDATION = 10_000
NUM_TEST = 10_000
# Fixed permutation of the original 60k training set into train + validation.
SPLIT_SEED = 20240601
# Pixel mean and standard deviation (pixels scaled to [0, 1]) of the 50k
# training split; tests check them against the data.
TRAIN_MEAN = 0.285915
TRAIN_STDDEV = 0.352878

# IDX type codes -> big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype('>u1'),
    0x09: np.dtype('>i1'),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}
_GZIP_MAGIC = b'\x1f\x8b'


class IdxFormatError(ConfigError):
  """A Fashion-MNIST file is truncated, corrupt or not what was expected.

  A ``ConfigError`` (and so a ``ValueError``): the CLI prints its message, which
  names the file, what is wrong with it and how to get good files, as one line.
  """


def _fix() -> str:
  names = ', '.join(FILES.values())
  return ('Reinstall the files with `apt-get install --reinstall '
          f'dataset-fashion-mnist` (they go to {DEFAULT_DATA_DIR}), or pass '
          f'--data_dir with a folder holding the four IDX files {names} '
          '(each may be gzipped, with .gz).')


def _bad_file(source: object, problem: str) -> IdxFormatError:
  """The error for Fashion-MNIST file ``source``: what is wrong, and the fix."""
  return IdxFormatError(f'Fashion-MNIST file {source} {problem}. {_fix()}')


def _read_bytes(path: Path) -> bytes:
  try:
    raw = path.read_bytes()
  except OSError as e:
    raise _bad_file(path, f'cannot be read ({e.strerror or e})') from e
  # Decide by content, not by name: some mirrors ship unzipped files as .gz.
  if raw[:2] == _GZIP_MAGIC:
    try:
      return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
      raise _bad_file(path, f'is corrupt: its gzip data is damaged or cut '
                      f'short ({e})') from e
  return raw


def parse_idx(data: bytes, source: str = '<bytes>') -> np.ndarray:
  """Parses the bytes of an IDX file into an array of its declared shape."""
  if len(data) < 4:
    raise _bad_file(source, f'is truncated: {len(data)} byte(s), too short '
                    'for an IDX header')
  zero, type_code, ndim = struct.unpack('>HBB', data[:4])
  if zero != 0 or type_code not in _IDX_DTYPES:
    raise _bad_file(
        source, f'is not an IDX file: bad magic number 0x{data[:4].hex()} '
        '(an IDX file starts with 0x0000, a type code and the number of '
        'dimensions)')
  header_len = 4 + 4 * ndim
  if len(data) < header_len:
    raise _bad_file(source, 'is truncated: its IDX header is cut short')
  shape = struct.unpack(f'>{ndim}I', data[4:header_len])
  dtype = _IDX_DTYPES[type_code]
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  actual = len(data) - header_len
  if actual != expected:
    raise _bad_file(
        source, f'is {"truncated" if actual < expected else "corrupt"}: its '
        f'IDX header declares shape {shape} ({expected} bytes of data) but '
        f'the file holds {actual} bytes')
  array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
  return array.astype(dtype.newbyteorder('='))


def read_idx(path: os.PathLike) -> np.ndarray:
  """Reads an IDX file, gzipped or not."""
  path = Path(path)
  return parse_idx(_read_bytes(path), str(path))


def write_idx(path: os.PathLike, array: np.ndarray, compress: bool = False) -> None:
  """Writes ``array`` as an IDX file (gzipped if ``compress``)."""
  array = np.asarray(array)
  codes = {v.newbyteorder('='): k for k, v in _IDX_DTYPES.items()}
  code = codes.get(array.dtype.newbyteorder('='))
  if code is None:
    raise ValueError(f'IDX cannot store dtype {array.dtype}.')
  header = struct.pack('>HBB', 0, code, array.ndim)
  header += struct.pack(f'>{array.ndim}I', *array.shape)
  payload = header + array.astype(_IDX_DTYPES[code]).tobytes()
  Path(path).write_bytes(gzip.compress(payload) if compress else payload)


def _missing_message(searched: list, missing: list) -> str:
  names = ', '.join(FILES.values())
  return (
      f'Fashion-MNIST not found (searched {", ".join(map(str, searched))}; '
      f'missing {", ".join(missing)}). Get it either by installing the Debian '
      'package: `apt-get install dataset-fashion-mnist` (installs to '
      f'{DEFAULT_DATA_DIR}), or by passing --data_dir pointing at a folder '
      f'with the four IDX files {names} (each may be gzipped, with .gz).')


def find_files(data_dir: Optional[str] = None) -> Dict[str, Path]:
  """Paths of the four IDX files; ``FileNotFoundError`` says how to get them."""
  root = Path(data_dir or DEFAULT_DATA_DIR).expanduser()
  searched = []
  best_missing = list(FILES.values())
  for sub in _SUBDIRS:
    folder = root / sub if sub else root
    if not folder.is_dir():
      continue
    searched.append(folder)
    found, missing = {}, []
    for key, base in FILES.items():
      # Some downloads spell the names with a dot: train-images.idx3-ubyte.
      names = (base, base.replace('-idx', '.idx'))
      candidates = [folder / (n + ext) for n in names for ext in ('.gz', '')]
      hit = next((c for c in candidates if c.is_file()), None)
      if hit is None:
        missing.append(base)
      else:
        found[key] = hit
    if not missing:
      return found
    if len(missing) < len(best_missing):
      best_missing = missing
  raise FileNotFoundError(_missing_message(searched or [root], best_missing))


def _check(images: np.ndarray, labels: np.ndarray, count: int, name: str,
           paths: Tuple[Path, Path]) -> None:
  if images.dtype != np.uint8 or images.shape != (count, *IMAGE_SHAPE):
    raise _bad_file(
        paths[0], f'holds the wrong data: expected the {name} images as uint8 '
        f'{(count, *IMAGE_SHAPE)}, got {images.dtype} {images.shape}')
  if labels.dtype != np.uint8 or labels.shape != (count,):
    raise _bad_file(
        paths[1], f'holds the wrong data: expected the {name} labels as uint8 '
        f'({count},), got {labels.dtype} {labels.shape}')
  if labels.max(initial=0) >= NUM_CLASSES:
    raise _bad_file(paths[1], 'holds the wrong data: labels outside '
                    f'0..{NUM_CLASSES - 1}')


def load_raw(data_dir: Optional[str] = None) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """uint8 images (N, 28, 28) and labels (N,) of splits train/validation/test."""
  paths = find_files(data_dir)
  raw = {key: read_idx(path) for key, path in paths.items()}
  _check(raw['train_images'], raw['train_labels'], NUM_ORIGINAL_TRAIN, 'train',
         (paths['train_images'], paths['train_labels']))
  _check(raw['test_images'], raw['test_labels'], NUM_TEST, 'test',
         (paths['test_images'], paths['test_labels']))
  order = np.random.default_rng(SPLIT_SEED).permutation(NUM_ORIGINAL_TRAIN)
  train_idx, val_idx = order[:NUM_TRAIN], order[NUM_TRAIN:]
  images, labels = raw['train_images'], raw['train_labels']
  return {
      'train': (images[train_idx], labels[train_idx]),
      'validation': (images[val_idx], labels[val_idx]),
      'test': (raw['test_images'], raw['test_labels']),
  }


def normalise(images: np.ndarray) -> np.ndarray:
  """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) with train mean/std."""
  x = images.astype(np.float32) / 255.0
  return ((x - TRAIN_MEAN) / TRAIN_STDDEV)[..., None]


@functools.lru_cache(maxsize=2)
def _load_cached(resolved_dir: str) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  splits = {}
  for split, (images, labels) in load_raw(resolved_dir).items():
    inputs = normalise(images)
    inputs.setflags(write=False)  # Shared between workload instances.
    targets = labels.astype(np.int32)
    targets.setflags(write=False)
    splits[split] = (inputs, targets)
  return splits


def load_splits(data_dir: Optional[str] = None) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """Normalised float32 inputs and int32 labels per split, cached in memory."""
  root = Path(data_dir or DEFAULT_DATA_DIR).expanduser().resolve()
  return _load_cached(str(root))
