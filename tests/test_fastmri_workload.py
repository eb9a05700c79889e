"""The fastmri workload and variants: facts, loss, batches, eval, and training.

The slow tests run init, two NadamW steps and a full eval per variant on
synthetic data at 32x32 (the same model code: the U-Net is fully
convolutional). The fast ones avoid the real init (it compiles a random draw
per leaf, tens of seconds on a CPU) with kernels drawn by numpy.
"""

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from algoperf import runner, spec
from algoperf.errors import ConfigError
from algoperf.submission import load_submission
from algoperf.tuning import generate_points, load_search_space
from workloads.fastmri import workload as fastmri

CLASSES = [fastmri.FastMRIWorkload, fastmri.FastMRIModelSizeWorkload,
           fastmri.FastMRITanhWorkload, fastmri.FastMRILayerNormWorkload]
NADAMW = Path(__file__).resolve().parents[1] / 'submissions' / 'nadamw'
TARGETS = {'fastmri': (0.723653, 0.740633), 'fastmri_model_size': (0.723559, 0.740726),
           'fastmri_tanh': (0.717840, 0.734505), 'fastmri_layernorm': (0.723284, 0.739996)}
BATCH_KEYS = {'inputs', 'targets', 'mean', 'std', 'volume_max'}


def _cheap_params(workload, size=32):
  """The workload's parameter tree with numpy-drawn kernels (no slow init)."""
  model = workload._model  # pylint: disable=protected-access
  shapes = jax.eval_shape(lambda k: model.init({'params': k}, jnp.zeros((1, size, size)),
                                               train=False), jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  flat = {}
  for path, leaf in traverse_util.flatten_dict(shapes['params']).items():
    if path[-1] == 'kernel':
      value = rng.standard_normal(leaf.shape) / math.sqrt(math.prod(leaf.shape[:-1]))
    else:
      value = np.ones(leaf.shape) if path[-1] == 'scale' else np.zeros(leaf.shape)
    flat[path] = jnp.asarray(value, jnp.float32)
  return traverse_util.unflatten_dict(flat)


# --- facts -------------------------------------------------------------------------


@pytest.mark.parametrize('cls', CLASSES)
def test_facts_are_the_references(cls):
  workload = cls()
  name = workload.workload_name
  assert workload.name == name
  assert (workload.validation_target_value, workload.test_target_value) == TARGETS[name]
  assert workload.target_metric_name == 'ssim'
  assert workload.loss_type == spec.LossType.MEAN_ABSOLUTE_ERROR
  assert workload.num_train_examples == 34_742
  assert workload.num_validation_examples == 3_554
  assert workload.num_test_examples == 3_581
  assert workload.num_eval_train_examples == 3_584  # 3,554 rounded up to 256s.
  assert workload.eval_batch_size == 256
  assert workload.step_hint == 18_094 and workload.max_allowed_runtime_sec == 4_430
  assert workload.eval_period_time_sec == 80
  assert workload.center_fractions == (0.08,) and workload.accelerations == (4,)
  assert workload.is_output_params('Conv_0') and not workload.is_output_params('ConvBlock_0')
  assert workload.has_reached_validation_target({'validation/ssim': 0.75})
  assert not workload.has_reached_test_target({'test/ssim': 0.7})
  with pytest.raises(NotImplementedError, match='own'):
    _ = workload.train_mean
  with pytest.raises(NotImplementedError):
    _ = workload.train_stddev


def test_the_variants_change_one_thing_each():
  got = {cls.workload_name: (w.num_channels, w.num_pool_layers, w.use_tanh, w.use_layer_norm)
         for cls in CLASSES for w in [cls()]}
  assert got == {'fastmri': (32, 4, False, False), 'fastmri_model_size': (64, 3, False, False),
                 'fastmri_tanh': (32, 4, True, False), 'fastmri_layernorm': (32, 4, False, True)}


# --- loss ----------------------------------------------------------------------------


def test_loss_is_the_mean_absolute_error_of_each_slice():
  workload = fastmri.FastMRIWorkload(synthetic=True)
  targets = jnp.zeros((3, 4, 4))
  outputs = jnp.stack([jnp.full((4, 4), 1.0), jnp.full((4, 4), -2.0),
                       jnp.full((4, 4), jnp.nan)])
  losses = workload.loss_fn(targets, outputs, jnp.array([1.0, 1.0, 0.0]))
  np.testing.assert_allclose(losses['per_example'], [1.0, 2.0, 0.0])
  assert float(losses['summed']) == 3.0 and float(losses['n_valid_examples']) == 2.0
  plain = workload.loss_fn(targets[:2], outputs[:2], label_smoothing=0.3)  # Ignored.
  assert float(plain['summed']) == 3.0 and plain['n_valid_examples'] == 2
  assert workload.output_activation_fn(outputs, 'jax') is outputs


# --- batches ---------------------------------------------------------------------------


def test_synthetic_batches_have_the_reference_format_and_seek():
  workload = fastmri.FastMRIWorkload(synthetic=True)
  rng = jax.random.PRNGKey(3)
  stream = workload._build_input_queue(rng, 'train', None, 2)  # pylint: disable=protected-access
  batches = [next(stream) for _ in range(3)]
  first = batches[0]
  assert set(first) == BATCH_KEYS  # As the reference's train batches: no weights.
  assert first['inputs'].shape == first['targets'].shape == (2, 320, 320)
  for key in BATCH_KEYS:
    assert first[key].dtype == np.float32, key
  for key in ('mean', 'std', 'volume_max'):
    assert first[key].shape == (2,) and float(jnp.min(first[key])) > 0
  assert float(jnp.max(jnp.abs(first['inputs']))) <= 6.0
  resumed = workload._build_input_queue(rng, 'train', None, 2, start_position=2)  # pylint: disable=protected-access
  got = next(resumed)
  for key in BATCH_KEYS:
    np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(batches[2][key]))
  other = next(workload._build_input_queue(jax.random.PRNGKey(4), 'train', None, 2))  # pylint: disable=protected-access
  assert not np.array_equal(np.asarray(other['inputs']), np.asarray(first['inputs']))
  with pytest.raises(ValueError, match='train split'):
    workload._build_input_queue(rng, 'validation', None, 2)  # pylint: disable=protected-access


