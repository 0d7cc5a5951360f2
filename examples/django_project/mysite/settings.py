"""Settings for the rsgi Django example project.

Everything deployment-specific comes from environment variables so the same
tree can be used for local poking around, the test suite and the benchmark.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def env_list(name, default=""):
    """Split a comma-separated environment variable into a list, dropping blanks."""
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-rsgi-example-do-not-use-in-production")

# Off unless explicitly enabled, so benchmarks measure the production code path.
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "*")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # rsgi's app: `manage.py runserver` serves through rsgi (pages, websockets, the event stream),
    # and its system checks. Before staticfiles, whose own runserver would win otherwise.
    "rsgi",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "catalog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# DJANGO_GZIP=1 compresses responses in Django, as many projects do: GZipMiddleware, first so it
# sees every other middleware's response (Django's docs). The compression benchmark's
# gunicorn row uses it; with rsgi, `--compress` does the same off the GIL (rsgi never compresses
# what the middleware already has).
if os.environ.get("DJANGO_GZIP") == "1":
    MIDDLEWARE.insert(0, "django.middleware.gzip.GZipMiddleware")

ROOT_URLCONF = "mysite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "mysite.wsgi.application"
ASGI_APPLICATION = "mysite.asgi.application"

# rsgi's settings for this project, read by `manage.py runserver` and by `rsgi --django mysite`
# (named as in a config file; RSGI_* variables and command-line flags override them). The event
# stream goes to ASGI, where a waiting client holds no thread; the health path is answered by the
# core, for load balancers and compose's health check.
RSGI = {
    "asgi_path": ["/events/"],
    "health_path": "/-/health",
}

# Channels' layer carries chat messages between consumers. The in-memory layer only reaches
# consumers in the same process (one worker); REDIS_URL (e.g. redis://redis:6379/0, with
# channels-redis from requirements-production.txt) makes chat work across workers and machines.
REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}},
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# DATABASE_URL (e.g. postgres://mysite:secret@db:5432/mysite) selects the production database.
# Without it the example stays on SQLite, so `make serve` and the tests need no other service.
DATABASE_URL = os.environ.get("DATABASE_URL")
if DATABASE_URL:
    # Imported here, not at the top: the SQLite path must work with requirements.txt alone.
    import dj_database_url

    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            # Django's default (0: a connection per request) is the safe one under ASGI servers that
            # run each request's ORM calls on a new thread, whose connection could not be reused.
            # Under rsgi, WSGI threads and the ASGI side's sync threads live as long as the worker,
            # so there a few seconds of reuse saves a connect per request (DJANGO_CONN_MAX_AGE=60).
            conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE", "0")),
            # A reused connection the database has dropped (restart, failover) is replaced instead
            # of failing the request.
            conn_health_checks=True,
        )
    }
else:
    # Tests point RSGI_EXAMPLE_DB at a throwaway copy so they never touch the dev database.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("RSGI_EXAMPLE_DB") or BASE_DIR / "db.sqlite3",
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Hashed file names need a manifest: run `collectstatic` before serving with DEBUG off.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}

# Django only prints request errors to the console when DEBUG is on; we want
# tracebacks from 500s in the server's output either way.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "console": {"class": "logging.StreamHandler", "level": "INFO"},
    },
    "loggers": {
        "django.request": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
