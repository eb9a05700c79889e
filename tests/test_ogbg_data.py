"""The real-data ogbg pipeline on a tiny ogbg_molpcba in the prepared tfds format.

The test prepares it with tfds itself: a builder subclassing the real
``ogbg_molpcba`` 0.1.3 builder (same name, version, features and metadata)
whose generator yields a few dozen made-up molecules instead of
downloading OGB's, written in 3 TFRecord shards per split. Every node of
molecule ``i`` of a split carries the molecule's id in feature 0, so a test
can tell which molecules a batch holds.

Several devices and processes run in subprocesses (the device count must be
set before JAX starts); their eval goes through the workload with a
stand-in model whose logits are a function of the molecule's id, so the
metrics can be computed independently from the molecules themselves.
"""

import json
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
import jax.numpy as jnp

from algoperf.errors import ConfigError
from workloads.batching import seed_words
from workloads.ogbg import data
from workloads.ogbg import graphs as G
from workloads.ogbg import metrics as ogbg_metrics
from workloads.ogbg.workload import OgbgWorkload

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_SEC = 300
COUNTS = {'train': 45, 'validation': 13, 'test': 11}
SPLITS = tuple(COUNTS)
# Too big for 2 graphs per device (52 nodes): train graph 10; validation
# graph 3 makes an eval shard grow.
BIG = {('train', 10): 70, ('validation', 3): 60}


def molecule_id(split: str, index: int) -> int:
  return 1000 * (SPLITS.index(split) + 1) + index


def molecule(split: str, index: int) -> dict:
  """Example ``index`` of ``split`` as the tfds generator yields it."""
  rng = np.random.default_rng([SPLITS.index(split), index])
  n = BIG.get((split, index), 1 + (index * 7) % 24)
  m = max(n - 1, 0) + index % 3
  node_feat = rng.integers(0, 6, (n, 9)).astype(np.float32)
  node_feat[:, 0] = molecule_id(split, index)
  labels = (rng.random(128) < 0.3).astype(np.float32)
  labels[rng.random(128) < 0.4] = np.nan
  return {'num_nodes': np.array([n]), 'node_feat': node_feat,
          'num_edges': np.array([m]),
          'edge_feat': rng.integers(0, 4, (m, 3)).astype(np.float32),
          'edge_index': rng.integers(0, n, (m, 2)).astype(np.int64),
          'labels': labels}


def write_tiny_molpcba(root: Path) -> None:
  """Prepares the tiny ``ogbg_molpcba`` 0.1.3 under ``root`` with tfds."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from tensorflow_datasets.datasets.ogbg_molpcba import (  # pylint: disable=import-outside-toplevel
      ogbg_molpcba_dataset_builder as real)

  class TinyMolpcba(real.Builder, skip_registration=True):
    """The real builder (its info, features, metadata), our molecules."""

    name = 'ogbg_molpcba'
    pkg_dir_path = real.Builder._get_pkg_dir_path()  # pylint: disable=protected-access
    code_path = None  # No checksums to look for.

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split):  # pylint: disable=arguments-differ
      for i in range(COUNTS[split]):
        yield f'{split}_{i}', molecule(split, i)

  tfds.disable_progress_bar()
  TinyMolpcba(data_dir=str(root)).download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          num_shards=3, compute_stats=tfds.download.ComputeStatsMode.SKIP))


def graph_slots(batch) -> list:
  """``(molecule id or 0, weights row)`` of every real graph slot of a numpy batch."""
  graph = batch['inputs']
  n_node = np.asarray(graph.n_node)
  first = np.cumsum(n_node) - n_node
  nodes = np.asarray(graph.nodes)
  out = []
  for g, (start, count) in enumerate(zip(first, n_node)):
    ident = int(nodes[start, 0]) if count else 0
    if ident:
      # Every node of a graph is the molecule's.
      assert (nodes[start:start + count, 0] == ident).all()
      out.append((ident, g))
  return out


def _check_rows(batch, split):
  """Targets and weights of each real slot are its molecule's labels."""
  ids = []
  for ident, g in graph_slots(batch):
    index = ident % 1000
    labels = molecule(split, index)['labels']
    np.testing.assert_array_equal(batch['targets'][g], np.nan_to_num(labels, nan=0.0))
    np.testing.assert_array_equal(batch['weights'][g], ~np.isnan(labels))
    ids.append(index)
  return ids


# --- the stand-in model ----------------------------------------------------------------


def probe_logits(ident):
  """Integer logits from a molecule id (exact in float32, ties included)."""
  tasks = np.arange(128)
  return ((np.asarray(ident, np.float64)[..., None] * 37 + tasks * 11) % 17) - 8


