"""Inference engines of the device runtime: emulated, torch (CPU), TensorRT (GPU)."""
