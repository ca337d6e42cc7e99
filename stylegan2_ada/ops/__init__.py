"""Custom ops with NVIDIA's torch_utils.ops signatures, so code written for those runs on ours.

Every op has a pure-PyTorch reference path that works on any device with arbitrary-order
gradients; bias_act and upfirdn2d hand over to compiled CUDA kernels when those are available.
"""
