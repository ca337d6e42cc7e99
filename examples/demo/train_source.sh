#!/usr/bin/env bash
# Train the demo source generator (Noto Emoji faces, 32 px, quarter width) from scratch with gda,
# in chunks that survive being stopped: run it again and it continues where it left off.
#
#   examples/demo/train_source.sh [WORKDIR]            # default WORKDIR: ./demo-train
#   TOTAL_KIMG=200 NICE=19 examples/demo/train_source.sh /work/demo-train
#
# Progress: tail WORKDIR/train.log; samples: WORKDIR/runs/*/fakes*.png; the newest snapshot is
# printed by `examples/demo/train_source.sh WORKDIR --status`.
#
# Each chunk is one `gda train` process. With `gda train --resume RUN_DIR` available, a stopped run
# is resumed exactly (optimiser states, kimg, ADA p, RNG). Without it, the next chunk is a new run
# that starts from the previous run's newest snapshot (`--source SNAPSHOT`: G from its G_ema, D as
# saved, fresh optimiser states) and trains for the kimg still missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

work=${1:-demo-train}
mode=${2:-train}
total=${TOTAL_KIMG:-200}        # kimg in all, summed over chained runs
nice_level=${NICE:-19}
data=${DATA:-build/demo/noto-faces-32.zip}
runs="$work/runs"
mkdir -p "$runs"
gda=${GDA:-gda}

# The demo source configuration (see /work/notes/readme-demo.md for why).
arch=(--cbase 2048 --cmax 128 --map 2 --zdim 128)
train=(--cfg auto --batch 16 --mirror --aug ada --p 0.2 --ada-kimg 20 --gamma 0.05 --ema 2.5 --tick 0.5 --snap 2 --seed 0 --device cpu)

newest_run() { ls -d "$runs"/*-demo-source 2>/dev/null | sort | tail -n 1 || true; }
newest_snapshot() { ls "$1"/network-snapshot-*.pkl 2>/dev/null | sort | tail -n 1 || true; }
snapshot_kimg() { local name; name=$(basename "$1" .pkl); echo $((10#${name##*-})); }
done_kimg() {   # kimg saved in snapshots, summed over the chained runs
    local sum=0 run snap
    for run in $(ls -d "$runs"/*-demo-source 2>/dev/null | sort); do
        snap=$(newest_snapshot "$run")
        [ -n "$snap" ] && sum=$((sum + $(snapshot_kimg "$snap")))
    done
    echo "$sum"
}

if [ "$mode" = "--status" ]; then
    run=$(newest_run)
    echo "runs: $(ls -d "$runs"/*-demo-source 2>/dev/null | wc -l)  kimg saved: $(done_kimg) of $total"
    if [ -n "$run" ]; then
        echo "newest run: $run"
        echo "newest snapshot: $(newest_snapshot "$run")"
        tail -n 1 "$run/stats.jsonl" 2>/dev/null | cut -c1-160 || true
    fi
    exit 0
fi

if [ ! -f "$data" ]; then
    "${PYTHON:-python}" examples/demo/make_demo_data.py --out "$(dirname "$data")"
fi

while :; do
    done=$(done_kimg)
    left=$((total - done))
    if [ "$left" -le 0 ]; then
        echo "done: $done kimg in $runs"
        break
    fi
    run=$(newest_run)
    if [ -n "$run" ] && [ -z "$(newest_snapshot "$run")" ]; then
        echo "setting aside $run: stopped before its first snapshot"
        mv "$run" "$run-empty"
        continue
    fi
    snap=""
    [ -n "$run" ] && snap=$(newest_snapshot "$run")
    if [ -z "$run" ]; then
        echo "chunk: from scratch, $left kimg"
        cmd=("$gda" train --data "$data" --source none --outdir "$runs" --desc demo-source
             "${arch[@]}" "${train[@]}" --kimg "$total")
    elif [[ $("$gda" train --help) == *--resume* ]]; then
        echo "chunk: resume $run"
        cmd=("$gda" train --resume "$run")
    else
        echo "chunk: new run from $snap, $left kimg (no --resume yet)"
        cmd=("$gda" train --data "$data" --source "$snap" --outdir "$runs" --desc demo-source
             "${train[@]}" --kimg "$left")
    fi
    nice -n "$nice_level" "${cmd[@]}"
    if [ "$(done_kimg)" -le "$done" ]; then
        echo "error: the chunk saved no progress ($done kimg); see the log above" >&2
        exit 1
    fi
done
