"""The real-data ImageNet pipeline on a tiny ImageNet in the prepared tfds format.

40 train examples in 4 shards, 10 validation in 2, 6 test (ImageNet-v2),
each with its own label (tests/imagenet_files.py), so a test can tell which
examples a batch holds after augmentation made them unrecognisable.
Multi-device and multi-process eval run in subprocesses: the device count
must be set before JAX starts.
"""

import importlib
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

pytest.importorskip('tensorflow')
pytest.importorskip('tensorflow_datasets')

# pylint: disable=wrong-import-position
import jax

import workloads
from algoperf.errors import ConfigError
from tests.imagenet_files import label_of, write_tiny_imagenet
from workloads import imagenet_pipeline as ip

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_SEC = 300
TRAIN, VALIDATION, TEST = 40, 10, 6
TRAIN_LABELS = {label_of('train', i) for i in range(TRAIN)}
VALIDATION_LABELS = sorted(label_of('validation', i) for i in range(VALIDATION))
TEST_LABELS = sorted(label_of('test', i) for i in range(TEST))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory) -> str:
  root = tmp_path_factory.mktemp('imagenet')
  write_tiny_imagenet(root, train=TRAIN, validation=VALIDATION, test=TEST)
  return str(root)


@pytest.fixture(scope='module')
def split_dirs(tmp_path_factory, data_dir):
  """(imagenet2012 only, imagenet_v2 only): ImageNet-v2 in its own folder."""
  base = tmp_path_factory.mktemp('split_dirs')
  (base / 'main').mkdir()
  (base / 'v2').mkdir()
  (base / 'main' / 'imagenet2012').symlink_to(Path(data_dir) / 'imagenet2012')
  (base / 'v2' / 'imagenet_v2').symlink_to(Path(data_dir) / 'imagenet_v2')
  return str(base / 'main'), str(base / 'v2')


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _train(data_dir, start=0, seed=(1, 2), batch=4, **options):
  options.setdefault('image_size', 32)
  return ip.train_batches(data_dir, seed, batch, start, **options)


def _assert_same_batches(got, want):
  assert len(got) == len(want)
  for a, b in zip(got, want):
    assert set(a) == set(b) == {'inputs', 'targets', 'weights'}
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


# --- metadata -------------------------------------------------------------------------


