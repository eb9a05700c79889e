"""The LibriSpeech workloads and variants: facts, batches, loss, model state, eval.

The end-to-end tests (init, two steps of the bundled NadamW, a full eval with
decoding, per workload and variant) use synthetic data at a small size of the
same code: 1 s of audio and a model of width 16 with one layer; they are
marked slow (each compiles a training and an eval step). The full-size
models are counted in tests/test_librispeech_model.py.
"""

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
from workloads import librispeech
from workloads.librispeech_conformer import workload as conformer
from workloads.librispeech_deepspeech import workload as deepspeech

CLASSES = {
    'librispeech_conformer': conformer.LibriSpeechConformerWorkload,
    'librispeech_conformer_attention_temperature':
        conformer.LibriSpeechConformerAttentionTemperatureWorkload,
    'librispeech_conformer_layernorm': conformer.LibriSpeechConformerLayerNormWorkload,
    'librispeech_conformer_gelu': conformer.LibriSpeechConformerGeluWorkload,
    'librispeech_deepspeech': deepspeech.LibriSpeechDeepSpeechWorkload,
    'librispeech_deepspeech_tanh': deepspeech.LibriSpeechDeepSpeechTanhWorkload,
    'librispeech_deepspeech_no_resnet': deepspeech.LibriSpeechDeepSpeechNoResNetWorkload,
    'librispeech_deepspeech_norm_and_spec_aug':
        deepspeech.LibriSpeechDeepSpeechNormAndSpecAugWorkload,
}
SMALL_AUDIO = 16_000
NADAMW = Path(__file__).resolve().parents[1] / 'submissions' / 'nadamw'


def _small(name, **kwargs):
  """Workload ``name`` with a width-16, one-layer model on 1 s of audio."""
  if name.startswith('librispeech_conformer'):
    options = dict(encoder_dim=16, num_attention_heads=2, num_encoder_layers=1)
  else:
    options = dict(encoder_dim=16, num_lstm_layers=1, num_ffn_layers=1)
  return CLASSES[name](synthetic=True, audio_length=SMALL_AUDIO, model_options=options,
                       **kwargs)


@pytest.fixture(scope='module')
def nadamw():
  space = load_search_space(NADAMW / 'tuning_search_space.json')
  return load_submission(NADAMW), generate_points(space, 1)[0]


# --- facts ---------------------------------------------------------------------------


@pytest.mark.parametrize('name', sorted(CLASSES))
def test_facts(name):
  workload = CLASSES[name]()
  assert workload.workload_name == name and workload.target_metric_name == 'wer'
  assert workload.loss_type == spec.LossType.CTC_LOSS
  assert workload.num_train_examples == 263_840
  assert workload.num_validation_examples == 5_348
  assert workload.num_test_examples == 2_472
  # Validation rounded up to whole eval batches, as the reference.
  expected_batch = 128 if name.endswith('norm_and_spec_aug') else 256
  assert workload.eval_batch_size == expected_batch
  assert workload.num_eval_train_examples == math.ceil(5_348 / expected_batch) * expected_batch
  assert workload.is_output_params('Dense_0') and not workload.is_output_params('LayerNorm_0')
  base = 'librispeech_conformer' if 'conformer' in name else 'librispeech_deepspeech'
  assert workload.step_hint == (76_000 if base == 'librispeech_conformer' else 38_400)
  assert workload.has_reached_validation_target({'validation/wer': 0.01})
  assert not workload.has_reached_validation_target({'validation/wer': 0.5})
  with pytest.raises(NotImplementedError):
    _ = workload.train_mean
  synthetic = CLASSES[name](synthetic=True)
  assert synthetic.num_validation_examples == synthetic.num_test_examples == 4


def test_reference_targets():
  assert CLASSES['librispeech_conformer']().validation_target_value == 0.085884
  assert CLASSES['librispeech_deepspeech']().test_target_value == 0.074143
  assert CLASSES['librispeech_deepspeech_norm_and_spec_aug']().validation_target_value == 0.14342


def test_parameter_types_are_the_references():
  workload = CLASSES['librispeech_conformer']()
  x = jnp.zeros((2, 320_000))
  params = jax.eval_shape(lambda: workload._model.init(  # pylint: disable=protected-access
      {'params': jax.random.PRNGKey(0)}, x, x, train=False))['params']
  types = librispeech.librispeech_param_types(params)
  block = types['ConformerBlock_0']
  attention = block['MultiHeadedSelfAttention_0']['MultiHeadDotProductAttention_0']
  assert attention['query']['kernel'] == spec.ParameterType.ATTENTION_Q
  assert attention['out']['kernel'] == spec.ParameterType.ATTENTION_OUT
  assert attention['key']['bias'] == spec.ParameterType.ATTENTION_BIAS
  assert attention['QueryScaler_0']['scale'] == spec.ParameterType.WEIGHT
  assert block['MultiHeadedSelfAttention_0']['LayerNorm_0']['scale'] == (
      spec.ParameterType.LAYER_NORM_SCALE)
  conv = block['ConvolutionBlock_0']
  assert conv['Dense_0']['kernel'] == spec.ParameterType.CONV_WEIGHT  # As the reference.
  assert conv['BatchNorm_0']['scale'] == spec.ParameterType.BATCH_NORM_SCALE
  assert types['Subsample_0']['Conv2dSubsampling_0']['kernel'] == spec.ParameterType.CONV_WEIGHT
  assert types['Dense_0']['kernel'] == spec.ParameterType.WEIGHT
  assert types['Dense_0']['bias'] == spec.ParameterType.BIAS


