"""The real-data fastMRI loader on tiny volumes in the official .h5 format.

The test writes ``knee_singlecoil_train`` (6 volumes, 24 slices) and
``knee_singlecoil_val`` (103 volumes: the first 100 by name are the
validation split, the last 3 the test split) with the official files'
datasets and attributes, only with 40 x 36 k-space and 16 x 16 targets.
Every slice can be told apart after preprocessing: its volume's ``max``
attribute is unique (it comes back as ``volume_max``) and its target is 0
but for one pixel in column ``slice``, which normalisation (a positive
affine map) keeps the largest. Multi-device and multi-process runs are
subprocesses: the device count must be set before JAX starts.
"""

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip('h5py')
pytest.importorskip('tensorflow')

# pylint: disable=wrong-import-position
import jax

from algoperf.errors import ConfigError
from workloads.fastmri import data
from workloads.fastmri.ssim import structural_similarity

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_SEC = 300
KSPACE = (40, 36)
IMAGE = (16, 16)
TRAIN_SLICES = [3, 5, 4, 6, 2, 4]  # 24 slices.
VAL_SLICES = [1 + (v % 3 == 0) for v in range(103)]
NUM_VALIDATION = sum(VAL_SLICES[:100])  # 134.
NUM_TEST = sum(VAL_SLICES[100:])  # 4.
NUM_TRAIN = sum(TRAIN_SLICES)


def _volume_max(folder: str, volume: int) -> float:
  return float((1 if folder == data.TRAIN_DIR else 1000) + volume)


def write_volume(path: Path, num_slices: int, volume_max: float, seed: int) -> None:
  """One volume as fastMRI ships it: kspace, both reconstructions, header, attrs."""
  generator = np.random.default_rng(seed)
  shape = (num_slices, *KSPACE)
  kspace = (generator.standard_normal(shape) + 1j * generator.standard_normal(shape))
  target = np.zeros((num_slices, *IMAGE), np.float32)
  target[np.arange(num_slices), 0, np.arange(num_slices)] = 1.0
  with h5py.File(path, 'w') as f:
    f.create_dataset('kspace', data=(1e-5 * kspace).astype(np.complex64))
    f.create_dataset('reconstruction_esc', data=target)
    f.create_dataset('reconstruction_rss', data=target)
    f.create_dataset('ismrmrd_header', data=b'<ismrmrdHeader/>')
    f.attrs['acquisition'] = 'CORPD_FBK'
    f.attrs['max'] = volume_max
    f.attrs['norm'] = 1.0
    f.attrs['patient_id'] = f'patient{seed}'


def write_tiny_fastmri(root: Path) -> None:
  for folder, counts in ((data.TRAIN_DIR, TRAIN_SLICES), (data.VAL_DIR, VAL_SLICES)):
    (root / folder).mkdir(parents=True)
    for v, count in enumerate(counts):
      # File names as the real ones, in an order the loader must sort.
      write_volume(root / folder / f'file{1_000_000 + 7 * v:07d}.h5', count,
                   _volume_max(folder, v), seed=int(_volume_max(folder, v)))


def keys_of(batch, weighted_only=True):
  """``(volume max, slice)`` of each row (of weight 1 unless ``weighted_only=False``)."""
  weights = batch.get('weights', np.ones(len(batch['inputs'])))
  return [(float(m), int(np.argmax(t[0]))) for m, t, w in
          zip(batch['volume_max'], batch['targets'], weights) if w == 1 or not weighted_only]


def all_keys(folder, counts):
  return sorted((_volume_max(folder, v), s) for v, n in enumerate(counts) for s in range(n))


TRAIN_KEYS = all_keys(data.TRAIN_DIR, TRAIN_SLICES)
VAL_KEYS = all_keys(data.VAL_DIR, VAL_SLICES)
VALIDATION_KEYS = [k for k in VAL_KEYS if k[0] < 1100]
TEST_KEYS = [k for k in VAL_KEYS if k[0] >= 1100]


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory) -> str:
  root = tmp_path_factory.mktemp('fastmri')
  write_tiny_fastmri(root)
  return str(root)


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _train(data_dir, start=0, seed=(1, 2), batch=4, **options):
  return data.train_batches(data_dir, seed, batch, start, **options)


def _assert_same_batches(got, want):
  assert len(got) == len(want)
  for a, b in zip(got, want):
    assert set(a) == set(b)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --- the volumes -------------------------------------------------------------------


