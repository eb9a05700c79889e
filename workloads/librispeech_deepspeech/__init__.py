"""The LibriSpeech DeepSpeech workload and its variants (tanh, no_resnet, norm_and_spec_aug)."""
