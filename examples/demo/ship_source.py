"""Copy the demo source generator out of a training snapshot into gda_core/demo_data, slimmed.

Fine-tuning needs the source's G_ema and D only (gda train starts G, G_ema and the frozen copy from
G_ema); optimiser states, the live G, the augmentation pipe and the loop state stay behind, which
keeps the shipped file about a third of the snapshot's size. What was kept, and from which run,
goes to source_model.json beside it.

    python examples/demo/ship_source.py /work/source-train/runs/00001-demo-source/network-snapshot-000120.pkl \
        --diversity /work/source-train/diversity.jsonl
"""

import argparse
import hashlib
import json
import os
import sys

import stylegan2_ada
from stylegan2_ada.checkpoint import save_snapshot
from stylegan2_ada.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIP = os.path.join(REPO, 'gda_core', 'demo_data')
MODEL = 'source-noto-emoji-32.pkl'


def chain(snapshot):
    """Every run the snapshot descends from, newest first (runs chained by --source)."""
    runs = []
    run_dir = os.path.dirname(os.path.abspath(snapshot))
    while run_dir and len(runs) < 100:
        options_file = os.path.join(run_dir, 'training_options.json')
        options = json.load(open(options_file)) if os.path.isfile(options_file) else {}
        runs.append(dict(run=os.path.basename(run_dir), source=options.get('source'),
                         options=options.get('options')))
        source = options.get('source')
        run_dir = os.path.dirname(source) if source and source.endswith('.pkl') else None
    return runs


def diversity_of(snapshot, log_path):
    """The snapshot's record in a source_diversity.py log (None if it has none)."""
    if not log_path:
        return None
    if not os.path.isfile(log_path):
        raise UserError(f'{log_path} does not exist; run examples/demo/train_source.sh WORKDIR --status first')
    name = os.path.basename(snapshot)
    records = [json.loads(line) for line in open(log_path) if line.strip()]
    return next((record for record in records if record.get('snapshot') == name), None)


def slim(snapshot, dest):
    """Write G_ema and D (and the training-set kwargs) of `snapshot` to `dest`; return a record."""
    data = stylegan2_ada.load(snapshot)
    if data.get('G_ema') is None or data.get('D') is None:
        raise UserError(f'{snapshot} lacks G_ema or D; pass a gda training snapshot')
    loop = (data.get('gda') or {}).get('loop') or {}
    save_snapshot(dest, dict(G_ema=data['G_ema'], D=data['D'],
                             training_set_kwargs=data.get('training_set_kwargs')))
    with open(dest, 'rb') as file:
        digest = hashlib.sha256(file.read()).hexdigest()
    return dict(file=os.path.basename(dest), sha256=digest, snapshot=os.path.basename(snapshot),
                kimg=loop.get('cur_nimg', 0) / 1000, iteration=loop.get('iteration'),
                G_kwargs=data['G_ema'].init_kwargs, runs=chain(snapshot),
                trained_on='noto-emoji-32.zip (examples/demo/make_demo_data.py), see provenance.json')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('snapshot')
    parser.add_argument('--ship', default=SHIP, help='destination folder (default: gda_core/demo_data)')
    parser.add_argument('--diversity', help='source_diversity.py log whose record of this snapshot to keep')
    args = parser.parse_args(argv)
    try:
        diversity = diversity_of(args.snapshot, args.diversity)
        record = slim(args.snapshot, os.path.join(args.ship, MODEL))
        if diversity:
            record['diversity'] = diversity
    except UserError as error:
        print(f'Error: {error}', file=sys.stderr)
        return 2
    with open(os.path.join(args.ship, 'source_model.json'), 'w') as file:
        json.dump(record, file, indent=1, default=str)
        file.write('\n')
    size = os.path.getsize(os.path.join(args.ship, MODEL)) / 2 ** 20
    print(f'Wrote {os.path.join(args.ship, MODEL)} ({size:.1f} MiB, {record["kimg"]:g} kimg)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
