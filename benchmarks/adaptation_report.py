"""The adaptation benchmark's report: rows (mean and spread over seeds at one iteration, curves
over all), the Markdown table, the curves as PNG, and the atomic writes of the result files. Also
used by gpu_paper256.py."""

import json
import os
import platform

import numpy as np
import torch

import curves
import machine_info

COLUMNS = ['kid', 'fid', 'intra_lpips', 'scs', 'correspondence']   # every number a row and a curve carry

def at_iteration(record, iteration):
    """The evaluation entry of a run at `iteration` (None if it has none there)."""
    return next((entry for entry in record.get('evals', []) if entry['iteration'] == iteration), None)


def summarise(records, planned, at):
    """One row per configuration: mean (and std over seeds) of every number at iteration `at`, and
    its curve (mean over seeds at every evaluation point)."""
    rows = []
    for config, status, notes in planned:
        mine = [r for r in records if r['config'] == config.name]
        row = dict(config=config.name, plugins=list(config.plugins), shots=config.shots, notes=notes)
        if status != 'run':
            row['status'] = status
            rows.append(row)
            continue
        failed = [r['status'] for r in mine if r['status'] != 'ok']
        row['status'] = (failed[0] if failed else 'ok' if mine
                         else 'not finished: the benchmark stopped before this run')
        good = [r for r in mine if r['status'] == 'ok']
        entries = [e for e in (at_iteration(r, at) for r in good) if e is not None]
        for key in COLUMNS:
            values = [e[key] for e in entries if e.get(key) is not None]
            if values:
                row[key] = float(np.mean(values))
                row[key + '_std'] = float(np.std(values)) if len(values) > 1 else None
        row['seeds'] = len(entries)
        for key in ('sec_per_kimg', 'peak_rss_mb', 'wall_s', 'cpu_s'):
            values = [r['train'][key] for r in good if r.get('train', {}).get(key) is not None]
            row[key] = float(np.mean(values)) if values else None
        points = sorted({e['iteration'] for r in good for e in r.get('evals', [])})
        row['curves'] = {key: [[point, float(np.mean(values)) if values else None]
                               for point in points
                               for values in [[e[key] for r in good for e in [at_iteration(r, point)]
                                               if e is not None and e.get(key) is not None]]]
                         for key in COLUMNS}
        rows.append(row)
    return rows


CURVE_TITLES = dict(
    kid=('KID vs the held-out target images (lower: closer to the target domain)', 'KID'),
    fid=('FID vs the held-out target images (lower is better)', 'FID'),
    intra_lpips=('Intra-cluster LPIPS (higher: more diverse, less copying of the shots)', 'intra-LPIPS'),
    scs=("SCS: structure kept from the source for the same z (higher: more kept)", 'SCS'),
    correspondence=('Correspondence: same emoji as the source for the same z (higher: more kept)', 'share'))


def write_curves(out, result):
    """adaptation-<metric>.png: every configuration's mean over seeds along training, starting
    from the unadapted source at iteration 0 (scored on the row's own shots where they differ:
    intra-LPIPS clusters by them). Returns {metric: file name}."""
    written = {}
    source = result['reference']['source']
    own = result['reference'].get('source_by_config') or {}
    seeds = ', '.join(map(str, result['protocol']['seeds']))
    for key, (title, label) in CURVE_TITLES.items():
        series = {}
        for row in result['rows']:
            points = (row.get('curves') or {}).get(key) or []
            if any(value is not None for _, value in points):
                start = (own.get(row['config']) or {}).get(key, source.get(key))
                series[row['config']] = [(0, start)] + [tuple(point) for point in points]
        if not series:
            continue
        name = f'adaptation-{key}.png'
        note = f'mean over seeds {seeds}; iteration 0 = the source, not adapted'
        if any(key in values for values in own.values()):
            note += ' (scored on the row\'s own shots)'
        curves.plot(series, os.path.join(out, name), title, label, note=note)
        written[key] = name
    return written


