from django.urls import path, re_path

from . import views
from .routing import ROOM_PATTERN

# These paths are fixed: rsgi's tests and benchmarks request them verbatim.
urlpatterns = [
    path("", views.index, name="index"),
    path("hello", views.hello, name="hello"),
    path("ahello", views.ahello, name="ahello"),
    path("items", views.items, name="items"),
    path("aitems", views.aitems, name="aitems"),
    path("list", views.item_list, name="list"),
    path("alist", views.aitem_list, name="alist"),
    path("page", views.catalog_page, name="page"),
    path("cached-page", views.cached_catalog_page, name="cached-page"),
    path("api/item/<int:pk>", views.item_detail, name="item-detail"),
    path("form", views.message_form, name="form"),
    path("upload", views.upload, name="upload"),
    path("echo", views.echo, name="echo"),
    path("stream", views.stream, name="stream"),
    path("astream", views.astream, name="astream"),
    path("download", views.download, name="download"),
    path("headers", views.headers, name="headers"),
    path("error", views.error, name="error"),
    path("big", views.big, name="big"),
    path("events/", views.events, name="events"),
    re_path(rf"^chat/{ROOM_PATTERN}/$", views.chat, name="chat"),
]
