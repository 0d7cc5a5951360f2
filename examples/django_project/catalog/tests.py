import hashlib
import io

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client, TestCase, override_settings

from .sample import BIG_SIZE, SAMPLE_SIZE, big_bytes, sample_bytes

# Hashed static names need a collectstatic run; plain storage keeps these tests self-contained.
PLAIN_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


BIG_SHA256 = "fea9ca5b29ed3196480b45f55b705c4bcf67ad545b464c1701669f13788c8378"


@override_settings(STORAGES=PLAIN_STORAGES)
class PageTests(TestCase):
    def test_index_links_pages(self):
        response = self.client.get("/")
        self.assertContains(response, 'href="/items"')
        self.assertContains(response, "catalog/site.css")

    def test_hello(self):
        for path, text in [("/hello", b"Hello, world!"), ("/ahello", b"Hello, async world!")]:
            response = self.client.get(path)
            self.assertEqual(response.content, text)
            self.assertTrue(response["Content-Type"].startswith("text/plain"))

    def test_items_sync_and_async_agree(self):
        sync_items = self.client.get("/items").json()
        self.assertEqual(len(sync_items), 20)
        self.assertEqual(sync_items[0]["name"], "Item 01")
        self.assertEqual(sync_items[0]["price"], "1.99")
        self.assertEqual(self.client.get("/aitems").json(), sync_items)

    def test_item_detail(self):
        self.assertEqual(self.client.get("/api/item/50").json()["name"], "Item 50")
        missing = self.client.get("/api/item/9999")
        self.assertEqual(missing.status_code, 404)
        self.assertEqual(missing.json()["error"], "not found")

    def test_echo(self):
        response = self.client.post("/echo", b"abc", content_type="application/octet-stream")
        self.assertEqual(
            response.json(),
            {
                "method": "POST",
                "content_type": "application/octet-stream",
                "length": 3,
                "sha256": hashlib.sha256(b"abc").hexdigest(),
            },
        )
        self.assertEqual(self.client.get("/echo").json()["length"], 0)

    def test_stream(self):
        response = self.client.get("/stream", {"delay": "0.01"})
        self.assertTrue(response.streaming)
        self.assertEqual(b"".join(response.streaming_content), b"".join(b"chunk %d\n" % n for n in range(1, 6)))
        self.assertEqual(self.client.get("/stream", {"delay": "soon"}).status_code, 400)

    async def test_astream(self):
        response = await self.async_client.get("/astream", {"delay": "0.01"})
        self.assertTrue(response.is_async)
        body = b"".join([chunk async for chunk in response.streaming_content])
        self.assertEqual(body, b"".join(b"chunk %d\n" % n for n in range(1, 6)))

    async def test_events(self):
        response = await self.async_client.get("/events/", {"count": "3", "interval": "0"})
        self.assertTrue(response.is_async)
        self.assertEqual(response["Content-Type"], "text/event-stream")
        body = b"".join([chunk async for chunk in response.streaming_content]).decode()
        self.assertEqual(body.count("event: tick"), 3)
        self.assertIn('id: 3\nevent: tick\ndata: {"n": 3, "of": 3}\n\n', body)
        resumed = await self.async_client.get(
            "/events/", {"count": "3", "interval": "0"}, headers={"Last-Event-ID": "2"}
        )
        self.assertEqual(
            b"".join([chunk async for chunk in resumed.streaming_content]).decode().count("event: tick"), 1
        )
        done = await self.async_client.get("/events/", {"count": "3"}, headers={"Last-Event-ID": "3"})
        self.assertEqual(done.status_code, 204)
        self.assertEqual((await self.async_client.get("/events/", {"interval": "nan"})).status_code, 400)

    def test_download(self):
        response = self.client.get("/download")
        body = b"".join(response.streaming_content)
        response.close()
        self.assertEqual(len(body), SAMPLE_SIZE)
        self.assertEqual(body, sample_bytes())
        self.assertEqual(response["Content-Type"], "application/octet-stream")

    def test_big(self):
        response = self.client.get("/big")
        self.assertEqual(len(response.content), BIG_SIZE)
        self.assertEqual(hashlib.sha256(response.content).hexdigest(), BIG_SHA256)
        self.assertEqual(response.content, big_bytes())
        self.assertEqual(response["Content-Type"], "application/octet-stream")

    def test_list_page_signed_out_and_in(self):
        for path in ("/list", "/alist"):
            page = self.client.get(path)
            self.assertContains(page, "Not signed in.")
            self.assertContains(page, 'href="/api/item/20"')
            self.assertNotContains(page, 'href="/api/item/21"')
        user = get_user_model().objects.create_user("demo", password="demo-password-123")
        self.client.force_login(user)
        for path in ("/list", "/alist"):
            page = self.client.get(path)
            self.assertContains(page, '<strong class="username">demo</strong>')
            self.assertContains(page, "csrfmiddlewaretoken")
            self.assertContains(page, "Item 20")

    def test_catalog_page(self):
        page = self.client.get("/page")
        self.assertEqual(page["Content-Type"], "text/html; charset=utf-8")
        self.assertGreater(len(page.content), 45_000)  # the compression benchmark's "~50 KB page"
        self.assertLess(len(page.content), 60_000)
        self.assertEqual(page.content.count(b'<li class="product"'), 50)
        self.assertContains(page, 'href="/api/item/50"')
        self.assertEqual(self.client.get("/page").content, page.content)  # the same bytes every time
        cached = self.client.get("/cached-page")
        self.assertEqual(cached.content, page.content)
        self.assertIn("max-age=300", cached["Cache-Control"])

    def test_chat_page(self):
        self.assertContains(self.client.get("/chat/lobby/"), "/ws/chat/")
        self.assertEqual(self.client.get("/chat/not a room/").status_code, 404)

    def test_headers(self):
        data = self.client.get("/headers", {"q": "1"}, headers={"X-Test": "yes"}).json()
        self.assertEqual(data["QUERY_STRING"], "q=1")
        self.assertEqual(data["HTTP_X_TEST"], "yes")
        self.assertEqual(data["wsgi.url_scheme"], "http")

    def test_error(self):
        client = Client(raise_request_exception=False)
        with self.assertLogs("django.request", "ERROR"):
            self.assertEqual(client.get("/error").status_code, 500)

    def test_admin_login(self):
        call_command("createdemoadmin", stdout=io.StringIO())
        self.assertTrue(self.client.login(username="admin", password="admin-password-123"))
        self.assertContains(self.client.get("/admin/catalog/item/"), "Item 50")


