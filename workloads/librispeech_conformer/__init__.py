"""The LibriSpeech Conformer workload and its variants (attention_temperature, layernorm, gelu)."""
