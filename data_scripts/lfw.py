"""Fetch or prepare Labeled Faces in the Wild (deep-funneled) and its protocol files.

    python data_scripts/lfw.py fetch [--from DIR [--copy]] [--dest DIR]
    python data_scripts/lfw.py prepare [--profile smoke|small|full] [--workers N] [--data-root DIR]

``fetch --from DIR`` links (or copies) a local copy laid out as the official archive extracts;
without it, public files are downloaded with SHA-256 checks and resumed if interrupted, and gated
datasets print how to request them. ``prepare`` is ``python -m facelab data prepare`` for this dataset.
"""

import sys
from pathlib import Path

try:
    from facelab.data.cli import script_main
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from facelab.data.cli import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("lfw"))
