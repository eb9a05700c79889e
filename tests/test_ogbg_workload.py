"""The ogbg workload and variants: facts, loss, mAP, batches, init, and NadamW runs.

Loss and mean average precision are checked against values worked out by
hand. The batch format is checked against batches built the way the
reference's pipeline builds them (``jraph.dynamically_batch`` and
``jraph.batch_np`` on per-molecule ``GraphsTuple``s). The initial parameters
for ``PRNGKey(0)`` are compared leaf by leaf with sums written from the
AlgoPerf JAX reference (tests/data/ogbg_init_sums.json). The slow tests
train every variant two steps with the bundled NadamW and run a full eval on
synthetic data (8 graphs per batch).
"""

import functools
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest
from flax import traverse_util

from algoperf import runner, spec
from algoperf.errors import ConfigError
from algoperf.submission import load_submission
from algoperf.tuning import generate_points, load_search_space
from workloads.ogbg import graphs as G
from workloads.ogbg import metrics as ogbg_metrics
from workloads.ogbg.model import GNN
from workloads.ogbg.workload import (OgbgGeluWorkload, OgbgModelSizeWorkload,
                                     OgbgSiluWorkload, OgbgWorkload)

CLASSES = {'ogbg': OgbgWorkload, 'ogbg_gelu': OgbgGeluWorkload,
           'ogbg_silu': OgbgSiluWorkload, 'ogbg_model_size': OgbgModelSizeWorkload}
TARGETS = {'ogbg': (0.28098, 0.268729), 'ogbg_gelu': (0.27771, 0.262926),
           'ogbg_silu': (0.282178, 0.272144), 'ogbg_model_size': (0.269446, 0.253051)}
NADAMW = Path(__file__).resolve().parents[1] / 'submissions' / 'nadamw'
INIT_SUMS = Path(__file__).parent / 'data' / 'ogbg_init_sums.json'


def _softplus(x):
  return math.log1p(math.exp(x))


