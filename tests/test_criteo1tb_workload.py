"""The criteo1tb workloads: facts, loss, batches, and two NadamW steps with a full eval.

On synthetic data, with the reference's small test workload (65,536-row
table) and each variant's own code path on a 1,024-row table; the
full-size trees are checked in tests/test_criteo1tb_model.py (never
allocated there), and the full-size step in benchmarks/criteo1tb_step.py.
"""

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf import runner, spec
from algoperf.errors import ConfigError
from algoperf.submission import load_submission
from algoperf.tuning import generate_points, load_search_space
from workloads.criteo1tb import workload as criteo
from workloads.criteo1tb.exact_average import CompensatedAverage

NADAMW = Path(__file__).resolve().parents[1] / 'submissions' / 'nadamw'
VARIANTS = [criteo.Criteo1TbDlrmSmallWorkload, criteo.Criteo1TbDlrmSmallLayerNormWorkload,
            criteo.Criteo1TbDlrmSmallResNetWorkload,
            criteo.Criteo1TbDlrmSmallEmbedInitWorkload]


@pytest.fixture(scope='module')
def nadamw():
  space = load_search_space(NADAMW / 'tuning_search_space.json')
  return load_submission(NADAMW), generate_points(space, 1)[0]


def _train_twice(workload, nadamw):
  submission, hyperparameters = nadamw
  config = runner.TrialConfig(global_batch_size=4, hyperparameters=hyperparameters,
                              rng_seed=0, budget_sec=1e9, max_global_steps=2)
  result = runner.train_once(workload, submission, config)
  assert result.global_step == 2 and result.stop_reason == 'max_global_steps'
  (first_step, first), (last_step, last) = result.eval_results[0], result.eval_results[-1]
  assert (first_step, last_step) == (1, 2)
  for split in ('train', 'validation', 'test'):
    assert math.isfinite(last[f'{split}/loss'])
  assert last['validation/num_examples'] == 8 and last['test/num_examples'] == 8
  assert last['train/loss'] != first['train/loss']  # It trained.


def test_the_test_workload_trains_two_nadamw_steps_and_evaluates(nadamw):
  workload = criteo.Criteo1TbDlrmSmallTestWorkload(synthetic=True)
  assert workload.vocab_size == 65_536
  _train_twice(workload, nadamw)


@pytest.mark.slow  # ~10 s a variant on 2 CPU cores (compiling the step and eval).
@pytest.mark.parametrize('cls', VARIANTS, ids=lambda c: c.workload_name)
def test_each_variant_trains_two_nadamw_steps_on_a_small_table(cls, nadamw):
  workload = cls(synthetic=True, vocab_size=1024)
  assert workload.vocab_size == 1024
  _train_twice(workload, nadamw)


# --- facts ---------------------------------------------------------------------


def test_facts_are_the_references():
  names = {cls.workload_name for cls in VARIANTS}
  assert names == {'criteo1tb', 'criteo1tb_layernorm', 'criteo1tb_resnet',
                   'criteo1tb_embed_init'}
  targets = {'criteo1tb': (0.123735, 0.126041), 'criteo1tb_layernorm': (0.123757, 0.126152),
             'criteo1tb_resnet': (0.12415, 0.12648),
             'criteo1tb_embed_init': (0.129657, 0.131967)}
  for cls in VARIANTS + [criteo.Criteo1TbDlrmSmallTestWorkload]:
    workload = cls(vocab_size=16)  # Construction builds no arrays.
    assert (workload.validation_target_value, workload.test_target_value) == targets.get(
        workload.name, targets['criteo1tb'])
    assert workload.target_metric_name == 'loss'
    assert workload.loss_type == spec.LossType.SIGMOID_CROSS_ENTROPY
    assert workload.num_train_examples == 4_195_197_692
    assert workload.num_validation_examples == 83_274_637
    assert workload.num_test_examples == 95_000_000
    assert workload.eval_batch_size == 131_072
    assert workload.num_eval_train_examples == 636 * 131_072  # Rounded up.
    assert (workload.max_allowed_runtime_sec, workload.step_hint) == (7703, 10666)
    assert workload.is_output_params('Dense_7') and not workload.is_output_params('Dense_6')
  assert criteo.Criteo1TbDlrmSmallTestWorkload().name == 'criteo1tb_test'
  workload = criteo.Criteo1TbDlrmSmallWorkload()
  assert workload.vocab_size == 4_194_304
  assert workload.has_reached_validation_target({'validation/loss': 0.1237})
  assert not workload.has_reached_validation_target({'validation/loss': 0.1238})
  with pytest.raises(NotImplementedError):
    workload.train_mean  # pylint: disable=pointless-statement
  synthetic = criteo.Criteo1TbDlrmSmallWorkload(synthetic=True)
  assert synthetic.num_validation_examples == synthetic.num_eval_train_examples == 8


def test_real_data_is_refused_with_one_clear_line(tmp_path):
  for data_dir in (None, str(tmp_path)):
    workload = criteo.Criteo1TbDlrmSmallWorkload(data_dir=data_dir)
    with pytest.raises(ConfigError, match='algoperf datasets criteo1tb') as raised:
      workload.check_data()
    assert '\n' not in str(raised.value)
  criteo.Criteo1TbDlrmSmallWorkload(synthetic=True).check_data()


