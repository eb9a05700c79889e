"""librispeech_conformer and its variants: the Conformer with CTC on LibriSpeech."""

from __future__ import annotations

from typing import Any, Dict

import flax.linen as nn

from workloads.librispeech import LibriSpeechWorkload
from workloads.librispeech_conformer.model import Conformer, variant_options


class LibriSpeechConformerWorkload(LibriSpeechWorkload):
  """The Conformer; ``model_state`` holds the convolution blocks' batch-norm statistics."""

  workload_name = 'librispeech_conformer'

  def _make_model(self, options: Dict[str, Any]) -> nn.Module:
    return Conformer(**{**variant_options(self.workload_name), **options})


class LibriSpeechConformerAttentionTemperatureWorkload(LibriSpeechConformerWorkload):
  workload_name = 'librispeech_conformer_attention_temperature'


class LibriSpeechConformerLayerNormWorkload(LibriSpeechConformerWorkload):
  workload_name = 'librispeech_conformer_layernorm'


class LibriSpeechConformerGeluWorkload(LibriSpeechConformerWorkload):
  workload_name = 'librispeech_conformer_gelu'