def _flat(tree):
  return {'/'.join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def _assert_init_matches_reference(name, params):
  expected = json.loads(INIT_SUMS.read_text())[name]
  flat = {k: np.asarray(v, np.float64) for k, v in _flat(params).items()}
  assert sorted(flat) == sorted(expected)
  for path, (total, absolute) in expected.items():
    assert math.isclose(flat[path].sum(), total, rel_tol=1e-4, abs_tol=1e-3), path
    assert math.isclose(np.abs(flat[path]).sum(), absolute, rel_tol=1e-5), path


@pytest.fixture(scope='module')
def initialised():
  workload = OgbgWorkload(synthetic=True)
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  return workload, params, model_state


# --- facts -----------------------------------------------------------------------------


@pytest.mark.parametrize('name', sorted(CLASSES))
def test_facts_are_the_references(name):
  workload = CLASSES[name]()
  assert workload.workload_name == name
  assert workload.target_metric_name == 'mean_average_precision'
  assert (workload.validation_target_value, workload.test_target_value) == TARGETS[name]
  assert (workload.num_train_examples, workload.num_eval_train_examples,
          workload.num_validation_examples, workload.num_test_examples) == (
              350_343, 43_793, 43_793, 43_793)
  assert workload.eval_batch_size == 32_768
  assert workload.max_allowed_runtime_sec == 12_011
  assert workload.eval_period_time_sec == 240 and workload.step_hint == 52_000
  # Sic (the reference's value, for submissions that branch on it).
  assert workload.loss_type == spec.LossType.SOFTMAX_CROSS_ENTROPY
  # The reference's output-layer test names Dense_17 in every variant.
  assert workload.is_output_params('Dense_17') and not workload.is_output_params('Dense_15')
  with pytest.raises(NotImplementedError):
    _ = workload.train_mean
  assert workload.has_reached_validation_target(
      {'validation/mean_average_precision': TARGETS[name][0] + 1e-6})
  assert not workload.has_reached_validation_target(
      {'validation/mean_average_precision': TARGETS[name][0] - 1e-6})
  synthetic = CLASSES[name](synthetic=True)
  assert synthetic.num_train_examples == 350_343
  assert synthetic.num_validation_examples == synthetic.num_test_examples == 64


def test_real_data_without_a_folder_is_refused_with_one_clear_line(tmp_path):
  for data_dir in (None, str(tmp_path)):
    with pytest.raises(ConfigError, match='algoperf datasets ogbg --data_dir') as raised:
      OgbgWorkload(data_dir=data_dir).check_data()
    assert '\n' not in str(raised.value)
  OgbgWorkload(synthetic=True).check_data()


# --- loss --------------------------------------------------------------------------------


def test_loss_by_hand():
  workload = OgbgWorkload()
  logits = jnp.array([[0.0, 2.0], [-1.0, 3.0]])
  labels = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  mask = jnp.array([[1.0, 1.0], [1.0, 0.0]])
  out = workload.loss_fn(labels, logits, mask)
  want = [[math.log(2), _softplus(2)], [_softplus(-1), 0.0]]
  np.testing.assert_allclose(out['per_example'], want, rtol=1e-6)
  assert out['per_example'].shape == (2, 2)
  assert math.isclose(float(out['summed']), sum(map(sum, want)), rel_tol=1e-6)
  assert float(out['n_valid_examples']) == 3  # Measured labels, not graphs.
  # Without a mask every label counts; n_valid_examples is the graph count.
  unmasked = workload.loss_fn(labels, logits)
  assert unmasked['n_valid_examples'] == 2
  assert math.isclose(float(unmasked['summed']), sum(map(sum, want)) + _softplus(3) - 3,
                      rel_tol=1e-6)


def test_label_smoothing_pulls_towards_one_over_128_tasks():
  workload = OgbgWorkload()
  logits = jnp.ones((1, 128))
  labels = jnp.zeros((1, 128)).at[0, 0].set(1.0)
  mask = jnp.zeros((1, 128)).at[0, :2].set(1.0)
  out = workload.loss_fn(labels, logits, mask, label_smoothing=0.1)
  # softplus(x) - x z with z = 0.9 + 0.1 / 128 and 0.1 / 128 on the two labels.
  want = 2 * _softplus(1) - (0.9 + 2 * 0.1 / 128)
  assert math.isclose(float(out['summed']), want, rel_tol=1e-6)
  assert float(out['n_valid_examples']) == 2


def test_unmeasured_labels_reach_neither_loss_nor_gradient():
  workload = OgbgWorkload()
  labels = jnp.array([[1.0, jnp.nan]])
  mask = jnp.array([[1.0, 0.0]])

  def loss(logits):
    return workload.loss_fn(labels, logits, mask, 0.1)['summed']

  grad = jax.grad(loss)(jnp.array([[0.5, 80.0]]))
  assert bool(jnp.all(jnp.isfinite(grad))) and float(grad[0, 1]) == 0.0
  with pytest.raises(ValueError, match='Shape mismatch'):
    workload.loss_fn(labels, jnp.zeros((1, 3)), mask)


# --- mean average precision -------------------------------------------------------------


def _map(logits, labels, mask=None):
  logits = np.asarray(logits, np.float32).T
  labels = np.asarray(labels, np.float32).T
  mask = np.ones_like(labels) if mask is None else np.asarray(mask, np.float32).T
  return ogbg_metrics.mean_average_precision(logits, labels, mask)


def test_average_precision_by_hand():
  # Rows are tasks here (transposed in _map), columns graphs.
  assert _map([[3, -1, 2, -2]], [[1, 0, 1, 0]]) == 1.0
  # Ranked: positive, negative, positive, negative: (1/1 + 2/3) / 2.
  assert math.isclose(_map([[3, 2, -1, -2]], [[1, 0, 1, 0]]), 5 / 6)
  # Unmeasured labels are left out of the AP: masking the negative ranked
  # second leaves positive, positive, negative.
  assert _map([[3, 2, -1, -2]], [[1, 0, 1, 0]], [[1, 0, 1, 1]]) == 1.0
  # ... and masking the first positive leaves negative, positive, negative.
  assert math.isclose(_map([[3, 2, -1, -2]], [[1, 0, 1, 0]], [[0, 1, 1, 1]]), 1 / 2)


def test_tasks_without_a_positive_or_a_negative_are_skipped_as_the_reference_does():
  logits = [[3, 2, -1, -2], [1, 2, 3, 4], [1, 2, 3, 4], [4, 3, 2, 1]]
  labels = [[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]]
  mask = [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]]
  # Task 1 has no positive and task 2 no 0 at all: skipped. Task 3's measured
  # labels are all positive, but its unmeasured ones read 0 (as the
  # reference's pipeline writes them), so it counts, with AP 1.
  assert math.isclose(_map(logits, labels, mask), (5 / 6 + 1.0) / 2)
  assert math.isnan(_map([[1, 2]], [[0, 0]]))


