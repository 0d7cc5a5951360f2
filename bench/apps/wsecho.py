"""ASGI app for bench/run.py's `ws` scenario: the Django example's ASGI app plus a websocket echo at /ws/echo.

Django itself has no websocket support (that takes Channels), and the benchmark must not change the example, so
this wrapper answers websocket connections itself and hands everything else (HTTP, lifespan) to
`mysite.asgi:application`. Servers import it as `wsecho:application`; bench/run.py puts bench/apps on PYTHONPATH
and runs the servers from the example's directory.
"""

from mysite.asgi import application as django_application

ECHO_PATH = "/ws/echo"


async def websocket_echo(scope, receive, send):
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    if scope["path"] != ECHO_PATH:
        await send({"type": "websocket.close", "code": 4404})
        return
    await send({"type": "websocket.accept"})
    while True:
        event = await receive()
        if event["type"] == "websocket.receive":
            if event.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": event["bytes"]})
            else:
                await send({"type": "websocket.send", "text": event.get("text") or ""})
        elif event["type"] == "websocket.disconnect":
            return


async def application(scope, receive, send):
    if scope["type"] == "websocket":
        await websocket_echo(scope, receive, send)
    else:
        await django_application(scope, receive, send)
