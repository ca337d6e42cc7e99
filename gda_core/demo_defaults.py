"""`gda train` with neither --source nor --data: adapt the bundled demo source (all Noto emoji,
trained by gda itself) to the 10 bundled Twemoji emoji, offline, in minutes on a CPU."""

from stylegan2_ada.errors import UserError

from . import demo_data

# Fine-tuning iterations when neither --kimg nor --iters is given (--cfg fewshot: batch 4): enough
# for the target's style to show at 32 px, short enough for a 2-core CPU (README quotes the time).
DEMO_ITERS = 300
DEMO_TICK_KIMG = 0.2     # a log line every 50 iterations
DEMO_SNAP_TICKS = 3      # snapshots (and fakes) every 150 iterations, and at the end

FIRST_LOG_LINE = ('Demo: adapting the bundled Noto Emoji generator (32 px) to 10 Twemoji emoji '
                  '(Twemoji graphics by Twitter, Inc and other contributors, CC-BY 4.0; see '
                  'gda_core/demo_data/ATTRIBUTION.md); pass --source and --data to use your own.')


def settings(given):
    """The command-line values the demo fills in; what the user gave explicitly is kept."""
    if not demo_data.has_source_model():
        raise UserError('the bundled demo source generator is not in this checkout yet: build it '
                        'with examples/demo/train_source.sh and examples/demo/ship_source.py, or '
                        'pass --source and --data')
    values = dict(source=demo_data.SOURCE_MODEL, data=demo_data.TARGET_DIR,
                  desc=given.get('desc') or 'demo')
    if given.get('kimg') is None and given.get('iters') is None:
        values['iters'] = DEMO_ITERS
    if given.get('tick') is None:
        values['tick'] = DEMO_TICK_KIMG
    if given.get('snap') is None:
        values['snap'] = DEMO_SNAP_TICKS
    return values


__all__ = ['settings', 'FIRST_LOG_LINE', 'DEMO_ITERS']