def test_counts_come_from_the_files_and_val_splits_by_name(data_dir):
  assert data.split_counts(data_dir) == {'train': NUM_TRAIN, 'validation': NUM_VALIDATION,
                                         'test': NUM_TEST}
  validation = data.volumes(data_dir, 'validation')
  test = data.volumes(data_dir, 'test')
  assert len(validation.paths) == 100 and len(test.paths) == 3
  names = [Path(p).name for p in validation.paths + test.paths]
  assert names == sorted(names)
  assert data.image_shape(test) == IMAGE
  assert data.COUNTS == {'train': 34_742, 'validation': 3_554, 'test': 3_581}


def test_missing_folders_name_the_command(tmp_path):
  with pytest.raises(ConfigError) as raised:
    data.split_counts(str(tmp_path))
  assert isinstance(raised.value, data.DatasetMissingError)
  message = str(raised.value)
  assert str(tmp_path / data.TRAIN_DIR) in message and '\n' not in message
  assert 'algoperf datasets fastmri --data_dir DIR' in message
  (tmp_path / data.TRAIN_DIR).mkdir()
  with pytest.raises(data.DatasetMissingError, match='no .h5 files'):
    data.split_counts(str(tmp_path))
  with pytest.raises(data.DatasetMissingError, match='No data folder'):
    data.split_counts(None)


def test_the_instructions_say_where_to_get_and_put_the_archives():
  text = data.instructions('/data/fastmri')
  for words in ('https://fastmri.med.nyu.edu/', 'knee_singlecoil_train.tar.xz',
                'knee_singlecoil_val.tar.xz', '/data/fastmri/knee_singlecoil_train',
                'algoperf datasets fastmri --data_dir /data/fastmri'):
    assert words in text, words


# --- preprocessing -------------------------------------------------------------------


def _numpy_preprocess(kspace, target, mask):
  """The reference's recipe in float64 numpy, for a mask given as 0/1 columns."""
  image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace * mask[None, :]),
                                       norm='ortho'))
  rows, cols = kspace.shape
  top, left = (rows - IMAGE[0]) // 2, (cols - IMAGE[1]) // 2
  magnitude = np.abs(image[top:top + IMAGE[0], left:left + IMAGE[1]])
  mean, std = magnitude.mean(), magnitude.std()
  return (np.clip((magnitude - mean) / std, -6, 6), np.clip((target - mean) / std, -6, 6),
          mean, std)


def test_preprocess_is_the_masked_centred_ifft_normalised(data_dir):
  tf = data._tf()  # pylint: disable=protected-access
  reader = data.SliceReader(data.volumes(data_dir, 'train').paths)
  kspace, target, volume_max = reader.read(1, 2)
  assert kspace.shape == KSPACE and kspace.dtype == np.complex64
  assert volume_max == _volume_max(data.TRAIN_DIR, 1)
  seed = tf.constant([3, 4], tf.int64)
  mask = data.sampling_mask(KSPACE[1], seed).numpy()
  # int(0.08 * 36) = 2 central columns always; 36 / 4 = 9 kept on average.
  assert mask[17:19].tolist() == [1, 1] and set(mask.tolist()) <= {0.0, 1.0}
  out = {k: v.numpy() for k, v in data.preprocess(kspace, target, volume_max, seed).items()}
  inputs, targets, mean, std = _numpy_preprocess(kspace.astype(np.complex128), target, mask)
  np.testing.assert_allclose(out['inputs'], inputs, atol=2e-5)
  np.testing.assert_allclose(out['targets'], targets, atol=2e-5)
  np.testing.assert_allclose([out['mean'], out['std']], [mean, std], rtol=1e-5)
  assert out['inputs'].dtype == np.float32 and out['inputs'].shape == IMAGE
  assert out['volume_max'] == volume_max
  # Over many draws, about a quarter of the columns are kept.
  kept = np.mean([data.sampling_mask(360, tf.constant([i, 0], tf.int64)).numpy().mean()
                  for i in range(20)])
  assert 0.22 < kept < 0.28


# --- train --------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_batches_another_seed_others(data_dir):
  first = _take(_train(data_dir), 3)
  batch = first[0]
  assert set(batch) == {'inputs', 'targets', 'mean', 'std', 'volume_max'}  # No weights.
  assert batch['inputs'].shape == (4, *IMAGE) and batch['inputs'].dtype == np.float32
  assert batch['targets'].shape == (4, *IMAGE) and batch['targets'].dtype == np.float32
  for key in ('mean', 'std', 'volume_max'):
    assert batch[key].shape == (4,) and batch[key].dtype == np.float32
  _assert_same_batches(_take(_train(data_dir), 3), first)
  other = _take(_train(data_dir, seed=(1, 3)), 3)
  assert [keys_of(b) for b in other] != [keys_of(b) for b in first]