class Probe(OgbgWorkload):
  """The real pipeline and eval, with logits a function of each graph's id."""

  real_num_eval_train_examples = 20
  real_num_validation_examples = COUNTS['validation']
  real_num_test_examples = COUNTS['test']
  default_eval_batch_size = 4

  def init_model_fn(self, rng):
    return {}, None

  def model_fn(self, params, augmented_and_preprocessed_input_batch, model_state,
               mode, rng, update_batch_norm, use_running_average_bn=None,
               dropout_rate=None):
    graph = augmented_and_preprocessed_input_batch['inputs']
    n_graph = graph.n_node.shape[0]
    owner = jnp.repeat(jnp.arange(n_graph), graph.n_node,
                       total_repeat_length=graph.nodes.shape[0])
    ident = jnp.maximum(jax.ops.segment_max(graph.nodes[:, 0], owner, n_graph), 0)
    tasks = jnp.arange(128, dtype=jnp.float32)
    return jnp.mod(ident[:, None] * 37 + tasks * 11, 17) - 8, None


def expected_metrics(split: str, indices) -> dict:
  """The eval metrics of molecules ``indices`` of ``split`` under the probe."""
  labels = np.stack([molecule(split, i)['labels'] for i in indices])
  logits = probe_logits([molecule_id(split, i) for i in indices])
  mask = ~np.isnan(labels)
  targets = np.nan_to_num(labels, nan=0.0)
  losses = np.logaddexp(0, logits) - logits * targets
  # One padding row, as every eval batch has: its 0 labels count for the
  # reference's rule of which tasks count, its weight 0 for nothing else.
  pad = np.zeros((1, 128))
  return {
      'loss': float(losses[mask].mean()),
      'accuracy': float(((logits > 0) == targets)[mask].mean()),
      'mean_average_precision': ogbg_metrics.mean_average_precision(
          np.concatenate([logits, pad]), np.concatenate([targets, pad]),
          np.concatenate([mask, pad])),
  }


def _assert_metrics(got: dict, want: dict):
  for name, value in want.items():
    assert got[name] == pytest.approx(value, rel=1e-5), name


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory) -> str:
  root = tmp_path_factory.mktemp('ogbg')
  write_tiny_molpcba(root)
  return str(root)


@pytest.fixture(scope='module')
def train_store(data_dir):
  files = data.split_files(data_dir, 'train')
  return data.read_graphs(files, 0, files.num_examples)


def _ids(store: G.GraphStore) -> list:
  return [int(x) % 1000 for x in store.nodes[store.node_start, 0]]


# --- metadata --------------------------------------------------------------------------


def test_the_counts_come_from_the_prepared_metadata(data_dir):
  assert data.split_counts(data_dir) == COUNTS
  files = data.split_files(data_dir, 'train')
  assert len(files.paths) == 3 and sum(files.lengths) == 45
  assert all(Path(p).name.startswith('ogbg_molpcba-train.tfrecord') for p in files.paths)


def test_a_missing_dataset_names_its_folder_and_the_command(tmp_path):
  with pytest.raises(ConfigError) as raised:
    data.split_counts(str(tmp_path))
  assert isinstance(raised.value, data.DatasetMissingError)
  message = str(raised.value)
  assert str(tmp_path / 'ogbg_molpcba' / '0.1.3') in message and '\n' not in message
  assert f'algoperf datasets ogbg --data_dir {tmp_path}' in message
  with pytest.raises(data.DatasetMissingError, match='algoperf datasets ogbg --data_dir'):
    data.split_counts(None)
  text = data.instructions('/data/ogbg')
  assert "tfds.builder('ogbg_molpcba:0.1.3', data_dir='/data/ogbg')" in text
  assert 'algoperf datasets ogbg --data_dir /data/ogbg' in text


def test_records_decode_to_the_molecules_written(data_dir, train_store):
  assert len(train_store) == 45 and sorted(_ids(train_store)) == list(range(45))
  for position, index in enumerate(_ids(train_store)):
    want = molecule('train', index)
    one = train_store.take([position])
    np.testing.assert_array_equal(one.nodes, want['node_feat'])
    np.testing.assert_array_equal(one.edge_feat, want['edge_feat'])
    np.testing.assert_array_equal(one.edge_index, want['edge_index'])
    np.testing.assert_array_equal(one.labels[0], want['labels'])
  files = data.split_files(data_dir, 'train')
  # A range across a file boundary, every third record of it.
  part = data.read_graphs(files, 10, 31, step=3, offset=1)
  assert _ids(part) == [_ids(train_store)[i] for i in range(10, 31) if i % 3 == 1]


# --- train -------------------------------------------------------------------------------


def _train(data_dir, start=0, seed=(1, 2), batch=4):
  return data.train_batches(data_dir, seed, batch, start)


