"""rsgi installed as a user installs it: the published wheel in a fresh virtual environment."""
