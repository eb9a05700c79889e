"""Fast tests of the small classification workloads (synthetic data mostly)."""

import gzip
import json
import math
import os
import random
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import log_softmax

import workloads
from algoperf import benchmarks
from algoperf import jax_sharding_utils
from algoperf import spec
from algoperf.errors import ConfigError
from workloads import classification
from workloads.fashion_mnist import data as fmnist_data
from workloads.mnist1d import data as mnist1d_data

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_FASHION_DIR = Path(fmnist_data.DEFAULT_DATA_DIR)


@pytest.fixture(scope='module')
def small():
  """A synthetic MNIST-1D workload (the cheapest model) with initial params."""
  workload = workloads.get_workload('mnist1d', synthetic=True)
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  return workload, params, model_state


# --- registry ------------------------------------------------------------------


EXPECTED_WORKLOADS = [
    'fashion_mnist', 'mnist1d',
    'imagenet_resnet', 'imagenet_resnet_gelu', 'imagenet_resnet_large_bn_init',
    'imagenet_resnet_silu', 'imagenet_vit', 'imagenet_vit_glu', 'imagenet_vit_map',
    'imagenet_vit_post_ln',
    'criteo1tb', 'criteo1tb_embed_init', 'criteo1tb_layernorm', 'criteo1tb_resnet',
    'criteo1tb_test',
    'ogbg', 'ogbg_gelu', 'ogbg_model_size', 'ogbg_silu',
    'fastmri', 'fastmri_layernorm', 'fastmri_model_size', 'fastmri_tanh',
    'librispeech_conformer', 'librispeech_conformer_attention_temperature',
    'librispeech_conformer_gelu', 'librispeech_conformer_layernorm',
    'librispeech_deepspeech', 'librispeech_deepspeech_no_resnet',
    'librispeech_deepspeech_norm_and_spec_aug', 'librispeech_deepspeech_tanh',
    'wmt', 'wmt_attention_temp', 'wmt_glu_tanh', 'wmt_post_ln',
]


def test_registry_names_and_errors():
  assert workloads.list_workloads() == sorted(EXPECTED_WORKLOADS)
  with pytest.raises(ValueError, match='criteo1tb, criteo1tb_embed_init, '):
    workloads.get_workload('no_such_workload')
  assert workloads.get_base_workload_name('mnist1d') == 'mnist1d'
  assert workloads.get_base_workload_name('fashion_mnist') == 'fashion_mnist'
  assert workloads.get_base_workload_name('imagenet_resnet_silu') == 'imagenet_resnet'
  assert workloads.get_base_workload_name('wmt') == 'wmt'
  with pytest.raises(ValueError, match='Known workloads'):
    workloads.get_base_workload_name('no_such_workload')


@pytest.mark.parametrize('name', ['fashion_mnist', 'mnist1d'])
def test_construction_is_cheap_and_needs_no_data(name, tmp_path):
  # A data_dir without data: nothing is read until data is used.
  workload = workloads.get_workload(name, data_dir=str(tmp_path / 'none'))
  shapes = jax.eval_shape(workload.init_model_fn, jax.random.PRNGKey(0))
  assert workload._splits is None
  params_shape, model_state_shape = shapes
  assert model_state_shape == {}
  assert jax.tree.structure(params_shape) == jax.tree.structure(
      workload.param_shapes)


def test_facts_come_from_the_benchmark():
  workload = workloads.get_workload('mnist1d', benchmark='v0.5')
  facts = benchmarks.load('v0.5').workload('mnist1d')
  assert workload.validation_target_value == facts.validation_target_value
  assert workload.test_target_value == facts.test_target_value
  assert workload.max_allowed_runtime_sec == facts.max_allowed_runtime_sec
  assert workload.eval_period_time_sec == facts.eval_period_time_sec
  assert workload.step_hint == facts.step_hint
  assert workload.target_metric_name == 'accuracy'
  assert workload.loss_type == spec.LossType.SOFTMAX_CROSS_ENTROPY
  target = facts.validation_target_value
  assert workload.has_reached_validation_target({'validation/accuracy': target})
  assert not workload.has_reached_validation_target(
      {'validation/accuracy': target - 1e-3})
  assert not workload.has_reached_validation_target(
      {'validation/accuracy': float('nan')})
  assert workload.has_reached_test_target(
      {'test/accuracy': facts.test_target_value + 1e-3})
  assert workload.eval_batch_size % 8 == 0