def test_each_epoch_is_a_permutation_and_shards_pack_greedily(train_store):
  budget = G.Budget.for_graphs(2)
  stream = data.TrainStream(train_store.n_node, train_store.n_directed_edge, budget, (4,))
  big = _ids(train_store).index(10)
  assert big not in stream.usable and stream.epoch_length == 44  # 70 nodes > 52.
  shards = stream.shards()
  taken = np.concatenate([next(shards) for _ in range(100)])
  order = np.concatenate([stream.epoch_order(e) for e in range(6)])
  np.testing.assert_array_equal(taken, order[:len(taken)])  # Epochs, in order.
  for e in range(3):
    assert sorted(stream.epoch_order(e)) == sorted(stream.usable)
  assert not np.array_equal(stream.epoch_order(0), stream.epoch_order(1))
  # Greedy: no shard could have taken the next graph too.
  shards = stream.shards()
  position = 0
  for _ in range(60):
    graphs = next(shards)
    following = order[position + len(graphs)]
    nodes = train_store.n_node[np.append(graphs, following)].sum()
    edges = train_store.n_directed_edge[np.append(graphs, following)].sum()
    assert len(graphs) == budget.graphs or nodes > budget.nodes or edges > budget.edges
    position += len(graphs)


def test_the_same_seed_gives_the_same_batches_another_seed_others(data_dir):
  first = [next(b) for b in [_train(data_dir)] for _ in range(3)]
  again = [next(b) for b in [_train(data_dir)] for _ in range(3)]
  other = next(_train(data_dir, seed=(1, 3)))
  jax.tree.map(np.testing.assert_array_equal, first, again)
  assert not np.array_equal(other['inputs'].nodes, first[0]['inputs'].nodes)


def test_train_batches_hold_the_molecules_with_their_labels(data_dir):
  batches = _train(data_dir, batch=6)
  seen = []
  for _ in range(20):
    batch = next(batches)
    assert batch['inputs'].nodes.shape == (26 * 6 + 1, 9)
    assert batch['targets'].shape == (7, 128)
    seen += _check_rows(batch, 'train')
  assert set(seen) == set(range(45))  # 20 batches of about 6: every molecule.


def test_starting_at_n_yields_batches_n_on_and_assembles_nothing_before(
    data_dir, monkeypatch):
  run = _train(data_dir)
  batches = [next(run) for _ in range(40)]
  built = []
  original = G.shard_arrays
  monkeypatch.setattr(G, 'shard_arrays',
                      lambda *a, **k: built.append(1) or original(*a, **k))
  for start in (1, 17, 33):
    resumed = _train(data_dir, start=start)
    jax.tree.map(np.testing.assert_array_equal, next(resumed), batches[start])
    jax.tree.map(np.testing.assert_array_equal, next(resumed), batches[start + 1])
  assert len(built) == 6  # Two batches of one shard each, three times.
  started = time.perf_counter()
  next(_train(data_dir, start=200_000))  # Thousands of epochs of 44 graphs.
  assert time.perf_counter() - started < 30


def test_the_workload_queue_places_global_batches_from_its_position(data_dir):
  workload = OgbgWorkload(data_dir=data_dir)
  workload.check_data()
  queue = workload._build_input_queue(jax.random.PRNGKey(0), 'train', None, 4)  # pylint: disable=protected-access
  batches = [jax.device_get(next(queue)) for _ in range(3)]
  resumed = workload._build_input_queue(  # pylint: disable=protected-access
      jax.random.PRNGKey(0), 'train', None, 4, start_position=2)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(next(resumed)), batches[2])
  assert isinstance(next(queue)['inputs'].nodes, jax.Array)
  for batch in batches:
    _check_rows(batch, 'train')


# --- eval --------------------------------------------------------------------------------


def test_eval_counts_every_graph_once_in_batches_of_one_shape(data_dir):
  source = data.eval_batches(data_dir, 'validation', 13, 2)
  # Shards grow to hold validation graph 3: 60 nodes (> 26 * 2) and 118
  # directed edges (> 56 * 2).
  assert source.budget == G.Budget(2, 60, 118)
  batches = list(source)
  assert len(batches) == source.num_batches == len(list(source))
  assert {b['inputs'].nodes.shape for b in batches} == {(61, 9)}
  seen = [i for b in batches for i in _check_rows(b, 'validation')]
  assert sorted(seen) == list(range(13))
  measured = sum(int((~np.isnan(molecule('validation', i)['labels'])).sum())
                 for i in range(13))
  assert sum(b['weights'].sum() for b in batches) == measured


def test_eval_train_is_the_first_train_graphs_in_file_order(data_dir, train_store):
  source = data.eval_batches(data_dir, 'eval_train', 20, 8)
  seen = [i for b in source for i in _check_rows(b, 'train')]
  assert seen == _ids(train_store)[:20]


