"""MNIST-1D, generated locally and deterministically by the ``mnist1d`` package.

``mnist1d.data.make_dataset`` builds the data from ten hand-written templates
with a fixed seed, so nothing is downloaded. We generate 10,000 sequences of
length 40: the package's 80% training part is our train split (8,000), its
held-out 20% is split in half into validation (1,000) and test (1,000).
"""

from __future__ import annotations

import functools
import random
from typing import Dict, Tuple

import numpy as np

from algoperf.errors import ConfigError

NUM_CLASSES = 10
SEQUENCE_LENGTH = 40
NUM_SAMPLES = 10_000
GENERATION_SEED = 42  # The package's default seed.
TESTED_VERSION = '0.0.2.post1'  # The mnist1d release these sizes were checked with.
NUM_TRAIN = 8_000
NUM_VALIDATION = 1_000
NUM_TEST = 1_000
# Mean and standard deviation of the generated training split (the package
# already standardises the whole set, so these are close to 0 and 1); tests
# check them against the data.
TRAIN_MEAN = -0.000117
TRAIN_STDDEV = 0.997850


class Mnist1dDataError(ConfigError):
  """The ``mnist1d`` package is missing or generated something unexpected."""


def _package_version() -> str:
  from importlib import metadata  # pylint: disable=import-outside-toplevel

  try:
    return metadata.version('mnist1d')
  except metadata.PackageNotFoundError:
    return 'unknown'


def generate() -> Dict[str, np.ndarray]:
  """Runs the generator, leaving Python's and numpy's global RNGs untouched."""
  try:
    # Imported here: the package pulls in matplotlib, which is slow to import.
    from mnist1d.data import get_dataset_args, make_dataset  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise Mnist1dDataError(
        f'The mnist1d workload generates its data with the `mnist1d` package, '
        f'which cannot be imported ({e}). Install it into this environment: '
        '`pip install mnist1d` (or reinstall the project, `pip install -e .`).'
    ) from e

  args = get_dataset_args()
  args.num_samples = NUM_SAMPLES
  args.final_seq_length = SEQUENCE_LENGTH
  args.seed = GENERATION_SEED
  args.train_split = NUM_TRAIN / NUM_SAMPLES
  # make_dataset reseeds the global generators; restore them afterwards.
  py_state, np_state = random.getstate(), np.random.get_state()
  try:
    return make_dataset(args)
  finally:
    random.setstate(py_state)
    np.random.set_state(np_state)


def _check(raw: Dict[str, np.ndarray]) -> None:
  """Raises ``Mnist1dDataError`` unless ``raw`` has the sizes this workload uses."""
  expected = {'x': (NUM_TRAIN, SEQUENCE_LENGTH), 'y': (NUM_TRAIN,),
              'x_test': (NUM_SAMPLES - NUM_TRAIN, SEQUENCE_LENGTH),
              'y_test': (NUM_SAMPLES - NUM_TRAIN,)}
  wrong = []
  for key, shape in expected.items():
    got = np.shape(raw[key]) if key in raw else None
    if got != shape:
      wrong.append(f'{key} {"missing" if got is None else got} (expected {shape})')
  for key in ('y', 'y_test'):
    labels = np.asarray(raw.get(key, []))
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
      wrong.append(f'{key} holds labels outside 0..{NUM_CLASSES - 1}')
  if wrong:
    raise Mnist1dDataError(
        f'The mnist1d package (version {_package_version()}) generated data '
        f'this workload cannot use: {"; ".join(wrong)}. Install the version '
        f'the workload was written for: `pip install mnist1d=={TESTED_VERSION}`.')


@functools.lru_cache(maxsize=1)
def load_splits() -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """Normalised float32 inputs (N, 40, 1) and int32 labels per split, cached.

  Raises ``Mnist1dDataError`` (a ``ConfigError``) if the ``mnist1d`` package is
  missing or generates data of other sizes.
  """
  raw = generate()
  _check(raw)
  held_x, held_y = raw['x_test'], raw['y_test']
  parts = {
      'train': (raw['x'], raw['y']),
      'validation': (held_x[:NUM_VALIDATION], held_y[:NUM_VALIDATION]),
      'test': (held_x[NUM_VALIDATION:NUM_VALIDATION + NUM_TEST],
               held_y[NUM_VALIDATION:NUM_VALIDATION + NUM_TEST]),
  }
  splits = {}
  for split, (x, y) in parts.items():
    inputs = ((x.astype(np.float32) - TRAIN_MEAN) / TRAIN_STDDEV)[..., None]
    targets = y.astype(np.int32)
    inputs.setflags(write=False)  # Shared between workload instances.
    targets.setflags(write=False)
    splits[split] = (inputs, targets)
  return splits
