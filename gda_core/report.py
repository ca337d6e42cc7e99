"""`gda report RUN_DIR`: one self-contained HTML page about a training run.

Everything lives inside the file, so it can be mailed or archived: curves are inline SVG drawn
here (no plotting dependency), images are base64 PNG. Sections: the run's options
(training_options.json), every loss term over kimg (stats.jsonl), every metric over kimg
(metric-<name>.jsonl, the last record per snapshot), sample grids (reals.png, fakes_init.png and
up to four fakes*.png ending with the newest), and source/adapted pairs rendered from the newest
snapshot (same z through both generators).
"""

import base64
import html
import io
import json
import math
import os
import re

import PIL.Image
import torch

import stylegan2_ada
from stylegan2_ada.checkpoint.atomic import atomic_write
from stylegan2_ada.errors import UserError
from stylegan2_ada.image_grid import to_uint8

from .metrics.evaluation import latents
from .metrics.pairs import default_pairs, plugin_pipelines
from .metrics.records import metric_files, read_records, snapshots
from .metrics.scs import PAIR_STREAM

COLOURS = ('#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf')
MAX_IMAGE_WIDTH = 768
FAKES_SHOWN = 4
WIDTH, HEIGHT = 460, 260
MARGIN = dict(left=62, right=14, top=40, bottom=38)

# -- reading the run ----------------------------------------------------------------------------


def read_jsonl(path):
    """Dicts of a JSON-lines file; lines that do not parse (a run killed mid-write) are skipped."""
    entries = []
    if os.path.exists(path):
        with open(path) as file:
            for line in file:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    entries.append(entry)
    return entries


def read_json(path):
    """A JSON object file as a dict; {} when missing or unreadable (the report still renders)."""
    try:
        with open(path) as file:
            data = json.load(file)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value):
    return _number(value) and math.isfinite(value)


def loss_series(entries):
    """{term: [(kimg, value)]}: every loss in 'losses', plugin logs ('owner/key') and augment p.
    Non-finite values (a diverged run) are kept: the charts mark them."""
    series = {}
    for entry in entries:
        kimg = entry.get('kimg')
        if not _finite(kimg):
            continue
        values = dict(entry.get('losses') or {})
        values.update({key: value for key, value in entry.items() if '/' in key})
        if 'augment' in entry:
            values['augment p'] = entry['augment']
        for key, value in values.items():
            if _number(value):
                series.setdefault(key, []).append((kimg, value))
    return series


def metric_series(run_dir):
    """{metric: {result key: [(kimg, value)]}} from the run's metric-<name>.jsonl files."""
    found = {}
    for name, path in metric_files(run_dir).items():
        for record in read_records(path):
            if not _finite(record.get('kimg')):
                continue
            for key, value in record['results'].items():
                if _number(value):
                    found.setdefault(name, {}).setdefault(key, []).append((record['kimg'], value))
    return found


# -- SVG charts ---------------------------------------------------------------------------------