def test_the_workload_eval_gives_the_metrics_of_every_graph(data_dir, train_store):
  workload = Probe(data_dir=data_dir)
  results = workload.eval_model(4, {}, None, jax.random.PRNGKey(0), data_dir, None, 0)
  _assert_metrics({k[len('validation/'):]: v for k, v in results.items()
                   if k.startswith('validation/')},
                  expected_metrics('validation', range(13)))
  _assert_metrics({k[len('test/'):]: v for k, v in results.items()
                   if k.startswith('test/')}, expected_metrics('test', range(11)))
  _assert_metrics({k[len('train/'):]: v for k, v in results.items()
                   if k.startswith('train/')},
                  expected_metrics('train', _ids(train_store)[:20]))
  assert results['validation/num_examples'] == 13


# --- several devices and processes ---------------------------------------------------------

_WORKER = textwrap.dedent('''
    import json, sys
    from algoperf import distributed
    data_dir, process_id, port, out = sys.argv[1:5]
    if port != '-':
      distributed.initialize(f'localhost:{port}', 2, int(process_id))
    import jax, numpy as np
    from tests.test_ogbg_data import Probe, graph_slots
    from workloads.ogbg import data

    workload = Probe(data_dir=data_dir)
    results = workload.eval_model(8, {}, None, jax.random.PRNGKey(0), data_dir, None, 0)
    seen = {}
    for split, count in (('validation', 13), ('test', 11), ('eval_train', 20)):
      source = data.eval_batches(data_dir, split, count, 8)
      seen[split] = {'ids': [i for b in source for i, _ in graph_slots(b)],
                     'batches': source.num_batches}
    queue = workload._build_input_queue(jax.random.PRNGKey(1), 'train', None, 8)
    batch = next(queue)
    local = {'inputs': jax.tree.map(
                 lambda x: np.concatenate([np.asarray(s.data) for s in sorted(
                     x.addressable_shards, key=lambda s: s.index[0].start or 0)]),
                 batch['inputs'])}
    json.dump({'results': results, 'seen': seen, 'devices': jax.device_count(),
               'train_ids': [i for i, _ in graph_slots(local)],
               'global_nodes': batch['inputs'].nodes.shape[0]}, open(out, 'w'))
''')


def _env(num_devices):
  return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={num_devices}')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _check_eval_results(results, train_store):
  for prefix, split, indices in (('validation', 'validation', range(13)),
                                 ('test', 'test', range(11)),
                                 ('train', 'train', _ids(train_store)[:20])):
    got = {k[len(prefix) + 1:]: v for k, v in results.items()
           if k.startswith(prefix + '/')}
    _assert_metrics(got, expected_metrics(split, indices))


@pytest.mark.slow  # ~20 s: a subprocess starts JAX and TF on 8 devices.
def test_eight_devices_count_every_eval_graph_once_and_train_on_eight_shards(
    data_dir, train_store, tmp_path):
  out = tmp_path / 'result.json'
  done = subprocess.run([sys.executable, '-c', _WORKER, data_dir, '0', '-', str(out)],
                        env=_env(8), capture_output=True, text=True,
                        timeout=TIMEOUT_SEC, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result['devices'] == 8
  _check_eval_results(result['results'], train_store)
  for split, count in (('validation', 13), ('test', 11), ('eval_train', 20)):
    assert len(result['seen'][split]['ids']) == count
  # One graph per device (8 / 8): the shards are 8 consecutive ones of the
  # one stream of this process, as a 1-device run would pack them.
  assert result['global_nodes'] == 8 * 27
  budget = G.Budget.for_graphs(1)
  stream = data.TrainStream(train_store.n_node, train_store.n_directed_edge, budget,
                            seed_words(jax.random.PRNGKey(1)))
  shards = stream.shards()
  want = [_ids(train_store)[int(i)] for _ in range(8) for i in next(shards)]
  assert [i % 1000 for i in result['train_ids']] == want


# ~30 s on 2 CPU cores: two processes each start JAX and TF.
@pytest.mark.slow
def test_two_processes_each_read_their_share_and_evaluate_together(
    data_dir, train_store, tmp_path):
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
  for r in results:  # Both processes report the metrics of every graph.
    _check_eval_results(r['results'], train_store)
  for split, count in (('validation', 13), ('test', 11), ('eval_train', 20)):
    halves = [r['seen'][split]['ids'] for r in results]
    assert [len(h) for h in halves] == [count // 2, count - count // 2]
    assert len(set(halves[0] + halves[1])) == count
    # Eval steps are collective: both yield the same number of batches.
    assert results[0]['seen'][split]['batches'] == results[1]['seen'][split]['batches']
  # Process p trains only on the records whose index is p modulo 2.
  order = _ids(train_store)
  for p, r in enumerate(results):
    assert r['train_ids'] and {i % 1000 for i in r['train_ids']} <= set(order[p::2])
    assert r['global_nodes'] == 4 * 53
