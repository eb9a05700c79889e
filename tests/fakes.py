"""A tiny, fully controllable workload and submission builders for runner tests."""

from __future__ import annotations

import time
import types
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from algoperf import spec
from algoperf.submission import Submission


class ToyWorkload(spec.Workload):
  """Linear regression on random data; the eval "accuracy" is global_step / 10.

  Targets, budget, eval period and an artificial eval delay are constructor
  arguments, so each stop condition can be provoked exactly.
  """

  def __init__(self, *, validation_target: float = 0.5, test_target: float = 0.5,
               budget: float = 1e9, eval_period: float = 0.0,
               eval_sleep: float = 0.0, eval_batch_size: int = 8,
               eval_loss=None):
    super().__init__()
    # eval_loss(global_step) -> the eval's train/validation/test loss (None:
    # no loss in the results).
    self._eval_loss = eval_loss
    self._val_target = validation_target
    self._test_target = test_target
    self._budget = budget
    self._eval_period = eval_period
    self._eval_sleep = eval_sleep
    self._eval_batch = eval_batch_size
    self.eval_calls = []
    self.queue_starts = []  # start_position of every train queue built

  target_metric_name = 'accuracy'
  loss_type = spec.LossType.MEAN_SQUARED_ERROR
  num_train_examples = 64
  num_eval_train_examples = 16
  num_validation_examples = 16
  num_test_examples = 16
  train_mean = 0.0
  train_stddev = 1.0
  step_hint = 100

  @property
  def validation_target_value(self) -> float:
    return self._val_target

  @property
  def test_target_value(self) -> float:
    return self._test_target

  @property
  def eval_batch_size(self) -> int:
    return self._eval_batch

  @property
  def max_allowed_runtime_sec(self) -> float:
    return self._budget

  @property
  def eval_period_time_sec(self) -> float:
    return self._eval_period

  def has_reached_validation_target(self, eval_result: Dict[str, float]) -> bool:
    return eval_result['validation/accuracy'] >= self._val_target

  def has_reached_test_target(self, eval_result: Dict[str, float]) -> bool:
    return eval_result['test/accuracy'] >= self._test_target

  def is_output_params(self, param_key: str) -> bool:
    return param_key == 'w'

  def init_model_fn(self, rng):
    del rng
    params = {'w': jnp.zeros((4,)), 'b': jnp.zeros(())}
    self._param_shapes = jax.tree.map(lambda x: spec.ShapeTuple(x.shape), params)
    self._param_types = {'w': spec.ParameterType.WEIGHT,
                         'b': spec.ParameterType.BIAS}
    return params, {}

  def model_fn(self, params, augmented_and_preprocessed_input_batch,
               model_state, mode, rng, update_batch_norm, dropout_rate=None,
               use_running_average_bn=None):
    x = augmented_and_preprocessed_input_batch['inputs']
    return x @ params['w'] + params['b'], model_state

  def loss_fn(self, label_batch, logits_batch, mask_batch=None,
              label_smoothing=0.0):
    per_example = (logits_batch - label_batch) ** 2
    if mask_batch is None:
      mask_batch = jnp.ones_like(per_example)
    per_example = per_example * mask_batch
    return {'summed': per_example.sum(), 'n_valid_examples': mask_batch.sum(),
            'per_example': per_example}

  def _build_input_queue(self, data_rng, split, data_dir, global_batch_size,
                         cache=None, repeat_final_dataset=None, num_batches=None,
                         start_position=0):
    # A few batches made once: the queue itself costs (almost) no time, so
    # timing tests can state exactly what the submission spends.
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(4):
      x = rng.normal(size=(global_batch_size, 4)).astype(np.float32)
      batches.append({'inputs': jnp.asarray(x),
                      'targets': jnp.asarray(x.sum(axis=1)),
                      'weights': jnp.ones((global_batch_size,))})
    if split == 'train':
      self.queue_starts.append(start_position)
    # Batch i of the stream is batches[i % 4], from start_position on.
    batches = batches[start_position % 4:] + batches[:start_position % 4]
    while True:
      yield from batches

  def _eval_model_on_split(self, split, num_examples, global_batch_size,
                           params, model_state, rng, data_dir, global_step=0):
    raise NotImplementedError  # eval_model is overridden below.

  def eval_model(self, global_batch_size, params, model_state, rng, data_dir,
                 imagenet_v2_data_dir, global_step):
    if self._eval_sleep:
      time.sleep(self._eval_sleep)
    self.eval_calls.append(global_step)
    acc = min(1.0, global_step / 10)
    result = {'train/accuracy': acc, 'validation/accuracy': acc,
              'test/accuracy': acc, 'validation/num_examples': 16,
              'test/num_examples': 16}
    if self._eval_loss is not None:
      loss = self._eval_loss(global_step)
      result.update({'train/loss': loss, 'validation/loss': loss,
                     'test/loss': loss})
    return result


def _sgd_step(params, batch):
  grads = jax.grad(
      lambda p: jnp.mean((batch['inputs'] @ p['w'] + p['b'] - batch['targets'])**2)
  )(params)
  return jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)


_jitted_sgd_step = jax.jit(_sgd_step)


def make_submission(update_hook=None, prepare_for_eval=None,
                    with_train_state: bool = False,
                    batch_size: int = 8) -> Submission:
  """A plain-SGD submission; ``update_hook(**kwargs)`` runs inside ``update_params``."""

  def get_batch_size(workload_name):
    return batch_size

  def init_optimizer_state(workload, model_params, model_state,
                           hyperparameters, rng):
    return {'count': 0}

  def data_selection(workload, input_queue, optimizer_state,
                     current_param_container, model_state, hyperparameters,
                     global_step, rng):
    return next(input_queue)

  def _update(**kwargs):
    if update_hook is not None:
      update_hook(**kwargs)
    params = _jitted_sgd_step(kwargs['current_param_container'], kwargs['batch'])
    opt = {'count': kwargs['optimizer_state']['count'] + 1}
    return opt, params, kwargs['model_state']

  if with_train_state:
    def update_params(workload, current_param_container, current_params_types,
                      model_state, hyperparameters, batch, loss_type,
                      optimizer_state, eval_results, global_step, rng,
                      train_state=None):
      return _update(**locals())
  else:
    def update_params(workload, current_param_container, current_params_types,
                      model_state, hyperparameters, batch, loss_type,
                      optimizer_state, eval_results, global_step, rng):
      return _update(**locals())

  module = types.ModuleType('fake_submission')
  return Submission(
      path=__import__('pathlib').Path('/fake/submission.py'),
      module=module,
      get_batch_size=get_batch_size,
      init_optimizer_state=init_optimizer_state,
      update_params=update_params,
      data_selection=data_selection,
      prepare_for_eval=prepare_for_eval,
  )