def test_synthetic_eval_batches_pad_like_the_real_ones():
  workload = fastmri.FastMRIWorkload(synthetic=True, image_size=8)
  batches = list(workload._synthetic_eval_batches('validation', 5, 4))  # pylint: disable=protected-access
  assert [b['weights'].tolist() for b in batches] == [[1, 1, 1, 1], [1, 0, 0, 0]]
  assert set(batches[0]) == BATCH_KEYS | {'weights'}
  for key in BATCH_KEYS:
    assert not batches[1][key][1:].any(), key
  again = list(workload._synthetic_eval_batches('validation', 5, 4))  # pylint: disable=protected-access
  np.testing.assert_array_equal(again[0]['inputs'], batches[0]['inputs'])


# --- model_fn and eval ---------------------------------------------------------------------


def _reference_eval_batch(size=32):
  """An eval batch as the reference pipeline yields it: numpy, 3 real rows
  padded with zeros to 4 by ``shard_and_maybe_pad_np``, float64 weights."""
  rng = np.random.default_rng(0)
  real = {
      'inputs': rng.standard_normal((3, size, size)).astype(np.float32),
      'targets': rng.standard_normal((3, size, size)).astype(np.float32),
      'mean': np.float32([3e-5, 4e-5, 5e-5]),
      'std': np.float32([1e-5, 2e-5, 1e-5]),
      'volume_max': np.float32([2e-4, 3e-4, 1e-4]),
  }
  batch = {k: np.concatenate([v, np.zeros((1, *v.shape[1:]), v.dtype)]) for k, v in real.items()}
  batch['weights'] = np.array([1.0, 1.0, 1.0, 0.0])
  return batch


def test_model_fn_takes_the_reference_batch_format():
  workload = fastmri.FastMRIWorkload(synthetic=True, image_size=32)
  params = _cheap_params(workload)
  batch = _reference_eval_batch()
  outputs, state = workload.model_fn(params, batch, None, spec.ForwardPassMode.EVAL,
                                     None, False)
  assert state is None and outputs.shape == (4, 32, 32) and outputs.dtype == jnp.float32
  # dropout_rate is the seventh positional parameter, as in the reference,
  # and, as in the reference's JAX workload, it changes nothing.
  trained, _ = workload.model_fn(params, batch, None, spec.ForwardPassMode.TRAIN,
                                 jax.random.PRNGKey(0), True, 0.5)
  np.testing.assert_allclose(trained, outputs, atol=1e-6)
  again, _ = workload.model_fn(params, batch, None, spec.ForwardPassMode.TRAIN,
                               jax.random.PRNGKey(1), True, dropout_rate=0.0)
  np.testing.assert_allclose(again, outputs, atol=1e-6)
  # The eval step: SSIM and loss states, padding row left out.
  states = jax.jit(lambda p, b: fastmri.eval_states(workload, p, None, b))(params, batch)
  assert float(states['ssim'].count) == 3.0 and float(states['loss'].count) == 3.0
  losses = workload.loss_fn(batch['targets'][:3], outputs[:3])
  assert states['loss'].compute() == pytest.approx(float(losses['summed']) / 3, rel=1e-5)
  assert -1.0 <= states['ssim'].compute() <= 1.0


def test_real_data_is_refused_with_one_clear_line():
  workload = fastmri.FastMRIWorkload()
  with pytest.raises(ConfigError, match='--synthetic_data') as raised:
    workload.check_data()
  assert '\n' not in str(raised.value)
  fastmri.FastMRIWorkload(synthetic=True).check_data()


# --- training --------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def nadamw():
  space = load_search_space(NADAMW / 'tuning_search_space.json')
  return load_submission(NADAMW), generate_points(space, 1)[0]


@pytest.mark.slow  # ~75 s a variant on 2 busy CPU cores, most of it compiling.
@pytest.mark.parametrize('cls', CLASSES)
def test_init_two_nadamw_steps_and_a_full_eval(cls, nadamw):
  submission, hyperparameters = nadamw
  workload = cls(synthetic=True, image_size=32)
  config = runner.TrialConfig(global_batch_size=2, hyperparameters=hyperparameters,
                              rng_seed=0, budget_sec=1e9, max_global_steps=2)
  result = runner.train_once(workload, submission, config)
  assert result.global_step == 2 and result.stop_reason == 'max_global_steps'
  (first_step, first), (last_step, last) = result.eval_results[0], result.eval_results[-1]
  assert (first_step, last_step) == (1, 2)
  for split in ('train', 'validation', 'test'):
    assert math.isfinite(last[f'{split}/loss'])
    assert -1.0 <= last[f'{split}/ssim'] <= 1.0
  assert last['validation/num_examples'] == 8 and last['test/num_examples'] == 8
  assert last['train/loss'] != first['train/loss']  # It trained.
  params = workload.param_shapes
  count = sum(math.prod(s.shape_tuple) for s in jax.tree.leaves(params))
  assert count == {'fastmri': 7_756_097, 'fastmri_model_size': 7_692_929,
                   'fastmri_tanh': 7_756_097, 'fastmri_layernorm': 7_761_985}[cls.workload_name]
  assert jax.tree.structure(workload.model_params_types) == jax.tree.structure(params)
