"""Fast tests of the LibriSpeech models: trees, frontend, SpecAugment, LSTM, batch norm.

tests/data/librispeech_*_params.txt list every parameter and batch-norm
statistic (path and shape) of the AlgoPerf JAX reference models, taken with
``jax.eval_shape``; submissions key on these paths, so the trees here must
equal them. (Outside this repo the models were also checked against the
reference's: the same initial values for the same key, and logits equal to
float rounding in eval and in training mode with the same rngs.)

Values are tested at small sizes of the same code (``encoder_dim`` 16-32,
one layer, 1 s of audio, variables filled without compiling an init), so the
file stays quick; every variant runs whole in tests/test_librispeech_workload.py.
"""

import functools
import math
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from workloads.librispeech_conformer import frontend
from workloads.librispeech_conformer import model as conformer
from workloads.librispeech_conformer.layers import (Conv2dSubsampling, LayerNorm,
                                                    MaskedBatchNorm)
from workloads.librispeech_conformer.spec_augment import SpecAug
from workloads.librispeech_deepspeech import lstm
from workloads.librispeech_deepspeech import model as deepspeech

DATA = Path(__file__).parent / 'data'
FULL = (2, 320_000)
SMALL_AUDIO = 16_000  # 1 s: 98 frames, 25 after subsampling.
SMALL_CONFORMER = dict(encoder_dim=16, num_attention_heads=2, num_encoder_layers=1)
SMALL_DEEPSPEECH = dict(encoder_dim=16, num_lstm_layers=1, num_ffn_layers=1)

# name -> (model class, listing, parameters, leaves, statistics, statistic leaves)
EXPECTED = {
    'librispeech_conformer': (conformer.Conformer, 'librispeech_conformer',
                              32_321_792, 154, 4_096, 8),
    'librispeech_conformer_attention_temperature': (
        conformer.Conformer, 'librispeech_conformer', 32_321_792, 154, 4_096, 8),
    'librispeech_conformer_gelu': (conformer.Conformer, 'librispeech_conformer',
                                   32_321_792, 154, 4_096, 8),
    'librispeech_conformer_layernorm': (
        conformer.Conformer, 'librispeech_conformer_layernorm', 32_317_696, 146, 4_096, 8),
    'librispeech_deepspeech': (deepspeech.Deepspeech, 'librispeech_deepspeech',
                               18_381_312, 178, 9_216, 18),
    'librispeech_deepspeech_tanh': (deepspeech.Deepspeech, 'librispeech_deepspeech',
                                    18_381_312, 178, 9_216, 18),
    'librispeech_deepspeech_no_resnet': (deepspeech.Deepspeech, 'librispeech_deepspeech',
                                         18_381_312, 178, 9_216, 18),
    'librispeech_deepspeech_norm_and_spec_aug': (
        deepspeech.Deepspeech, 'librispeech_deepspeech_norm_and_spec_aug',
        18_380_288, 176, 0, 0),
}


