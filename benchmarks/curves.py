"""Line charts as PNG with Pillow alone (matplotlib is not a dependency): one metric over training
iterations, one line per method, so overfitting and collapse show as a curve turning."""

import math
import os

import PIL.Image
import PIL.ImageDraw

from stylegan2_ada.image_grid import label_font

WIDTH, HEIGHT = 900, 520
MARGIN = dict(left=80, right=230, top=50, bottom=80)
# Distinct colours (Okabe-Ito and Tol's bright set), repeated with dashes past their count.
COLOURS = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0),
           (86, 180, 233), (120, 120, 120), (0, 0, 0), (170, 51, 119), (34, 136, 51),
           (102, 204, 238), (204, 187, 68), (238, 102, 119), (68, 119, 170)]


def nice_ticks(lo, hi, count=5):
    """About `count` round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(f for f in (1, 2, 2.5, 5, 10) if raw <= step * f)
    first = math.floor(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 0.5:
        ticks.append(round(value, 10))
        value += step
    return ticks


def tick_label(value):
    return f'{value:g}' if abs(value) >= 1e-3 or value == 0 else f'{value:.1e}'


def dashed(draw, points, colour, width, dash):
    """A polyline; dashed (on/off segments in px) when `dash`."""
    if not dash:
        draw.line(points, fill=colour, width=width)
        return
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        length = math.hypot(x1 - x0, y1 - y0) or 1
        steps = int(length // dash)
        for k in range(0, steps + 1, 2):
            a, b = k * dash / length, min((k + 1) * dash / length, 1)
            draw.line([(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a), (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)],
                      fill=colour, width=width)


def plot(series, path, title, ylabel, xlabel='iterations', note=None):
    """Write a chart of {name: [(x, y), ...]} (y None = no point) to `path`; returns the path."""
    points = {name: [(x, y) for x, y in values if y is not None and math.isfinite(y)]
              for name, values in series.items()}
    xs = [x for values in points.values() for x, _ in values] or [0, 1]
    ys = [y for values in points.values() for _, y in values] or [0, 1]
    x_ticks, y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    x_lo, x_hi = min(x_ticks[0], min(xs)), max(x_ticks[-1], max(xs))
    y_lo, y_hi = min(y_ticks[0], min(ys)), max(y_ticks[-1], max(ys))
    left, top = MARGIN['left'], MARGIN['top']
    right, bottom = WIDTH - MARGIN['right'], HEIGHT - MARGIN['bottom']

    def at(x, y):
        return (left + (x - x_lo) / ((x_hi - x_lo) or 1) * (right - left),
                bottom - (y - y_lo) / ((y_hi - y_lo) or 1) * (bottom - top))

    image = PIL.Image.new('RGB', (WIDTH, HEIGHT), (255, 255, 255))
    draw = PIL.ImageDraw.Draw(image)
    small, large = label_font(14), label_font(18)
    for value in y_ticks:
        _, y = at(x_lo, value)
        draw.line([(left, y), (right, y)], fill=(225, 225, 225))
        text = tick_label(value)
        draw.text((left - 8 - draw.textlength(text, font=small), y - 8), text, fill=(0, 0, 0), font=small)
    for value in x_ticks:
        x, _ = at(value, y_lo)
        draw.line([(x, top), (x, bottom)], fill=(235, 235, 235))
        text = tick_label(value)
        draw.text((x - draw.textlength(text, font=small) / 2, bottom + 6), text, fill=(0, 0, 0), font=small)
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    draw.text((left, 6), title, fill=(0, 0, 0), font=large)
    draw.text(((left + right) / 2 - draw.textlength(xlabel, font=small) / 2, bottom + 30), xlabel,
              fill=(0, 0, 0), font=small)
    draw.text((8, top - 20), ylabel, fill=(0, 0, 0), font=small)   # below the title: no overlap
    if note:
        draw.text((left, HEIGHT - 24), note, fill=(90, 90, 90), font=small)
    for index, (name, values) in enumerate(points.items()):
        colour = COLOURS[index % len(COLOURS)]
        dash = 6 if index >= len(COLOURS) else 0
        scaled = [at(x, y) for x, y in sorted(values)]
        if len(scaled) > 1:
            dashed(draw, scaled, colour, 2, dash)
        for x, y in scaled:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        legend_y = top + index * 22
        dashed(draw, [(right + 14, legend_y + 8), (right + 44, legend_y + 8)], colour, 3, dash)
        draw.text((right + 52, legend_y), name, fill=(0, 0, 0), font=small)
    tmp = f'{path}.tmp'
    image.save(tmp, format='PNG')
    os.replace(tmp, path)
    return path