def test_each_epoch_reads_every_slice_once_with_the_same_masks(data_dir):
  batches = _take(_train(data_dir, block_batches=1), 12)  # Two epochs of 24.
  epochs = [[k for b in batches[i:i + 6] for k in keys_of(b)] for i in (0, 6)]
  assert sorted(epochs[0]) == sorted(epochs[1]) == TRAIN_KEYS
  assert epochs[0] != epochs[1]
  # A slice's mask depends on the seed and the slice, not the epoch.
  inputs = [{k: x for b in batches[i:i + 6] for k, x in zip(keys_of(b), b['inputs'])}
            for i in (0, 6)]
  for key in TRAIN_KEYS:
    np.testing.assert_array_equal(inputs[0][key], inputs[1][key])


@pytest.mark.parametrize('block_batches', [1, data.BLOCK_BATCHES])
def test_starting_at_n_yields_batches_n_on(data_dir, block_batches):
  stream = _take(_train(data_dir, block_batches=block_batches), 16)
  for n in (1, 5, 6, 13):
    _assert_same_batches(_take(_train(data_dir, n, block_batches=block_batches), 3),
                         stream[n:n + 3])


def test_a_far_start_costs_no_more_than_a_near_one(data_dir):
  def time_to_first_batch(start):
    began = time.perf_counter()
    next(_train(data_dir, start))
    return time.perf_counter() - began

  time_to_first_batch(0)  # Warm-up.
  near = min(time_to_first_batch(3) for _ in range(2))
  # Batch 1,000,000 is 166,666 epochs in: a replay would preprocess 4M slices.
  far = min(time_to_first_batch(1_000_000) for _ in range(2))
  assert far < 3 * near + 1.0, (near, far)


def test_the_train_order_is_arithmetic_on_slice_counts():
  found = data.Volumes(('a', 'b', 'c'), (3, 5, 4))
  order = data.TrainOrder(found, (7,), block_size=4)
  table = order.epoch_records(0)
  assert sorted(map(tuple, table[:, :2].tolist())) == sorted(
      (v, s) for v, n in enumerate((3, 5, 4)) for s in range(n))
  np.testing.assert_array_equal(table[:, 2], np.asarray(found.offsets)[table[:, 0]] + table[:, 1])
  stream = order.records(0)
  first = [next(stream) for _ in range(30)]
  for start in (0, 3, 4, 11, 12, 25):
    resumed = order.records(start)
    assert [next(resumed) for _ in range(30 - start)] == first[start:]
  halves = [data.TrainOrder(found, (7,), 4, i, 2) for i in range(2)]
  assert [h.volume_ids.tolist() for h in halves] == [[0, 2], [1]]
  with pytest.raises(ValueError, match='every process needs at least one'):
    data.TrainOrder(found, (7,), 4, 0, 4)


# --- eval ----------------------------------------------------------------------------


def test_eval_counts_every_slice_once_and_pads_with_zeros(data_dir):
  source = data.eval_batches(data_dir, 'validation', NUM_VALIDATION, 8)
  passes = [list(source), list(source)]  # Re-iterable; the second pass is the cache.
  _assert_same_batches(passes[1], passes[0])
  assert len(source) == len(passes[0]) == math.ceil(NUM_VALIDATION / 8)
  assert sorted(k for b in passes[0] for k in keys_of(b)) == VALIDATION_KEYS
  last = passes[0][-1]
  padded = NUM_VALIDATION % 8
  assert set(last) == {'inputs', 'targets', 'mean', 'std', 'volume_max', 'weights'}
  np.testing.assert_array_equal(last['weights'], [1] * padded + [0] * (8 - padded))
  for key in ('inputs', 'targets', 'mean', 'std', 'volume_max'):
    assert not last[key][padded:].any(), key
  test = data.eval_batches(data_dir, 'test', NUM_TEST, 8)
  assert sorted(k for b in test for k in keys_of(b)) == TEST_KEYS


