"""Loads settings before anything else and turns a configuration error into one clear line."""

import sys


def settings_load_or_exit() -> None:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018  (forces the settings module to load)
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"rotator: configuration error: {exc}\n")
        raise SystemExit(2) from None