def _flat(tree):
  return {'/'.join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def _options(name):
  module = conformer if name.startswith('librispeech_conformer') else deepspeech
  return module.variant_options(name)


def _listing(name):
  lines = (DATA / f'{name}_params.txt').read_text().splitlines()
  entries = [line.split(' ', 1) for line in lines if line and not line.startswith('#')]
  return {path: tuple(int(n) for n in shape.strip('[]').split(', '))
          for path, shape in entries}


def _audio(batch=2, length=SMALL_AUDIO, seed=0):
  rng = np.random.default_rng(seed)
  audio = np.rint(rng.standard_normal((batch, length)) * 3000).astype(np.float32)
  paddings = np.zeros((batch, length), np.float32)
  paddings[1:, int(length * 0.6):] = 1.0  # The second utterance is shorter.
  audio *= 1.0 - paddings
  return jnp.asarray(audio), jnp.asarray(paddings)


def _variables(model, audio, paddings):
  """Initial-like variables without compiling an init: shapes from
  ``eval_shape``, kernels drawn by numpy at the LeCun scale, scales and
  biases 0 and running statistics (0, 1) as the models start."""
  shapes = jax.eval_shape(lambda: model.init({'params': jax.random.PRNGKey(0)}, audio,
                                             paddings, train=False))
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      fan_in = math.prod(leaf.shape[:-1])
      return jnp.asarray(rng.standard_normal(leaf.shape, np.float32) / math.sqrt(fan_in))
    return jnp.full(leaf.shape, 1.0 if name == 'var' else 0.0, jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.lru_cache(maxsize=None)
def _small(kind):
  """A small model of ``kind`` and variables for it."""
  if kind == 'conformer':
    model = conformer.Conformer(**SMALL_CONFORMER)
  else:
    model = deepspeech.Deepspeech(**SMALL_DEEPSPEECH)
  return model, _variables(model, *_audio())


# --- trees (no values) ---------------------------------------------------------------


def test_variant_options():
  assert conformer.variant_options('librispeech_conformer') == {}
  assert conformer.variant_options('librispeech_conformer_attention_temperature') == {
      'attention_temperature': 1.6}
  assert conformer.variant_options('librispeech_conformer_layernorm') == {
      'use_post_layer_norm': False}
  assert conformer.variant_options('librispeech_conformer_gelu') == {'activation': 'gelu'}
  assert deepspeech.variant_options('librispeech_deepspeech_tanh') == {'activation': 'tanh'}
  assert deepspeech.variant_options('librispeech_deepspeech_no_resnet') == {
      'enable_residual_connections': False}
  assert deepspeech.variant_options('librispeech_deepspeech_norm_and_spec_aug') == {
      'layernorm_everywhere': True, 'enable_decoder_layer_norm': False,
      'freq_mask_count': 4, 'time_mask_count': 15}
  conformer.variant_options('librispeech_conformer')['activation'] = 'gelu'  # A copy.
  assert conformer.variant_options('librispeech_conformer') == {}
  with pytest.raises(ValueError, match='librispeech_conformer_gelu'):
    conformer.variant_options('librispeech_conformer_swish')
  model = conformer.Conformer()
  assert (model.vocab_size, model.encoder_dim, model.num_encoder_layers,
          model.activation) == (1024, 512, 4, 'swish')


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_tree_matches_reference_listing(name):
  model_class, listing, count, leaves, stats_count, stats_leaves = EXPECTED[name]
  model = model_class(**_options(name))
  x = jnp.zeros(FULL, jnp.float32)
  shapes = jax.eval_shape(lambda: model.init({'params': jax.random.PRNGKey(0)}, x, x,
                                             train=False))
  params, stats = _flat(shapes['params']), _flat(shapes.get('batch_stats', {}))
  assert set(shapes) == ({'params', 'batch_stats'} if stats_leaves else {'params'})
  assert len(params) == leaves
  assert sum(math.prod(v.shape) for v in params.values()) == count
  assert len(stats) == stats_leaves
  assert sum(math.prod(v.shape) for v in stats.values()) == stats_count
  assert all(v.dtype == jnp.float32 for v in [*params.values(), *stats.values()])
  found = {**{f'params/{k}': v.shape for k, v in params.items()},
           **{f'batch_stats/{k}': v.shape for k, v in stats.items()}}
  assert found == _listing(listing)


def test_full_size_output_shapes():
  x = jnp.zeros(FULL, jnp.float32)
  for model in (conformer.Conformer(), deepspeech.Deepspeech()):
    variables = jax.eval_shape(lambda m=model: m.init({'params': jax.random.PRNGKey(0)},
                                                      x, x, train=False))
    logits, paddings = jax.eval_shape(
        lambda v, m=model: m.apply(v, x, x, train=False), variables)
    assert logits.shape == (2, 500, 1024) and paddings.shape == (2, 500)


# --- frontend ------------------------------------------------------------------------


def test_frames_and_their_paddings():
  assert frontend.num_frames(320_000) == 1998
  assert frontend.num_frames(SMALL_AUDIO) == 98
  audio, paddings = _audio()
  features, frame_paddings = jax.jit(frontend.log_mel_features)(audio, paddings)
  assert features.shape == (2, 98, 80) and frame_paddings.shape == (2, 98)
  # A frame is padding only if all of its 401 samples are.
  expected = [float(np.all(np.asarray(paddings[1, 160 * i:160 * i + 401])))
              for i in range(98)]
  np.testing.assert_array_equal(frame_paddings[1], expected)
  assert float(jnp.sum(frame_paddings[0])) == 0.0
  # Whatever a batch holds at padded samples makes no difference.
  noisy = audio + paddings * 1e4
  again, _ = jax.jit(frontend.log_mel_features)(noisy, paddings)
  np.testing.assert_allclose(again, features, rtol=1e-6, atol=1e-6)


def test_mel_filters_equal_tensorflows():
  tf = pytest.importorskip('tensorflow')
  expected = tf.signal.linear_to_mel_weight_matrix(
      num_mel_bins=80, num_spectrogram_bins=257, sample_rate=16000,
      lower_edge_hertz=125.0, upper_edge_hertz=7600.0).numpy()
  np.testing.assert_allclose(frontend.mel_matrix(), expected, atol=2e-5)


def test_one_frame_by_hand():
  # A 1 kHz tone: the log-mel of its first frame computed directly in numpy.
  t = np.arange(SMALL_AUDIO) / 16000.0
  audio = np.rint(8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None]
  features, _ = frontend.log_mel_features(audio, np.zeros_like(audio))
  x = audio[0, :401] / 32768.0
  emphasised = np.concatenate([x[:1] * 0.03, x[1:400] - 0.97 * x[:399]])
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
  power = np.abs(np.fft.rfft(emphasised * window, 512)) ** 2
  log_mel = np.log(np.maximum(power @ frontend.mel_matrix(), 1e-5))
  expected = (log_mel - frontend.MEL_MEAN) / frontend.MEL_STDDEV
  np.testing.assert_allclose(features[0, 0], expected, rtol=1e-4, atol=1e-4)


# --- SpecAugment -----------------------------------------------------------------------


def test_spec_augment_zeroes_bounded_blocks_and_keeps_paddings():
  features = jnp.ones((4, 200, 80))
  paddings = jnp.zeros((4, 200)).at[1, 100:].set(1.0)
  augment = SpecAug(freq_mask_count=2, freq_mask_max_bins=27, time_mask_count=10,
                    time_mask_max_ratio=0.05)
  apply = jax.jit(lambda key: augment.apply({}, features, paddings, rngs={'dropout': key}))
  out, out_paddings = apply(jax.random.PRNGKey(3))
  np.testing.assert_array_equal(out_paddings, paddings)
  out = np.asarray(out)
  for b in range(4):
    masked_bins = np.all(out[b] == 0, axis=0)  # Bins zero at every frame.
    masked_frames = np.all(out[b] == 0, axis=1)
    assert masked_bins.sum() <= 2 * 26
    length = 100 if b == 1 else 200
    # Ten masks of at most 5% of the unpadded frames each, inside them.
    assert masked_frames.sum() <= 10 * max(int(0.05 * length), 1)
    assert not masked_frames[length:].any()
    rest = out[b][~masked_frames][:, ~masked_bins]
    assert np.all(rest == 1.0)
  np.testing.assert_array_equal(apply(jax.random.PRNGKey(3))[0], out)
  other, _ = apply(jax.random.PRNGKey(4))
  assert not np.array_equal(other, out)


# --- LSTM ----------------------------------------------------------------------------


def test_reverse_within_lengths():
  x = jnp.arange(12).reshape(3, 4)
  flipped = lstm.reverse_within_lengths(x, jnp.array([1, 2, 4]))
  np.testing.assert_array_equal(flipped, [[0, 3, 2, 1], [5, 4, 7, 6], [11, 10, 9, 8]])
  np.testing.assert_array_equal(
      lstm.reverse_within_lengths(flipped, jnp.array([1, 2, 4])), x)


def test_bidirectional_lstm_equals_flax_cells_run_step_by_step():
  layer = lstm.LSTM(hidden_size=8)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 6))
  lengths = jnp.array([7, 4])
  variables = layer.init(jax.random.PRNGKey(1), x, lengths)
  out = layer.apply(variables, x, lengths)
  assert out.shape == (2, 7, 16)
  cell = jax.jit(flax.linen.OptimizedLSTMCell(8).apply)
  for b, length in enumerate([7, 4]):
    for direction, steps in ((0, range(length)), (1, reversed(range(length)))):
      params = variables['params']['LSTM'][f'LSTMSequenceEncoder_{direction}']['cell']
      carry = (jnp.zeros((8,)), jnp.zeros((8,)))
      for t in steps:
        carry, h = cell({'params': params}, carry, x[b, t])
        np.testing.assert_allclose(out[b, t, 8 * direction:8 * direction + 8], h,
                                   rtol=1e-5, atol=1e-5)