# --- model interface ---------------------------------------------------------------


@pytest.fixture(scope='module')
def small():
  workload = criteo.Criteo1TbDlrmSmallLayerNormWorkload(synthetic=True, vocab_size=64)
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  return workload, params, model_state


def test_init_gives_params_types_and_no_model_state(small):
  workload, params, model_state = small
  assert model_state is None
  types = workload.model_params_types
  assert jax.tree.structure(types) == jax.tree.structure(params)
  assert types['embedding_table'] == spec.ParameterType.EMBEDDING
  assert types['Dense_7']['kernel'] == spec.ParameterType.WEIGHT
  assert types['Dense_7']['bias'] == spec.ParameterType.BIAS
  assert types['LayerNorm_0']['scale'] == spec.ParameterType.LAYER_NORM_SCALE
  assert workload.param_shapes['embedding_table'] == spec.ShapeTuple((64, 128))


def test_the_reference_pipelines_batch_format_is_accepted(small):
  workload, params, model_state = small
  batch = next(workload._build_input_queue(jax.random.PRNGKey(0), 'train', None, 4))  # pylint: disable=protected-access
  assert batch['inputs'].shape == (4, 39) and batch['inputs'].dtype == np.float32
  assert batch['targets'].shape == (4,) and batch['targets'].dtype == np.float32
  assert batch['weights'].shape == (4,)
  assert set(np.unique(np.asarray(batch['targets']))) <= {0.0, 1.0}
  # The reference's train batches: inputs and targets only, no weights.
  reference_batch = {'inputs': batch['inputs'], 'targets': batch['targets']}

  @jax.jit
  def step(params, batch, rng):  # As the reference's baselines call them.
    logits, state = workload.model_fn(params, batch, model_state,
                                      spec.ForwardPassMode.TRAIN, rng,
                                      update_batch_norm=True, dropout_rate=0.1)
    losses = workload.loss_fn(label_batch=batch['targets'], logits_batch=logits,
                              mask_batch=batch.get('weights'))
    return logits, state, losses

  logits, state, losses = step(params, reference_batch, jax.random.PRNGKey(1))
  assert logits.shape == (4, 1) and state is None
  assert losses['n_valid_examples'] == 4 and losses['per_example'].shape == (4,)
  assert math.isfinite(float(losses['summed']))


def test_the_loss_is_sigmoid_cross_entropy_and_ignores_label_smoothing(small):
  workload = small[0]
  logits = jnp.array([[2.0], [-1.0], [0.5], [30.0]])
  labels = jnp.array([1.0, 0.0, 1.0, 0.0])
  z, y = np.asarray(logits[:, 0], np.float64), np.asarray(labels, np.float64)
  want = np.logaddexp(0, z) - y * z  # -y log(sigmoid z) - (1 - y) log(1 - sigmoid z)
  losses = workload.loss_fn(labels, logits)
  np.testing.assert_allclose(losses['per_example'], want, rtol=1e-5)
  assert losses['n_valid_examples'] == 4
  masked = workload.loss_fn(labels[:, None], logits, jnp.array([1.0, 1.0, 0.0, 0.0]),
                            label_smoothing=0.2)
  np.testing.assert_allclose(masked['summed'], want[:2].sum(), rtol=1e-5)
  assert float(masked['n_valid_examples']) == 2.0
  np.testing.assert_array_equal(masked['per_example'][2:], 0.0)


def test_synthetic_batches_are_a_function_of_seed_and_index():
  workload = criteo.Criteo1TbDlrmSmallTestWorkload(synthetic=True)
  rng = jax.random.PRNGKey(3)
  queue = workload._build_input_queue(rng, 'train', None, 2)  # pylint: disable=protected-access
  stream = [next(queue) for _ in range(3)]
  resumed = next(workload._build_input_queue(rng, 'train', None, 2, start_position=2))  # pylint: disable=protected-access
  np.testing.assert_array_equal(np.asarray(resumed['inputs']),
                                np.asarray(stream[2]['inputs']))
  assert not np.array_equal(np.asarray(stream[0]['inputs']), np.asarray(stream[1]['inputs']))
  ids = np.asarray(stream[0]['inputs'])[:, 13:]
  assert np.all(ids == np.floor(ids)) and np.all(ids < np.array(criteo.data.VOCAB_SIZES))
  with pytest.raises(ValueError, match='train split'):
    workload._build_input_queue(rng, 'validation', None, 2)  # pylint: disable=protected-access


def test_the_eval_mean_is_exact_over_many_batches():
  # 700 batch sums like a validation pass: float32 running sums would drift.
  rng = np.random.default_rng(0)
  sums = rng.uniform(15_000, 17_000, 700).astype(np.float32)
  counts = np.full(700, 131_071, np.float32)
  state = CompensatedAverage.from_sum(sums[0], counts[0])
  for total, count in zip(sums[1:], counts[1:]):
    state = state.merge(CompensatedAverage.from_sum(total, count))
  want = sums.astype(np.float64).sum() / counts.astype(np.float64).sum()
  assert abs(state.compute() - want) <= 1e-12 * want
  with pytest.raises(ValueError, match='no examples'):
    CompensatedAverage.from_sum(0.0, 0.0).compute()
