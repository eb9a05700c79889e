"""The ImageNet ViT-S/16 workload and its glu, post_ln and map variants."""
