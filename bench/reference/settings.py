"""Minimal Django settings for the reference forwarder: no apps, no middleware, no database."""

import os

SECRET_KEY = "bench-reference-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.reference.views"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024
LOGGING_CONFIG = None

# Where to forward to, and with which upstream key (the fake accepts any well-formed one).
UPSTREAM_OPENAI_URL = os.environ["OPENAI_UPSTREAM_URL"]
UPSTREAM_KEY = os.environ.get("REFERENCE_UPSTREAM_KEY", "AIzaBenchReference" + "x" * 21)