def test_importing_the_workloads_imports_no_tensorflow():
  code = ('import sys, workloads.imagenet_pipeline, workloads.imagenet_resnet.workload, '
          'workloads.imagenet_vit.workload; '
          'print(sorted(m for m in sys.modules if m.startswith("tensorflow")))')
  done = subprocess.run([sys.executable, '-c', code], env=_env(1), capture_output=True,
                        text=True, timeout=TIMEOUT_SEC, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.strip() == '[]'


def test_the_counts_come_from_the_prepared_metadata(data_dir, split_dirs):
  assert ip.split_counts(data_dir) == {'train': TRAIN, 'validation': VALIDATION,
                                       'test': TEST}
  main, v2 = split_dirs
  assert ip.split_counts(main, imagenet_v2_data_dir=v2)['test'] == TEST
  files = ip.split_files(data_dir, ip.IMAGENET2012, ip.IMAGENET2012_VERSION, 'train')
  assert len(files.paths) == 4 and sum(files.lengths) == TRAIN


def test_a_missing_dataset_names_its_folder_and_the_command(tmp_path, split_dirs):
  with pytest.raises(ConfigError) as raised:
    ip.split_counts(str(tmp_path))
  assert isinstance(raised.value, ip.DatasetMissingError)
  message = str(raised.value)
  assert str(tmp_path / 'imagenet2012' / '5.1.0') in message
  assert 'algoperf datasets imagenet --data_dir' in message and '\n' not in message
  main, _ = split_dirs  # ImageNet-v2 is not there.
  with pytest.raises(ip.DatasetMissingError, match='imagenet_v2/matched-frequency/3.0.0'):
    ip.split_counts(main)


def test_locate_finds_the_file_record_and_block_of_a_position():
  lengths = [3, 5, 4]  # Files in the epoch's reading order; epoch of 12.
  assert ip.locate(0, lengths, 4) == ip.StreamStart(0, 0, 0, 0, 0)
  # Position 5 is in the block starting at record 4: file 1, its record 1.
  assert ip.locate(5, lengths, 4) == ip.StreamStart(0, 1, 1, 1, 1)
  assert ip.locate(11, lengths, 4) == ip.StreamStart(0, 2, 0, 2, 3)
  assert ip.locate(12 * 7 + 9, lengths, 4) == ip.StreamStart(7, 2, 0, 2, 1)
  assert ip.locate(3, [3, 5, 4], 3) == ip.StreamStart(0, 1, 0, 1, 0)


# --- train ------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_batches_another_seed_others(data_dir):
  first = _take(_train(data_dir), 3)
  _assert_same_batches(_take(_train(data_dir), 3), first)
  other = _take(_train(data_dir, seed=(1, 3)), 3)
  assert any(not np.array_equal(a['targets'], b['targets'])
             for a, b in zip(first, other))
  assert not np.array_equal(first[0]['inputs'], other[0]['inputs'])


def test_each_epoch_reads_every_example_once_in_a_new_order(data_dir):
  batches = _take(_train(data_dir, block_batches=2), 20)  # Two epochs of 40.
  epochs = [np.concatenate([b['targets'] for b in batches[i:i + 10]])
            for i in (0, 10)]
  assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(TRAIN_LABELS)
  assert list(epochs[0]) != list(epochs[1])


@pytest.mark.parametrize('block_batches', [2, ip.BLOCK_BATCHES])
def test_starting_at_n_yields_batches_n_on(data_dir, block_batches):
  # 10 batches an epoch; blocks of 8 records (5 an epoch) or the whole epoch.
  stream = _take(_train(data_dir, block_batches=block_batches), 26)
  for n in (1, 3, 7, 9, 12, 23):
    _assert_same_batches(
        _take(_train(data_dir, n, block_batches=block_batches), 3), stream[n:n + 3])


def test_a_far_start_costs_no_more_than_a_near_one(data_dir):
  def time_to_first_batch(start):
    began = time.perf_counter()
    next(_train(data_dir, start))
    return time.perf_counter() - began

  time_to_first_batch(0)  # Warm-up: TF's first graph building.
  near = min(time_to_first_batch(10) for _ in range(2))
  # Batch 100,000 is example 400,000 of this process's stream (10,000
  # epochs of the tiny train split): a replay would decode 400,000 JPEGs
  # (minutes); a seek reads at most one file and one block.
  far = min(time_to_first_batch(100_000) for _ in range(2))
  assert far < 3 * near + 1.0, (near, far)


def test_train_batches_at_224_are_normalised_images_of_the_labels(data_dir):
  batch = next(_train(data_dir, image_size=224))
  assert batch['inputs'].shape == (4, 224, 224, 3)
  assert batch['inputs'].dtype == np.float32
  assert batch['targets'].dtype == np.int32 and set(batch['targets']) <= TRAIN_LABELS
  assert batch['weights'].dtype == np.float32
  np.testing.assert_array_equal(batch['weights'], np.ones(4))
  # Back to pixels: 0..255 but for bicubic overshoot.
  pixels = batch['inputs'] * np.array(ip.STDDEV_RGB) + np.array(ip.MEAN_RGB)
  assert -40 < pixels.min() and pixels.max() < 295
  assert 20 < pixels.mean() < 235


def test_the_crop_and_flip_differ_by_example_and_step(data_dir):
  """The same image, read again in the next epoch, is cropped differently."""
  batches = _take(_train(data_dir, image_size=32), 20)
  first_epoch = {int(t): b['inputs'][i] for b in batches[:10]
                 for i, t in enumerate(b['targets'])}
  for batch in batches[10:12]:
    for i, label in enumerate(batch['targets']):
      assert not np.array_equal(batch['inputs'][i], first_epoch[int(label)])


def test_mixup_mixes_each_row_with_the_previous_one(data_dir):
  plain = _take(_train(data_dir), 3)
  mixed = _take(_train(data_dir, mixup_alpha=0.2), 3)
  for p, m in zip(plain, mixed):
    assert m['targets'].shape == (4, 1000) and m['targets'].dtype == np.float32
    np.testing.assert_allclose(m['targets'].sum(axis=1), 1.0, rtol=1e-6)
    labels = p['targets']
    weight = m['targets'][0, labels[0]]
    previous = np.roll(np.arange(4), 1)
    want = np.zeros((4, 1000), np.float32)
    want[np.arange(4), labels] += weight
    want[np.arange(4), labels[previous]] += 1 - weight
    np.testing.assert_allclose(m['targets'], want, atol=1e-6)
    np.testing.assert_allclose(
        m['inputs'], weight * p['inputs'] + (1 - weight) * p['inputs'][previous],
        atol=1e-4)
  weights = [m['targets'][0, p['targets'][0]] for p, m in zip(plain, mixed)]
  assert len(set(np.round(weights, 6))) == 3  # A new weight every batch.


def _skip_without_randaugment():
  try:
    importlib.import_module('workloads.randaugment')
  except ImportError:
    pytest.skip('workloads/randaugment.py (distort_image_with_randaugment) is '
                'not written yet.')


def test_randaugment_batches_are_deterministic(data_dir):
  _skip_without_randaugment()
  first = _take(_train(data_dir, randaugment=True, mixup_alpha=0.2), 2)
  _assert_same_batches(_take(_train(data_dir, randaugment=True, mixup_alpha=0.2), 2),
                       first)
  plain = _take(_train(data_dir, mixup_alpha=0.2), 2)
  assert first[0]['inputs'].shape == (4, 32, 32, 3)
  assert not np.array_equal(first[0]['inputs'], plain[0]['inputs'])
  _assert_same_batches(
      _take(_train(data_dir, 1, randaugment=True, mixup_alpha=0.2), 1), first[1:])


# --- eval ------------------------------------------------------------------------------


def _weighted_labels(batches):
  labels = []
  for batch in batches:
    labels.extend(int(t) for t, w in zip(batch['targets'], batch['weights']) if w == 1)
    assert set(batch['weights']) <= {0.0, 1.0}
  return sorted(labels)


def test_eval_counts_every_example_once_and_pads_with_weight_0(data_dir):
  source = ip.eval_batches(data_dir, 'validation', VALIDATION, 4, image_size=32)
  passes = [list(source), list(source)]  # Re-iterable: one object, every eval.
  _assert_same_batches(passes[1], passes[0])
  assert len(source) == len(passes[0]) == 3
  assert _weighted_labels(passes[0]) == VALIDATION_LABELS
  last = passes[0][-1]
  np.testing.assert_array_equal(last['weights'], [1, 1, 0, 0])
  np.testing.assert_array_equal(last['targets'][2:], [0, 0])
  assert not last['inputs'][2:].any()
  test = ip.eval_batches(data_dir, 'test', TEST, 4, image_size=32)
  assert _weighted_labels(test) == TEST_LABELS


def test_eval_train_is_the_first_train_examples_in_a_fixed_order(data_dir):
  some = list(ip.eval_batches(data_dir, 'eval_train', 12, 4, image_size=32))
  again = list(ip.eval_batches(data_dir, 'eval_train', 12, 4, image_size=32))
  _assert_same_batches(again, some)
  labels = _weighted_labels(some)
  assert len(set(labels)) == 12 and set(labels) <= TRAIN_LABELS
  everything = ip.eval_batches(data_dir, 'eval_train', TRAIN, 8, image_size=32)
  assert _weighted_labels(everything) == sorted(TRAIN_LABELS)
  with pytest.raises(ValueError, match='has 40'):
    ip.eval_batches(data_dir, 'eval_train', TRAIN + 1, 8)


def test_the_test_split_is_read_from_the_imagenet_v2_folder(split_dirs):
  main, v2 = split_dirs
  source = ip.eval_batches(main, 'test', TEST, 8, imagenet_v2_data_dir=v2, image_size=32)
  assert _weighted_labels(source) == TEST_LABELS
  with pytest.raises(ip.DatasetMissingError):
    ip.eval_batches(main, 'test', TEST, 8)


def test_eval_images_are_the_padded_centre_crop_at_224(data_dir):
  tf = ip._tf()  # pylint: disable=protected-access
  batch = next(iter(ip.eval_batches(data_dir, 'validation', VALIDATION, 2)))
  assert batch['inputs'].shape == (2, 224, 224, 3) and batch['inputs'].dtype == np.float32
  files = ip.split_files(data_dir, ip.IMAGENET2012, ip.IMAGENET2012_VERSION, 'validation')
  record = next(iter(tf.data.TFRecordDataset(files.paths[0])))
  example = ip._features(files).deserialize_example(record)  # pylint: disable=protected-access
  image = example['image'].numpy()  # Decoded whole: 48 x 64.
  size = int(0.875 * 48)  # 224/256 of the short side, centred.
  top, left = (48 - size + 1) // 2, (64 - size + 1) // 2
  crop = image[top:top + size, left:left + size]
  want = tf.image.resize(crop, [224, 224], method='bicubic').numpy()
  want = (want - np.array(ip.MEAN_RGB)) / np.array(ip.STDDEV_RGB)
  np.testing.assert_allclose(batch['inputs'][0], want, atol=1e-4)
  assert batch['targets'][0] == int(example['label'])


# --- the workloads --------------------------------------------------------------------------


def test_the_workload_queue_starts_at_its_position(data_dir):
  workload = workloads.get_workload('imagenet_resnet', data_dir=data_dir)
  assert not workload.use_randaug_and_mixup
  workload.check_data()
  rng = jax.random.PRNGKey(0)
  queue = workload._build_input_queue(rng, 'train', data_dir, 4)  # pylint: disable=protected-access
  batches = _take(queue, 4)
  assert batches[0]['inputs'].shape == (4, 224, 224, 3)
  assert batches[0]['targets'].shape == (4,) and batches[0]['weights'].shape == (4,)
  resumed = workload._build_input_queue(rng, 'train', None, 4, start_position=3)  # pylint: disable=protected-access
  got = next(resumed)
  for key in ('inputs', 'targets', 'weights'):
    np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(batches[3][key]))


