"""All of Rotator's settings, read from the environment in this one place.

With no environment at all Rotator runs on its embedded default: SQLite in var/, the
local-memory cache, shared state in the database, and no broker. DATABASE_URL and REDIS_URL
switch to the production profile.
"""

import contextlib
import os
import secrets
import sys
from datetime import time
from pathlib import Path
from typing import Any

import django_stubs_ext

from config.env import (
    database_from_url,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_secret,
    env_str,
    env_time,
    env_url,
    proxy_ssl_header,
)

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("ROTATOR_VAR_DIR", str(BASE_DIR / "var")))


def file_private_create(path: Path) -> None:
    """Creates `path` empty with mode 0600 unless it exists: readable by this user only from
    the first byte, where a chmod after writing would leave a window (and the umask's 0644
    for SQLite's own files, which take the database file's mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/.

    A fixed fallback would make every install share the key that also derives the
    credential encryption key, so a fresh install writes its own.
    """
    configured = env_str("SECRET_KEY", "")
    if configured:
        return configured
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        file_private_create(path)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
# Fernet key (urlsafe base64, 32 bytes) for credentials at rest; derived from SECRET_KEY when
# unset, in which case rotating SECRET_KEY makes stored credentials unreadable (README says so).
ROTATOR_ENCRYPTION_KEY = env_str("ROTATOR_ENCRYPTION_KEY", "")
if ROTATOR_ENCRYPTION_KEY:
    from cryptography.fernet import Fernet
    from django.core.exceptions import ImproperlyConfigured

    try:
        Fernet(ROTATOR_ENCRYPTION_KEY.encode())
    except ValueError:
        raise ImproperlyConfigured(
            "ROTATOR_ENCRYPTION_KEY must be a Fernet key (32 bytes, urlsafe base64)"
        ) from None
# Keys still accepted for reading while `manage.py rotateencryptionkey` moves every secret to
# ROTATOR_ENCRYPTION_KEY (comma-separated; SECRET_KEY names the key derived from it).
ROTATOR_PREVIOUS_ENCRYPTION_KEYS = env_list("ROTATOR_PREVIOUS_ENCRYPTION_KEYS", [])
DEBUG = env_bool("DEBUG", False)
TESTING = "pytest" in sys.modules
# The production profile: an operator chose the database (and usually Redis).
PRODUCTION = bool(env_str("DATABASE_URL", ""))
# The Host header is reflected into absolute URLs (admin links, redirects), so a deployment
# names its hosts: the server does not start without them (config.boot); commands and Celery
# serve no HTTP and do not need them. The embedded default serves loopback (scripts/serve)
# under any name; so do the tests, which run on PostgreSQL too.
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION and not TESTING else ["*"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# --- HTTPS. A deployment is reached over HTTPS (TLS at the reverse proxy, docs/security.md),
# so outside DEBUG and the embedded default cookies are Secure, browsers are told to stay on
# HTTPS (HSTS) and plain-HTTP pages redirect. The proxy says a request came over HTTPS in
# X-Forwarded-Proto; it must set that header itself, never pass the client's.
HTTPS = env_bool("HTTPS", PRODUCTION and not DEBUG and not TESTING)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", HTTPS)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
# One year, what browsers' preload lists ask for; 0 turns HSTS off.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
# Off by default: Rotator's host cannot speak for its sibling subdomains (silenced in
# SILENCED_SYSTEM_CHECKS below for that reason).
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = proxy_ssl_header(
    "SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto" if HTTPS else ""
)
SILENCED_SYSTEM_CHECKS = [
    # security.W005 (HSTS without includeSubDomains) and W021 (without preload): both bind
    # every subdomain of the operator's domain, which a gateway on one name cannot decide;
    # SECURE_HSTS_INCLUDE_SUBDOMAINS and SECURE_HSTS_PRELOAD turn them on.
    "security.W005",
    "security.W021",
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "accounts",
    "rotator",
    "stats",
    # The Face: the management API over all three.
    "api",
]

# Browser-facing pages (admin, /stat, /api) get the full chain. The proxy routes are served
# by a handler without middleware (config.asgi): under ASGI these middlewares run their hooks
# in a thread per request, which would cost more than the forwarding itself.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.static.StaticFilesMiddleware",
    # Before the session and CSRF work: a throttled address costs one lookup.
    "rotator.throttle.SigninThrottleMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Path prefixes served by the middleware-free handler.
PROXY_PATH_PREFIXES = (
    "/v1/",
    "/v1beta/",
    "/models",
    "/chat/",
    "/embeddings",
    "/healthz",
    "/metrics",
    "/debug/",
)

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    env_url("DATABASE_URL", schemes=("postgres", "postgresql", "sqlite"))
    DATABASES = {"default": database_from_url("DATABASE_URL", DATABASE_URL)}
    sqlite_file = Path(str(DATABASES["default"]["NAME"]))
    # A directory that is not there yet (a volume mounted after start) is reported by
    # /healthz and every request until it appears, not a crash at start.
    if str(DATABASES["default"]["ENGINE"]).endswith("sqlite3") and sqlite_file.parent.is_dir():
        file_private_create(sqlite_file)
else:
    VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    file_private_create(VAR_DIR / "db.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            # WAL lets the usage flusher write while requests read; synchronous=NORMAL (safe
            # with WAL: a power cut may lose the last commits, never corrupts) spares every
            # pick an fsync, which at FULL held the write lock ~3 ms per request and left
            # waiters starving past the busy timeout under load (tests/test_load.py).
            # IMMEDIATE: a transaction that reads before it writes would otherwise fail at once
            # with "database is locked" instead of waiting its turn.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
            },
            # A file, not pytest-django's in-memory default: live tests serve the app from a
            # second thread, which must see the same database. One per test run (pid), so
            # concurrent runs on one machine do not drop each other's tables.
            "TEST": {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")},
        }
    }