def test_workloads_hash_by_identity():
  a = workloads.get_workload('mnist1d', synthetic=True)
  b = workloads.get_workload('mnist1d', synthetic=True)
  assert a != b and hash(a) == hash(a) and hash(a) != hash(b)


# --- model ----------------------------------------------------------------------


@pytest.mark.parametrize('name', ['fashion_mnist', 'mnist1d'])
def test_param_shapes_and_types_match_params(name):
  workload = workloads.get_workload(name, synthetic=True)
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(1))
  assert type(params) is dict and model_state == {}
  structure = jax.tree.structure(params)
  assert jax.tree.structure(workload.param_shapes) == structure
  assert jax.tree.structure(workload.model_params_types) == structure
  for (path, leaf), shape, kind in zip(
      jax.tree_util.tree_leaves_with_path(params),
      jax.tree.leaves(workload.param_shapes),
      jax.tree.leaves(workload.model_params_types)):
    assert isinstance(shape, spec.ShapeTuple)
    assert shape.shape_tuple == leaf.shape
    leaf_name = path[-1].key
    if leaf_name == 'bias':
      assert kind == spec.ParameterType.BIAS
    elif leaf.ndim > 2:
      assert kind == spec.ParameterType.CONV_WEIGHT
    else:
      assert kind == spec.ParameterType.WEIGHT
    assert leaf.sharding.is_equivalent_to(
        jax_sharding_utils.get_replicate_sharding(), leaf.ndim)
  assert workload.is_output_params('output')
  assert not workload.is_output_params('Conv_0')
  # Submissions build zero trees this way.
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape_tuple), workload.param_shapes)
  assert jax.tree.structure(zeros) == structure


def test_param_types_of_norm_layers():
  tree = {
      'BatchNorm_0': {'scale': np.ones(3), 'bias': np.ones(3)},
      'LayerNorm_0': {'scale': np.ones(3), 'bias': np.ones(3)},
      'Embed_0': {'embedding': np.ones((4, 3))},
  }
  types = classification.param_types_from_params(tree)
  assert types == {
      'BatchNorm_0': {'scale': spec.ParameterType.BATCH_NORM_SCALE,
                      'bias': spec.ParameterType.BATCH_NORM_BIAS},
      'LayerNorm_0': {'scale': spec.ParameterType.LAYER_NORM_SCALE,
                      'bias': spec.ParameterType.LAYER_NORM_BIAS},
      'Embed_0': {'embedding': spec.ParameterType.EMBEDDING},
  }