def test_mean_average_precision_is_unchanged_by_padding_rows():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((30, 128)).astype(np.float32)
  labels = (rng.random((30, 128)) < 0.2).astype(np.float32)
  mask = (rng.random((30, 128)) < 0.7).astype(np.float32)
  labels *= mask
  value = ogbg_metrics.mean_average_precision(logits, labels, mask)
  pad = np.zeros((5, 128), np.float32)
  padded = ogbg_metrics.mean_average_precision(
      np.concatenate([logits, pad + 9]), np.concatenate([labels, pad]),
      np.concatenate([mask, pad]))
  assert 0 < value < 1 and padded == pytest.approx(value, abs=1e-12)


# --- batches -----------------------------------------------------------------------------


def _queue(workload, seed=1, batch_size=8, start=0):
  return workload._build_input_queue(  # pylint: disable=protected-access
      jax.random.PRNGKey(seed), 'train', None, batch_size, start_position=start)


def test_synthetic_batches_have_the_references_shapes_and_dtypes():
  batch = jax.device_get(next(_queue(OgbgWorkload(synthetic=True))))
  graph = batch['inputs']
  assert isinstance(graph, jraph.GraphsTuple) and graph.globals == {}
  # 8 graphs on one device: 26 * 8 + 1 nodes, 56 * 8 edges, 8 + 1 graphs.
  assert graph.n_node.shape == graph.n_edge.shape == (9,)
  assert graph.nodes.shape == (209, 9) and graph.nodes.dtype == np.float32
  assert graph.edges.shape == (448, 3) and graph.edges.dtype == np.float32
  assert graph.senders.shape == graph.receivers.shape == (448,)
  assert graph.senders.dtype == np.int32 and graph.n_node.dtype == np.int32
  assert graph.n_node.sum() == 209 and graph.n_edge.sum() == 448
  assert batch['targets'].shape == batch['weights'].shape == (9, 128)
  assert batch['targets'].dtype == batch['weights'].dtype == np.float32
  # The padding graph (last) has weight 0; every weight-0 label reads 0.
  assert not batch['weights'][-1].any() and batch['weights'][:-1].any()
  assert not batch['targets'][batch['weights'] == 0].any()
  # Every edge joins two nodes of one graph.
  graph_of_node = np.repeat(np.arange(9), graph.n_node)
  graph_of_edge = np.repeat(np.arange(9), graph.n_edge)
  assert (graph_of_node[graph.senders] == graph_of_edge).all()
  assert (graph_of_node[graph.receivers] == graph_of_edge).all()


