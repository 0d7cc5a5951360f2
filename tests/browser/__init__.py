"""A real browser (Debian's Chromium, driven by Playwright) against the Django example."""
