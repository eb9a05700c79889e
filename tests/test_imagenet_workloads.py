"""The ImageNet workloads and variants: init, two NadamW steps and a full eval.

On synthetic data at 32x32 (the same model code; ResNet-50 is fully
convolutional and ViT's position embedding is computed for any multiple of
16), so every variant runs in seconds on a CPU. The full-size models are
counted in tests/test_imagenet_*_model.py.
"""

import math
from pathlib import Path

import jax
import numpy as np
import pytest

import workloads
from algoperf import runner
from algoperf.errors import ConfigError
from algoperf.submission import load_submission
from algoperf.tuning import generate_points, load_search_space

NAMES = ['imagenet_resnet', 'imagenet_resnet_silu', 'imagenet_resnet_gelu',
         'imagenet_resnet_large_bn_init', 'imagenet_vit', 'imagenet_vit_glu',
         'imagenet_vit_post_ln', 'imagenet_vit_map']
NADAMW = Path(__file__).resolve().parents[1] / 'submissions' / 'nadamw'


@pytest.fixture(scope='module')
def nadamw():
  space = load_search_space(NADAMW / 'tuning_search_space.json')
  return load_submission(NADAMW), generate_points(space, 1)[0]


@pytest.mark.slow  # ~30 s a variant on 2 CPU cores (compiling ResNet-50's step).
@pytest.mark.parametrize('name', NAMES)
def test_init_two_nadamw_steps_and_a_full_eval(name, nadamw):
  submission, hyperparameters = nadamw
  workload = workloads.get_workload(name, synthetic=True, image_size=32)
  config = runner.TrialConfig(global_batch_size=4, hyperparameters=hyperparameters,
                              rng_seed=0, budget_sec=1e9, max_global_steps=2)
  result = runner.train_once(workload, submission, config)
  assert result.global_step == 2 and result.stop_reason == 'max_global_steps'
  (first_step, first), (last_step, last) = result.eval_results[0], result.eval_results[-1]
  assert (first_step, last_step) == (1, 2)
  for split in ('train', 'validation', 'test'):
    assert math.isfinite(last[f'{split}/loss'])
    assert 0.0 <= last[f'{split}/accuracy'] <= 1.0
  assert last['validation/num_examples'] == 8 and last['test/num_examples'] == 8
  assert last['train/loss'] != first['train/loss']  # It trained.
  # The reference's batch format: NHWC float32 images, int labels, weights.
  batch = next(workload._build_input_queue(jax.random.PRNGKey(0), 'train', None, 4))  # pylint: disable=protected-access
  assert batch['inputs'].shape == (4, 32, 32, 3) and batch['inputs'].dtype == np.float32
  assert batch['targets'].dtype == np.int32 and batch['weights'].shape == (4,)


def test_the_batch_norm_statistics_are_model_state_and_eval_uses_them():
  workload = workloads.get_workload('imagenet_resnet', synthetic=True, image_size=32)
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  assert set(model_state) == {'batch_stats'}
  batch = next(workload._build_input_queue(jax.random.PRNGKey(1), 'train', None, 4))  # pylint: disable=protected-access
  from algoperf import spec  # pylint: disable=import-outside-toplevel
  _, updated = workload.model_fn(params, batch, model_state, spec.ForwardPassMode.TRAIN,
                                 None, update_batch_norm=True)
  changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         model_state, updated)
  assert all(jax.tree.leaves(changed))
  _, same = workload.model_fn(params, batch, model_state, spec.ForwardPassMode.EVAL,
                              None, update_batch_norm=False)
  assert same is model_state


def test_synthetic_batches_are_a_function_of_seed_and_index():
  workload = workloads.get_workload('imagenet_vit', synthetic=True, image_size=16)
  a = workload._build_input_queue(jax.random.PRNGKey(3), 'train', None, 2)  # pylint: disable=protected-access
  b = workload._build_input_queue(jax.random.PRNGKey(3), 'train', None, 2)  # pylint: disable=protected-access
  for _ in range(2):
    x, y = next(a), next(b)
    np.testing.assert_array_equal(x['inputs'], y['inputs'])
    np.testing.assert_array_equal(x['targets'], y['targets'])


def test_real_data_is_refused_with_one_clear_line():
  workload = workloads.get_workload('imagenet_resnet')
  with pytest.raises(ConfigError, match='--synthetic_data'):
    workload.check_data()
  assert workload.num_validation_examples == 50_000
  assert workload.num_eval_train_examples == 50_176  # 50,000 rounded up to 1024s.
  assert workload.num_test_examples == 10_000
