"""The Celery app of the model jobs: `celery -A quantsite worker`. Its settings are Django's CELERY_* settings
(quantsite/settings.py); the one task is quantizers.tasks.run_job."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantsite.settings")

app = Celery("quantsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
