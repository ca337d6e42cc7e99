#!/usr/bin/env bash
# The quick-start job: make a small image set, convert it, train a small StyleGAN2 from scratch on
# the CPU, then fine-tune it on a handful of images (the adaptation path), and describe the result.
set -euo pipefail
work=${1:-quickstart}
mkdir -p "$work"
python examples/make_shapes.py "$work/shapes" --count 64 --size 32
gda dataset "$work/shapes" "$work/shapes.zip" --resolution 32
gda train --data "$work/shapes.zip" --source none --outdir "$work/runs" --desc scratch \
    --cbase 2048 --cmax 64 --map 2 --zdim 64 --batch 8 --kimg 0.8 --tick 0.2 --snap 2
source=$(ls "$work"/runs/*-scratch/network-snapshot-*.pkl | tail -n 1)
python examples/make_shapes.py "$work/few" --count 5 --size 32 --seed 1
gda dataset "$work/few" "$work/few.zip" --resolution 32
gda train --data "$work/few.zip" --source "$source" --outdir "$work/runs" --desc adapted \
    --iters 40 --tick 0.08 --snap 2
gda info "$(ls "$work"/runs/*-adapted/network-snapshot-*.pkl | tail -n 1)"
echo "Samples: $work/runs/*/fakes*.png"