def test_validation_and_test_share_one_mask_eval_train_does_not(data_dir):
  # The reference's fixed eval key: every slice of one width gets one mask.
  # The zero-filled image then differs between slices only by the k-space.
  tf = data._tf()  # pylint: disable=protected-access
  want = data.sampling_mask(KSPACE[1], tf.zeros((2,), tf.int64)).numpy()
  reader = data.SliceReader(data.volumes(data_dir, 'test').paths)
  batch = next(iter(data.eval_batches(data_dir, 'test', NUM_TEST, 8)))
  records = [(v, i) for v, n in enumerate(VAL_SLICES[100:]) for i in range(n)]
  for row, (volume, index) in enumerate(records):
    kspace, target, _ = reader.read(volume, index)
    inputs, _, _, _ = _numpy_preprocess(kspace.astype(np.complex128), target, want)
    np.testing.assert_allclose(batch['inputs'][row], inputs, atol=2e-5)
  some = list(data.eval_batches(data_dir, 'eval_train', 8, 8))
  assert [k for b in some for k in keys_of(b)] == TRAIN_KEYS[:8]  # File order.
  again = list(data.eval_batches(data_dir, 'eval_train', 8, 8))
  _assert_same_batches(again, some)
  with pytest.raises(ValueError, match=f'has {NUM_TRAIN}'):
    data.eval_batches(data_dir, 'eval_train', NUM_TRAIN + 1, 8)


# --- the workload on real data ---------------------------------------------------------

# Runs in-process and in subprocesses: the eval through the workload with a
# stand-in model that returns its inputs (the zero-filled reconstruction),
# and the keys of the slices each process fed, and a resume.
_WORKER = textwrap.dedent('''
    import json, sys
    from algoperf import distributed
    data_dir, process_id, port, out = sys.argv[1:5]
    if port != '-':
      distributed.initialize(f'localhost:{port}', 2, int(process_id))
    import jax, jax.numpy as jnp, numpy as np
    from workloads.batching import placed
    from workloads.fastmri.workload import FastMRIWorkload

    class Tiny(FastMRIWorkload):
      real_num_train_examples = 24
      real_num_validation_examples = 134
      real_num_test_examples = 4
      num_eval_train_examples = 16
      default_eval_batch_size = 8

      def model_fn(self, params, batch, model_state, mode, rng, update_batch_norm,
                   dropout_rate=None, use_running_average_bn=None):
        return batch['inputs'], None

    workload = Tiny(data_dir=data_dir, image_size=16)
    workload.check_data()
    results = workload.eval_model(8, None, None, jax.random.PRNGKey(0), data_dir, None, 0)
    seen = {}
    for split, count in (('validation', 134), ('test', 4), ('eval_train', 24)):
      source = workload._real_eval_batches(split, count, 8, data_dir)
      local = [[float(m), int(np.argmax(t[0])), float(w)] for b in source
               for m, t, w in zip(b['volume_max'], b['targets'], b['weights'])]
      weight = sum(float(jnp.sum(b['weights'])) for b in placed(iter(source), 8))
      seen[split] = {'local': local, 'batches': len(list(source)), 'global_weight': weight}
    def rows(batch):
      return [[float(m), int(np.argmax(np.asarray(t)[0]))]
              for s_m, s_t in zip(batch['volume_max'].addressable_shards,
                                  batch['targets'].addressable_shards)
              for m, t in zip(np.asarray(s_m.data), np.asarray(s_t.data))]
    rng = jax.random.PRNGKey(1)
    queue = workload._build_input_queue(rng, 'train', None, 8)
    stream = [rows(next(queue)) for _ in range(5)]
    resumed = workload._build_input_queue(rng, 'train', None, 8, start_position=3)
    after = [rows(next(resumed)) for _ in range(2)]
    json.dump({'results': results, 'seen': seen, 'devices': jax.device_count(),
               'stream': stream, 'resumed': after}, open(out, 'w'))
''')


def _env(num_devices):
  return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={num_devices}')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _expected_metrics(data_dir, split, count):
  """Mean L1 and SSIM of the zero-filled inputs against the targets, slice by slice."""
  batches = list(data.eval_batches(data_dir, split, count, 8))
  losses, ssims = [], []
  for b in batches:
    valid = b['weights'] == 1
    scale, shift = b['std'][:, None, None], b['mean'][:, None, None]
    values = structural_similarity(b['inputs'] * scale + shift,
                                   b['targets'] * scale + shift, b['volume_max'])
    ssims.extend(np.asarray(values)[valid])
    losses.extend(np.abs(b['inputs'] - b['targets']).mean(axis=(1, 2))[valid])
  assert len(losses) == count
  return float(np.mean(losses)), float(np.clip(ssims, -1, 1).mean())


def _check_results(results, data_dir):
  for prefix, split, count in (('validation', 'validation', NUM_VALIDATION),
                               ('test', 'test', NUM_TEST), ('train', 'eval_train', 16)):
    loss, ssim = _expected_metrics(data_dir, split, count)
    assert math.isclose(results[f'{prefix}/loss'], loss, rel_tol=1e-5), prefix
    assert math.isclose(results[f'{prefix}/ssim'], ssim, rel_tol=1e-5, abs_tol=1e-6), prefix
  assert results['validation/num_examples'] == NUM_VALIDATION
  assert results['test/num_examples'] == NUM_TEST