def test_synthetic_batches_are_a_function_of_seed_and_index():
  workload = OgbgWorkload(synthetic=True)
  run = [jax.device_get(next(q)) for q in [_queue(workload)] for _ in range(4)]
  resumed = jax.device_get(next(_queue(workload, start=3)))
  again = jax.device_get(next(_queue(workload)))
  other = jax.device_get(next(_queue(workload, seed=2)))
  for a, b in ((resumed, run[3]), (again, run[0])):
    jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.array_equal(other['inputs'].nodes, run[0]['inputs'].nodes)
  assert not np.array_equal(run[1]['inputs'].nodes, run[0]['inputs'].nodes)


def _reference_style_batch(store, shards, budget):
  """A batch built as the reference's pipeline builds it, from ``store``'s graphs."""
  per_graph = []
  for i in range(len(store)):
    one = store.take([i])
    s, r = one.edge_index[:, 0].astype(np.int64), one.edge_index[:, 1].astype(np.int64)
    per_graph.append(jraph.GraphsTuple(
        n_node=one.n_node, n_edge=np.array([2 * len(s)]), nodes=one.nodes,
        edges=np.concatenate([one.edge_feat, one.edge_feat]),
        senders=np.concatenate([s, r]), receivers=np.concatenate([r, s]),
        globals=one.labels))
  graphs, targets, weights = [], [], []
  for batched in jraph.dynamically_batch(iter(per_graph), budget.n_node,
                                         budget.n_edge, budget.n_graph):
    labels = batched.globals
    graph = batched._replace(globals={})
    real = np.asarray(jraph.get_graph_padding_mask(graph))
    measured = ~np.isnan(labels)
    graphs.append(graph)
    targets.append(np.where(measured, labels, 0.0))
    weights.append(measured * real[:, None])
    if len(graphs) == shards:
      break
  return {'inputs': jraph.batch_np(graphs), 'targets': np.vstack(targets),
          'weights': np.vstack(weights).astype(np.float32)}


def test_batches_equal_the_reference_pipelines_and_the_model_takes_them(initialised):
  workload, params, _ = initialised
  store = G.random_graphs(np.random.default_rng(7), 40)
  budget = G.Budget.for_graphs(4)
  theirs = _reference_style_batch(store, 2, budget)
  counts = G.pack_counts(store.n_node, store.n_directed_edge, budget).tolist()
  starts = G.pack_starts(counts, 0, len(store))[:2]
  ours = G.combine_shards(
      [G.shard_arrays(store, np.arange(q, q + counts[q]), budget) for q in starts],
      [0, 1], budget)
  for field in ('n_node', 'n_edge', 'nodes', 'edges', 'senders', 'receivers'):
    np.testing.assert_array_equal(getattr(ours['inputs'], field),
                                  getattr(theirs['inputs'], field), err_msg=field)
  np.testing.assert_array_equal(ours['targets'], theirs['targets'])
  np.testing.assert_array_equal(ours['weights'], theirs['weights'])
  # The model takes the reference's batch (int64 indices, numpy arrays) too.
  forward = jax.jit(lambda p, b: workload.model_fn(
      p, b, None, spec.ForwardPassMode.EVAL, None, update_batch_norm=False))
  logits_theirs, state = forward(params, theirs)
  logits_ours, _ = forward(params, ours)
  assert state is None and logits_ours.shape == (10, 128)
  np.testing.assert_allclose(logits_theirs, logits_ours, rtol=1e-6)
  losses = workload.loss_fn(theirs['targets'], logits_theirs, theirs['weights'])
  assert math.isfinite(float(losses['summed'])) and float(losses['n_valid_examples']) > 0


# --- init and model_fn -----------------------------------------------------------------------


