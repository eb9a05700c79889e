"""The fastMRI knee single-coil U-Net workload and its model_size, tanh and layernorm variants."""
