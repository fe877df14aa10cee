"""Settings for the test suite: the production settings with a throwaway secret key (tests never need a real one)."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key-not-for-deployment")

from .settings import *  # noqa: F403
