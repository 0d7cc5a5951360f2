import asyncio
import hashlib
import math
import time

from django.http import FileResponse, HttpResponse, HttpResponseBadRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from .forms import MessageForm, UploadForm
from .models import Item
from .sample import SAMPLE_NAME, big_bytes, sample_path

ITEM_PAGE_SIZE = 20
STREAM_CHUNKS = 5
STREAM_MAX_TOTAL_DELAY = 2.0
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
