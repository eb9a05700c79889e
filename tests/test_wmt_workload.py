"""The wmt workloads: facts, loss, batches, model_fn, and a full run per variant.

On synthetic data with a one-layer, narrow model of the same code and a
64-token vocabulary (``model_options``), so a variant inits, takes two
NadamW steps and evaluates (beam search included) in well under a minute on
a CPU. The full-size models are counted in tests/test_wmt_model.py; the
real-data pipeline is tested in tests/test_wmt_data.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algoperf import runner, spec
from algoperf.errors import ConfigError
from algoperf.submission import load_submission
from algoperf.tuning import generate_points, load_search_space
from workloads.wmt import workload as wmt

CLASSES = {
    'wmt': wmt.WmtWorkload,
    'wmt_post_ln': wmt.WmtWorkloadPostLN,
    'wmt_attention_temp': wmt.WmtWorkloadAttentionTemp,
    'wmt_glu_tanh': wmt.WmtWorkloadGLUTanH,
}
SMALL = dict(vocab_size=64, emb_dim=32, num_heads=2, num_layers=1, qkv_dim=32,
             mlp_dim=64)
NADAMW = Path(__file__).resolve().parents[1] / 'submissions' / 'nadamw'
PACKED = ('inputs', 'inputs_position', 'inputs_segmentation', 'targets',
          'targets_position', 'targets_segmentation')


def _small(cls=wmt.WmtWorkload, **options):
  return cls(synthetic=True, model_options=SMALL, **options)


@pytest.fixture(scope='module')
def base():
  workload = _small()
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  batch = next(workload._build_input_queue(jax.random.PRNGKey(1), 'train', None, 2))  # pylint: disable=protected-access
  return workload, params, model_state, batch


@pytest.fixture(scope='module')
def nadamw():
  space = load_search_space(NADAMW / 'tuning_search_space.json')
  return load_submission(NADAMW), generate_points(space, 1)[0]


# --- facts ---------------------------------------------------------------------------


def test_the_facts_are_the_references():
  workload = wmt.WmtWorkload()
  assert workload.target_metric_name == 'bleu'
  assert workload.loss_type == spec.LossType.SOFTMAX_CROSS_ENTROPY
  assert workload.num_train_examples == 5_906_184
  assert workload.num_validation_examples == 3000
  assert workload.num_test_examples == 3003
  assert workload.eval_batch_size == 128
  assert workload.num_eval_train_examples == 3072  # 3000 up to whole batches.
  assert (workload.validation_target_value, workload.test_target_value) == (
      30.8491, 30.7219)
  assert workload.step_hint == 120_000
  assert workload.is_output_params('shared_embedding')
  assert not workload.is_output_params('decoder')
  with pytest.raises(NotImplementedError):
    _ = workload.train_mean
  targets = {name: (cls().validation_target_value, cls().test_target_value)
             for name, cls in CLASSES.items()}
  assert targets == {'wmt': (30.8491, 30.7219), 'wmt_post_ln': (30.0779, 29.8982),
                     'wmt_attention_temp': (29.3379, 29.4143),
                     'wmt_glu_tanh': (29.5779, 29.0515)}
  assert {cls.workload_name for cls in CLASSES.values()} == set(CLASSES)
  assert (workload.beam_size, workload.max_predict_length) == (4, 256)
  synthetic = _small()
  assert synthetic.max_predict_length == 64  # Synthetic sentences: <= 48 tokens.
  assert (synthetic.num_validation_examples, synthetic.num_test_examples,
          synthetic.num_eval_train_examples) == (4, 4, 4)
  assert workload.has_reached_validation_target({'validation/bleu': 31.0})
  assert not workload.has_reached_test_target({'test/bleu': 30.0})


def test_real_data_without_a_folder_is_one_clear_line():
  with pytest.raises(ConfigError, match='algoperf datasets wmt --data_dir'):
    wmt.WmtWorkload().check_data()
  _small().check_data()


# --- loss --------------------------------------------------------------------------------


def test_the_loss_is_summed_token_cross_entropy_with_label_smoothing():
  workload = _small()
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.standard_normal((2, 5, 64)), jnp.float32)
  targets = jnp.asarray(rng.integers(1, 64, (2, 5)), jnp.int32)
  mask = jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], jnp.float32)
  for smoothing in (0.0, 0.1):
    got = workload.loss_fn(targets, logits, mask, label_smoothing=smoothing)
    # The reference's formula: smoothed one-hot against log_softmax.
    soft = optax.smooth_labels(jax.nn.one_hot(targets, 64), smoothing)
    per_token = -jnp.sum(soft * jax.nn.log_softmax(logits), axis=-1)
    np.testing.assert_allclose(got['per_example'], per_token * mask, rtol=1e-5)
    np.testing.assert_allclose(got['summed'], jnp.sum(per_token * mask), rtol=1e-5)
    assert float(got['n_valid_examples']) == 8.0
  unmasked = workload.loss_fn(targets, logits)
  assert float(unmasked['n_valid_examples']) == 10.0
  assert unmasked['per_example'].shape == (2, 5)
  one_hot = workload.loss_fn(jax.nn.one_hot(targets, 64), logits, mask)
  np.testing.assert_allclose(one_hot['summed'],
                             workload.loss_fn(targets, logits, mask)['summed'], rtol=1e-6)
  # The default is no smoothing (the reference's loss_fn passes 0.0 on).
  np.testing.assert_allclose(workload.loss_fn(targets, logits, mask)['summed'],
                             workload.loss_fn(targets, logits, mask, 0.0)['summed'])
  # A NaN under the mask stays out of the sum.
  poisoned = logits.at[0, 4].set(jnp.nan)
  assert math.isfinite(float(workload.loss_fn(targets, poisoned, mask)['summed']))
  traced = jax.jit(lambda s: workload.loss_fn(targets, logits, mask, s)['summed'])
  np.testing.assert_allclose(traced(0.1), workload.loss_fn(targets, logits, mask, 0.1)['summed'],
                             rtol=1e-5)


# --- batches and the model -------------------------------------------------------------------


def test_synthetic_batches_have_the_reference_format_and_seek(base):
  workload, _, _, batch = base
  assert set(batch) == {*PACKED, 'weights'}
  for key in PACKED:
    assert batch[key].shape == (2, 256) and batch[key].dtype == jnp.int32, key
  assert batch['weights'].dtype == jnp.float32
  np.testing.assert_array_equal(batch['weights'], batch['targets'] > 0)
  np.testing.assert_array_equal(batch['targets'], batch['inputs'])  # A copy task.
  assert int(jnp.max(batch['inputs_segmentation'])) > 1  # Packed.
  assert int(jnp.max(batch['inputs'])) < 64  # The small vocabulary.
  queue = workload._build_input_queue  # pylint: disable=protected-access
  again = next(queue(jax.random.PRNGKey(1), 'train', None, 2))
  np.testing.assert_array_equal(again['inputs'], batch['inputs'])
  first = queue(jax.random.PRNGKey(1), 'train', None, 2)
  third = [next(first) for _ in range(3)][2]
  resumed = next(queue(jax.random.PRNGKey(1), 'train', None, 2, start_position=2))
  for key in batch:
    np.testing.assert_array_equal(resumed[key], third[key])
  other = next(queue(jax.random.PRNGKey(2), 'train', None, 2))
  assert not np.array_equal(other['inputs'], batch['inputs'])
  with pytest.raises(ValueError, match='train split'):
    queue(jax.random.PRNGKey(1), 'validation', None, 2)


def test_model_fn_on_packed_batches_dropout_only_in_training(base):
  workload, params, model_state, batch = base
  assert model_state is None
  assert jax.tree.leaves(workload.param_shapes)[0].shape_tuple
  types = workload.model_params_types
  assert types['shared_embedding']['embedding'] == spec.ParameterType.EMBEDDING
  assert (types['encoder']['encoder_layernorm']['scale']
          == spec.ParameterType.LAYER_NORM_SCALE)
  forward = jax.jit(workload.model_fn, static_argnums=(3, 5))
  key = jax.random.PRNGKey(3)
  evaluated, state = forward(params, batch, None, spec.ForwardPassMode.EVAL, None, False)
  assert evaluated.shape == (2, 256, 64) and state is None
  # None means the reference's default rate (0.1); 0 means none.
  dropped, _ = forward(params, batch, None, spec.ForwardPassMode.TRAIN, key, True)
  kept, _ = forward(params, batch, None, spec.ForwardPassMode.TRAIN, key, True,
                    dropout_rate=0.0)
  assert not jnp.allclose(dropped, evaluated, atol=1e-3)
  np.testing.assert_allclose(kept, evaluated, atol=1e-5)
  # The packing matters: without positions and segments the logits differ.
  plain = {k: batch[k] for k in ('inputs', 'targets', 'weights')}
  unpacked, _ = forward(params, plain, None, spec.ForwardPassMode.EVAL, None, False)
  assert not jnp.allclose(unpacked, evaluated, atol=1e-3)


def test_init_uses_the_first_half_of_the_key_as_the_reference(base):
  """Same paths and the same key split: the reference's initial values."""
  workload, params, _, _ = base
  params_rng, _ = jax.random.split(jax.random.PRNGKey(0))
  tokens = jnp.ones((1, 256), jnp.int32)
  model = workload._model  # pylint: disable=protected-access
  direct = jax.jit(model.init)({'params': params_rng}, tokens, tokens)['params']
  same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), params, direct)
  assert all(jax.tree.leaves(same))