if str(DATABASES["default"]["ENGINE"]).endswith("postgresql"):
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = (
    env_url("REDIS_URL", "", schemes=("redis", "rediss")) if env_str("REDIS_URL", "") else ""
)
# Each test run (and each deployment sharing a Redis) gets its own namespace.
STATE_KEY_PREFIX = env_str("STATE_KEY_PREFIX", "rotator")
CACHES: dict[str, dict[str, Any]]
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": STATE_KEY_PREFIX,
        }
    }
else:
    # One process on the embedded default; the bound keeps its memory use flat (the oldest
    # entries go first), and it also holds thought signatures (SIGNATURE_TTL_SECONDS).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": env_int("LOCAL_CACHE_MAX_ENTRIES", 20000, minimum=100)},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "stats" / "assets"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files (admin, /stat) straight from the apps and stats/assets, indexed once at
# start-up, so neither a deployment nor the test server needs a collectstatic step first.
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "/admin/login/"

# --- Upstream (Google). Every URL is a setting so tests and benchmarks point at a fake.
GEMINI_UPSTREAM_URL = env_url(
    "GEMINI_UPSTREAM_URL",
    "https://generativelanguage.googleapis.com/v1beta",
    schemes=("http", "https"),
)
OPENAI_UPSTREAM_URL = env_url(
    "OPENAI_UPSTREAM_URL",
    "https://generativelanguage.googleapis.com/v1beta/openai",
    schemes=("http", "https"),
)
CODE_ASSIST_UPSTREAM_URL = env_url(
    "CODE_ASSIST_UPSTREAM_URL",
    "https://cloudcode-pa.googleapis.com/v1internal",
    schemes=("http", "https"),
)
OAUTH_TOKEN_URL = env_url(
    "OAUTH_TOKEN_URL", "https://oauth2.googleapis.com/token", schemes=("http", "https")
)
# The Gemini CLI's "installed application" client, public in Google's Apache-2.0 source;
# a refresh token only refreshes with the client that minted it.
OAUTH_CLIENT_ID = env_str(
    "OAUTH_CLIENT_ID",
    "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com",
)
OAUTH_CLIENT_SECRET = env_str("OAUTH_CLIENT_SECRET", "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")
UPSTREAM_CONNECT_TIMEOUT_SECONDS = env_float("UPSTREAM_CONNECT_TIMEOUT_SECONDS", 10.0)
# Long generations (thinking models, big outputs) take minutes between bytes.
UPSTREAM_READ_TIMEOUT_SECONDS = env_float("UPSTREAM_READ_TIMEOUT_SECONDS", 300.0)
UPSTREAM_MAX_CONNECTIONS = env_int("UPSTREAM_MAX_CONNECTIONS", 4096, minimum=1)
# Credentials with their own egress proxy: one pooled client per distinct proxy URL, at most
# this many per process (the least recently used is closed), each with this many connections.
UPSTREAM_PROXY_CLIENTS_MAX = env_int("UPSTREAM_PROXY_CLIENTS_MAX", 16, minimum=1)
UPSTREAM_PROXY_MAX_CONNECTIONS = env_int("UPSTREAM_PROXY_MAX_CONNECTIONS", 100, minimum=1)

