"""The real-data WMT pipeline on a tiny WMT in the prepared tfds format.

tests/wmt_files.py prepares ``wmt17_translate/de-en`` (300 train pairs in 3
shards) and ``wmt14_translate/de-en`` (30 validation, 33 test) with tfds and
trains a 96-piece SentencePiece model through the workload's own
``prepare_tokenizer``. Every English sentence starts with its split and
index, so a decoded target tells which pair it is. Several devices and
processes run in subprocesses: the device count must be set before JAX
starts.
"""

from __future__ import annotations

import json
import math
import os
import re
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

from algoperf.errors import ConfigError
from tests import wmt_files
from workloads.wmt import data

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_SEC = 300
COUNTS = wmt_files.COUNTS
VOCAB = 96


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory) -> str:
  root = tmp_path_factory.mktemp('wmt')
  wmt_files.write_tiny_wmt(root, vocab_size=VOCAB)
  return str(root)


@pytest.fixture(scope='module')
def tokenizer(data_dir):
  return data.load_tokenizer(data_dir)


def _pair_ids(tokenizer, targets: np.ndarray, segments: np.ndarray = None):
  """``(split, index)`` of each pair in rows of target ids (packed or not)."""
  found = []
  for r, row in enumerate(targets):
    pieces = ([row] if segments is None else
              [row[segments[r] == s] for s in range(1, int(segments[r].max()) + 1)])
    for ids in pieces:
      if ids.any():
        split, index = re.match(r'(\w+) (\d+) ', tokenizer.decode(ids)).groups()
        found.append((split, int(index)))
  return found


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


# --- the prepared files ------------------------------------------------------------


