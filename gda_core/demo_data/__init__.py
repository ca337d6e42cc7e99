"""gda's bundled demo data: every Noto emoji (the source domain, 32 px), 10 Twemoji emoji as the
few-shot target, every other Twemoji emoji held out for the adaptation benchmark, the demo source
generator trained on the Noto set, and their licences and provenance (ATTRIBUTION.md,
provenance.json: which image is which emoji in both vendors' styles).

Rebuilt from the npm packages by examples/demo/make_demo_data.py; the source generator is trained
by examples/demo/train_source.sh and copied here by examples/demo/ship_source.py.
"""

import os

DIR = os.path.dirname(os.path.abspath(__file__))
TARGET_DIR = os.path.join(DIR, 'target')                          # 10 images: `gda train` demo --data
SOURCE_ZIP = os.path.join(DIR, 'noto-emoji-32.zip')               # 3,786 Noto emoji: the source domain
HELDOUT_ZIP = os.path.join(DIR, 'heldout-twemoji-32.zip')          # 3,776 Twemoji: benchmark reference
SOURCE_MODEL = os.path.join(DIR, 'source-noto-emoji-32.pkl')      # demo --source (G_ema and D)
PROVENANCE = os.path.join(DIR, 'provenance.json')
ATTRIBUTION = os.path.join(DIR, 'ATTRIBUTION.md')


def has_source_model():
    """Whether the demo source generator has been shipped (it is trained separately)."""
    return os.path.isfile(SOURCE_MODEL)