def test_init_equals_the_references_for_the_same_rng(initialised):
  workload, params, model_state = initialised
  assert model_state is None
  _assert_init_matches_reference('ogbg', params)
  shapes = _flat(workload.param_shapes)
  assert shapes['Dense_0/kernel'] == spec.ShapeTuple((896, 256))
  types = _flat(workload.model_params_types)
  assert set(types) == set(shapes)
  assert types['node_embedding/kernel'] == spec.ParameterType.EMBEDDING
  assert types['edge_embedding/bias'] == spec.ParameterType.BIAS
  assert types['LayerNorm_3/scale'] == spec.ParameterType.LAYER_NORM_SCALE
  assert types['LayerNorm_3/bias'] == spec.ParameterType.LAYER_NORM_BIAS
  assert types['Dense_15/kernel'] == spec.ParameterType.WEIGHT
  assert types['Dense_15/bias'] == spec.ParameterType.BIAS


class _NarrowOgbg(OgbgWorkload):
  """The workload's model_fn on a narrow GNN: compiles in a fraction of the time."""

  def __init__(self):
    super().__init__(synthetic=True)
    self._model = GNN(latent_dim=8, hidden_dims=(8,), num_message_passing_steps=2)


def test_dropout_trains_at_the_default_rate_and_refuses_a_model_state():
  workload = _NarrowOgbg()
  params, _ = workload.init_model_fn(jax.random.PRNGKey(0))
  batch = next(_queue(workload))
  key = jax.random.PRNGKey(5)

  @functools.partial(jax.jit, static_argnums=(0, 2))
  def run(mode, rate, default):
    kwargs = {} if default else {'dropout_rate': rate}
    return workload.model_fn(params, batch, None, mode, key,
                             update_batch_norm=True, **kwargs)[0]

  evaluated = run(spec.ForwardPassMode.EVAL, 0.0, False)
  # The rate is traced: one compile serves every rate.
  np.testing.assert_allclose(run(spec.ForwardPassMode.TRAIN, 0.0, False), evaluated,
                             rtol=1e-5, atol=1e-6)
  dropped = run(spec.ForwardPassMode.TRAIN, 0.1, False)
  assert not np.allclose(dropped, evaluated)
  # No rate given: the reference's 0.1.
  np.testing.assert_array_equal(run(spec.ForwardPassMode.TRAIN, 0.0, True), dropped)
  with pytest.raises(ValueError, match='model_state'):
    workload.model_fn(params, batch, {'batch_stats': jnp.ones(2)},
                      spec.ForwardPassMode.EVAL, key, update_batch_norm=False)


# --- NadamW runs -------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def nadamw():
  space = load_search_space(NADAMW / 'tuning_search_space.json')
  return load_submission(NADAMW), generate_points(space, 1)[0]


@pytest.mark.slow  # ~40 s a variant on 2 CPU cores (compiling the step and the eval).
@pytest.mark.parametrize('name', sorted(CLASSES))
def test_init_two_nadamw_steps_and_a_full_eval(name, nadamw):
  submission, hyperparameters = nadamw
  workload = CLASSES[name](synthetic=True)
  config = runner.TrialConfig(global_batch_size=8, hyperparameters=hyperparameters,
                              rng_seed=0, budget_sec=1e9, max_global_steps=2)
  result = runner.train_once(workload, submission, config)
  assert result.global_step == 2 and result.stop_reason == 'max_global_steps'
  (first_step, first), (last_step, last) = result.eval_results[0], result.eval_results[-1]
  assert (first_step, last_step) == (1, 2)
  for split in ('train', 'validation', 'test'):
    assert math.isfinite(last[f'{split}/loss'])
    assert 0.0 <= last[f'{split}/accuracy'] <= 1.0
    # Random labels: far below the target, so the run does not stop early.
    assert 0.0 < last[f'{split}/mean_average_precision'] < TARGETS[name][0]
  assert last['validation/num_examples'] == 64 and last['test/num_examples'] == 64
  assert last['train/loss'] != first['train/loss']  # It trained.
  if name == 'ogbg_model_size':
    params, _ = workload.init_model_fn(jax.random.PRNGKey(0))
    _assert_init_matches_reference(name, params)