def nice_ticks(lo, hi, count=5):
    """Round tick values covering [lo, hi] (about `count` of them)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [i * step for i in range(first, int(math.floor(hi / step + 1e-9)) + 1)]


def _span(values):
    lo, hi = min(values), max(values)
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def _label(value):
    return f'{value:.4g}'


def non_finite_note(series):
    """'nan from kimg 0.024' for each label with non-finite values (where the run diverged)."""
    notes = []
    for label, values in series.items():
        bad = sorted((x, y) for x, y in values if not math.isfinite(y))
        if bad:
            name = f'{label}: ' if len(series) > 1 else ''
            notes.append(f'{name}{bad[0][1]} from kimg {_label(bad[0][0])} ({len(bad)} value(s))')
    return '; '.join(notes)


def svg_chart(title, series, x_label='kimg'):
    """An inline SVG line chart of {label: [(x, y)]} (one colour per label, legend if several).
    Non-finite values are drawn as red crosses along the top edge and named under the title."""
    points = [point for values in series.values() for point in values]
    finite_y = [y for _, y in points if math.isfinite(y)]
    x_lo, x_hi = _span([x for x, _ in points])
    y_lo, y_hi = _span(finite_y or [0.0])
    plot_w = WIDTH - MARGIN['left'] - MARGIN['right']
    plot_h = HEIGHT - MARGIN['top'] - MARGIN['bottom']

    def sx(x):
        return MARGIN['left'] + (x - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y):
        return MARGIN['top'] + (1 - (y - y_lo) / (y_hi - y_lo)) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
           f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
           f'<rect x="{MARGIN["left"]}" y="{MARGIN["top"]}" width="{plot_w}" height="{plot_h}" '
           f'fill="none" stroke="#999"/>']
    for y in nice_ticks(y_lo, y_hi):
        out.append(f'<line x1="{MARGIN["left"]}" x2="{MARGIN["left"] + plot_w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
                   f'stroke="#eee"/><text x="{MARGIN["left"] - 4}" y="{sy(y) + 4:.1f}" '
                   f'text-anchor="end">{_label(y)}</text>')
    for x in nice_ticks(x_lo, x_hi):
        out.append(f'<text x="{sx(x):.1f}" y="{MARGIN["top"] + plot_h + 14}" text-anchor="middle">{_label(x)}</text>')
    out.append(f'<text x="{MARGIN["left"] + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">'
               f'{html.escape(x_label)}</text>')
    legend = []
    for index, (label, values) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        values = sorted(values)
        shown = [(x, y) for x, y in values if math.isfinite(y)]
        coords = ' '.join(f'{sx(x):.1f},{sy(y):.1f}' for x, y in shown)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>')
        if len(shown) <= 40:
            out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.2" fill="{colour}"/>' for x, y in shown]
        out += [f'<text class="nonfinite" x="{sx(x):.1f}" y="{MARGIN["top"] + 9}" fill="#d00" '
                f'text-anchor="middle">×</text>' for x, y in values if not math.isfinite(y)]
        name = html.escape(label) if len(series) > 1 else 'last'
        legend.append(f'<tspan fill="{colour}">{name} {_label(values[-1][1])}</tspan>')
    note = non_finite_note(series)
    if note:
        legend.append(f'<tspan fill="#d00">non-finite: {html.escape(note)}</tspan>')
    out.append(f'<text x="{WIDTH / 2}" y="31" text-anchor="middle">{" · ".join(legend)}</text>')
    out.append('</svg>')
    return ''.join(out)


# -- images -------------------------------------------------------------------------------------


def png_data_uri(image):
    """A PIL image as a data: URI, scaled down to MAX_IMAGE_WIDTH."""
    if image.width > MAX_IMAGE_WIDTH:
        image = image.resize((MAX_IMAGE_WIDTH, round(image.height * MAX_IMAGE_WIDTH / image.width)),
                             PIL.Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format='PNG')
    return 'data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode('ascii')


def figure(image, caption):
    """<figure> with the image embedded; small images are shown enlarged (pixelated), not resampled."""
    shown = image.width * max(1, 384 // image.width)
    return (f'<figure><img src="{png_data_uri(image)}" width="{min(shown, MAX_IMAGE_WIDTH)}" '
            f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def sample_grids(run_dir):
    """[(caption, path)]: reals.png, fakes_init.png and up to FAKES_SHOWN fakes*.png, evenly spread."""
    shown = [(name, os.path.join(run_dir, name)) for name in ('reals.png', 'fakes_init.png')
             if os.path.exists(os.path.join(run_dir, name))]
    fakes = sorted(name for name in os.listdir(run_dir) if re.match(r'^fakes\d+\.png$', name))
    if fakes:
        picks = sorted({round(i * (len(fakes) - 1) / max(FAKES_SHOWN - 1, 1)) for i in range(FAKES_SHOWN)})
        shown += [(f'{fakes[i]} ({int(fakes[i][5:-4])} kimg)', os.path.join(run_dir, fakes[i])) for i in picks]
    return shown


@torch.no_grad()
def pairs_image(pairs, z):
    """Two rows: pairs(z)'s source images on top, the adapted images below."""
    source, adapted = pairs(z)
    pixels = to_uint8(torch.cat([source, adapted]))  # [2N, H, W, C]
    n, (h, w, c) = len(z), pixels.shape[1:]
    grid = pixels.reshape(2, n, h, w, c).transpose(0, 2, 1, 3, 4).reshape(2 * h, n * w, c)
    return PIL.Image.fromarray(grid[:, :, 0] if c < 3 else grid[:, :, :3])


