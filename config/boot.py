"""Loads settings before anything else and turns a configuration error into one clear line."""

import sys


def settings_load_or_exit(*, serving: bool = False) -> None:
    """Loads the settings; `serving` (the ASGI entry point) also requires what only a web
    server needs: ALLOWED_HOSTS."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018  (forces the settings module to load)
        if serving and not settings.ALLOWED_HOSTS:
            raise ImproperlyConfigured(
                "ALLOWED_HOSTS is required but not set: the comma-separated host names "
                "this server answers to"
            )
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"rotator: configuration error: {exc}\n")
        raise SystemExit(2) from None


def encryption_key_problem() -> str | None:
    """One line naming ROTATOR_ENCRYPTION_KEY when the configured key does not open the stored
    secrets (accounts.encryption), else None. Synchronous: call it off the event loop."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError, connections

    from accounts.encryption import EncryptionKeyMismatch, encryption_key_verify

    try:
        encryption_key_verify()
    except (EncryptionKeyMismatch, ImproperlyConfigured) as exc:
        return f"rotator: configuration error: {exc}"
    except DatabaseError:
        # Not migrated yet, or the database is down: /healthz and every request say so,
        # and /healthz repeats this check once the database answers.
        return None
    finally:
        connections.close_all()
    return None
