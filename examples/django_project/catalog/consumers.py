"""WebSocket consumers (Django Channels), routed in ``catalog/routing.py``."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer

# Sending the text "close" to /ws/echo/ makes the server close with this code.
ECHO_CLOSE_CODE = 4001


class EchoConsumer(AsyncWebsocketConsumer):
    """Echoes text and binary messages; the text "close" closes the connection with 4001."""

    async def receive(self, text_data=None, bytes_data=None):
        if text_data == "close":
            await self.close(code=ECHO_CLOSE_CODE)
        elif text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One group per room: each {"message": ...} received is broadcast to everyone in the room
    (sender included) as {"message": ..., "from": <short id of the sender's channel>}."""

    async def connect(self):
        self.group = "chat_" + self.scope["url_route"]["kwargs"]["room"]
        self.short_id = self.channel_name.rsplit("!", 1)[-1][-8:]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        message = content.get("message") if isinstance(content, dict) else None
        if not isinstance(message, str):
            await self.send_json({"error": 'expected {"message": "<text>"}'})
            return
        await self.channel_layer.group_send(
            self.group, {"type": "chat.message", "message": message, "from": self.short_id}
        )

    async def chat_message(self, event):
        await self.send_json({"message": event["message"], "from": event["from"]})
