"""ASGI entry point (measured about 3x slower than gunicorn sync workers for this CPU-bound API; WSGI is the
production path)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantsite.settings")
application = get_asgi_application()
