"""imagenet_vit and its variants: ViT-S/16 on ImageNet."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import flax.linen as nn

from algoperf import spec
from workloads.imagenet import ImageNetWorkload
from workloads.imagenet_vit.model import ViT, variant_options


class ImagenetVitWorkload(ImageNetWorkload):
  """ViT-S/16; no model state; dropout rate per call (default 0)."""

  workload_name = 'imagenet_vit'
  default_eval_batch_size = 2048
  output_layer_name = 'head'
  use_randaug_and_mixup = True

  def _make_model(self) -> nn.Module:
    return ViT(**variant_options(self.workload_name))

  def _split_variables(self, variables: Dict[str, Any]) -> Tuple[Any, Any]:
    return variables['params'], None

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
    """Logits; dropout (rate may be traced) only in TRAIN mode with an rng.

    As the reference, ``model_state`` is ignored and ``None`` is returned.
    """
    del model_state, update_batch_norm, use_running_average_bn
    train = mode == spec.ForwardPassMode.TRAIN
    rngs = {'dropout': rng} if rng is not None else {}
    logits = self._model.apply(
        {'params': params}, augmented_and_preprocessed_input_batch['inputs'],
        rngs=rngs, train=train,
        dropout_rate=0.0 if dropout_rate is None else dropout_rate)
    return logits, None


class ImagenetVitGluWorkload(ImagenetVitWorkload):
  workload_name = 'imagenet_vit_glu'


class ImagenetVitPostLNWorkload(ImagenetVitWorkload):
  workload_name = 'imagenet_vit_post_ln'


class ImagenetVitMapWorkload(ImagenetVitWorkload):
  workload_name = 'imagenet_vit_map'