def test_the_synthetic_queue_starts_at_its_position_too():
  workload = workloads.get_workload('imagenet_resnet', synthetic=True, image_size=8)
  rng = jax.random.PRNGKey(0)
  stream = _take(workload._build_input_queue(rng, 'train', None, 2), 3)  # pylint: disable=protected-access
  got = next(workload._build_input_queue(rng, 'train', None, 2, start_position=2))  # pylint: disable=protected-access
  np.testing.assert_array_equal(np.asarray(got['inputs']), np.asarray(stream[2]['inputs']))


def test_vit_trains_on_randaugment_and_mixup(data_dir):
  workload = workloads.get_workload('imagenet_vit', data_dir=data_dir, image_size=32)
  assert workload.use_randaug_and_mixup
  _skip_without_randaugment()
  batch = next(workload._build_input_queue(jax.random.PRNGKey(0), 'train', None, 4))  # pylint: disable=protected-access
  assert batch['targets'].shape == (4, 1000)
  np.testing.assert_allclose(np.asarray(batch['targets']).sum(axis=1), 1.0, rtol=1e-6)


def test_check_data_on_an_empty_folder_says_how_to_prepare_it(tmp_path):
  workload = workloads.get_workload('imagenet_resnet', data_dir=str(tmp_path))
  with pytest.raises(ConfigError, match='algoperf datasets imagenet --data_dir'):
    workload.check_data()
  workloads.get_workload('imagenet_resnet', synthetic=True).check_data()


