#!/usr/bin/env bash
# Go on training the demo source on a GPU, in one call of a few minutes, from the newest snapshot of
# the CPU run (examples/demo/train_source.sh), exactly as `gda train --resume` goes on anywhere.
#
#   bash examples/demo/train_source_gpu.sh pack RUN_DIR build/source-run   # here: the run with its
#        newest snapshot only (~35 MB; build/ is ignored by git, so carry it to the GPU machine)
#   bash examples/demo/train_source_gpu.sh train build/source-run OUT_DIR  # there: train, measure
#
# `train` resumes on CUDA until LIMIT_S seconds (default 420) or TOTAL_KIMG (default 3000), with a
# snapshot every SNAP ticks (default 25; a tick is 1 kimg in this run); then it measures the newest
# snapshot's diversity (source_diversity.py, 1,024 samples) and writes into OUT_DIR: train.log,
# diversity.jsonl and diversity-*.png, the newest fakes<kimg>.png, that snapshot itself (the run's
# whole state) and ship/ (ship_source.py's slimmed source-noto-emoji-32.pkl and source_model.json,
# to copy into gda_core/demo_data if the figures and the pictures say it is recognisable).
set -u
cd "$(dirname "$0")/../.."
mode=${1:?usage: train_source_gpu.sh pack RUN_DIR DEST | train RUN_DIR OUT_DIR}
run=${2:?give the run directory}
python=${PYTHON:-python}
gda=${GDA:-gda}

newest() { ls "$1"/network-snapshot-*.pkl 2>/dev/null | sort | tail -n 1; }

if [ "$mode" = pack ]; then
    dest=${3:?give the destination folder}
    snapshot=$(newest "$run")
    [ -n "$snapshot" ] || { echo "error: no snapshot in $run; train it first" >&2; exit 2; }
    mkdir -p "$dest"
    cp "$run"/training_options.json "$run"/stats.jsonl "$run"/log.txt "$snapshot" "$dest"/
    cp "$run"/resume*.json "$dest"/ 2>/dev/null || true
    echo "packed $(basename "$snapshot") of $run into $dest ($(du -sh "$dest" | cut -f1))"
    exit 0
fi
[ "$mode" = train ] || { echo "error: unknown mode $mode (pack or train)" >&2; exit 2; }
out=${3:-${OUT:-build/source-gpu}}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$out/gpu.txt" 2>&1
status=0
timeout "${LIMIT_S:-420}" "$gda" train --resume "$run" --kimg "${TOTAL_KIMG:-3000}" \
    --snap "${SNAP:-25}" --device "${DEVICE:-cuda}" > "$out/train.log" 2>&1 || status=$?
tail -n 3 "$out/train.log"
snapshot=$(newest "$run")
"$python" examples/demo/source_diversity.py "$snapshot" --samples 1024 --log "$out/diversity.jsonl"
cp "$snapshot" "$out"/
fakes=$(ls "$run"/fakes[0-9]*.png 2>/dev/null | sort | tail -n 1)   # not fakes_init.png
[ -n "$fakes" ] && cp "$fakes" "$out"/
cp "$run"/diversity-*.png "$out"/
"$python" examples/demo/ship_source.py "$snapshot" --ship "$out/ship" --diversity "$out/diversity.jsonl"
# timeout's 124 is the planned stop; anything else is a failure worth reading train.log for.
[ "$status" = 124 ] && status=0
exit $status
