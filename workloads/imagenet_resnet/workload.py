"""imagenet_resnet and its variants: ResNet-50 with batch norm on ImageNet."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import flax.linen as nn

from algoperf import spec
from workloads.imagenet import ImageNetWorkload
from workloads.imagenet_resnet.model import ResNet50, variant_options


class ImagenetResNetWorkload(ImageNetWorkload):
  """ResNet-50; ``model_state`` holds the batch-norm statistics."""

  workload_name = 'imagenet_resnet'
  default_eval_batch_size = 1024
  output_layer_name = 'Dense_0'

  def _make_model(self) -> nn.Module:
    return ResNet50(**variant_options(self.workload_name))

  def _split_variables(self, variables: Dict[str, Any]) -> Tuple[Any, Any]:
    params = variables.pop('params')
    return params, variables  # {'batch_stats': ...}

  def model_fn(
      self,
      params: spec.ParameterContainer,
      augmented_and_preprocessed_input_batch: Dict[str, spec.Tensor],
      model_state: spec.ModelAuxiliaryState,
      mode: spec.ForwardPassMode,
      rng: spec.RandomState,
      update_batch_norm: bool,
      use_running_average_bn: Optional[bool] = None,
      dropout_rate: Optional[float] = None,
  ) -> Tuple[spec.Tensor, spec.ModelAuxiliaryState]:
    """Logits; with ``update_batch_norm`` also the new batch statistics.

    As the reference: ``update_batch_norm`` normalises with the batch's
    statistics and returns updated running ones; otherwise the running
    statistics are used and ``model_state`` comes back unchanged.
    ``use_running_average_bn``, when given, alone decides which statistics
    normalise. ``mode``, ``rng`` and ``dropout_rate`` are unused (no dropout).
    """
    del mode, rng, dropout_rate
    variables = {'params': params, **model_state}
    inputs = augmented_and_preprocessed_input_batch['inputs']
    if update_batch_norm:
      logits, new_model_state = self._model.apply(
          variables, inputs, update_batch_norm=True, mutable=['batch_stats'],
          use_running_average_bn=use_running_average_bn)
      return logits, dict(new_model_state)
    logits = self._model.apply(
        variables, inputs, update_batch_norm=False, mutable=False,
        use_running_average_bn=use_running_average_bn)
    return logits, model_state


class ImagenetResNetSiLUWorkload(ImagenetResNetWorkload):
  workload_name = 'imagenet_resnet_silu'


class ImagenetResNetGELUWorkload(ImagenetResNetWorkload):
  workload_name = 'imagenet_resnet_gelu'


class ImagenetResNetLargeBNScaleWorkload(ImagenetResNetWorkload):
  workload_name = 'imagenet_resnet_large_bn_init'