# --- batches -------------------------------------------------------------------------


def test_synthetic_batches_have_the_reference_format_and_are_seekable():
  workload = CLASSES['librispeech_deepspeech'](synthetic=True)
  queue = workload._build_input_queue(jax.random.PRNGKey(3), 'train', None, 2)  # pylint: disable=protected-access
  first, second = next(queue), next(queue)
  assert set(first) == {'inputs', 'targets'}
  audio, audio_paddings = first['inputs']
  targets, target_paddings = first['targets']
  assert audio.shape == audio_paddings.shape == (2, 320_000)
  assert targets.shape == target_paddings.shape == (2, 256)
  assert {x.dtype for x in (audio, audio_paddings, targets, target_paddings)} == {
      np.dtype(np.float32)}
  for row in range(2):
    length = int(jnp.sum(1 - audio_paddings[row]))
    assert 80_000 <= length <= 320_000 and not bool(jnp.any(audio[row, length:]))
    tokens = int(jnp.sum(1 - target_paddings[row]))
    assert targets[row, tokens - 1] == 2 and bool(jnp.all(targets[row, :tokens - 1] >= 3))
  resumed = workload._build_input_queue(jax.random.PRNGKey(3), 'train', None, 2,  # pylint: disable=protected-access
                                        start_position=1)
  np.testing.assert_array_equal(next(resumed)['inputs'][0], second['inputs'][0])
  other = workload._build_input_queue(jax.random.PRNGKey(4), 'train', None, 2)  # pylint: disable=protected-access
  assert not np.array_equal(next(other)['inputs'][0], audio)


# --- loss ----------------------------------------------------------------------------


def test_loss_is_summed_per_utterance_and_counted_in_target_tokens():
  workload = CLASSES['librispeech_conformer'](synthetic=True)
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.standard_normal((3, 10, 6)), jnp.float32)
  logit_paddings = jnp.zeros((3, 10)).at[2, 7:].set(1.0)
  targets = jnp.asarray([[1, 2, 3, 0], [4, 4, 0, 0], [5, 1, 2, 3]], jnp.float32)
  target_paddings = jnp.asarray([[0, 0, 0, 1], [0, 0, 1, 1], [0, 0, 0, 0]], jnp.float32)
  out = workload.loss_fn((targets, target_paddings), (logits, logit_paddings))
  expected = optax.ctc_loss(jax.nn.log_softmax(logits), logit_paddings,
                            targets.astype(jnp.int32), target_paddings)
  np.testing.assert_allclose(out['per_example'], expected, rtol=1e-6)
  np.testing.assert_allclose(out['summed'], jnp.sum(expected), rtol=1e-6)
  assert float(out['n_valid_examples']) == 3 + 2 + 4  # Target tokens.
  masked = workload.loss_fn((targets, target_paddings), (logits, logit_paddings),
                            mask_batch=jnp.array([1.0, 0.0, 1.0]), label_smoothing=0.1)
  np.testing.assert_allclose(masked['per_example'], expected * jnp.array([1, 0, 1]),
                             rtol=1e-6)
  assert float(masked['n_valid_examples']) == 3 + 4


# --- data and tokenizer checks ------------------------------------------------------------


def _write_lists(folder):
  for split in ('train-clean-100', 'train-clean-360', 'train-other-500', 'dev-clean',
                'dev-other', 'test-clean'):
    (folder / f'{split}.csv').write_text(',id\n0,1-2-0000\n')


@pytest.mark.parametrize('name', ['librispeech_conformer', 'librispeech_deepspeech'])
def test_a_missing_tokenizer_fails_at_start_in_one_line(name, tmp_path):
  _write_lists(tmp_path)
  workload = CLASSES[name](data_dir=str(tmp_path))
  with pytest.raises(ConfigError) as error:
    workload.check_data()
  message = str(error.value)
  assert '\n' not in message and 'spm_model.vocab' in message
  assert f'algoperf datasets librispeech --data_dir {tmp_path}' in message
  # Nor does an eval go on without it (no word error rate of 0).
  with pytest.raises(ConfigError):
    workload._eval_model_on_split('validation', 1, 1, None, None, None, str(tmp_path))  # pylint: disable=protected-access
  named = CLASSES[name](data_dir=str(tmp_path), tokenizer_vocab_path=str(tmp_path / 'no.model'))
  with pytest.raises(ConfigError, match='no.model'):
    named.check_data()


