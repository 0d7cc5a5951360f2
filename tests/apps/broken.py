"""An app module that fails while being imported."""

raise RuntimeError("deliberately broken app module (tests/apps/broken.py)")
