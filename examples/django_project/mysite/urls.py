from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("catalog.urls")),
]

# Serves /static/ from the app directories when DEBUG is on (returns nothing
# otherwise); with DEBUG off the server or a proxy must serve STATIC_ROOT.
urlpatterns += staticfiles_urlpatterns()
