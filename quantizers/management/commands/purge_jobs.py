"""manage.py purge_jobs --older-than 7d: delete finished jobs (succeeded, failed, cancelled) created before then,
with their files (deploy/quantsite-purge-jobs.timer runs it daily)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from quantizers import jobs


class Command(BaseCommand):
    help = "Delete finished model jobs older than --older-than (e.g. 7d, 12h, 30m), with their files."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", default="7d", help="age: a number and d, h, m or s (default 7d)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            age = jobs.parse_age(options["older_than"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        count = jobs.purge(age)
        self.stdout.write(f"{count} job(s) older than {options['older_than']} deleted")
