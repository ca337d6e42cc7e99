"""The dtype of the layers NVIDIA computes in reduced precision (blocks with `use_fp16`, set by
`num_fp16_res`: at 32 px every block from 8x8 up).

On CUDA they run in float16, as in NVIDIA's code. NVIDIA's code runs them in float32 on the CPU,
and so do we unless `cpu_bf16` is set (`gda train --cpu-bf16`): then they run in bfloat16, the
reduced format CPUs accelerate (AVX512-BF16, AMX), where the demo source's training at 32 px
runs 1.55 times as fast (benchmarks/train_speed.py --config demo-source --cpu-bf16). Weights,
optimiser state, losses and the blocks NVIDIA keeps in float32 stay float32, and conv_clamp bounds
the activations as it does for fp16.
On a CPU without bfloat16 instructions the same setting is slower than float32. The training loop
sets it for its whole process, so what a run draws or scores (sample grids, `--metrics`,
comparison.png) uses it too; the `gda generate` and `gda metrics` commands never do.
"""

import torch

cpu_bf16 = False   # process-wide, like NVIDIA's conv2d_gradfix.enabled; set by the training loop


def reduced_dtype(device):
    """float16 on CUDA; bfloat16 on the CPU with `cpu_bf16`; otherwise float32."""
    if device.type == 'cuda':
        return torch.float16
    if device.type == 'cpu' and cpu_bf16:
        return torch.bfloat16
    return torch.float32