def test_loss_fn_hand_worked(small):
  workload, _, _ = small
  logits = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])
  labels = jnp.array([0, 1])
  out = workload.loss_fn(labels, logits)
  # softmax([0, 0]) = (1/2, 1/2); softmax([ln 3, 0]) = (3/4, 1/4).
  np.testing.assert_allclose(out['per_example'], [math.log(2), math.log(4)],
                             rtol=1e-6)
  np.testing.assert_allclose(out['summed'], math.log(8), rtol=1e-6)
  assert out['n_valid_examples'] == 2

  masked = workload.loss_fn(labels, logits, mask_batch=jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(masked['per_example'], [math.log(2), 0.0], rtol=1e-6)
  np.testing.assert_allclose(masked['summed'], math.log(2), rtol=1e-6)
  assert float(masked['n_valid_examples']) == 1.0

  # Smoothing 0.2 over 2 classes: targets (0.9, 0.1) and (0.1, 0.9).
  smooth = workload.loss_fn(labels, logits, label_smoothing=0.2)
  expected_1 = -(0.1 * math.log(0.75) + 0.9 * math.log(0.25))
  np.testing.assert_allclose(smooth['per_example'], [math.log(2), expected_1],
                             rtol=1e-6)

  # A NaN in a padded row does not leak into the sum.
  bad = jnp.array([[0.0, 0.0], [jnp.nan, 0.0]])
  padded = workload.loss_fn(labels, bad, mask_batch=jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(padded['summed'], math.log(2), rtol=1e-6)


def _nadamw_like_step(workload, opt_update_fn, model_state, optimizer_state,
                      params, batch, rng, label_smoothing, dropout_rate):
  """The shape of the reference NadamW baseline's jitted train step."""

  def loss(p):
    logits, new_state = workload.model_fn(
        p, batch, model_state, spec.ForwardPassMode.TRAIN, rng,
        update_batch_norm=True, dropout_rate=dropout_rate)
    out = workload.loss_fn(label_batch=batch['targets'], logits_batch=logits,
                           mask_batch=batch.get('weights'),
                           label_smoothing=label_smoothing)
    return out['summed'], (out['n_valid_examples'], new_state)

  (summed, (n, new_state)), grad = jax.value_and_grad(loss, has_aux=True)(params)
  grad = jax.tree.map(lambda g: g / n, grad)
  updates, optimizer_state = opt_update_fn(grad, optimizer_state, params)
  return optimizer_state, optax.apply_updates(params, updates), new_state, summed / n


def test_model_fn_jits_with_static_workload_and_traced_dropout(small):
  workload, params, model_state = small
  opt = optax.adam(1e-3)
  replicated = jax_sharding_utils.get_replicate_sharding()
  sharded = jax_sharding_utils.get_batch_dim_sharding()
  step = jax.jit(
      _nadamw_like_step, static_argnums=(0, 1),
      in_shardings=(replicated, replicated, replicated, sharded, replicated,
                    replicated, replicated),
      out_shardings=(replicated,) * 4)
  batch = next(workload._build_input_queue(jax.random.PRNGKey(0), 'train', None, 32))
  opt_state = opt.init(params)
  losses, cache_sizes = [], []
  # The first call may compile twice: opt.init's state is not yet placed on
  # the mesh. After that, new dropout rates must not recompile.
  for rate in (0.0, 0.0, 0.3, 1.0):
    opt_state, params_out, state_out, loss = step(
        workload, opt.update, model_state, opt_state, params, batch,
        jax.random.PRNGKey(3), 0.1, rate)
    losses.append(float(loss))
    cache_sizes.append(step._cache_size())
    assert state_out == {}
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params_out))
  assert np.isfinite(losses).all()
  assert cache_sizes[1] == cache_sizes[2] == cache_sizes[3]


def test_dropout_only_in_train_mode(small):
  workload, params, model_state = small
  batch = {'inputs': jnp.ones((16, *workload.input_shape))}
  rng = jax.random.PRNGKey(5)

  def logits(mode, rate):
    return workload.model_fn(params, batch, model_state, mode, rng,
                             update_batch_norm=False, dropout_rate=rate)[0]

  base = logits(spec.ForwardPassMode.EVAL, None)
  np.testing.assert_allclose(logits(spec.ForwardPassMode.EVAL, 0.5), base)
  np.testing.assert_allclose(logits(spec.ForwardPassMode.TRAIN, None), base,
                             rtol=1e-6)
  assert not np.allclose(logits(spec.ForwardPassMode.TRAIN, 0.5), base)
  # Everything dropped: only the output bias remains, and nothing is NaN.
  all_dropped = logits(spec.ForwardPassMode.TRAIN, jnp.float32(1.0))
  np.testing.assert_allclose(
      all_dropped, np.broadcast_to(params['output']['bias'], base.shape))


def test_dropout_helper_keeps_expectation():
  x = jnp.ones((20000,))
  y = classification.dropout(x, jnp.float32(0.25), jax.random.PRNGKey(0))
  kept = np.asarray(y) != 0
  assert abs(kept.mean() - 0.75) < 0.02
  np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75, rtol=1e-6)


# --- input pipeline ----------------------------------------------------------------


