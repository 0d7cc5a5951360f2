"""rsgi as a Django app. With "rsgi" in INSTALLED_APPS, before "django.contrib.staticfiles" (whose
own runserver would win otherwise), `manage.py runserver` serves the project through rsgi
(`management/commands/runserver.py`), and `manage.py check` runs rsgi's checks (`checks.py`).
Only these modules import Django: rsgi itself does not depend on it."""

from __future__ import annotations

from django.apps import AppConfig


class RsgiConfig(AppConfig):
    name = "rsgi"
    verbose_name = "rsgi"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the checks