# --- Gateway behaviour.
# As long as a chosen API key must be (accounts.services.OUR_KEY_MIN_CHARS).
MASTER_API_KEY = env_secret("MASTER_API_KEY", min_chars=24)
# Failed sign-ins (API keys, the master key, /stat, the admin) allowed per client address per
# minute before it gets 429 for the rest of the minute (rotator.throttle).
SIGNIN_FAILURES_PER_MINUTE = env_int("SIGNIN_FAILURES_PER_MINUTE", 20, minimum=1)
MAX_CREDENTIALS = env_int("MAX_CREDENTIALS", 100, minimum=1)
MAX_ATTEMPTS = env_int("MAX_ATTEMPTS", 3, minimum=1)
# Request bodies are bounded before Django reads them (config.asgi): MAX_REQUEST_BYTES on every
# route, MAX_IMPORT_BYTES on the admin's bulk import of credential files, and
# REQUEST_BODY_TIMEOUT_SECONDS from the headers to the body's last byte (long enough for a
# 20 MB body on a slow uplink, short enough that idle connections do not pile up).
MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", 20 * 1024 * 1024, minimum=1024)
MAX_IMPORT_BYTES = env_int("MAX_IMPORT_BYTES", 50 * 1024 * 1024, minimum=1024)
REQUEST_BODY_TIMEOUT_SECONDS = env_float("REQUEST_BODY_TIMEOUT_SECONDS", 60.0, minimum=0.1)
IMPORT_PATH = "/admin/accounts/credential/import/"
# The ASGI limit above decides per route; Django's own check must not refuse an import first.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(MAX_REQUEST_BYTES, MAX_IMPORT_BYTES)
# Google's answer when a 429 names no delay; its per-minute windows make 60 s the safe guess.
RATE_LIMIT_DEFAULT_COOLDOWN_SECONDS = env_int("RATE_LIMIT_DEFAULT_COOLDOWN_SECONDS", 60, minimum=1)
# Circuit breaker: this many 5xx/timeouts cool a credential down briefly ...
CIRCUIT_BREAKER_FAILURES = env_int("CIRCUIT_BREAKER_FAILURES", 3, minimum=1)
CIRCUIT_BREAKER_COOLDOWN_SECONDS = env_int("CIRCUIT_BREAKER_COOLDOWN_SECONDS", 30, minimum=1)
# ... within this many seconds of the first, counted across every server process.
CIRCUIT_BREAKER_WINDOW_SECONDS = env_int("CIRCUIT_BREAKER_WINDOW_SECONDS", 60, minimum=1)
MODELS_CACHE_SECONDS = env_int("MODELS_CACHE_SECONDS", 300, minimum=0)
# A 404 that the credential's own model list does not confirm (the model is listed for the
# method called, or the list could not be read) marks it this briefly, not until the reset.
MODEL_MISSING_UNCONFIRMED_SECONDS = env_int("MODEL_MISSING_UNCONFIRMED_SECONDS", 60, minimum=1)
# While a stream waits on upstream (a model thinking before its first content, or between
# chunks), the client gets a keep-alive its dialect allows (an SSE comment, Anthropic's ping)
# this often: proxies in front cut idle connections at 60-120 s. 0 turns it off; past it,
# a stream's answer is a 200 even if it then fails (the failure comes as an error event).
STREAM_KEEPALIVE_SECONDS = env_float("STREAM_KEEPALIVE_SECONDS", 15.0, minimum=0.0)
# Gemini thought signatures of the tool calls Rotator hands out, kept in the cache (Redis on
# the production profile, shared by every worker) for this long: an agent's next turn must
# come back within it, or its calls get Google's skip value instead.
SIGNATURE_TTL_SECONDS = env_int("SIGNATURE_TTL_SECONDS", 86400, minimum=60)
# Larger signatures are not kept (they are a few KB in practice).
SIGNATURE_MAX_BYTES = env_int("SIGNATURE_MAX_BYTES", 32768, minimum=1024)
# How long a process trusts its cached copy of an API key before looking again. Revocations
# reach every process at once regardless, through the pool version (rotator.pool).
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 60, minimum=0)
USAGE_FLUSH_SECONDS = env_float("USAGE_FLUSH_SECONDS", 1.0, minimum=0.05)
# Daily usage counters older than this many quota days (today included) are pruned by beat.
USAGE_RETENTION_DAYS = env_int("USAGE_RETENTION_DAYS", 90, minimum=1)
# Database connections per server process used by the proxy path (rotator.orm), plus the few
# for OAuth refreshes that wait on Google while holding a row lock.
ORM_THREADS = env_int("ORM_THREADS", 4, minimum=1)
ORM_SLOW_THREADS = env_int("ORM_SLOW_THREADS", 2, minimum=1)
INVALID_RECHECK_MINUTES = env_int("INVALID_RECHECK_MINUTES", 60, minimum=1)
OAUTH_REFRESH_MARGIN_SECONDS = env_int("OAUTH_REFRESH_MARGIN_SECONDS", 300, minimum=0)
# One process refreshes an account's token at a time; the others wait this long at most for
# the token it stores. Past it (the refresher died or hangs), they refresh themselves.
OAUTH_REFRESH_LEASE_SECONDS = env_float("OAUTH_REFRESH_LEASE_SECONDS", 12.0)
OAUTH_ONBOARD_POLL_SECONDS = env_float("OAUTH_ONBOARD_POLL_SECONDS", 2.0)
OAUTH_ONBOARD_MAX_POLLS = env_int("OAUTH_ONBOARD_MAX_POLLS", 15, minimum=1)
# Responses API answers asked to be stored (`store: true`, the API's default) are kept this long
# (OpenAI keeps them 30 days) and at most this many per user, oldest dropped first. A TTL of 0
# stores nothing: previous_response_id is then refused.
RESPONSES_STORE_TTL_SECONDS = env_int("RESPONSES_STORE_TTL_SECONDS", 30 * 24 * 3600, minimum=0)
RESPONSES_STORE_MAX_PER_USER = env_int("RESPONSES_STORE_MAX_PER_USER", 1000, minimum=1)
# Each process trims a user's stored answers (expired, beyond the cap) once every this many of
# that user's saves, not on each: a trim costs O(cap). So a user may hold up to
# MAX_PER_USER + TRIM_EVERY - 1 answers per process between trims; 1 trims on every save.
RESPONSES_STORE_TRIM_EVERY = env_int("RESPONSES_STORE_TRIM_EVERY", 100, minimum=1)
# Kept answers are written in batches, each this long after its first answer (one INSERT per
# answer cost the worker ~1 ms of CPU under load); until then the process finds them in memory
# and other processes' lookups wait for them once. 0 writes each answer before its last byte.
RESPONSES_STORE_WRITE_DELAY_MS = env_int("RESPONSES_STORE_WRITE_DELAY_MS", 20, minimum=0)
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", ["*"])
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