def test_train_queue_shapes_and_determinism(small):
  workload, _, _ = small
  batch_size = 512  # 2048 synthetic train examples: 4 batches per epoch.

  def take(seed, n):
    queue = workload._build_input_queue(
        jax.random.PRNGKey(seed), 'train', None, batch_size)
    return [jax.device_get(next(queue)) for _ in range(n)]

  first, again, other = take(7, 8), take(7, 8), take(8, 1)
  batch = first[0]
  assert set(batch) == {'inputs', 'targets', 'weights'}
  assert batch['inputs'].shape == (batch_size, 40, 1)
  assert batch['inputs'].dtype == np.float32
  assert batch['targets'].shape == (batch_size,)
  assert np.issubdtype(batch['targets'].dtype, np.integer)
  np.testing.assert_array_equal(batch['weights'], np.ones(batch_size))
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['inputs'], b['inputs'])
  assert not np.array_equal(first[0]['inputs'], other[0]['inputs'])

  # Each epoch visits every example once; the next epoch is reshuffled.
  train_inputs = workload._split_arrays('train')[0]
  rows = {row.tobytes(): i for i, row in enumerate(train_inputs)}
  epoch1 = [rows[r.tobytes()] for b in first[:4] for r in b['inputs']]
  epoch2 = [rows[r.tobytes()] for b in first[4:] for r in b['inputs']]
  assert sorted(epoch1) == sorted(epoch2) == list(range(2048))
  assert epoch1 != epoch2

  with pytest.raises(ValueError, match='exceeds'):
    next(workload._build_input_queue(jax.random.PRNGKey(0), 'train', None, 4096))


def test_eval_queue_pads_with_zero_weights(small):
  workload, _, _ = small
  batches = list(workload._build_input_queue(
      jax.random.PRNGKey(0), 'validation', None, 384))
  assert len(batches) == 3  # 1000 = 384 + 384 + 232.
  last = jax.device_get(batches[-1])
  assert last['inputs'].shape == (384, 40, 1)
  assert last['weights'].sum() == 1000 - 2 * 384
  assert (last['weights'][232:] == 0).all()
  repeated = workload._build_input_queue(
      jax.random.PRNGKey(0), 'validation', None, 384, repeat_final_dataset=True,
      num_batches=5)
  assert len(list(repeated)) == 5


# --- evaluation ----------------------------------------------------------------------


def _numpy_metrics(workload, params, split, num_examples):
  inputs, labels = workload._split_arrays(split)
  inputs, labels = inputs[:num_examples], labels[:num_examples]
  logits = np.asarray(workload._model.apply(
      {'params': jax.device_get(params)}, inputs, train=False), np.float64)
  log_probs = log_softmax(logits, axis=-1)
  return {
      'accuracy': float((logits.argmax(-1) == labels).mean()),
      'loss': float(-log_probs[np.arange(len(labels)), labels].mean()),
  }


def test_eval_is_exact_with_padding(small):
  workload, params, model_state = small
  # 700 examples in batches of 256: the last batch has 188 real examples.
  got = workload._eval_model_on_split(
      'validation', 700, 256, params, model_state, None, None)
  expected = _numpy_metrics(workload, params, 'validation', 700)
  assert got['accuracy'] == pytest.approx(expected['accuracy'], abs=1e-7)
  assert got['loss'] == pytest.approx(expected['loss'], rel=1e-5)


def test_eval_model_keys_and_single_compile():
  workload = workloads.get_workload('mnist1d', synthetic=True)
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  results = workload.eval_model(workload.eval_batch_size, params, model_state,
                                jax.random.PRNGKey(0), None, None, 0)
  assert set(results) == {
      'train/accuracy', 'train/loss', 'validation/accuracy', 'validation/loss',
      'validation/num_examples', 'test/accuracy', 'test/loss',
      'test/num_examples'}
  assert results['validation/num_examples'] == workload.num_validation_examples
  assert results['test/num_examples'] == workload.num_test_examples
  expected = _numpy_metrics(workload, params, 'test', workload.num_test_examples)
  assert results['test/accuracy'] == pytest.approx(expected['accuracy'], abs=1e-7)
  again = workload.eval_model(workload.eval_batch_size, params, model_state,
                              jax.random.PRNGKey(1), None, None, 10)
  assert again == results
  # Three splits, two evals: one compiled eval step.
  assert workload._jitted_eval_step._cache_size() == 1