def test_importing_the_workload_imports_no_tensorflow():
  code = ('import sys, workloads.wmt.workload; '
          'print(sorted(m for m in sys.modules if m.startswith("tensorflow")))')
  done = subprocess.run([sys.executable, '-c', code], env=_env(1), capture_output=True,
                        text=True, timeout=TIMEOUT_SEC, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.strip() == '[]'


def test_the_counts_come_from_the_prepared_metadata(data_dir):
  assert data.split_counts(data_dir) == COUNTS
  files = data.split_files(data_dir, 'train')
  assert len(files.paths) == wmt_files.TRAIN_SHARDS and files.num_examples == 300
  assert files.languages == ('de', 'en')
  assert all(Path(p).is_file() for p in files.paths)


def test_a_missing_dataset_or_tokenizer_names_the_command(tmp_path, data_dir):
  with pytest.raises(ConfigError) as raised:
    data.split_counts(str(tmp_path))
  message = str(raised.value)
  assert isinstance(raised.value, data.DatasetMissingError)
  assert str(tmp_path / 'wmt17_translate' / 'de-en' / '1.0.0') in message
  assert f'algoperf datasets wmt --data_dir {tmp_path}' in message
  assert '\n' not in message
  # The datasets without the tokenizer.
  partial = tmp_path / 'no_tokenizer'
  partial.mkdir()
  for name in ('wmt14_translate', 'wmt17_translate'):
    (partial / name).symlink_to(Path(data_dir) / name)
  with pytest.raises(data.DatasetMissingError, match='wmt_sentencepiece_model'):
    data.split_counts(str(partial))
  assert 'wmt_sentencepiece_model' in data.instructions('/data/wmt')
  assert '--data_dir /data/wmt' in data.instructions('/data/wmt')


# --- tokens and packing ------------------------------------------------------------


def test_the_tokenizer_appends_eos_and_decodes_up_to_it(tokenizer):
  assert tokenizer.vocab_size == VOCAB
  sentence = wmt_files.english('train', 3)
  ids = tokenizer.encode([sentence])[0]
  assert ids.dtype == np.int32 and ids[-1] == data.EOS_ID and (ids[:-1] > 2).all()
  padded = np.concatenate([ids, np.zeros(10, np.int32)])
  assert tokenizer.decode(padded) == sentence
  # The reference's cut: without an EOS only the first token is kept.
  assert tokenizer.decode(ids[:-1]) == tokenizer.decode(ids[:1])


def test_packing_follows_the_reference():
  # The example of the reference's pack_dataset docstring (length 10).
  pairs = [(np.array([8, 7, 1, 0]), np.array([4, 1, 0])),
           (np.array([2, 3, 4, 1]), np.array([5, 6, 1])),
           (np.array([9] * 8), np.array([9, 1]))]  # Too long for row 0's rest.
  packed = data.pack(pairs, 2, length=10)
  np.testing.assert_array_equal(packed['inputs'], [[8, 7, 1, 2, 3, 4, 1, 0, 0, 0],
                                                   [9] * 8 + [0, 0]])
  np.testing.assert_array_equal(packed['inputs_segmentation'][0],
                                [1, 1, 1, 2, 2, 2, 2, 0, 0, 0])
  np.testing.assert_array_equal(packed['inputs_position'][0],
                                [0, 1, 2, 0, 1, 2, 3, 0, 0, 0])
  np.testing.assert_array_equal(packed['targets'][0], [4, 1, 5, 6, 1, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(packed['targets_segmentation'][0],
                                [1, 1, 2, 2, 2, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(packed['targets_position'][0],
                                [0, 1, 0, 1, 2, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(packed['weights'][1], [1, 1] + [0] * 8)
  assert all(packed[k].dtype == np.int32 for k in data.PACKED_KEYS)
  # One row: the pair that needs a second one is dropped.
  np.testing.assert_array_equal(data.pack(pairs, 1, length=10)['inputs'],
                                packed['inputs'][:1])
  assert data.pairs_per_row(pairs, length=10) == 1.5


# --- train ---------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_batches_another_seed_others(data_dir):
  first = _take(_train(data_dir), 3)
  _assert_same_batches(_take(_train(data_dir), 3), first)
  other = _take(_train(data_dir, seed=(1, 3)), 3)
  assert not np.array_equal(first[0]['targets'], other[0]['targets'])
  batch = first[0]
  assert set(batch) == {*data.PACKED_KEYS, 'weights'}
  assert all(batch[k].shape == (4, 256) and batch[k].dtype == np.int32
             for k in data.PACKED_KEYS)
  assert batch['weights'].dtype == np.float32
  np.testing.assert_array_equal(batch['weights'], batch['targets'] > 0)


def test_batches_are_packed_rows_of_whole_pairs(data_dir, tokenizer):
  per_row = data.calibrated_pairs_per_row(data_dir)
  assert 3 < per_row < 12  # Short sentences: several pairs a row.
  window = data.window_size(4, per_row)
  for batch in _take(_train(data_dir), 5):
    pairs = _pair_ids(tokenizer, batch['targets'], batch['targets_segmentation'])
    # A window's pairs, less the few that did not fit (and the long one).
    assert window // 2 <= len(pairs) <= window
    assert all(split == 'train' for split, _ in pairs)
    # Inputs and targets hold the same pairs, segment by segment.
    assert (batch['inputs_segmentation'].max(axis=1)
            == batch['targets_segmentation'].max(axis=1)).all()


def test_each_epoch_reads_every_pair_once_in_a_new_order(data_dir, tokenizer):
  # Windows of 4 pairs (per_row=1) for 4 rows: no pair is ever dropped,
  # so an epoch (75 batches) holds every pair once but the too-long one.
  batches = _take(_train(data_dir, per_row=1.0, block_size=64), 150)
  epochs = [[p for b in batches[i:i + 75]
             for p in _pair_ids(tokenizer, b['targets'], b['targets_segmentation'])]
            for i in (0, 75)]
  want = sorted(('train', i) for i in range(300) if i != wmt_files.TOO_LONG['train'])
  assert sorted(epochs[0]) == sorted(epochs[1]) == want
  assert epochs[0] != epochs[1]


@pytest.mark.parametrize('block_size', [64, data.BLOCK_SIZE])
def test_starting_at_n_yields_batches_n_on(data_dir, block_size):
  stream = _take(_train(data_dir, block_size=block_size), 30)
  for n in (1, 7, 12, 27):
    _assert_same_batches(_take(_train(data_dir, n, block_size=block_size), 3),
                         stream[n:n + 3])


def test_a_far_start_costs_no_more_than_a_near_one(data_dir):
  def time_to_first_batch(start):
    began = time.perf_counter()
    next(_train(data_dir, start))
    return time.perf_counter() - began

  time_to_first_batch(0)  # Warm-up.
  near = min(time_to_first_batch(10) for _ in range(2))
  # Batch 100,000 is ~2.5 million pairs into the stream (8,000 epochs): a
  # replay would tokenize them all; a seek reads one block.
  far = min(time_to_first_batch(100_000) for _ in range(2))
  assert far < 3 * near + 1.0, (near, far)


# --- eval ------------------------------------------------------------------------------


def test_eval_counts_every_pair_once_and_pads_with_zeros(data_dir, tokenizer):
  batches = data.eval_batches(data_dir, 'validation', COUNTS['validation'], 8)
  assert len(batches) == 4
  again = data.eval_batches(data_dir, 'validation', COUNTS['validation'], 8)
  _assert_same_batches(again, batches)
  seen = [p for b in batches for p in _pair_ids(tokenizer, b['targets'])]
  long = wmt_files.TOO_LONG['validation']
  assert sorted(seen) == [('validation', i) for i in range(30) if i != long]
  last = batches[-1]
  assert set(last) == {'inputs', 'targets', 'weights'}
  assert last['inputs'].shape == (8, 256) and last['inputs'].dtype == np.int32
  np.testing.assert_array_equal(last['weights'][:, 0], [1] * 5 + [0] * 3)
  assert not last['inputs'][5:].any() and not last['targets'][5:].any()
  np.testing.assert_array_equal(last['weights'], last['targets'] > 0)
  test = data.eval_batches(data_dir, 'test', COUNTS['test'], 16)
  assert sorted(p for b in test for p in _pair_ids(tokenizer, b['targets'])) == [
      ('test', i) for i in range(33)]


def test_eval_train_is_the_first_train_pairs_in_file_order(data_dir, tokenizer):
  some = data.eval_batches(data_dir, 'eval_train', 20, 8)
  seen = [p for b in some for p in _pair_ids(tokenizer, b['targets'])]
  inputs, targets = data.read_split(data_dir, 'train', 0, 20)
  want = [('train', int(t.split()[1])) for t in targets]
  assert seen == [p for p in want if p[1] != wmt_files.TOO_LONG['train']]
  with pytest.raises(ValueError, match='has 300'):
    data.eval_batches(data_dir, 'eval_train', 301, 8)


# --- the workload on the tiny data ---------------------------------------------------------

SMALL = dict(vocab_size=VOCAB, emb_dim=32, num_heads=2, num_layers=1, qkv_dim=32,
             mlp_dim=64)


def test_the_workload_reads_and_resumes_the_prepared_data(data_dir):
  from workloads.wmt.workload import WmtWorkload  # pylint: disable=import-outside-toplevel

  workload = WmtWorkload(data_dir=data_dir, model_options=SMALL)
  workload.check_data()
  rng = jax.random.PRNGKey(0)
  batches = _take(workload._build_input_queue(rng, 'train', data_dir, 4), 3)  # pylint: disable=protected-access
  assert batches[0]['targets_segmentation'].shape == (4, 256)
  resumed = workload._build_input_queue(rng, 'train', None, 4, start_position=2)  # pylint: disable=protected-access
  got = next(resumed)
  for key in batches[2]:
    np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(batches[2][key]))
  # The tokenizer must fit the model.
  with pytest.raises(ConfigError, match='96 pieces; the model expects 32000'):
    WmtWorkload(data_dir=data_dir).check_data()
  with pytest.raises(ConfigError, match='algoperf datasets wmt --data_dir'):
    WmtWorkload(data_dir=str(Path(data_dir) / 'missing')).check_data()


# --- several devices and processes ----------------------------------------------------------

# The eval through the workload with the tiny model and, instead of beam
# search, a stand-in "translation" (the input itself), so BLEU, loss and
# accuracy are fixed functions of which pairs were seen; and this process's
# eval and train rows, as pair ids.
_WORKER = textwrap.dedent('''
    import json, re, sys
    from algoperf import distributed
    data_dir, process_id, port, out = sys.argv[1:5]
    if port != '-':
      distributed.initialize(f'localhost:{port}', 2, int(process_id))
    import jax, numpy as np
    from workloads.wmt import data
    from workloads.wmt.workload import WmtWorkload

    class Tiny(WmtWorkload):
      real_num_validation_examples = 30
      real_num_test_examples = 33
      default_eval_batch_size = 8

      def translate(self, params, inputs):
        return inputs[:, :self.max_predict_length - 1]

    small = dict(vocab_size=96, emb_dim=32, num_heads=2, num_layers=1, qkv_dim=32,
                 mlp_dim=64)
    workload = Tiny(data_dir=data_dir, model_options=small)
    params, _ = workload.init_model_fn(jax.random.PRNGKey(0))
    results = workload.eval_model(8, params, None, jax.random.PRNGKey(0), data_dir,
                                  None, 0)
    tokenizer = data.load_tokenizer(data_dir)

    def ids(rows):
      return [re.match(r'(\\w+ \\d+) ', tokenizer.decode(r)).group(1)
              for r in rows if r.any()]

    seen = {}
    for split, count in (('validation', 30), ('test', 33), ('eval_train', 32)):
      batches = data.eval_batches(data_dir, split, count, 8)
      seen[split] = {'pairs': [p for b in batches for p in ids(b['targets'])],
                     'batches': len(batches)}
    batch = next(data.train_batches(data_dir, (1, 2), 8))
    train = [ids(batch['targets'][r][batch['targets_segmentation'][r] == s][None])
             for r in range(len(batch['targets']))
             for s in range(1, int(batch['targets_segmentation'][r].max()) + 1)]
    json.dump({'results': results, 'seen': seen, 'devices': jax.device_count(),
               'train_pairs': [p for row in train for p in row]}, open(out, 'w'))
''')


def _env(num_devices):
  return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={num_devices}')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _run_worker(data_dir, tmp_path, num_devices, tag):
  out = tmp_path / f'{tag}.json'
  done = subprocess.run([sys.executable, '-c', _WORKER, data_dir, '0', '-', str(out)],
                        env=_env(num_devices), capture_output=True, text=True,
                        timeout=TIMEOUT_SEC, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(out.read_text())


@pytest.fixture(scope='module')
def one_device(data_dir, tmp_path_factory):
  """The worker's answers with one process and one device."""
  return _run_worker(data_dir, tmp_path_factory.mktemp('one'), 1, 'one')


def _assert_same_metrics(got, want):
  assert set(got) == set(want)
  for key, value in want.items():
    assert math.isclose(got[key], value, rel_tol=1e-5, abs_tol=1e-6), (key, got[key], value)


def _file_of_each_train_pair(data_dir):
  """Which of the 3 train files holds each pair (as 'train i')."""
  files = data.split_files(data_dir, 'train')
  owner = {}
  for index in range(len(files.paths)):
    _, targets = data._records(files, [index], 0, files.lengths[index])  # pylint: disable=protected-access
    owner.update({' '.join(t.split()[:2]): index for t in targets})
  return owner


@pytest.mark.slow  # ~40 s on 2 shared CPU cores: two subprocesses start JAX and TF.
def test_eval_on_eight_devices_equals_one_device(data_dir, tmp_path, one_device):
  result = _run_worker(data_dir, tmp_path, 8, 'eight')
  assert (one_device['devices'], result['devices']) == (1, 8)
  _assert_same_metrics(result['results'], one_device['results'])
  assert result['results']['validation/num_examples'] == 30
  assert 0 < result['results']['validation/bleu'] < 100
  for split in ('validation', 'test', 'eval_train'):
    pairs = result['seen'][split]['pairs']
    assert len(pairs) == len(set(pairs))
    assert sorted(pairs) == sorted(one_device['seen'][split]['pairs'])
  assert len(one_device['seen']['validation']['pairs']) == 29  # One too long.
  assert len(one_device['seen']['test']['pairs']) == 33


@pytest.mark.slow  # ~60 s on 2 shared CPU cores: two processes start JAX and TF.
def test_two_processes_each_evaluate_half_and_train_on_their_files(
    data_dir, tmp_path, one_device):
  port = _free_port()
  outs = [tmp_path / f'result_{i}.json' for i in range(2)]
  logs = [open(tmp_path / f'log_{i}.txt', 'w+', encoding='utf-8') for i in range(2)]
  procs = [subprocess.Popen([sys.executable, '-c', _WORKER, data_dir, str(i), str(port),
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
  # Every example once across the two: the metrics of one process on all.
  for r in results:
    _assert_same_metrics(r['results'], one_device['results'])
  for split in ('validation', 'test', 'eval_train'):
    halves = [r['seen'][split]['pairs'] for r in results]
    assert not set(halves[0]) & set(halves[1])
    assert sorted(halves[0] + halves[1]) == sorted(one_device['seen'][split]['pairs'])
    assert results[0]['seen'][split]['batches'] == results[1]['seen'][split]['batches']
  # Train rows: process 0 reads files 0 and 2, process 1 file 1.
  owner = _file_of_each_train_pair(data_dir)
  assert {owner[p] for p in results[0]['train_pairs']} <= {0, 2}
  assert {owner[p] for p in results[1]['train_pairs']} == {1}