# --- several devices and processes -------------------------------------------------------------

# Runs in a subprocess: the eval through the workload with a stand-in model
# that predicts right exactly for labels divisible by 3, so accuracy counts
# which examples were seen, and the placed batches' weights and labels.
_WORKER = textwrap.dedent('''
    import json, sys
    from algoperf import distributed
    data_dir, v2_dir, process_id, port, out = sys.argv[1:6]
    if port != '-':
      distributed.initialize(f'localhost:{port}', 2, int(process_id))
    import jax, jax.numpy as jnp, numpy as np
    from workloads.batching import placed
    from workloads.imagenet_resnet.workload import ImagenetResNetWorkload

    class Tiny(ImagenetResNetWorkload):
      real_num_validation_examples = 10
      real_num_test_examples = 6
      default_eval_batch_size = 8

      def model_fn(self, params, batch, model_state, mode, rng, update_batch_norm,
                   use_running_average_bn=None, dropout_rate=None):
        targets = batch['targets']
        guess = jnp.where(targets % 3 == 0, targets, (targets + 1) % 1000)
        return 10.0 * jax.nn.one_hot(guess, 1000), model_state

    workload = Tiny(data_dir=data_dir, image_size=32)
    results = workload.eval_model(8, None, None, jax.random.PRNGKey(0), data_dir,
                                  v2_dir, 0)
    seen = {}
    for split, count in (('validation', 10), ('test', 6), ('eval_train', 16)):
      # The runner's eval passes ImageNet-v2's folder as the test split's data_dir.
      source = workload._real_eval_batches(
          split, count, 8, v2_dir if split == 'test' else data_dir)
      local = [(int(t), float(w)) for b in source
               for t, w in zip(b['targets'], b['weights'])]
      weights = sum(float(jnp.sum(b['weights'])) for b in placed(iter(source), 8))
      seen[split] = {'local': local, 'batches': len(list(source)),
                     'global_weight': weights}
    rows = next(workload._build_input_queue(jax.random.PRNGKey(1), 'train', None, 8))
    train = [int(t) for s in rows['targets'].addressable_shards for t in np.asarray(s.data)]
    json.dump({'results': results, 'seen': seen, 'devices': jax.device_count(),
               'train_first_rows': train}, open(out, 'w'))
''')