def snapshot_pairs(run_dir, count, seed=0, device='cpu', pairs=None):
    """(caption, PIL image or None, note) of source/adapted pairs from the newest snapshot.

    A snapshot that names plugins is rendered through them (the plugin host); if that fails (a
    plugin not installed here) the note says why and the rest of the report is still written.
    """
    files = snapshots(run_dir)
    if not files:
        return None, None, 'No snapshot yet.'
    name = os.path.basename(files[-1])
    data = stylegan2_ada.load(files[-1])
    gda = data.get('gda') or {}
    adapted = data['G_ema'] if data.get('G_ema') is not None else data['G']
    plugins = [plugin.get('name') for plugin in gda.get('plugins') or []]
    if pairs is None:
        if gda.get('source_G') is None:
            return None, None, f'{name} stores no source generator (trained from scratch, or saved without it).'
        if plugins:
            try:
                pairs = plugin_pipelines(files[-1], device)[1]
            except UserError as error:
                return None, None, f'{name} cannot be rendered through its plugins: {error}'
        else:
            pairs = default_pairs(gda['source_G'].to(device), adapted.to(device))
    z = latents(adapted.z_dim, 0, count, seed, stream=PAIR_STREAM).to(device)
    through = f', through the plugins {", ".join(plugins)}' if plugins else ''
    caption = f'{name}: source (top) and adapted (bottom), same z, seed {seed}{through}'
    return caption, pairs_image(pairs, z), ''


# -- the page -----------------------------------------------------------------------------------

_STYLE = ('body{font-family:sans-serif;margin:24px;max-width:1500px;color:#222}'
          'h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}'
          '.charts svg{margin:4px;border:1px solid #eee}img{image-rendering:pixelated}'
          'figure{display:inline-block;margin:6px;vertical-align:top}'
          'figcaption{font-size:12px;color:#555}table{border-collapse:collapse;font-size:12px}'
          'td{border:1px solid #ddd;padding:2px 8px;vertical-align:top}.note{color:#a33;font-size:13px}')


def _options_table(run_dir):
    options = read_json(os.path.join(run_dir, 'training_options.json'))
    if not options:
        return '<p>No training_options.json.</p>'
    rows = []
    for key, value in options.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > 300:
            text = text[:300] + ' ...'
        rows.append(f'<tr><td>{html.escape(str(key))}</td><td>{html.escape(text)}</td></tr>')
    return f'<table>{"".join(rows)}</table>'


def _charts(groups, empty):
    if not groups:
        return f'<p>{empty}</p>'
    return '<div class="charts">' + ''.join(svg_chart(title, series) for title, series in groups) + '</div>'


def build_report(run_dir, pairs_count=8, seed=0, device='cpu', pairs=None):
    """The report's HTML text. pairs: the host's pairs(z) function (default: plain generators)."""
    name = os.path.basename(os.path.normpath(run_dir))
    losses = loss_series(read_jsonl(os.path.join(run_dir, 'stats.jsonl')))
    metrics = metric_series(run_dir)
    parts = [f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(name)}</title>'
             f'<style>{_STYLE}</style></head><body><h1>Run {html.escape(name)}</h1>',
             '<h2>Losses</h2>', _charts([(term, {term: values}) for term, values in sorted(losses.items())],
                                        'No stats.jsonl entries yet.'),
             '<h2>Metrics</h2>', _charts([(metric, series) for metric, series in sorted(metrics.items())],
                                         'No metric-*.jsonl yet (gda metrics RUN_DIR, or gda train --metrics).'),
             '<h2>Samples</h2>']
    grids = sample_grids(run_dir)
    parts += [figure(PIL.Image.open(path).convert('RGB'), caption) for caption, path in grids]
    if not grids:
        parts.append('<p>No sample grids yet.</p>')
    parts.append('<h2>Source / adapted pairs</h2>')
    if pairs_count > 0:
        caption, image, note = snapshot_pairs(run_dir, pairs_count, seed, device, pairs)
        if image is not None:
            parts.append(figure(image, caption))
        if note:
            parts.append(f'<p class="note">{html.escape(note)}</p>')
    else:
        parts.append('<p>Not rendered (--pairs 0).</p>')
    parts += ['<h2>Options</h2>', _options_table(run_dir), '</body></html>']
    return '\n'.join(parts)


def write_report(run_dir, out=None, **kwargs):
    """Write build_report's page to `out` (default RUN_DIR/report.html), whole or not at all;
    returns the path."""
    out = out or os.path.join(run_dir, 'report.html')
    text = build_report(run_dir, **kwargs)
    with atomic_write(out, sync=False) as file:
        file.write(text.encode('utf-8'))
    return out
