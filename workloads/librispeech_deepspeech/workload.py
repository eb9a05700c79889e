"""librispeech_deepspeech and its variants: DeepSpeech 2 with CTC on LibriSpeech."""

from __future__ import annotations

from typing import Any, Dict

import flax.linen as nn

from workloads.librispeech import LibriSpeechWorkload
from workloads.librispeech_deepspeech.model import Deepspeech, variant_options


class LibriSpeechDeepSpeechWorkload(LibriSpeechWorkload):
  """DeepSpeech; ``model_state`` holds its batch-norm statistics (none with layer norms)."""

  workload_name = 'librispeech_deepspeech'

  def _make_model(self, options: Dict[str, Any]) -> nn.Module:
    return Deepspeech(**{**variant_options(self.workload_name), **options})


class LibriSpeechDeepSpeechTanhWorkload(LibriSpeechDeepSpeechWorkload):
  workload_name = 'librispeech_deepspeech_tanh'


class LibriSpeechDeepSpeechNoResNetWorkload(LibriSpeechDeepSpeechWorkload):
  workload_name = 'librispeech_deepspeech_no_resnet'


class LibriSpeechDeepSpeechNormAndSpecAugWorkload(LibriSpeechDeepSpeechWorkload):
  """Layer norms everywhere (no model state), more SpecAugment masks."""

  workload_name = 'librispeech_deepspeech_norm_and_spec_aug'
  default_eval_batch_size = 128  # As the reference.
