"""Typed readers for environment variables that fail loudly, naming the variable."""

import os
import re
from datetime import time
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_MISSING = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str, default: object) -> str | None:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is _MISSING:
            raise ImproperlyConfigured(f"{name} is required but not set")
        return None
    return value


def env_str(name: str, default: str | object = _MISSING) -> str:
    value = _raw(name, default)
    return value if value is not None else str(default)


def env_secret(name: str, *, min_chars: int) -> str:
    """A secret that may be unset (""), but is at least `min_chars` long when set."""
    value = env_str(name, "").strip()
    if value and len(value) < min_chars:
        raise ImproperlyConfigured(
            f"{name} must be at least {min_chars} characters (shorter ones can be guessed), "
            f"got {len(value)}"
        )
    return value


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name, default)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    return number


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    value = _raw(name, default)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    return number


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {value!r}")


def env_time(name: str, default: str | None) -> time | None:
    """HH:MM (24-hour clock)."""
    value = _raw(name, default) or default
    if value is None:
        return None
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
    if not match:
        raise ImproperlyConfigured(f"{name} must be a time as HH:MM, got {value!r}")
    return time(int(match.group(1)), int(match.group(2)))


def env_url(name: str, default: str | object = _MISSING, *, schemes: tuple[str, ...]) -> str:
    value = env_str(name, default).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "sqlite"):
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ImproperlyConfigured(f"{name} must be a URL starting with {allowed}, got {value!r}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def proxy_ssl_header(name: str, default: str) -> tuple[str, str] | None:
    """Django's SECURE_PROXY_SSL_HEADER from a header name ("X-Forwarded-Proto"), which the
    proxy sets to "https"; None when empty (no proxy, or TLS served by Rotator itself)."""
    header = os.environ.get(name, default).strip()
    if not header:
        return None
    if not re.fullmatch(r"[A-Za-z0-9-]+", header):
        raise ImproperlyConfigured(f"{name} must be a header name like X-Forwarded-Proto")
    return "HTTP_" + header.upper().replace("-", "_"), "https"


def database_from_url(name: str, url: str) -> dict[str, object]:
    """Django DATABASES entry for a postgres:// or sqlite:/// URL."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("//") else parts.path.lstrip("/")
        if not path:
            raise ImproperlyConfigured(f"{name} needs a file path, like sqlite:///db.sqlite3")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            # As the embedded default (config.settings says why).
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
            },
        }
    if parts.scheme in ("postgres", "postgresql"):
        database = parts.path.lstrip("/")
        if not database:
            raise ImproperlyConfigured(f"{name} must name a database, like postgres://host/rotator")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": database,
            "USER": parts.username or "",
            "PASSWORD": parts.password or "",
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            # Persistent connections: the proxy runs ORM calls in a thread pool, and
            # reconnecting per request would cost more than the request itself.
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    raise ImproperlyConfigured(f"{name} must start with postgres:// or sqlite:///, got {url!r}")