# Google resets free-tier daily quotas at midnight Pacific, so the default follows
# America/Los_Angeles through daylight saving (07:00 UTC in summer, 08:00 UTC in winter).
# DAILY_RESET_UTC pins a fixed UTC time instead, as the system we replace did.
DAILY_RESET_UTC = env_time("DAILY_RESET_UTC", None)
if DAILY_RESET_UTC is not None:
    DAILY_RESET_TZ = "UTC"
    DAILY_RESET_TIME = DAILY_RESET_UTC
else:
    DAILY_RESET_TZ = env_str("DAILY_RESET_TZ", "America/Los_Angeles")
    DAILY_RESET_TIME = env_time("DAILY_RESET_TIME", "00:00") or time(0, 0)


def _check_time_zone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from django.core.exceptions import ImproperlyConfigured

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(
            f"DAILY_RESET_TZ must be an IANA time zone like America/Los_Angeles, got {name!r}"
        ) from None


_check_time_zone(DAILY_RESET_TZ)

# --- Celery. Beat is optional: every rule it serves is also enforced by time on the request
# path, so a server without a broker loses nothing but the proactive work.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_IGNORE_RESULT = True
# --- Alerts: a webhook when a credential becomes invalid or suspended, or a pool has no
# usable credential for a model. Unset URL: no alerts.
ALERT_WEBHOOK_URL = (
    env_url("ALERT_WEBHOOK_URL", "", schemes=("http", "https"))
    if env_str("ALERT_WEBHOOK_URL", "")
    else ""
)
# Signs each body (X-Rotator-Signature); receivers should refuse unsigned alerts.
ALERT_WEBHOOK_SECRET = env_str("ALERT_WEBHOOK_SECRET", "")
ALERT_WEBHOOK_FORMAT = env_str("ALERT_WEBHOOK_FORMAT", "json")
if ALERT_WEBHOOK_FORMAT not in ("json", "slack", "discord"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"ALERT_WEBHOOK_FORMAT must be json, slack or discord, got {ALERT_WEBHOOK_FORMAT!r}"
    )