def test_training_makes_progress_on_synthetic_data(small):
  workload, params, model_state = small
  opt = optax.adam(3e-3)
  step = jax.jit(_nadamw_like_step, static_argnums=(0, 1))
  opt_state = opt.init(params)
  queue = workload._build_input_queue(jax.random.PRNGKey(0), 'train', None, 128)
  before = workload._eval_model_on_split('validation', 1000, 1024, params,
                                         model_state, None, None)
  for _ in range(60):
    opt_state, params, model_state, _ = step(
        workload, opt.update, model_state, opt_state, params, next(queue),
        jax.random.PRNGKey(0), 0.0, 0.0)
  after = workload._eval_model_on_split('validation', 1000, 1024, params,
                                        model_state, None, None)
  assert after['accuracy'] > before['accuracy'] + 0.1


# --- Fashion-MNIST files ------------------------------------------------------------


def _idx_bytes(array: np.ndarray, type_code: int) -> bytes:
  """IDX written by hand (independently of the module's writer)."""
  header = bytes([0, 0, type_code, array.ndim])
  header += b''.join(struct.pack('>I', d) for d in array.shape)
  return header + array.astype(array.dtype.newbyteorder('>')).tobytes()


def test_idx_round_trip(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
  raw = tmp_path / 'images-idx3-ubyte'
  raw.write_bytes(_idx_bytes(images, 0x08))
  zipped = tmp_path / 'images-idx3-ubyte.gz'
  zipped.write_bytes(gzip.compress(_idx_bytes(images, 0x08)))
  np.testing.assert_array_equal(fmnist_data.read_idx(raw), images)
  np.testing.assert_array_equal(fmnist_data.read_idx(zipped), images)
  floats = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
  (tmp_path / 'f').write_bytes(_idx_bytes(floats, 0x0D))
  np.testing.assert_array_equal(fmnist_data.read_idx(tmp_path / 'f'), floats)
  for array in (np.arange(7, dtype=np.int32) - 3, np.ones((2, 2), np.float64)):
    for compress in (False, True):
      path = tmp_path / f'w{compress}'
      fmnist_data.write_idx(path, array, compress=compress)
      out = fmnist_data.read_idx(path)
      np.testing.assert_array_equal(out, array)
      assert out.dtype == array.dtype


def test_idx_corrupt_files(tmp_path):
  labels = np.arange(10, dtype=np.uint8)
  good = _idx_bytes(labels, 0x08)
  cases = {
      'truncated': good[:-1],
      'bad_magic': b'\x01' + good[1:],
      'bad_type': good[:2] + b'\x42' + good[3:],
      'short': good[:2],
      'bad_gzip': gzip.compress(good)[:-12],
  }
  for name, content in cases.items():
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(fmnist_data.IdxFormatError, match=re.escape(str(path))):
      fmnist_data.read_idx(path)


def test_missing_dataset_message(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    fmnist_data.find_files(str(tmp_path))
  message = str(info.value)
  assert 'apt-get install dataset-fashion-mnist' in message
  assert '--data_dir' in message
  for name in fmnist_data.FILES.values():
    assert name in message
  workload = workloads.get_workload('fashion_mnist', data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match='dataset-fashion-mnist'):
    workload._build_input_queue(jax.random.PRNGKey(0), 'train', None, 128)


def test_wrong_sized_files_are_rejected(tmp_path):
  folder = tmp_path / 'fashion-mnist'  # Found as a sub-folder of data_dir.
  folder.mkdir()
  for key, name in fmnist_data.FILES.items():
    array = (np.zeros((3, 28, 28), np.uint8) if 'images' in key
             else np.zeros((3,), np.uint8))
    (folder / (name + '.gz')).write_bytes(gzip.compress(_idx_bytes(array, 0x08)))
  assert set(fmnist_data.find_files(str(tmp_path))) == set(fmnist_data.FILES)
  with pytest.raises(fmnist_data.IdxFormatError, match='60000'):
    fmnist_data.load_raw(str(tmp_path))


def _fashion_folder(tmp_path, corrupt_key=None, content=b''):
  """The four IDX files, tiny but well formed, with one replaced by ``content``."""
  folder = tmp_path / 'fm'
  folder.mkdir()
  for key, name in fmnist_data.FILES.items():
    array = (np.zeros((3, 28, 28), np.uint8) if 'images' in key
             else np.zeros((3,), np.uint8))
    data = gzip.compress(_idx_bytes(array, 0x08))
    (folder / (name + '.gz')).write_bytes(content if key == corrupt_key else data)
  return folder


def _assert_names_file_problem_and_fix(error, path, problem):
  message = str(error)
  assert isinstance(error, ConfigError) and isinstance(error, ValueError)
  assert message.startswith(f'Fashion-MNIST file {path} {problem}'), message
  assert 'apt-get install --reinstall dataset-fashion-mnist' in message
  assert '--data_dir with a folder holding the four IDX files' in message
  assert '\n' not in message


@pytest.mark.parametrize('case, problem', [
    ('truncated_gzip', 'is corrupt: its gzip data is damaged or cut short ('),
    ('not_gzip_not_idx', 'is not an IDX file: bad magic number 0x'),
    ('truncated_idx', 'is truncated: its IDX header declares shape (3, 28, 28) '
                      '(2352 bytes of data) but the file holds 2000 bytes'),
    ('empty', 'is truncated: 0 byte(s), too short for an IDX header'),
])
def test_a_corrupt_dataset_file_is_a_config_error_naming_it(tmp_path, case, problem):
  good = _idx_bytes(np.zeros((3, 28, 28), np.uint8), 0x08)
  content = {
      'truncated_gzip': gzip.compress(good)[:-20],
      'not_gzip_not_idx': b'<html>Not Found</html>',
      'truncated_idx': gzip.compress(good[:16 + 2000]),
      'empty': b'',
  }[case]
  folder = _fashion_folder(tmp_path, 'train_images', content)
  with pytest.raises(fmnist_data.IdxFormatError) as info:
    fmnist_data.load_raw(str(folder))
  _assert_names_file_problem_and_fix(
      info.value, folder / 'train-images-idx3-ubyte.gz', problem)


def test_wrong_sized_dataset_is_a_config_error_naming_the_file(tmp_path):
  folder = _fashion_folder(tmp_path)
  with pytest.raises(ConfigError) as info:
    fmnist_data.load_raw(str(folder))
  _assert_names_file_problem_and_fix(
      info.value, folder / 'train-images-idx3-ubyte.gz',
      'holds the wrong data: expected the train images as uint8 (60000, 28, 28), '
      'got uint8 (3, 28, 28)')


def test_cli_run_on_a_corrupt_dataset_prints_one_error_line(tmp_path, capsys):
  from algoperf import cli  # pylint: disable=import-outside-toplevel

  folder = _fashion_folder(tmp_path, 'train_labels', b'\x1f\x8b' + b'\x00' * 30)
  code = cli.main(['run', '--workload', 'fashion_mnist', '--data_dir', str(folder),
                   '--experiment_dir', str(tmp_path / 'exp'),
                   '--max_global_steps', '1', '--noprogress'])
  err = capsys.readouterr().err
  assert code == 2
  (line,) = [l for l in err.splitlines() if l.startswith('algoperf run: error:')]
  assert line.startswith(f'algoperf run: error: Fashion-MNIST file {folder}/'
                         'train-labels-idx1-ubyte.gz is corrupt')
  assert 'Traceback' not in err


def test_mnist1d_without_its_package_or_with_other_sizes_is_a_config_error(monkeypatch):
  mnist1d_data.load_splits.cache_clear()
  try:
    monkeypatch.setitem(sys.modules, 'mnist1d.data', None)  # the import fails
    with pytest.raises(mnist1d_data.Mnist1dDataError) as info:
      mnist1d_data.load_splits()
    assert isinstance(info.value, ConfigError)
    assert str(info.value).startswith(
        'The mnist1d workload generates its data with the `mnist1d` package, '
        'which cannot be imported (')
    assert '`pip install mnist1d`' in str(info.value)
    monkeypatch.undo()
    fake = {'x': np.zeros((100, 40)), 'y': np.zeros(100, np.int64),
            'x_test': np.zeros((25, 40)), 'y_test': np.full(25, 12)}
    monkeypatch.setattr(mnist1d_data, 'generate', lambda: fake)
    with pytest.raises(mnist1d_data.Mnist1dDataError) as info:
      mnist1d_data.load_splits()
    message = str(info.value)
    assert message.startswith('The mnist1d package (version ')
    assert ('generated data this workload cannot use: x (100, 40) (expected '
            '(8000, 40)); y (100,) (expected (8000,)); x_test (25, 40) (expected '
            '(2000, 40)); y_test (25,) (expected (2000,)); y_test holds labels '
            'outside 0..9. Install the version the workload was written for: '
            '`pip install mnist1d==') in message
  finally:
    mnist1d_data.load_splits.cache_clear()


@pytest.mark.skipif(not REAL_FASHION_DIR.is_dir(),
                    reason='Fashion-MNIST not installed (dataset-fashion-mnist)')
def test_real_fashion_mnist_loads():
  raw = fmnist_data.load_raw()
  counts = {split: len(labels) for split, (_, labels) in raw.items()}
  assert counts == {'train': 50_000, 'validation': 10_000, 'test': 10_000}
  pixels = raw['train'][0].astype(np.float64) / 255
  assert pixels.mean() == pytest.approx(fmnist_data.TRAIN_MEAN, abs=1e-5)
  assert pixels.std() == pytest.approx(fmnist_data.TRAIN_STDDEV, abs=1e-5)
  assert np.bincount(raw['validation'][1]).min() > 900  # A balanced split.
  workload = workloads.get_workload('fashion_mnist')
  batch = next(workload._build_input_queue(jax.random.PRNGKey(0), 'train', None, 128))
  assert batch['inputs'].shape == (128, 28, 28, 1)
  assert abs(float(batch['inputs'].mean())) < 0.5


def test_mnist1d_generation():
  py_state, np_state = random.getstate(), np.random.get_state()
  splits = mnist1d_data.load_splits()
  # The generator reseeds the global RNGs; the loader restores them.
  assert random.getstate() == py_state
  assert np.array_equal(np.random.get_state()[1], np_state[1])
  counts = {split: len(labels) for split, (_, labels) in splits.items()}
  assert counts == {'train': 8000, 'validation': 1000, 'test': 1000}
  assert splits['train'][0].shape == (8000, 40, 1)
  raw_train = splits['train'][0] * mnist1d_data.TRAIN_STDDEV + mnist1d_data.TRAIN_MEAN
  assert raw_train.mean() == pytest.approx(mnist1d_data.TRAIN_MEAN, abs=1e-5)
  assert raw_train.std() == pytest.approx(mnist1d_data.TRAIN_STDDEV, abs=1e-4)
  workload = workloads.get_workload('mnist1d')
  assert workload.num_train_examples == 8000
  np.testing.assert_array_equal(workload._split_arrays('test')[1], splits['test'][1])


# --- many devices --------------------------------------------------------------------

_EIGHT_DEVICES = textwrap.dedent('''
    import json, sys
    import jax, optax
    sys.path.insert(0, sys.argv[1])
    import workloads
    from algoperf import spec
    assert jax.device_count() == 8, jax.devices()
    w = workloads.get_workload('mnist1d', synthetic=True)
    params, state = w.init_model_fn(jax.random.PRNGKey(0))
    batch = next(w._build_input_queue(jax.random.PRNGKey(1), 'train', None, 64))
    shards = batch['inputs'].addressable_shards
    assert len(shards) == 8 and shards[0].data.shape == (8, 40, 1), shards
    try:
      w._build_input_queue(jax.random.PRNGKey(1), 'train', None, 12)
      raise SystemExit('no error for batch 12 on 8 devices')
    except ValueError as e:
      assert '12' in str(e) and '8' in str(e), e
    def loss(p):
      logits, _ = w.model_fn(p, batch, state, spec.ForwardPassMode.TRAIN,
                             jax.random.PRNGKey(2), True, dropout_rate=0.1)
      out = w.loss_fn(batch['targets'], logits, batch['weights'])
      return out['summed'] / out['n_valid_examples']
    grads = jax.jit(jax.grad(loss))(params)
    r = w.eval_model(1001, params, state, None, None, None, 0)
    print(json.dumps(r))
''')


def test_eight_cpu_devices(small):
  workload, params, model_state = small
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu')
  proc = subprocess.run(
      [sys.executable, '-c', _EIGHT_DEVICES, str(REPO_ROOT)], env=env,
      capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  eight = json.loads(proc.stdout.strip().splitlines()[-1])
  one = workload.eval_model(1001, params, model_state, None, None, None, 0)
  assert eight.keys() == one.keys()
  for key in one:
    assert eight[key] == pytest.approx(one[key], rel=1e-5), key