def test_missing_data_fails_at_start_in_one_line(tmp_path):
  for workload in (CLASSES['librispeech_conformer'](),
                   CLASSES['librispeech_conformer'](data_dir=str(tmp_path))):
    with pytest.raises(ConfigError) as error:
      workload.check_data()
    assert '\n' not in str(error.value) and '--synthetic_data' in str(error.value)
  CLASSES['librispeech_conformer'](synthetic=True).check_data()  # Needs nothing.


# --- model_fn --------------------------------------------------------------------------


def _reference_style_batch(batch, lengths, ids):
  """What the reference's LibriSpeechDataset and loader produce: float32 pairs."""
  audio = np.zeros((batch, SMALL_AUDIO), np.float32)
  audio_paddings = np.ones((batch, SMALL_AUDIO), np.float32)
  targets = np.zeros((batch, 256), np.float32)
  target_paddings = np.ones((batch, 256), np.float32)
  rng = np.random.default_rng(1)
  for i, (length, row_ids) in enumerate(zip(lengths, ids)):
    audio[i, :length] = np.rint(rng.standard_normal(length) * 3000)
    audio_paddings[i, :length] = 0
    targets[i, :len(row_ids)] = row_ids
    target_paddings[i, :len(row_ids)] = 0
  return {'inputs': (audio, audio_paddings), 'targets': (targets, target_paddings)}


@pytest.mark.parametrize('name', ['librispeech_conformer', 'librispeech_deepspeech'])
def test_model_fn_takes_the_reference_batch_and_keeps_batch_norm_state(name):
  workload = _small(name)
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  assert set(model_state) == {'batch_stats'}
  assert workload.param_shapes['Dense_0']['kernel'].shape_tuple == (16, 1024)
  batch = _reference_style_batch(2, [16_000, 9_000], [[5, 6, 7, 2], [9, 2]])

  @jax.jit
  def run(params, model_state, batch, rng):
    train, new_state = workload.model_fn(params, batch, model_state,
                                         spec.ForwardPassMode.TRAIN, rng,
                                         update_batch_norm=True, dropout_rate=0.1)
    evaluated, same = workload.model_fn(params, batch, model_state,
                                        spec.ForwardPassMode.EVAL, None,
                                        update_batch_norm=False)
    loss = workload.loss_fn(batch['targets'], train, batch.get('weights'))
    return train, new_state, evaluated, same, loss

  (logits, logit_paddings), new_state, evaluated, same, loss = run(
      params, model_state, batch, jax.random.PRNGKey(1))
  assert logits.shape == (2, 25, 1024) and logit_paddings.shape == (2, 25)
  assert jax.tree.structure(new_state) == jax.tree.structure(model_state)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), model_state, new_state)
  assert all(jax.tree.leaves(changed))
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)),
                                          model_state, same)))
  assert float(loss['n_valid_examples']) == 6
  assert math.isfinite(float(loss['summed'] / loss['n_valid_examples']))
  assert not np.allclose(evaluated[0], logits)
  with pytest.raises(ValueError, match='needs an rng'):
    workload.model_fn(params, batch, model_state, spec.ForwardPassMode.TRAIN, None,
                      update_batch_norm=True)


# --- end to end ---------------------------------------------------------------------------


@pytest.mark.slow  # ~20-40 s a variant on 2 busy CPU cores (two compiles).
@pytest.mark.parametrize('name', sorted(CLASSES))
def test_init_two_nadamw_steps_and_a_full_eval(name, nadamw):
  submission, hyperparameters = nadamw
  workload = _small(name)
  config = runner.TrialConfig(global_batch_size=2, hyperparameters=hyperparameters,
                              rng_seed=0, budget_sec=1e9, max_global_steps=2)
  result = runner.train_once(workload, submission, config)
  assert result.global_step == 2 and result.stop_reason == 'max_global_steps'
  (first_step, first), (last_step, last) = result.eval_results[0], result.eval_results[-1]
  assert (first_step, last_step) == (1, 2)
  for split in ('train', 'validation', 'test'):
    assert math.isfinite(last[f'{split}/ctc_loss']) and last[f'{split}/ctc_loss'] > 0
    assert math.isfinite(last[f'{split}/wer']) and last[f'{split}/wer'] >= 0
  assert last['validation/num_examples'] == 4 and last['test/num_examples'] == 4
  assert last['train/ctc_loss'] != first['train/ctc_loss']  # It trained.


@pytest.mark.slow  # Two eval compiles.
def test_eval_counts_each_utterance_once_whatever_the_batch_size():
  workload = _small('librispeech_deepspeech_norm_and_spec_aug')
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  assert model_state == {}
  # 3 utterances in batches of 2 (one padding row) and in one batch of 3.
  padded = workload._eval_model_on_split('validation', 3, 2, params, model_state, None, None)  # pylint: disable=protected-access
  whole = workload._eval_model_on_split('validation', 3, 3, params, model_state, None, None)  # pylint: disable=protected-access
  assert set(padded) == {'ctc_loss', 'wer'}
  for key in padded:
    assert padded[key] == pytest.approx(whole[key], rel=1e-5)