# Short: without a broker the delivery runs inline, on the failing request's path.
ALERT_TIMEOUT_SECONDS = env_float("ALERT_TIMEOUT_SECONDS", 2.0, minimum=0.1)
ALERT_RETRIES = env_int("ALERT_RETRIES", 5, minimum=0)
# Alert when an OAuth account has used this share of a model's daily quota (as Code Assist
# reports it on each quota read); 0 turns the alert off.
ALERT_QUOTA_USED_SHARE = env_float("ALERT_QUOTA_USED_SHARE", 0.9, minimum=0.0)
# Deliver through a Celery worker (retries with backoff) when a broker is configured; set it
# false when no worker runs, and alerts go out inline.
ALERT_VIA_CELERY = env_bool("ALERT_VIA_CELERY", not CELERY_BROKER_URL.startswith("memory://"))
ALERT_RETRY_BASE_SECONDS = env_int("ALERT_RETRY_BASE_SECONDS", 30, minimum=1)

# How often beat reads Code Assist's remaining quota of each OAuth account (one small call each).
QUOTA_FETCH_MINUTES = env_int("QUOTA_FETCH_MINUTES", 15, minimum=1)
CELERY_BEAT_SCHEDULE = {
    # Every minute: refresh OAuth access tokens that expire within 10 minutes.
    "tokens-refresh": {
        "task": "rotator.tasks.tokens_refresh_task",
        "schedule": 60.0,
        "options": {"expires": 50},
    },
    # Every 5 minutes: the daily reset is time-based; this clears lapsed marks and logs a
    # summary soon after the reset instant, whichever time zone it is configured in.
    "daily-reset": {
        "task": "rotator.tasks.quotas_reset_task",
        "schedule": 300.0,
        "options": {"expires": 240},
    },
    # Every INVALID_RECHECK_MINUTES (default hourly): re-check invalid credentials upstream.
    "invalid-recheck": {
        "task": "rotator.tasks.credentials_recheck_task",
        "schedule": INVALID_RECHECK_MINUTES * 60.0,
        "options": {"expires": INVALID_RECHECK_MINUTES * 60.0 - 10},
    },
    # Every hour: delete usage counters older than USAGE_RETENTION_DAYS (a day at a time
    # becomes prunable, so hourly is soon enough).
    "usage-prune": {
        "task": "stats.tasks.usage_prune_task",
        "schedule": 3600.0,
        "options": {"expires": 3500},
    },
    # Every hour: delete stored Responses API answers past their TTL (the request path trims
    # only the saving user's, and reads never return an expired one).
    "stored-responses-expire": {
        "task": "rotator.tasks.stored_responses_expire_task",
        "schedule": 3600.0,
        "options": {"expires": 3500},
    },
    # Every QUOTA_FETCH_MINUTES (default 15): read OAuth accounts' remaining quota for /stat.
    "quotas-fetch": {
        "task": "rotator.tasks.quotas_fetch_task",
        "schedule": QUOTA_FETCH_MINUTES * 60.0,
        "options": {"expires": QUOTA_FETCH_MINUTES * 60.0 - 10},
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.auth.MasterKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.auth.ModelPermission"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": (
        ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"]
        if DEBUG
        else ["rest_framework.renderers.JSONRenderer"]
    ),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Rotator",
    "DESCRIPTION": "Gemini gateway: OpenAI-compatible and native Gemini proxy, management API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Adds the proxy routes (plain async views) and the error shapes to the schema.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.schema_complete",
    ],
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {LOG_LEVEL!r}"
    )
_HTTP_CLIENT_LOG_LEVEL = "DEBUG" if LOG_LEVEL == "DEBUG" else "WARNING"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django logs 4xx responses as warnings; the request log line already covers them.
        "django.request": {"level": "ERROR"},
        # The HTTP client libraries log every upstream call at INFO ("HTTP Request: POST ..."),
        # a second line per request beside rotator.request's, and one carrying upstream URLs.
        # Their warnings and errors still show, and LOG_LEVEL=DEBUG brings everything back.
        "httpx": {"level": _HTTP_CLIENT_LOG_LEVEL},
        "httpcore": {"level": _HTTP_CLIENT_LOG_LEVEL},
        "aiohttp": {"level": _HTTP_CLIENT_LOG_LEVEL},
    },
}
