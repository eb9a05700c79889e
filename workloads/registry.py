"""Workload names -> ``'module:Class'``, imported only when asked for.

Importing a workload module pulls in its model (and maybe heavy data code), so
the table holds strings and :func:`get_workload_class` imports one on demand.
"""

from __future__ import annotations

import importlib
from typing import Dict, List, Type

WORKLOADS: Dict[str, str] = {
    'fashion_mnist': 'workloads.fashion_mnist.workload:FashionMnistWorkload',
    'mnist1d': 'workloads.mnist1d.workload:Mnist1dWorkload',
    'imagenet_resnet': 'workloads.imagenet_resnet.workload:ImagenetResNetWorkload',
    'imagenet_resnet_silu': 'workloads.imagenet_resnet.workload:ImagenetResNetSiLUWorkload',
    'imagenet_resnet_gelu': 'workloads.imagenet_resnet.workload:ImagenetResNetGELUWorkload',
    'imagenet_resnet_large_bn_init':
        'workloads.imagenet_resnet.workload:ImagenetResNetLargeBNScaleWorkload',
    'imagenet_vit': 'workloads.imagenet_vit.workload:ImagenetVitWorkload',
    'imagenet_vit_glu': 'workloads.imagenet_vit.workload:ImagenetVitGluWorkload',
    'imagenet_vit_post_ln': 'workloads.imagenet_vit.workload:ImagenetVitPostLNWorkload',
    'imagenet_vit_map': 'workloads.imagenet_vit.workload:ImagenetVitMapWorkload',
    'criteo1tb': 'workloads.criteo1tb.workload:Criteo1TbDlrmSmallWorkload',
    'criteo1tb_test': 'workloads.criteo1tb.workload:Criteo1TbDlrmSmallTestWorkload',
    'criteo1tb_layernorm':
        'workloads.criteo1tb.workload:Criteo1TbDlrmSmallLayerNormWorkload',
    'criteo1tb_resnet': 'workloads.criteo1tb.workload:Criteo1TbDlrmSmallResNetWorkload',
    'criteo1tb_embed_init':
        'workloads.criteo1tb.workload:Criteo1TbDlrmSmallEmbedInitWorkload',
    'ogbg': 'workloads.ogbg.workload:OgbgWorkload',
    'ogbg_gelu': 'workloads.ogbg.workload:OgbgGeluWorkload',
    'ogbg_silu': 'workloads.ogbg.workload:OgbgSiluWorkload',
    'ogbg_model_size': 'workloads.ogbg.workload:OgbgModelSizeWorkload',
    'fastmri': 'workloads.fastmri.workload:FastMRIWorkload',
    'fastmri_model_size': 'workloads.fastmri.workload:FastMRIModelSizeWorkload',
    'fastmri_tanh': 'workloads.fastmri.workload:FastMRITanhWorkload',
    'fastmri_layernorm': 'workloads.fastmri.workload:FastMRILayerNormWorkload',
    'librispeech_conformer':
        'workloads.librispeech_conformer.workload:LibriSpeechConformerWorkload',
    'librispeech_conformer_attention_temperature':
        'workloads.librispeech_conformer.workload:'
        'LibriSpeechConformerAttentionTemperatureWorkload',
    'librispeech_conformer_layernorm':
        'workloads.librispeech_conformer.workload:LibriSpeechConformerLayerNormWorkload',
    'librispeech_conformer_gelu':
        'workloads.librispeech_conformer.workload:LibriSpeechConformerGeluWorkload',
    'librispeech_deepspeech':
        'workloads.librispeech_deepspeech.workload:LibriSpeechDeepSpeechWorkload',
    'librispeech_deepspeech_tanh':
        'workloads.librispeech_deepspeech.workload:LibriSpeechDeepSpeechTanhWorkload',
    'librispeech_deepspeech_no_resnet':
        'workloads.librispeech_deepspeech.workload:LibriSpeechDeepSpeechNoResNetWorkload',
    'librispeech_deepspeech_norm_and_spec_aug':
        'workloads.librispeech_deepspeech.workload:'
        'LibriSpeechDeepSpeechNormAndSpecAugWorkload',
    'wmt': 'workloads.wmt.workload:WmtWorkload',
    'wmt_post_ln': 'workloads.wmt.workload:WmtWorkloadPostLN',
    'wmt_attention_temp': 'workloads.wmt.workload:WmtWorkloadAttentionTemp',
    'wmt_glu_tanh': 'workloads.wmt.workload:WmtWorkloadGLUTanH',
}


def names() -> List[str]:
  """Registered workload names, sorted."""
  return sorted(WORKLOADS)


def get_workload_class(name: str) -> Type:
  """Imports and returns the class registered as ``name``."""
  if name not in WORKLOADS:
    raise ValueError(
        f'Unknown workload {name!r}. Known workloads: {", ".join(names())}.')
  module_name, _, class_name = WORKLOADS[name].partition(':')
  module = importlib.import_module(module_name)
  return getattr(module, class_name)
