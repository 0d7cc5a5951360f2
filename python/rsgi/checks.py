"""rsgi's Django system checks, registered by its app (`rsgi.apps`): `manage.py check` reports what
rsgi would say about the RSGI setting, and whether `runserver` is rsgi's; `check --deploy` adds what
rsgi's proxy handling means for Django's own proxy settings.

rsgi applies the `Forwarded` / `X-Forwarded-Proto/-Host/-Port` headers of trusted proxies
(`forwarded_allow_ips`, loopback by default) itself: the scheme Django sees (`request.is_secure()`),
the host and the port already are the client's. Django's SECURE_PROXY_SSL_HEADER,
USE_X_FORWARDED_HOST and USE_X_FORWARDED_PORT then add nothing but trust: Django reads those headers
from every client that reaches rsgi, whoever sent them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.management import get_commands

from .config import FIELDS, ConfigError, parse_value
from .config.sources import from_django


def origin() -> str:
    """How messages name the RSGI setting: mysite.settings.RSGI."""
    module = getattr(settings, "SETTINGS_MODULE", None)
    return f"{module}.RSGI" if module else "RSGI"


@checks.register(checks.Tags.compatibility)
def check_rsgi_setting(app_configs: Sequence[Any] | None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The RSGI dict, read as rsgi reads it: unknown settings are warnings, unusable values errors."""
    warned: list[str] = []
    found: list[checks.CheckMessage] = []
    try:
        from_django(getattr(settings, "RSGI", None), origin(), warned.append)
    except ConfigError as e:
        found.append(
            checks.Error(
                str(e),
                hint="rsgi --django and manage.py runserver refuse to start with it; "
                "`rsgi --check-config --django PROJECT` shows what the settings come to.",
                id="rsgi.E001",
            )
        )
    found[:0] = [checks.Warning(message, id="rsgi.W001") for message in warned]
    return found


@checks.register(checks.Tags.compatibility)
def check_runserver(app_configs: Sequence[Any] | None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The app listed first wins a command name: rsgi must come before staticfiles (and daphne)."""
    owner = get_commands().get("runserver")
    if owner in (None, "rsgi"):
        return []
    return [
        checks.Warning(
            f"manage.py runserver is {owner}'s, not rsgi's.",
            hint=f"Put 'rsgi' before {owner!r} in INSTALLED_APPS.",
            id="rsgi.W002",
        )
    ]


def proxy_headers_on() -> bool:
    """Whether rsgi applies proxy headers, as far as the settings and the environment tell (a
    --no-proxy-headers flag is beyond what a check can see)."""
    f = FIELDS["proxy_headers"]
    value: Any = True
    try:
        value = from_django(getattr(settings, "RSGI", None), origin(), lambda _m: None).get("proxy_headers", value)
        if os.environ.get("RSGI_PROXY_HEADERS"):
            value = parse_value(f, os.environ["RSGI_PROXY_HEADERS"])
    except ConfigError:
        pass  # reported by check_rsgi_setting
    return bool(value)


@checks.register(checks.Tags.security, deploy=True)
def check_proxy_settings(app_configs: Sequence[Any] | None, **kwargs: Any) -> list[checks.CheckMessage]:
    if not proxy_headers_on():
        return []  # rsgi leaves the headers to Django: its settings are the way
    found: list[checks.CheckMessage] = []
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        found.append(
            checks.Warning(
                "SECURE_PROXY_SSL_HEADER is set, but rsgi already sets the scheme (request.is_secure()) from "
                "the Forwarded or X-Forwarded-Proto header of trusted proxies; with it, Django believes the "
                "header from every client that reaches rsgi.",
                hint="Remove SECURE_PROXY_SSL_HEADER and list your proxies in rsgi's forwarded_allow_ips "
                "(default 127.0.0.1,::1). Keep it only where rsgi runs with proxy_headers off.",
                id="rsgi.W003",
            )
        )
    for name, header in (("USE_X_FORWARDED_HOST", "X-Forwarded-Host"), ("USE_X_FORWARDED_PORT", "X-Forwarded-Port")):
        if getattr(settings, name, False):
            found.append(
                checks.Warning(
                    f"{name} is True, but rsgi already applies the Forwarded or {header} header of trusted "
                    f"proxies; with it, Django reads {header} from every client that reaches rsgi.",
                    hint=f"Leave {name} False (Django's default) and list your proxies in rsgi's forwarded_allow_ips.",
                    id="rsgi.W004",
                )
            )
    return found
