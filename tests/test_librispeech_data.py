"""LibriSpeech on disk: ``prepare`` on tiny flac files, then the real-data loader.

tests/librispeech_files.py writes a few short utterances in the OpenSLR
layout (each marked by its first sample); ``prepare`` converts them into the
reference's format with a small tokenizer. The loader must read every
utterance once an epoch and once an eval, in the reference's batch format,
resume at any batch without replaying the ones before, and split the work
between processes (the multi-device and two-process tests run in
subprocesses, marked slow).
"""

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('soundfile')
pytest.importorskip('sentencepiece')

# pylint: disable=wrong-import-position
import jax

from algoperf.errors import ConfigError
from tests.librispeech_files import KEPT, LISTED, write_tiny_librispeech
from workloads.librispeech_conformer import data
from workloads.librispeech_conformer import tokenizer as tokenizers

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_SEC = 300
VOCAB_SIZE = 32  # What the tiny corpus supports.
TRAIN = sum(KEPT[s] for s in data.TRAIN_SPLITS)  # 11
VALIDATION = KEPT['dev-clean'] + KEPT['dev-other']  # 5
TEST = KEPT['test-clean']  # 2


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  root = tmp_path_factory.mktemp('librispeech')
  sources = write_tiny_librispeech(root)
  logged = []
  kept = data.prepare(str(root), vocab_size=VOCAB_SIZE, expected_counts=LISTED,
                      log=logged.append)
  return str(root), sources, kept, logged


def _marker(batch, row):
  """Which utterance a row holds: its first sample."""
  return int(batch['inputs'][0][row, 0])


def _markers_of(sources, splits):
  return [int(samples[0]) for split in splits for samples, _ in sources[split].values()]


# --- prepare -----------------------------------------------------------------------


def test_prepare_writes_the_reference_format(prepared):
  root, sources, kept, _ = prepared
  assert kept == KEPT
  assert (Path(root) / tokenizers.TOKENIZER_FILE).is_file()
  tokenizer = tokenizers.Tokenizer.load(Path(root) / tokenizers.TOKENIZER_FILE)
  assert tokenizer.vocab_size == VOCAB_SIZE
  for split, utterances in sources.items():
    lines = (Path(root) / f'{split}.csv').read_text().splitlines()
    assert lines[0] == ',id'
    assert lines[1:] == [f'{i},{u}' for i, u in enumerate(utterances)]
    for utterance, (samples, text) in utterances.items():
      audio = np.load(Path(root) / split / f'{utterance}_audio.npy')
      targets = np.load(Path(root) / split / f'{utterance}_targets.npy')
      assert audio.dtype == np.int64 and targets.dtype == np.int32
      np.testing.assert_array_equal(audio, samples)
      np.testing.assert_array_equal(targets, tokenizer.tokenize(text))
      assert targets[-1] == tokenizer.eos_id and tokenizer.detokenize(targets) == text
  # What the reference leaves out is left out.
  assert not list((Path(root) / 'train-clean-100').glob('*-0002_audio.npy'))
  assert not list((Path(root) / 'train-clean-360').glob('*-0001_audio.npy'))


def test_prepare_resumes_without_redoing_anything(prepared):
  root, _, kept, _ = prepared
  tokenizer_file = Path(root) / tokenizers.TOKENIZER_FILE
  before = tokenizer_file.stat().st_mtime_ns
  logged = []
  assert data.prepare(root, vocab_size=VOCAB_SIZE, expected_counts=LISTED,
                      log=logged.append) == kept
  assert tokenizer_file.stat().st_mtime_ns == before
  assert all('already prepared' in line for line in logged)


def test_prepare_refuses_incomplete_archives(tmp_path):
  write_tiny_librispeech(tmp_path)
  with pytest.raises(ConfigError, match='dev-clean.tar.gz is incomplete'):
    data.prepare(str(tmp_path), vocab_size=VOCAB_SIZE,
                 expected_counts={**LISTED, 'dev-clean': 99}, log=lambda line: None)
  assert not (tmp_path / 'dev-clean.csv').exists()
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ConfigError, match='download and extract'):
    data.prepare(str(tmp_path / 'empty'), log=lambda line: None)


def test_split_counts_and_a_missing_folder(prepared, tmp_path):
  root, _, _, _ = prepared
  assert data.split_counts(root) == {'train': TRAIN, 'validation': VALIDATION, 'test': TEST}
  with pytest.raises(data.LibriSpeechDataMissingError) as error:
    data.split_counts(str(tmp_path))
  message = str(error.value)
  assert '\n' not in message and isinstance(error.value, ConfigError)
  assert f'algoperf datasets librispeech --data_dir {tmp_path}' in message