# --- batch norm and the models' modes ----------------------------------------------------


def test_masked_batch_norm_counts_unpadded_positions_only():
  x = jnp.concatenate([jnp.ones((1, 3, 2)), 100 * jnp.ones((1, 2, 2))], axis=1)
  x = x.at[0, 1].set(3.0)
  paddings = jnp.array([[0.0, 0.0, 0.0, 1.0, 1.0]])
  norm = MaskedBatchNorm(2, momentum=0.5)
  variables = norm.init(jax.random.PRNGKey(0), x, paddings, use_running_average=True)
  out, state = norm.apply(variables, x, paddings, use_running_average=False,
                          mutable=['batch_stats'])
  mean, var = 5.0 / 3.0, ((2 / 3) ** 2 * 2 + (4 / 3) ** 2) / 3.0
  np.testing.assert_allclose(out[0, :3, 0], (np.array([1, 3, 1]) - mean)
                             / np.sqrt(var + 1e-3), rtol=1e-5)
  np.testing.assert_array_equal(out[0, 3:], 0.0)
  np.testing.assert_allclose(state['batch_stats']['mean'], [0.5 * mean] * 2, rtol=1e-6)
  np.testing.assert_allclose(state['batch_stats']['var'], [0.5 + 0.5 * var] * 2, rtol=1e-6)
  assert state['batch_stats']['mean'].shape == (2,)  # Stays (dim,), unlike the reference.


