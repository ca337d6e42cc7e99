#!/usr/bin/env bash
# Train the demo source generator (all 3,786 Noto Emoji, 32 px) from scratch with gda, in a way that
# survives being stopped: run it again and it resumes the run exactly (`gda train --resume`).
#
#   examples/demo/train_source.sh [WORKDIR]            # default WORKDIR: ./demo-train
#   examples/demo/train_source.sh WORKDIR --status     # kimg done, newest snapshot, diversity
#   TOTAL_KIMG=400 NICE=19 examples/demo/train_source.sh /work/source-train
#   CPU_BF16=1 examples/demo/train_source.sh ...       # gda train --cpu-bf16: ~1.5x as fast on
#                                                      # CPUs with AVX512-BF16 or AMX (lscpu)
#
# Progress: WORKDIR/train.log; samples: WORKDIR/runs/*/fakes*.png; diversity per snapshot:
# WORKDIR/diversity.jsonl (examples/demo/source_diversity.py, written by --status).
set -euo pipefail
cd "$(dirname "$0")/../.."

work=${1:-demo-train}
mode=${2:-train}
total=${TOTAL_KIMG:-400}        # kimg in all
nice_level=${NICE:-19}
precision=()
[ "${CPU_BF16:-0}" = 1 ] && precision=(--cpu-bf16)
data=${DATA:-gda_core/demo_data/noto-emoji-32.zip}
runs="$work/runs"
mkdir -p "$runs"
gda=${GDA:-gda}
python=${PYTHON:-python}

# The demo source configuration: NVIDIA's cifar preset (32 px data of many kinds: minibatch-std
# groups of 32, no style mixing, no path-length regulariser, D 'orig', R1 gamma 0.01,
# 2 mapping layers) at a smaller width for the CPU, batch 32 (twice cifar's updates per image:
# 64 gave 256 updates in 16 kimg and still noise), ADA reacting within 100 kimg (docs/demo.md).
arch=(--cbase 2048 --cmax 128 --zdim 256)
train=(--cfg cifar --batch 32 --ada-kimg 100 --tick 1 --snap 4 --seed 0)

newest_run() { ls -d "$runs"/*-demo-source 2>/dev/null | sort | tail -n 1 || true; }

if [ "$mode" = "--status" ]; then
    run=$(newest_run)
    [ -z "$run" ] && { echo "no run in $runs yet"; exit 0; }
    echo "run: $run"
    "$python" examples/demo/source_diversity.py "$run" --data "$data" --log "$work/diversity.jsonl"
    exit 0
fi

run=$(newest_run)
if [ -n "$run" ] && ! ls "$run"/network-snapshot-*.pkl > /dev/null 2>&1; then
    echo "setting aside $run: stopped before its first snapshot"
    mv "$run" "$run-empty"
    run=""
fi
if [ -z "$run" ]; then
    cmd=("$gda" train --data "$data" --source none --outdir "$runs" --desc demo-source
         "${arch[@]}" "${train[@]}" --kimg "$total" "${precision[@]}")
else
    cmd=("$gda" train --resume "$run" --kimg "$total" "${precision[@]}")
fi
echo "$(date -u +%FT%TZ) ${cmd[*]}" >> "$work/commands.log"
exec nice -n "$nice_level" "${cmd[@]}"