def test_instructions_name_the_archives_and_the_command():
  text = data.instructions('/data/librispeech')
  for split in data.ALL_SPLITS:
    assert f'{split}.tar.gz' in text
  assert 'https://www.openslr.org/resources/12' in text
  assert 'algoperf datasets librispeech --data_dir /data/librispeech --prepare' in text


# --- training batches -----------------------------------------------------------------


def test_train_batches_have_the_reference_format(prepared):
  root, sources, _, _ = prepared
  batch = next(data.train_batches(root, (0,), 2))
  audio, audio_paddings = batch['inputs']
  targets, target_paddings = batch['targets']
  assert audio.shape == audio_paddings.shape == (2, 320_000)
  assert targets.shape == target_paddings.shape == (2, 256)
  assert {a.dtype for a in (audio, audio_paddings, targets, target_paddings)} == {
      np.dtype(np.float32)}
  by_marker = {int(s[0]): s for split in sources.values() for s, _ in split.values()}
  for row in range(2):
    samples = by_marker[_marker(batch, row)]
    np.testing.assert_array_equal(audio[row, :len(samples)], samples)
    assert not audio[row, len(samples):].any()
    assert audio_paddings[row].sum() == 320_000 - len(samples)
    assert audio_paddings[row, len(samples) - 1] == 0 and audio_paddings[row, len(samples)] == 1
    length = int((target_paddings[row] == 0).sum())
    assert targets[row, length - 1] == 2 and not targets[row, length:].any()


def test_each_epoch_reads_every_train_utterance_at_most_once(prepared):
  root, sources, _, _ = prepared
  batches = data.train_batches(root, (3,), 2)
  per_epoch = TRAIN // 2  # The incomplete last batch is dropped: 5 batches.
  seen = []
  for _ in range(2):
    markers = []
    for _ in range(per_epoch):
      batch = next(batches)
      markers += [_marker(batch, 0), _marker(batch, 1)]
    assert len(set(markers)) == 10 and set(markers) <= set(
        _markers_of(sources, data.TRAIN_SPLITS))
    seen.append(markers)
  assert seen[0] != seen[1]  # A new order each epoch.


def test_a_start_position_resumes_without_replaying(prepared, monkeypatch):
  root, _, _, _ = prepared
  full = data.train_batches(root, (7, 8), 2)
  expected = [[_marker(b, 0), _marker(b, 1)] for b in (next(full) for _ in range(12))]
  loads = []
  original = data.load_utterance
  monkeypatch.setattr(data, 'load_utterance',
                      lambda *a, **k: loads.append(a[1]) or original(*a, **k))
  resumed = data.train_batches(root, (7, 8), 2, start_position=9)
  got = [[_marker(b, 0), _marker(b, 1)] for b in (next(resumed) for _ in range(3))]
  assert got == expected[9:12]
  assert len(loads) == 6  # Only the three batches it yielded.
  other = data.train_batches(root, (9,), 2)
  assert [[_marker(b, 0), _marker(b, 1)] for b in (next(other) for _ in range(12))] != expected


def test_train_order_is_arithmetic():
  order = data.TrainOrder(11, 2, (1,))
  assert order.batches_per_epoch == 5
  rows = [order.rows(n, np.arange(2)) for n in range(10)]
  assert sorted(np.concatenate(rows[:5])) == sorted(order.permutation(0)[:10])
  np.testing.assert_array_equal(order.rows(7, np.arange(2)), order.permutation(1)[4:6])
  assert order.rows(10**9, np.array([1])).shape == (1,)  # Far positions cost nothing.


# --- eval batches ---------------------------------------------------------------------


def test_eval_counts_every_utterance_once_and_pads_with_weight_0(prepared):
  root, sources, _, _ = prepared
  batches = data.EvalBatches(root, 'validation', VALIDATION, 2)
  assert len(batches) == 3
  for _ in range(2):  # Every pass is the same.
    passes = list(batches)
    weights = np.concatenate([b['weights'] for b in passes])
    np.testing.assert_array_equal(weights, [1, 1, 1, 1, 1, 0])
    markers = [_marker(b, r) for b in passes for r in range(2)][:VALIDATION]
    assert markers == _markers_of(sources, ('dev-clean', 'dev-other'))
    pad = passes[-1]
    assert pad['inputs'][1][1].min() == 1.0 and pad['targets'][1][1].min() == 1.0
    assert not pad['inputs'][0][1].any()
  test = list(data.EvalBatches(root, 'test', TEST, 4))
  assert len(test) == 1 and list(test[0]['weights']) == [1, 1, 0, 0]
  eval_train = [_marker(b, r) for b in data.EvalBatches(root, 'eval_train', 4, 2)
                for r in range(2)]
  assert eval_train == _markers_of(sources, data.TRAIN_SPLITS)[:4]  # In file order.
  with pytest.raises(ValueError, match='prepared'):
    data.EvalBatches(root, 'test', TEST + 1, 2)