# --- eval ------------------------------------------------------------------------------------


class _Perfect(wmt.WmtWorkload):
  """Translates by copying the input, which is the right answer on synthetic data."""

  def translate(self, params, inputs):
    return inputs[:, :self.max_predict_length - 1]


def test_eval_decodes_detokenizes_and_scores_every_pair(base):
  _, params, _, _ = base
  workload = _small(_Perfect)
  results = workload.eval_model(4, params, None, jax.random.PRNGKey(0), None, None, 0)
  assert results['validation/bleu'] == pytest.approx(100.0)
  assert results['test/bleu'] == pytest.approx(100.0)
  assert results['validation/num_examples'] == 4
  assert 0.0 <= results['validation/accuracy'] <= 1.0
  assert math.isfinite(results['train/loss'])
  # Padding rows (3 pairs in batches of 2) are not translations.
  three = workload._eval_model_on_split('validation', 3, 2, params, None, None, None)  # pylint: disable=protected-access
  assert three['bleu'] == pytest.approx(100.0)


@pytest.mark.slow  # 15-40 s a variant on 2 shared CPU cores (compiling the step and beam search).
@pytest.mark.parametrize('name', sorted(CLASSES))
def test_init_two_nadamw_steps_and_a_full_eval(name, nadamw):
  submission, hyperparameters = nadamw
  workload = _small(CLASSES[name])
  config = runner.TrialConfig(global_batch_size=2, hyperparameters=hyperparameters,
                              rng_seed=0, budget_sec=1e9, max_global_steps=2)
  result = runner.train_once(workload, submission, config)
  assert result.global_step == 2 and result.stop_reason == 'max_global_steps'
  (first_step, first), (last_step, last) = result.eval_results[0], result.eval_results[-1]
  assert (first_step, last_step) == (1, 2)
  for split in ('train', 'validation', 'test'):
    assert math.isfinite(last[f'{split}/loss'])
    assert 0.0 <= last[f'{split}/accuracy'] <= 1.0
    assert 0.0 <= last[f'{split}/bleu'] <= 100.0
  assert last['validation/num_examples'] == 4 and last['test/num_examples'] == 4
  assert last['train/loss'] != first['train/loss']  # It trained.
