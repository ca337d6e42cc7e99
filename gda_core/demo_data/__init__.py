"""gda's bundled demo data: 10 Twemoji faces as the few-shot target, the held-out Twemoji faces
for the adaptation benchmark, the demo source generator (Noto Emoji faces) once shipped, and their
licences and provenance (ATTRIBUTION.md, provenance.json).

Rebuilt from the npm packages by examples/demo/make_demo_data.py; the source generator is trained
by examples/demo/train_source.sh and copied here by examples/demo/ship_source.py.
"""

import os

DIR = os.path.dirname(os.path.abspath(__file__))
TARGET_DIR = os.path.join(DIR, 'target')                          # 10 images: `gda train` demo --data
HELDOUT_ZIP = os.path.join(DIR, 'heldout-twemoji-faces-32.zip')   # benchmark reference images
SOURCE_MODEL = os.path.join(DIR, 'source-noto-faces-32.pkl')      # demo --source (G_ema and D)
PROVENANCE = os.path.join(DIR, 'provenance.json')
ATTRIBUTION = os.path.join(DIR, 'ATTRIBUTION.md')


def has_source_model():
    """Whether the demo source generator has been shipped (it is trained separately)."""
    return os.path.isfile(SOURCE_MODEL)
