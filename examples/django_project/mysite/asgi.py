"""ASGI entry point: ``mysite.asgi:application``.

HTTP goes to Django; WebSockets to the Channels consumers in ``catalog/routing.py``, behind
session authentication and an Origin check against ``ALLOWED_HOSTS``.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

# Set Django up before importing anything that touches models (the consumers, the auth stack).
django_asgi_app = get_asgi_application()

from catalog.routing import websocket_urlpatterns  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
