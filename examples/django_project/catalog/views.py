import asyncio
import functools
import hashlib
import json
import math
import random
import time

from django.http import FileResponse, HttpResponse, HttpResponseBadRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_page
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from .forms import MessageForm, UploadForm
from .models import Item
from .sample import SAMPLE_NAME, big_bytes, sample_path

ITEM_PAGE_SIZE = 20
STREAM_CHUNKS = 5
STREAM_MAX_TOTAL_DELAY = 2.0
EVENTS_DEFAULT_COUNT, EVENTS_MAX_COUNT = 10, 100
EVENTS_DEFAULT_INTERVAL, EVENTS_MAX_INTERVAL = 1.0, 5.0
META_KEYS = ["REMOTE_ADDR", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING"]


@require_safe
def index(request):
    return render(request, "catalog/index.html")


@require_safe
def hello(request):
    return HttpResponse("Hello, world!", content_type="text/plain; charset=utf-8")


@require_safe
async def ahello(request):
    return HttpResponse("Hello, async world!", content_type="text/plain; charset=utf-8")


@require_safe
def items(request):
    page = Item.objects.order_by("id")[:ITEM_PAGE_SIZE]
    return JsonResponse([item.as_dict() for item in page], safe=False)


@require_safe
async def aitems(request):
    page = Item.objects.order_by("id")[:ITEM_PAGE_SIZE]
    return JsonResponse([item.as_dict() async for item in page], safe=False)


@require_safe
def item_list(request):
    """The first 20 items as an HTML page: a template, the session and the signed-in user.

    What a typical logged-in list page costs: the session and auth middleware load the session and
    the user (two queries when a session cookie is sent), the view queries the items and the
    template renders them with the account box (and the logout form's CSRF token).
    """
    page = Item.objects.order_by("id")[:ITEM_PAGE_SIZE]
    return render(request, "catalog/list.html", {"items": page})


@require_safe
async def aitem_list(request):
    """/list through async code: the user and the items from the async ORM, the same template."""
    user = await request.auser()
    page = [item async for item in Item.objects.order_by("id")[:ITEM_PAGE_SIZE]]
    return render(request, "catalog/list.html", {"items": page, "user": user})


# Words for the catalog page's product blurbs: real pages carry prose that differs from item to
# item; with it the page compresses about 9x (gzip 6), where the cards' repeated markup alone
# would compress 18x.
BLURB_TEXT = (
    "sturdy light compact handmade durable washable recycled oak steel linen cotton walnut ceramic glass brass "
    "leather wool bamboo copper matte glossy folding stackable adjustable portable waterproof quiet cordless "
    "rechargeable modular classic modern rustic minimal colourful neutral warm cool soft firm smooth textured "
    "kitchen garden office travel bedroom bathroom workshop studio outdoor indoor everyday weekend seasonal "
    "lamp chair table shelf basket kettle mug bowl blanket cushion rug mirror clock planter toolbox backpack "
    "notebook pen bottle jar tray box hook rack stool bench desk drawer cabinet curtain towel apron glove "
    "fits holds keeps folds stacks lasts cleans charges brews stores carries warms cools lights hangs rolls "
    "easily quickly neatly safely gently quietly evenly firmly beautifully reliably for with and the a your "
    "every small large family home guests friends mornings evenings rainy sunny long short busy slow days"
)
BLURB_WORDS = tuple(BLURB_TEXT.split())


@functools.cache
def blurb(pk):
    """A product description of 15 to 30 words, the same for an item on every request."""
    rng = random.Random(pk)
    words = rng.choices(BLURB_WORDS, k=rng.randint(15, 30))
    return " ".join(words).capitalize() + "."


@require_safe
def catalog_page(request):
    """Every item as a product card: a ~50 KB HTML page from one query and a template.

    The page the compression benchmark serves (`bench/run.py --preset compress`): large enough
    that compressing it costs real CPU (text/html, so GZipMiddleware, nginx's `gzip on` and
    `rsgi --compress` all take it), built the way a real catalog page is.
    """
    page = list(Item.objects.order_by("id"))
    for item in page:
        item.blurb = blurb(item.pk)
    return render(request, "catalog/page.html", {"items": page, "total": sum(item.price for item in page)})


# The same page from Django's per-view cache (the default cache: in memory, per process), as a
# busy catalog page often is: Django then does little more than fetch it, so compressing it
# (GZipMiddleware runs outside the cache, on every response) is much of the work.
cached_catalog_page = cache_page(300)(catalog_page)


@require_safe
def item_detail(request, pk):
    try:
        item = Item.objects.get(pk=pk)
    except Item.DoesNotExist:
        return JsonResponse({"error": "not found", "id": pk}, status=404)
    return JsonResponse(item.as_dict())


@require_http_methods(["GET", "POST"])
def message_form(request):
    if request.method == "POST":
        form = MessageForm(request.POST)
        if form.is_valid():
            return render(request, "catalog/form.html", {"thanks_name": form.cleaned_data["name"]})
        return render(request, "catalog/form.html", {"form": form}, status=400)
    return render(request, "catalog/form.html", {"form": MessageForm()})


@require_http_methods(["GET", "POST"])
def upload(request):
    if request.method == "GET":
        return render(request, "catalog/upload.html", {"form": UploadForm()})

    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    uploaded = form.cleaned_data["file"]
    # Count the bytes we actually read rather than trusting the declared size.
    digest, size = hashlib.sha256(), 0
    for chunk in uploaded.chunks():
        digest.update(chunk)
        size += len(chunk)
    return JsonResponse(
        {"name": uploaded.name, "size": size, "sha256": digest.hexdigest(), "note": form.cleaned_data["note"]}
    )


@csrf_exempt
@require_http_methods(["GET", "POST"])
def echo(request):
    # request.body honours DATA_UPLOAD_MAX_MEMORY_SIZE: larger bodies get a 400.
    body = request.body
    return JsonResponse(
        {
            "method": request.method,
            "content_type": request.META.get("CONTENT_TYPE", ""),
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    )


def parse_stream_delay(request):
    """Return the ?delay= seconds to sleep between chunks, or None if it is malformed."""
    try:
        delay = float(request.GET.get("delay", 0))
    except ValueError:
        return None
    if not math.isfinite(delay):
        return None
    # Sleeps happen between chunks only; cap them so one request can't hold a worker for long.
    return min(max(delay, 0.0), STREAM_MAX_TOTAL_DELAY / (STREAM_CHUNKS - 1))


@require_safe
def stream(request):
    delay = parse_stream_delay(request)
    if delay is None:
        return HttpResponseBadRequest("delay must be a finite number", content_type="text/plain; charset=utf-8")

    def chunks():
        for n in range(1, STREAM_CHUNKS + 1):
            if n > 1 and delay:
                time.sleep(delay)
            yield f"chunk {n}\n"

    return StreamingHttpResponse(chunks(), content_type="text/plain; charset=utf-8")


@require_safe
async def astream(request):
    # Under ASGI, Django buffers a *sync* iterator completely before sending it
    # (with a warning), so /stream only really streams under WSGI. This async
    # twin streams chunk by chunk under ASGI.
    delay = parse_stream_delay(request)
    if delay is None:
        return HttpResponseBadRequest("delay must be a finite number", content_type="text/plain; charset=utf-8")

    async def chunks():
        for n in range(1, STREAM_CHUNKS + 1):
            if n > 1 and delay:
                await asyncio.sleep(delay)
            yield f"chunk {n}\n"

    return StreamingHttpResponse(chunks(), content_type="text/plain; charset=utf-8")


def bounded_number(values, name, default, cast, low, high):
    """values[name] (a query parameter or a header) clamped to [low, high]; None if not a number."""
    try:
        value = cast(values.get(name, default))
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return min(max(value, low), high)


@require_safe
async def events(request):
    """Server-sent events: ?count= "tick" events (default 10), ?interval= seconds apart.

    Each event carries an id, so a browser's EventSource that reconnects sends Last-Event-ID and
    the stream resumes after it instead of starting over. The view is async and its generator
    awaits between events, so under ASGI (e.g. `rsgi --django mysite --asgi-path /events/`) a
    waiting client holds no thread; Django's WSGI handler would collect the whole stream first.
    """
    count = bounded_number(request.GET, "count", EVENTS_DEFAULT_COUNT, int, 1, EVENTS_MAX_COUNT)
    interval = bounded_number(request.GET, "interval", EVENTS_DEFAULT_INTERVAL, float, 0.0, EVENTS_MAX_INTERVAL)
    last_id = bounded_number(request.headers, "Last-Event-ID", 0, int, 0, EVENTS_MAX_COUNT)
    if count is None or interval is None or last_id is None:
        return HttpResponseBadRequest("count, interval and Last-Event-ID must be numbers", content_type="text/plain")
    if last_id >= count:
        # Everything was delivered: 204 is how a server tells EventSource to stop reconnecting.
        return HttpResponse(status=204)

    async def stream():
        # Tell the browser how long to wait before reconnecting if the stream breaks.
        yield "retry: 1000\n\n"
        for n in range(last_id + 1, count + 1):
            if n > last_id + 1:
                await asyncio.sleep(interval)
            yield f"id: {n}\nevent: tick\ndata: {json.dumps({'n': n, 'of': count})}\n\n"

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    # rsgi sends each event as it is yielded; this asks an nginx in front to do the same.
    response["X-Accel-Buffering"] = "no"
    return response


@require_safe
def download(request):
    # FileResponse closes the file itself and lets WSGI servers use wsgi.file_wrapper.
    return FileResponse(
        open(sample_path(), "rb"),
        as_attachment=False,
        filename=SAMPLE_NAME,
        content_type="application/octet-stream",
    )


@require_safe
def big(request):
    # Exactly 1 MiB, built once per process: the benchmark's large-response case.
    return HttpResponse(big_bytes(), content_type="application/octet-stream")


@require_safe
def chat(request, room):
    return render(request, "catalog/chat.html", {"room": room})


def headers(request):
    data = {key: request.META.get(key) for key in META_KEYS}
    data["wsgi.url_scheme"] = request.scheme
    data.update({key: value for key, value in request.META.items() if key.startswith("HTTP_")})
    return JsonResponse(data)


def error(request):
    raise RuntimeError("boom from the example")
