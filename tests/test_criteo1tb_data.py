"""The real-data Criteo 1TB loader on a tiny copy of the day files, in the real format.

The tiny copy (``_write_days``) has the reference's file names and split
rules (train: days 0-22; day 23's pieces 00-18 test, 19-35 validation) but
a few lines a piece. Every line's first integer feature is its own id, so
a test can tell which examples a batch holds: ``id = exp(inputs[:, 0]) - 1``.
Multi-device and multi-process runs go in subprocesses: the device count
must be set before JAX starts.
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

pytest.importorskip('tensorflow')

# pylint: disable=wrong-import-position
import jax

from algoperf.errors import ConfigError
from workloads.criteo1tb import data
from workloads.criteo1tb.workload import Criteo1TbDlrmSmallTestWorkload

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_SEC = 300
# (file, lines): 22 train lines in 4 files, 5 test, 7 validation.
TRAIN_FILES = (('day_0_00', 7), ('day_0_01', 5), ('day_1_00', 6), ('day_22_00', 4))
TEST_FILES = (('day_23_00', 3), ('day_23_18', 2))
VALIDATION_FILES = (('day_23_19', 4), ('day_23_35', 3))
TRAIN, TEST, VALIDATION = 22, 5, 7

# One line in the real format and what the reference's pipeline makes of it
# (its _parse_example_fn, run on this line; the ids also agree with
# farmhash's fingerprint64 modulo each vocabulary size). Integer features:
# empty and '-1' are missing (0), '-2' is clipped to 0.
GOLDEN_LINE = '\t'.join(
    ['1', '5', '', '-1', '-2', '1234567', '0', '3', '', '', '', '', '', '7']
    + ['68fd1e64', '80e26c9b', 'fb936136', '7b4723c4', '25c83c98', '7e0ccccf',
       'de7995b8', '1f89b1b5', 'a73ee510', 'a8cd5504', 'b2cb9c98', '37c9c164',
       '2824a5f6', '1adce6ef', '8ba8b39a', '891b62e7', 'e5ba7672', 'f54016b9',
       '21ddcdc9', 'b1252a9d', '07b5194c', '', '3a171ecb', 'c5c50484',
       'e8b83407', '9727dd16'])
GOLDEN_DENSE = [1.7917594909667969, 0.0, 0.0, 0.0, 14.02623176574707, 0.0,
                1.3862943649291992, 0.0, 0.0, 0.0, 0.0, 0.0, 2.079441547393799]
GOLDEN_IDS = [6734129, 16854, 15691, 4734, 677, 2, 4755, 825, 25, 7437116, 1072275,
              243736, 5, 942, 10818, 39, 2, 120, 4, 33766176, 14518198, 11306799,
              457218, 10157, 45, 35]
# An all-missing line: every categorical value hashes as '00000000' + column.
EMPTY_LINE = '0' + '\t' * 39
EMPTY_IDS = [16124033, 10351, 4188, 7307, 19695, 0, 6670, 378, 5, 27691836, 1866611,
             184436, 4, 202, 10577, 64, 3, 387, 9, 13392961, 5775802, 11306799,
             361450, 6860, 42, 8]


def _line(example_id: int) -> str:
  """A line whose first integer feature is its id; label id % 2."""
  rng = np.random.default_rng(example_id)
  ints = [str(example_id)] + [str(v) for v in rng.integers(-1, 100, 12)]
  ints[3] = ''  # A missing value.
  cats = [f'{v:08x}' for v in rng.integers(0, 2**32, 26)]
  cats[5] = ''
  return '\t'.join([str(example_id % 2), *ints, *cats])


def _file_ids():
  """``{file: [ids of its lines]}``: ids count up across the files."""
  ids, next_id = {}, 0
  for name, lines in TRAIN_FILES + TEST_FILES + VALIDATION_FILES:
    ids[name] = list(range(next_id, next_id + lines))
    next_id += lines
  return ids


FILE_IDS = _file_ids()


def _write_days(root: Path) -> None:
  for name, ids in FILE_IDS.items():
    text = '\n'.join(_line(i) for i in ids)
    # One file without a final newline: TextLineDataset still reads its last line.
    (root / name).write_text(text if name == 'day_0_01' else text + '\n')


def _split_ids(files):
  return sum((FILE_IDS[name] for name, _ in files), [])


def _ids(batch):
  """Example ids of the rows of a batch with weight 1 (padding dropped)."""
  keep = np.asarray(batch['weights']) == 1
  return [int(i) for i in np.round(np.exp(np.asarray(batch['inputs'])[keep, 0]) - 1)]


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('criteo1tb')
  _write_days(root)
  counts = data.write_line_counts(str(root))
  assert counts == {name: len(ids) for name, ids in FILE_IDS.items()}
  return str(root)


def _train(data_dir, start=0, seed=(1, 2), batch=4):
  return data.train_batches(data_dir, seed, batch, start)


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _assert_same_batches(got, want):
  assert len(got) == len(want)
  for a, b in zip(got, want):
    assert set(a) == set(b) == {'inputs', 'targets', 'weights'}
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


# --- preprocessing -------------------------------------------------------------------


def test_one_line_is_parsed_as_the_reference_parses_it():
  parsed = data.parse_lines(data._tf().constant([GOLDEN_LINE, EMPTY_LINE]))  # pylint: disable=protected-access
  inputs, targets = parsed['inputs'].numpy(), parsed['targets'].numpy()
  assert inputs.shape == (2, 39) and inputs.dtype == np.float32
  np.testing.assert_array_equal(targets, [1.0, 0.0])
  assert targets.dtype == np.float32
  # log(max(x, 0) + 1) by hand, in float32.
  ints = np.array([5, 0, 0, 0, 1234567, 0, 3, 0, 0, 0, 0, 0, 7], np.float32)
  np.testing.assert_array_equal(inputs[0, :13], np.log(ints + np.float32(1)))
  np.testing.assert_array_equal(inputs[0, :13], np.float32(GOLDEN_DENSE))
  assert [int(v) for v in inputs[0, 13:]] == GOLDEN_IDS
  # Column 21 is empty in both lines: the same id.
  assert [int(v) for v in inputs[1, 13:]] == EMPTY_IDS
  np.testing.assert_array_equal(inputs[1, :13], 0.0)
  # Ids are below each column's bucket count; those above 2**24 were
  # rounded to float32 as the reference does (33766176 is a multiple of 4).
  assert all(i < v for i, v in zip(GOLDEN_IDS, data.VOCAB_SIZES))
  assert inputs[0, 13 + 19] == np.float32(33766176)


# --- line counts and the files -------------------------------------------------------------


def test_count_file_lines_counts_an_unterminated_last_line(tmp_path):
  (tmp_path / 'a').write_bytes(b'x\ny\n')
  (tmp_path / 'b').write_bytes(b'x\ny')
  (tmp_path / 'c').write_bytes(b'')
  assert [data.count_file_lines(tmp_path / n) for n in 'abc'] == [2, 2, 0]


def test_the_reference_layout_fixes_every_line_count():
  counts = data.layout_line_counts(
      ['day_0_00', 'day_0_01', 'day_0_02', 'day_1_00'], rows_per_day=(12, 5),
      split_lines=5)
  assert counts == {'day_0_00': 5, 'day_0_01': 5, 'day_0_02': 2, 'day_1_00': 5}
  with pytest.raises(ValueError, match=r'1 missing \(day_0_02\)'):
    data.layout_line_counts(['day_0_00', 'day_0_01', 'day_1_00'], (12, 5), 5)
  with pytest.raises(ValueError, match=r'1 unexpected \(day_1_01\)'):
    data.layout_line_counts(['day_0_00', 'day_0_01', 'day_0_02', 'day_1_00',
                             'day_1_01'], (12, 5), 5)


def test_the_real_file_names_give_the_reference_split_counts(tmp_path):
  # Empty files with the 885 real names: counts come from the layout alone.
  names = data.layout_line_counts(
      [f'day_{d}_{p:02d}' for d, rows in enumerate(data.ROWS_PER_DAY)
       for p in range(math.ceil(rows / data.SPLIT_LINES))])
  assert len(names) == 885
  for name in names:
    (tmp_path / name).touch()
  assert data.split_counts(str(tmp_path)) == {
      'train': 4_195_197_692, 'validation': 83_274_637, 'test': 95_000_000}
  assert len(data.split_files(str(tmp_path), 'test').paths) == 19
  assert len(data.split_files(str(tmp_path), 'validation').paths) == 17
  # data_dir may also be the folder above criteo1tb/.
  (tmp_path / 'criteo1tb').mkdir()
  for name in names:
    (tmp_path / name).rename(tmp_path / 'criteo1tb' / name)
  assert data.split_counts(str(tmp_path))['test'] == 95_000_000
  (tmp_path / 'criteo1tb' / 'day_3_07').unlink()
  with pytest.raises(data.DatasetMissingError, match=r'1 missing \(day_3_07\)'):
    data.split_counts(str(tmp_path))


def test_the_splits_are_the_references(data_dir):
  assert data.split_counts(data_dir) == {'train': TRAIN, 'validation': VALIDATION,
                                         'test': TEST}
  assert data.split_counts(data_dir, count_lines=True) == data.split_counts(data_dir)
  names = lambda split: [Path(p).name for p in data.split_files(data_dir, split).paths]  # noqa: E731
  assert names('train') == [n for n, _ in TRAIN_FILES]  # day 22 after day 1.
  assert names('test') == [n for n, _ in TEST_FILES]
  assert names('validation') == [n for n, _ in VALIDATION_FILES]


def test_a_missing_dataset_names_its_folder_and_the_command(tmp_path):
  with pytest.raises(ConfigError) as raised:
    data.split_counts(str(tmp_path))
  assert isinstance(raised.value, data.DatasetMissingError)
  message = str(raised.value)
  assert str(tmp_path) in message and '\n' not in message
  assert 'algoperf datasets criteo1tb --data_dir' in message
  assert 'Criteo' in data.INSTRUCTIONS and 'split -a 2 -d -l 5000000' in data.INSTRUCTIONS
  assert '/data/x/day_D_' in data.instructions('/data/x')


def test_a_stale_line_count_index_is_refused(tmp_path):
  (tmp_path / 'day_0_00').write_text('0' + '\t' * 39 + '\n')
  (tmp_path / data.LINE_COUNTS_FILE).write_text(json.dumps({'day_0_01': 1}))
  with pytest.raises(data.DatasetMissingError, match='stale'):
    data.line_counts(str(tmp_path))


# --- train -------------------------------------------------------------------------------


def test_train_batches_have_the_reference_format(data_dir):
  batch = next(_train(data_dir))
  assert batch['inputs'].shape == (4, 39) and batch['inputs'].dtype == np.float32
  assert batch['targets'].shape == (4,) and batch['targets'].dtype == np.float32
  np.testing.assert_array_equal(batch['weights'], np.ones(4, np.float32))
  np.testing.assert_array_equal(batch['targets'], np.array(_ids(batch)) % 2)


def test_each_epoch_reads_whole_files_in_a_new_order(data_dir):
  # 22 lines make 5 batches of 4 an epoch; the last 2 lines are dropped.
  batches = _take(_train(data_dir), 15)
  epochs = [sum((_ids(b) for b in batches[i:i + 5]), []) for i in (0, 5, 10)]
  train_files = [FILE_IDS[n] for n, _ in TRAIN_FILES]
  orders = []
  for lines in epochs:
    assert len(lines) == 20 and len(set(lines)) == 20
    # Lines come file by file, each file in order.
    order = []
    for i in lines:
      f = next(k for k, ids in enumerate(train_files) if i in ids)
      if not order or order[-1] != f:
        order.append(f)
    assert len(order) == len(set(order))
    for f in order[:-1]:
      assert [i for i in lines if i in train_files[f]] == train_files[f]
    orders.append(order)
  assert len({tuple(o) for o in orders}) > 1
  # The same seed, the same batches; another seed, another file order.
  _assert_same_batches(_take(_train(data_dir), 15), batches)
  other = _take(_train(data_dir, seed=(9, 9)), 15)
  assert [_ids(b) for b in other] != [_ids(b) for b in batches]


def test_starting_at_n_yields_batches_n_on(data_dir):
  stream = _take(_train(data_dir), 17)
  for n in (1, 3, 4, 5, 9, 12):
    _assert_same_batches(_take(_train(data_dir, n), 3), stream[n:n + 3])


def test_a_far_start_costs_no_more_than_a_near_one(data_dir):
  def time_to_first_batch(start):
    began = time.perf_counter()
    next(_train(data_dir, start))
    return time.perf_counter() - began

  time_to_first_batch(0)  # Warm-up: TF's first graph building.
  near = min(time_to_first_batch(3) for _ in range(2))
  # Batch 1,000,000 is 200,000 epochs in: a replay would parse 4M lines.
  far = min(time_to_first_batch(1_000_000) for _ in range(2))
  assert far < 3 * near + 1.0, (near, far)


def test_the_workload_queue_starts_at_its_position(data_dir):
  workload = Criteo1TbDlrmSmallTestWorkload(data_dir=data_dir)
  workload.check_data()
  rng = jax.random.PRNGKey(0)
  batches = _take(workload._build_input_queue(rng, 'train', data_dir, 4), 4)  # pylint: disable=protected-access
  resumed = workload._build_input_queue(rng, 'train', None, 4, start_position=3)  # pylint: disable=protected-access
  got = next(resumed)
  assert got['inputs'].shape == (4, 39)
  for key in ('inputs', 'targets', 'weights'):
    np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(batches[3][key]))


# --- eval --------------------------------------------------------------------------------


def test_eval_counts_every_example_once_and_pads_with_weight_0(data_dir):
  source = data.eval_batches(data_dir, 'validation', VALIDATION, 4)
  passes = [list(source), list(source)]  # Re-iterable: one object, every eval.
  _assert_same_batches(passes[1], passes[0])
  assert len(source) == len(passes[0]) == 2
  want = _split_ids(VALIDATION_FILES)
  assert sum((_ids(b) for b in passes[0]), []) == want
  last = passes[0][-1]
  np.testing.assert_array_equal(last['weights'], [1, 1, 1, 0])
  assert last['targets'][3] == 0 and not last['inputs'][3].any()
  assert all(b['inputs'].shape == (4, 39) for b in passes[0])
  test = data.eval_batches(data_dir, 'test', TEST, 8)
  assert sum((_ids(b) for b in test), []) == _split_ids(TEST_FILES)
  with pytest.raises(ValueError, match='has 7'):
    data.eval_batches(data_dir, 'validation', VALIDATION + 1, 4)


def test_eval_train_is_the_first_train_lines_in_file_order(data_dir):
  some = data.eval_batches(data_dir, 'eval_train', 9, 4)
  assert len(some) == 3
  assert sum((_ids(b) for b in some), []) == list(range(9))  # day_0_00, then day_0_01.


# --- several devices and processes -----------------------------------------------------------

# Runs in a subprocess: every eval split through the workload (the 65,536-row
# model), the examples each process's batches hold, the same loss computed
# on the whole split at once, and the first train rows of each process.
_WORKER = textwrap.dedent('''
    import json, sys
    from algoperf import distributed
    data_dir, process_id, port, out = sys.argv[1:5]
    if port != '-':
      distributed.initialize(f'localhost:{port}', 2, int(process_id))
    import jax, jax.numpy as jnp, numpy as np
    from algoperf import spec
    from workloads.batching import placed
    from workloads.criteo1tb import data
    from workloads.criteo1tb.workload import Criteo1TbDlrmSmallTestWorkload

    class Tiny(Criteo1TbDlrmSmallTestWorkload):
      real_num_validation_examples = 7
      real_num_test_examples = 5
      default_eval_batch_size = 8

    workload = Tiny(data_dir=data_dir)
    params, state = workload.init_model_fn(jax.random.PRNGKey(0))
    results = workload.eval_model(8, params, state, jax.random.PRNGKey(0), data_dir,
                                  None, 0)
    seen, direct = {}, {}
    for split, count in (('validation', 7), ('test', 5), ('eval_train', 8)):
      source = workload._real_eval_batches(split, count, 8, data_dir)
      local = [[float(x) for x in row] for b in source
               for row, w in zip(b['inputs'], b['weights']) if w == 1]
      weights = sum(float(jnp.sum(b['weights'])) for b in placed(iter(source), 8))
      seen[split] = {'local': local, 'batches': len(list(source)),
                     'global_weight': weights}
      # The whole split in one unpadded batch, on the host.
      files = data.split_files(data_dir, split)
      lines = [l for p in files.paths for l in open(p).read().splitlines()][:count]
      whole = {k: v.numpy() for k, v in data.parse_lines(data._tf().constant(lines)).items()}
      host_params = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), params)
      logits, _ = workload.model_fn(host_params, whole, None,
                                    spec.ForwardPassMode.EVAL, None, False)
      losses = workload.loss_fn(whole['targets'], logits)
      direct[split] = float(losses['summed']) / count
    rows = next(workload._build_input_queue(jax.random.PRNGKey(1), 'train', None, 8))
    train = [float(x) for s in rows['inputs'].addressable_shards
             for x in np.asarray(s.data)[:, 0]]
    json.dump({'results': results, 'seen': seen, 'direct': direct,
               'devices': jax.device_count(), 'train_first_feature': train},
              open(out, 'w'))
''')


def _env(num_devices):
  return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={num_devices}')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _row_ids(rows):
  return [int(round(math.exp(r[0]) - 1)) for r in rows]


def _check_results(result):
  for prefix, split in (('validation', 'validation'), ('test', 'test'),
                        ('train', 'eval_train')):
    assert math.isclose(result['results'][f'{prefix}/loss'], result['direct'][split],
                        rel_tol=1e-5), (prefix, result['results'], result['direct'])
  assert result['results']['validation/num_examples'] == 7
  assert result['results']['test/num_examples'] == 5


@pytest.mark.slow  # ~30 s on 2 CPU cores: JAX and TF start in a subprocess.
def test_eval_on_eight_devices_counts_every_example_once(data_dir, tmp_path):
  out = tmp_path / 'result.json'
  done = subprocess.run([sys.executable, '-c', _WORKER, data_dir, '0', '-', str(out)],
                        env=_env(8), capture_output=True, text=True, timeout=TIMEOUT_SEC,
                        check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result['devices'] == 8
  seen = result['seen']
  assert _row_ids(seen['validation']['local']) == _split_ids(VALIDATION_FILES)
  assert _row_ids(seen['test']['local']) == _split_ids(TEST_FILES)
  assert _row_ids(seen['eval_train']['local']) == list(range(8))
  for split, count in (('validation', 7), ('test', 5), ('eval_train', 8)):
    assert seen[split]['global_weight'] == count and seen[split]['batches'] == 1
  _check_results(result)


@pytest.mark.slow  # ~40 s on 2 CPU cores: two processes each start JAX and TF.
def test_two_processes_each_evaluate_half_and_train_on_their_files(
    data_dir, tmp_path):
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
  for split, count, want in (
      ('validation', 7, _split_ids(VALIDATION_FILES)),
      ('test', 5, _split_ids(TEST_FILES)),
      ('eval_train', 8, list(range(8)))):
    halves = [_row_ids(r['seen'][split]['local']) for r in results]
    # Each process read its own contiguous half; together every example once.
    assert [len(h) for h in halves] == [math.ceil(count / 2), count // 2]
    assert halves[0] + halves[1] == want
    assert results[0]['seen'][split]['batches'] == results[1]['seen'][split]['batches']
    assert results[0]['seen'][split]['global_weight'] == count
  for r in results:
    _check_results(r)
  assert results[0]['results'] == results[1]['results']
  # Process 0 trains on day_0_00 and day_1_00, process 1 on day_0_01 and day_22_00.
  own = [FILE_IDS['day_0_00'] + FILE_IDS['day_1_00'],
         FILE_IDS['day_0_01'] + FILE_IDS['day_22_00']]
  for r, ids in zip(results, own):
    rows = _row_ids([[x] for x in r['train_first_feature']])
    assert len(rows) == 4 and set(rows) <= set(ids)
