"""Distillation with an exported W, in PyTorch. The only part of xtoken_align that imports torch."""