# --- several devices and processes (subprocesses) ------------------------------------------

# Evaluates a small Conformer on the tiny data through the workload and
# reports the metrics and which utterances each process read.
_WORKER = textwrap.dedent('''
    import json, sys
    from algoperf import distributed
    data_dir, process_id, port, out = sys.argv[1:5]
    if port != '-':
      distributed.initialize(f'localhost:{port}', 2, int(process_id))
    import jax, numpy as np
    from workloads.librispeech_conformer import data
    from workloads.librispeech_conformer.workload import LibriSpeechConformerWorkload

    class Tiny(LibriSpeechConformerWorkload):
      real_num_validation_examples = 5
      real_num_test_examples = 2
      default_eval_batch_size = 8

    workload = Tiny(data_dir=data_dir, audio_length=16000,
                    model_options=dict(encoder_dim=16, num_attention_heads=2,
                                       num_encoder_layers=1))
    workload.check_data()
    params, state = workload.init_model_fn(jax.random.PRNGKey(0))
    results = workload.eval_model(8, params, state, jax.random.PRNGKey(0), data_dir, None, 0)
    local = {}
    for split, count in (('validation', 5), ('test', 2), ('eval_train', 8)):
      source = data.EvalBatches(data_dir, split, count, 8, 16000)
      local[split] = [[int(a[0]), float(w)] for b in source
                      for a, w in zip(b['inputs'][0], b['weights'])]
    train = next(data.train_batches(data_dir, (1,), 8, 0, 16000))
    json.dump({'results': results, 'local': local, 'devices': jax.device_count(),
               'train_rows': [int(a[0]) for a in train['inputs'][0]]}, open(out, 'w'))
''')


def _env(num_devices):
  return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={num_devices}')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _run_worker(root, tmp_path, devices, processes):
  port = str(_free_port()) if processes > 1 else '-'
  outs = [tmp_path / f'result_{devices}_{i}.json' for i in range(processes)]
  logs = [open(tmp_path / f'log_{devices}_{i}.txt', 'w+', encoding='utf-8')
          for i in range(processes)]
  procs = [subprocess.Popen([sys.executable, '-c', _WORKER, root, str(i), port, str(outs[i])],
                            env=_env(devices), stdout=logs[i], stderr=subprocess.STDOUT)
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


@pytest.mark.slow  # Two JAX start-ups and model compiles: ~1 min on 2 busy cores.
def test_eight_devices_and_two_processes_agree_and_count_every_utterance_once(
    prepared, tmp_path):
  root, sources, _, _ = prepared
  (single,) = _run_worker(root, tmp_path, 8, 1)
  assert single['devices'] == 8
  pair = _run_worker(root, tmp_path, 4, 2)
  assert [r['devices'] for r in pair] == [8, 8]
  expected = {'validation': _markers_of(sources, ('dev-clean', 'dev-other')),
              'test': _markers_of(sources, ('test-clean',)),
              'eval_train': _markers_of(sources, data.TRAIN_SPLITS)[:8]}
  for split, markers in expected.items():
    seen = [m for m, w in single['local'][split] if w == 1]
    assert seen == markers
    halves = [[m for m, w in r['local'][split] if w == 1] for r in pair]
    assert [len(h) for h in halves] == [math.ceil(len(markers) / 2), len(markers) // 2]
    assert halves[0] + halves[1] == markers  # Contiguous shares, each once.
    assert len(pair[0]['local'][split]) == len(pair[1]['local'][split])  # Same batches.
  for r in pair:  # The same metrics as one process computes.
    for key, value in single['results'].items():
      assert r['results'][key] == pytest.approx(value, rel=1e-4), key
  # The two processes load different rows of the same global batch.
  assert len(pair[0]['train_rows']) == len(pair[1]['train_rows']) == 4
  assert sorted(pair[0]['train_rows'] + pair[1]['train_rows']) == sorted(single['train_rows'])
  assert jax.process_count() == 1