@pytest.mark.parametrize('kind', ['conformer', 'deepspeech'])
def test_modes_batch_norm_and_padding(kind):
  model, variables = _small(kind)
  audio, paddings = _audio()
  rngs = {'dropout': jax.random.PRNGKey(5)}

  @jax.jit
  def run(v):
    train = model.apply(v, audio, paddings, train=True, rngs=rngs, mutable=['batch_stats'])
    frozen = model.apply(v, audio, paddings, train=True, use_running_average_bn=True,
                         dropout_rate=0.0, rngs=rngs, mutable=['batch_stats'])
    evaluated = model.apply(v, audio, paddings, train=False)
    # The shorter utterance alone, with junk where it is padded.
    alone = model.apply(v, audio[1:] + paddings[1:] * 777.0, paddings[1:], train=False)
    return train, frozen, evaluated, alone

  (train, state), (_, frozen_state), (logits, logit_paddings), (alone, _) = run(variables)
  assert train[0].shape == (2, 25, 1024) and logit_paddings.shape == (2, 25)
  np.testing.assert_array_equal(train[1], logit_paddings)
  assert float(jnp.sum(logit_paddings[1])) > 0 and float(jnp.sum(logit_paddings[0])) == 0
  assert bool(jnp.all(jnp.isfinite(logits)))
  # Training normalises with the batch's statistics and moves the running
  # ones (shapes unchanged); the running-average option moves nothing.
  for path, old in _flat(variables['batch_stats']).items():
    new = _flat(state['batch_stats'])[path]
    assert new.shape == old.shape and float(jnp.max(jnp.abs(new - old))) > 0, path
    np.testing.assert_array_equal(_flat(frozen_state['batch_stats'])[path], old)
  assert not np.allclose(train[0], logits, atol=1e-4)
  # Padding changes nothing about an utterance's own frames.
  valid = np.asarray(logit_paddings[1]) == 0
  np.testing.assert_allclose(np.asarray(alone[0])[valid], np.asarray(logits[1])[valid],
                             rtol=2e-4, atol=2e-4)
  # Training mode is a function of the rng.
  np.testing.assert_array_equal(run(variables)[0][0][0], train[0])


def test_initial_values_of_the_shared_layers():
  x = jnp.ones((2, 6, 4, 3))
  paddings = jnp.zeros((2, 6))
  conv = Conv2dSubsampling(3, 5).init(jax.random.PRNGKey(0), x, paddings)['params']
  assert conv['kernel'].shape == (3, 3, 3, 5) and float(jnp.abs(conv['bias']).max()) == 0
  # Xavier uniform: bound sqrt(6 / (fan_in + fan_out)) with receptive field 9.
  assert float(jnp.abs(conv['kernel']).max()) <= math.sqrt(6 / (9 * 3 + 9 * 5))
  norm = LayerNorm(3).init(jax.random.PRNGKey(0), x)['params']
  assert float(jnp.abs(norm['scale']).max()) == 0 == float(jnp.abs(norm['bias']).max())
  batch_norm = MaskedBatchNorm(3).init(jax.random.PRNGKey(0), x[:, :, 0], paddings,
                                       use_running_average=True)
  np.testing.assert_array_equal(batch_norm['batch_stats']['var'], 1.0)
  np.testing.assert_array_equal(batch_norm['params']['scale'], 0.0)
