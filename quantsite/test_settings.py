"""Settings for the test suite: the production settings with a throwaway secret key (tests never need a real one)."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key-not-for-deployment")
# The test client speaks plain HTTP without a token; tests of HTTPS and authentication turn these on themselves.
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("QUANTIZER_REQUIRE_AUTH", "0")

from .settings import *  # noqa: F403

# Tests do not run collectstatic: serve static files from the apps, without the manifest.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
WHITENOISE_USE_FINDERS = True