def write_results(out, stem, result, table):
    """<out>/<stem>.json and .md, each replaced whole (a reader never sees half a file)."""
    os.makedirs(out, exist_ok=True)
    for name, text in ((stem + '.json', json.dumps(result, indent=2)), (stem + '.md', table)):
        with open(os.path.join(out, name + '.tmp'), 'w') as f:
            f.write(text)
        os.replace(os.path.join(out, name + '.tmp'), os.path.join(out, name))


def row_notes(row):
    """A table row's last cell: its status unless 'ok', then its notes ('ok' if neither)."""
    return '; '.join(([] if row['status'] == 'ok' else [row['status']]) + row['notes']) or 'ok'


def fmt(value, digits=3, std=None):
    if value is None:
        return '-'
    text = f'{value:.{digits}f}'
    return text + (f' ± {std:.{digits}f}' if std else '')


def markdown(result):
    p, d = result['protocol'], result['detector']
    lines = ['# Adaptation benchmark (offline protocol)', '',
             f'Command: `{result["command"]}`  ', f'Date: {result["date"]}  ',
             f'Source: `{p["source"]}` (sha256 {p["source_sha256"][:12]})  ',
             f'Target: `{p["data"]}` ({p["target_images"]} images); reference: `{p["heldout"]}` '
             f'({p["heldout_images"]} held-out images)  ',
             f'Budget: {p["iters"]} iterations at batch {p["batch"]} ({p["iters"] * p["batch"] / 1000:g} kimg), '
             f'evaluated every {p["eval_every"]}; table at iteration {p["table_at"]}; '
             f'seeds {", ".join(map(str, p["seeds"]))}, {p["threads"]} thread(s) per run; metrics on '
             f'{p["num_gen"]} generated images ({p["num_pairs"]} pairs for SCS and correspondence)  ',
             f'Machine: {p["machine"]}; total time {result["runtime_s"] / 60:.1f} min '
             f'(load average {p["load_start"]} at the start, {p["load_end"]} at the end)', '',
             '| method | KID ↓ | FID ↓ | intra-LPIPS ↑ | SCS ↑ | corresp. ↑ | sec/kimg | peak RSS (MB) | status / notes |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    src = result['reference']['source']
    lines.append(f'| *source, not adapted* | {fmt(src["kid"])} | {fmt(src["fid"], 2)} | '
                 f'{fmt(src["intra_lpips"])} | 1 | {fmt(src.get("correspondence"))} | - | - | reference row |')
    for row in result['rows']:
        cells = [fmt(row.get(key), 2 if key == 'fid' else 3, row.get(key + '_std')) for key in
                 ('kid', 'fid', 'intra_lpips', 'scs', 'correspondence')]
        lines.append(f'| {row["config"]} | ' + ' | '.join(cells) + f' | {fmt(row.get("sec_per_kimg"), 0)} | '
                     f'{fmt(row.get("peak_rss_mb"), 0)} | {row_notes(row)} |')
    own = result['reference'].get('source_by_config') or {}
    if own:
        lines += ['', 'Intra-LPIPS clusters samples by the shots a row trains on; the source, not adapted, '
                  'clustered by the shots of ' + ', '.join(f'{name}: {fmt(values["intra_lpips"])}'
                                                          for name, values in own.items())
                  + ' (compare those rows with this, not with the source row).']
    ref = result['reference']
    if ref.get('source_vs_source_domain'):
        own = ref['source_vs_source_domain']
        lines += ['', f'The source generator against its own domain (`{p["source_data"]}`), same detector: '
                  f'KID {fmt(own["kid"])}, FID {fmt(own["fid"], 2)}'
                  + (f'; its samples draw {src["distinct_emoji"]} distinct emoji (nearest source image, '
                     f'{p["num_pairs"]} samples)' if src.get('distinct_emoji') is not None else '') + '.']
    lines += ['', f'Reference sets, same detector: the {p["target_images"]} shots themselves vs the held-out images '
              f'KID {fmt(ref["shots"]["kid"])} (FID {fmt(ref["shots"]["fid"], 2)}); one half '
              f'of the held-out images vs the other KID {fmt(ref["heldout_halves"]["kid"])} '
              f'(FID {fmt(ref["heldout_halves"]["fid"], 2)}): differences between methods smaller '
              'than that are noise.'
              + (f' The source domain\'s real images vs the held-out images: KID '
                 f'{fmt(ref["source_domain"]["kid"])} (FID {fmt(ref["source_domain"]["fid"], 2)}), the '
                 'domain gap: what a perfect source scores before adaptation, and what an adapted '
                 'generator must beat to be closer to the target than the source domain itself is.'
                 if ref.get('source_domain') else ''), '']
    if result.get('curves'):
        lines += ['Curves (mean over seeds, iteration 0 = the source): '
                  + ', '.join(f'[{key}]({name})' for key, name in result['curves'].items()) + '.', '']
    retrieval = d.get('retrieval')
    lines += ['**Substitute detector.** ' + d['description'] + f' ({d["settings"]["steps"]} steps, '
              f'{d["settings"].get("views", "geometry")} views, seed '
              f'{d["seed"]}; final NT-Xent {d["final_loss"]:.3f}, augmented-view retrieval top-1 '
              f'{d["retrieval_top1"]:.2f} over {d["images"]} images'
              + (f'; cross-style retrieval over {retrieval["pairs"]} paired emoji: a target image\'s own '
                 f'source image is the nearest for {retrieval["target_to_source_top1"]:.1%}, among the '
                 f'{retrieval["k"]} nearest for {retrieval["target_to_source_topk"]:.1%} (source -> target '
                 f'{retrieval["source_to_target_top1"]:.1%} / {retrieval["source_to_target_topk"]:.1%})'
                 if retrieval else '') + '). Limits:', '']
    lines += [f'- {limit}' for limit in d['limits']]
    content = result.get('content_encoder')
    if content:
        unseen = content['retrieval_unseen']
        lines += ['', f'**Correspondence encoder.** The same recipe with geometry views (an emoji\'s '
                  f'colours are a cue shared by its two styles) on the {content["paired_items"]} paired '
                  f'items, plus the two styles of {content["pairs_trained"]} of them (the even-numbered) as '
                  f'positives ({content["settings"]["steps"]} steps). On the {unseen["pairs"]} items it '
                  f'never paired, a target image\'s own source image is the nearest for '
                  f'{unseen["target_to_source_top1"]:.1%} and among the {unseen["k"]} nearest for '
                  f'{unseen["target_to_source_topk"]:.1%} (source -> target {unseen["source_to_target_top1"]:.1%} '
                  f'/ {unseen["source_to_target_topk"]:.1%}): that bounds how well correspondence can be '
                  'read, for every row alike.']
    inversion = result.get('rssa_inversion')
    if inversion:
        lines += ['', 'rssa\'s target codes: ' + '; '.join(
            f'`{record["command"]}`, {record["status"]}, {record.get("wall_s", 0):.0f} s'
            for record in inversion.values()) + ' (once for all rssa rows, not in their times).']
    lines += ['', '**Columns.** KID, FID: substitute embedding of generated vs held-out images '
              '(gda_core.metrics kid/fid; KID as computed, not scaled by 10^3, in the embedding\'s '
              'own units). ± is the standard deviation over seeds. intra-LPIPS: CDC\'s intra-cluster protocol with the '
              'substitute\'s unit-weight LPIPS, clusters = the shots. SCS: RSSA\'s score with '
              'Sobel edges, source vs adapted for the same z. Correspondence: share of z for which '
              'the adapted image is nearest to the target-style version of the emoji the source '
              'drew (benchmarks/correspondence.py); for the source row, how often a source sample is '
              'already nearest to its own emoji\'s target version. sec/kimg: the training loop\'s '
              'wall-clock rate after the first tick, one CPU thread per run on a shared machine. '
              'Peak RSS: the training process\'s largest resident memory at a tick (stats.jsonl cpumem), Python and torch included.',
              '']
    return '\n'.join(lines)


def machine():
    return f'{machine_info.cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}'


def load_average():
    return '{:.1f}, {:.1f}, {:.1f}'.format(*os.getloadavg())
