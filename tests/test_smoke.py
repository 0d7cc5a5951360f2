import httpx


def test_hello(serve):
    server = serve("apps.basic:hello")
    r = httpx.get(server.url + "/")
    assert r.status_code == 200
    assert r.text == "Hello, world!"
    assert r.headers["server"] == "rsgi"


def test_django_hello(django_server):
    r = httpx.get(django_server.url + "/hello")
    assert r.status_code == 200
    assert r.text == "Hello, world!"