def _run_worker(data_dir, tmp_path, num_devices, processes):
  port = _free_port() if processes > 1 else None
  outs = [tmp_path / f'result_{i}.json' for i in range(processes)]
  logs = [open(tmp_path / f'log_{i}.txt', 'w+', encoding='utf-8') for i in range(processes)]
  procs = [subprocess.Popen(
      [sys.executable, '-c', _WORKER, data_dir, str(i), str(port or '-'), str(outs[i])],
      env=_env(num_devices), stdout=logs[i], stderr=subprocess.STDOUT)
           for i in range(processes)]
  try:
    for p in procs:
      p.wait(timeout=TIMEOUT_SEC)  # A hung collective fails instead of hanging.
  finally:
    for p in procs:
      p.kill()
  texts = []
  for log in logs:
    log.seek(0)
    texts.append(log.read()[-3000:])
    log.close()
  assert [p.returncode for p in procs] == [0] * processes, texts
  return [json.loads(out.read_text()) for out in outs]


@pytest.mark.slow  # ~30 s on 2 CPU cores: a subprocess starts JAX and TF.
def test_the_workload_reads_evaluates_and_resumes_on_eight_devices(data_dir, tmp_path):
  (result,) = _run_worker(data_dir, tmp_path, 8, 1)
  assert result['devices'] == 8
  seen = result['seen']
  keys = {s: sorted((m, i) for m, i, w in seen[s]['local'] if w == 1) for s in seen}
  assert keys['validation'] == VALIDATION_KEYS and keys['test'] == TEST_KEYS
  assert len(set(keys['eval_train'])) == 24
  for split, count in (('validation', NUM_VALIDATION), ('test', NUM_TEST),
                       ('eval_train', 24)):
    assert seen[split]['global_weight'] == count
    assert seen[split]['batches'] == math.ceil(count / 8)
  _check_results(result['results'], data_dir)
  assert [sorted(map(tuple, b)) for b in result['resumed']] == [
      sorted(map(tuple, b)) for b in result['stream'][3:5]]
  assert result['resumed'] == result['stream'][3:5]


@pytest.mark.slow  # ~55 s on 2 CPU cores: two processes each start JAX and TF.
def test_two_processes_each_evaluate_half_and_train_on_their_volumes(data_dir, tmp_path):
  results = _run_worker(data_dir, tmp_path, 2, 2)
  assert [r['devices'] for r in results] == [4, 4]
  for split, count in (('validation', NUM_VALIDATION), ('test', NUM_TEST),
                       ('eval_train', 24)):
    halves = [[(m, i) for m, i, w in r['seen'][split]['local'] if w == 1] for r in results]
    # Each process read its own contiguous half; together every slice once.
    assert [len(h) for h in halves] == [math.ceil(count / 2), count // 2]
    assert not set(halves[0]) & set(halves[1])
    assert len(set(halves[0] + halves[1])) == count
    assert results[0]['seen'][split]['batches'] == results[1]['seen'][split]['batches']
    assert results[0]['seen'][split]['global_weight'] == count
  for r in results:
    _check_results(r['results'], data_dir)
  # Process 0 trains on volumes 0, 2, 4 and process 1 on 1, 3, 5 (volume max
  # 1 + index): each process's rows of every batch come from its own.
  for i, r in enumerate(results):
    for batch in r['stream']:
      assert {int(m) - 1 for m, _ in batch} <= set(range(i, 6, 2))
    assert r['resumed'] == r['stream'][3:5]  # Resumed: the same batches follow.


def test_the_synthetic_and_real_queues_agree_on_the_format(data_dir):
  from workloads.fastmri.workload import FastMRIWorkload  # pylint: disable=import-outside-toplevel

  real = FastMRIWorkload(data_dir=data_dir)
  fake = FastMRIWorkload(synthetic=True, image_size=16)
  rng = jax.random.PRNGKey(0)
  a = next(real._build_input_queue(rng, 'train', None, 2))  # pylint: disable=protected-access
  b = next(fake._build_input_queue(rng, 'train', None, 2))  # pylint: disable=protected-access
  assert set(a) == set(b) == {'inputs', 'targets', 'mean', 'std', 'volume_max'}
  for key in a:
    assert a[key].shape == b[key].shape and a[key].dtype == b[key].dtype, key
  with pytest.raises(ConfigError, match='algoperf datasets fastmri --data_dir'):
    FastMRIWorkload(data_dir=str(Path(data_dir) / 'nowhere')).check_data()