@override_settings(STORAGES=PLAIN_STORAGES)
class CsrfTests(TestCase):
    def setUp(self):
        self.client = Client(enforce_csrf_checks=True)

    def csrf_token(self, path):
        self.client.get(path)
        return self.client.cookies["csrftoken"].value

    def test_form(self):
        token = self.csrf_token("/form")
        self.assertEqual(self.client.post("/form", {"name": "x", "message": "hi"}).status_code, 403)
        response = self.client.post("/form", {"name": "<b>Ann</b>", "message": "hi", "csrfmiddlewaretoken": token})
        self.assertContains(response, "Thanks, &lt;b&gt;Ann&lt;/b&gt;")
        invalid = self.client.post("/form", {"name": "", "csrfmiddlewaretoken": token})
        self.assertEqual(invalid.status_code, 400)

    def test_upload(self):
        token = self.csrf_token("/upload")
        payload = b"hello upload\n" * 1000
        response = self.client.post(
            "/upload",
            {"file": SimpleUploadedFile("a.txt", payload), "note": "memo", "csrfmiddlewaretoken": token},
        )
        self.assertEqual(
            response.json(),
            {"name": "a.txt", "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest(), "note": "memo"},
        )
        self.assertEqual(self.client.post("/upload", {"csrfmiddlewaretoken": token}).status_code, 400)
