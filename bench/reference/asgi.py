"""ASGI entry point of the reference forwarder: `bench.reference.asgi:application`."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.reference.settings")

from django.core.asgi import get_asgi_application

application = get_asgi_application()
