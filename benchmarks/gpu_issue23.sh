#!/usr/bin/env bash
# Issue 23's GPU measurements in one call, for a session that has a GPU (none had one when this was
# written). From the repository root, with the venv active:
#
#     bash benchmarks/gpu_issue23.sh [OUT_DIR]       # default OUT_DIR: $OUT, else build/gpu-issue23
#
# 1. the CUDA op tests (compiling gda's kernels), 2. the per-phase GPU memory of idc+patchd at
# paper256 batch 4 (benchmarks/memory_phases.py --device cuda: allocated and reserved peak per
# phase, under torch.profiler), 3. every configuration row at paper256 batch 4 for 40 iterations
# (benchmarks/gpu_paper256.py --random-init: sec/kimg, peak GPU memory over the run and after the
# first tick). Each step has its own time limit and the later ones run even if one fails; the
# results land in OUT_DIR (copy gpu_paper256.md/json and memory_phases_gpu.md/json into
# benchmarks/results/ afterwards). Set STEP_LIMIT_S to change the per-step limit (default 240 s).
set -u
out="${1:-${OUT:-build/gpu-issue23}}"
limit="${STEP_LIMIT_S:-240}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
status=0
timeout "$limit" python -m pytest -q -m 'cuda_build or not slow' tests/stylegan2_ada/ops \
    > "$out/cuda_op_tests.txt" 2>&1 || status=1
tail -n 3 "$out/cuda_op_tests.txt"
timeout "$limit" python benchmarks/memory_phases.py --device cuda --iters 3 --profile \
    --workdir "$out/memory" --out "$out/memory_phases_gpu" > "$out/memory_phases_gpu.log" 2>&1 \
    || status=1
tail -n 20 "$out/memory_phases_gpu.log"
timeout "$((limit * 2))" python benchmarks/gpu_paper256.py --random-init --iters 40 --configs all \
    --workdir "$out/paper256" --out "$out" > "$out/gpu_paper256.log" 2>&1 || status=1
tail -n 25 "$out/gpu_paper256.log"
exit $status