def _env(num_devices):
  return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={num_devices}')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _expected_accuracy(labels):
  return sum(1 for t in labels if t % 3 == 0) / len(labels)


def _check_results(results, seen_labels):
  for prefix, split in (('validation', 'validation'), ('test', 'test'),
                        ('train', 'eval_train')):
    assert math.isclose(results[f'{prefix}/accuracy'],
                        _expected_accuracy(seen_labels[split]), rel_tol=1e-6)
  assert results['validation/num_examples'] == 10 and results['test/num_examples'] == 6


def test_eval_on_eight_devices_counts_every_example_once(data_dir, split_dirs, tmp_path):
  main, v2 = split_dirs
  out = tmp_path / 'result.json'
  done = subprocess.run([sys.executable, '-c', _WORKER, main, v2, '0', '-', str(out)],
                        env=_env(8), capture_output=True, text=True, timeout=TIMEOUT_SEC,
                        check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result['devices'] == 8
  seen = result['seen']
  labels = {split: [t for t, w in seen[split]['local'] if w == 1] for split in seen}
  assert sorted(labels['validation']) == VALIDATION_LABELS
  assert sorted(labels['test']) == TEST_LABELS
  assert len(set(labels['eval_train'])) == 16
  for split, count in (('validation', 10), ('test', 6), ('eval_train', 16)):
    assert seen[split]['global_weight'] == count
    assert seen[split]['batches'] == math.ceil(count / 8)
  _check_results(result['results'], labels)


# ~20 s on 2 CPU cores: two processes each start JAX and TF.
def test_two_processes_each_evaluate_half_and_train_on_their_files(
    data_dir, split_dirs, tmp_path):
  main, v2 = split_dirs
  port = _free_port()
  outs = [tmp_path / f'result_{i}.json' for i in range(2)]
  logs = [open(tmp_path / f'log_{i}.txt', 'w+', encoding='utf-8') for i in range(2)]
  procs = [subprocess.Popen([sys.executable, '-c', _WORKER, main, v2, str(i), str(port),
                             str(outs[i])], env=_env(2), stdout=logs[i],
                            stderr=subprocess.STDOUT) for i in range(2)]
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
  assert [p.returncode for p in procs] == [0, 0], texts
  results = [json.loads(out.read_text()) for out in outs]
  assert [r['devices'] for r in results] == [4, 4]
  labels = {}
  for split, count in (('validation', 10), ('test', 6), ('eval_train', 16)):
    halves = [[t for t, w in r['seen'][split]['local'] if w == 1] for r in results]
    # Each process read its own contiguous half; together every example once.
    assert [len(h) for h in halves] == [math.ceil(count / 2), count // 2]
    assert not set(halves[0]) & set(halves[1])
    labels[split] = halves[0] + halves[1]
    assert len(set(labels[split])) == count
    # Collective eval steps: both yield the same number of batches.
    assert results[0]['seen'][split]['batches'] == results[1]['seen'][split]['batches']
    assert results[0]['seen'][split]['global_weight'] == count
  assert sorted(labels['validation']) == VALIDATION_LABELS
  assert sorted(labels['test']) == TEST_LABELS
  for r in results:
    _check_results(r['results'], labels)
  # Process 0 trains on shards 0 and 2, process 1 on 1 and 3: no shared example.
  files = ip.split_files(data_dir, ip.IMAGENET2012, ip.IMAGENET2012_VERSION, 'train')
  assert len(files.paths) == 4
  assert not set(results[0]['train_first_rows']) & set(results[1]['train_first_rows'])


def test_a_run_finds_imagenet_v2_in_its_own_folder(split_dirs):
  main, v2 = split_dirs
  # What `algoperf run --data_dir MAIN --imagenet_v2_data_dir V2` builds.
  workloads.get_workload('imagenet_resnet', data_dir=main,
                         imagenet_v2_data_dir=v2).check_data()
  with pytest.raises(ip.DatasetMissingError):
    workloads.get_workload('imagenet_resnet', data_dir=main).check_data()
  # Workloads that read no ImageNet-v2 ignore the option.
  workloads.get_workload('mnist1d', imagenet_v2_data_dir=v2)


def test_the_datasets_command_verifies_a_prepared_copy(data_dir, capsys):
  from algoperf import cli  # pylint: disable=import-outside-toplevel
  from workloads import datasets  # pylint: disable=import-outside-toplevel
  checks = datasets.RECIPES['imagenet'].verify(
      data_dir, counts={'train': TRAIN, 'validation': VALIDATION, 'test': TEST})
  assert all(c.ok for c in checks)
  # Against the real counts the tiny copy is incomplete: exit 1, split by split.
  assert cli.main(['datasets', 'imagenet', '--data_dir', data_dir]) == 1
  text = capsys.readouterr().out
  assert f'{TRAIN} examples (expected 1,281,167) WRONG' in ' '.join(text.split())
  assert 'ILSVRC2012_img_train.tar' in text


def test_prepare_without_the_archives_says_where_they_go(tmp_path, capsys):
  from algoperf import cli  # pylint: disable=import-outside-toplevel
  assert cli.main(['datasets', 'imagenet', '--data_dir', str(tmp_path), '--prepare']) == 2
  err = capsys.readouterr().err
  assert str(tmp_path / 'downloads' / 'manual') in err
  assert 'image-net.org' in err
