"""The ImageNet ResNet-50 workload and its variants (silu, gelu, large_bn_init)."""
