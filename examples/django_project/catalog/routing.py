"""WebSocket routes, mounted by ``mysite/asgi.py``."""

from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from . import consumers

# Room names become channel-layer group names, which must be short ASCII.
ROOM_PATTERN = r"(?P<room>[-a-zA-Z0-9_]{1,64})"

websocket_urlpatterns = [
    path("ws/echo/", consumers.EchoConsumer.as_asgi()),
    re_path(rf"^ws/chat/{ROOM_PATTERN}/$", consumers.ChatConsumer.as_asgi()),
    # Anything else is refused (403) rather than raising "No route found" (500).
    re_path(r"", WebsocketDenier.as_asgi()),
]
