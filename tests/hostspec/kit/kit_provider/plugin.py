"""The kit provider's hooks, client and mapping (the template's patterns, one module), with a
mistake of issue 30 plantable: ``KitProvider("progress_fraction")``."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, Mapping

import requests
from marshmallow import RAISE, Schema, fields

from hostspec import (CheckResult, Connection, ProviderError, ProviderInfo, ProviderSystemError,
                      ProviderTransientError, RecordRejected, SecretField, SyncContext, hookimpl)
from hostspec.kit import gate_session, offset_pages, raise_for_answer, retry_policy

MISTAKES = ("progress_fraction", "provider_id_from_sso", "provider_id_shared", "attempt_is_course", "minutes_as_seconds",
            "full_left_in_progress", "first_last_swapped", "no_listing_total", "retry_after_ignored",
            "three_tries")


class Settings(Schema):
    class Meta:
        unknown = RAISE

    base_url = fields.Url(load_default="https://api.kit.example.com", require_tld=False, schemes={"http", "https"})
    api_key = SecretField(required=True)


class Client:
    def __init__(self, settings: Mapping[str, Any], *, calls: Any = None, count: str | None = "count",
                 mistake: str | None = None):
        self._count = count
        self._base, self._key = str(settings["base_url"]).rstrip("/"), settings["api_key"]
        self._session = gate_session(requests.Session(), calls)
        self._retrying = retry_policy(provider="kit", max_attempts=3 if mistake == "three_tries" else 6,
                                      max_retry_after_s=0 if mistake == "retry_after_ignored" else 10,
                                      initial_s=0.01, max_backoff_s=0.05)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self._session.close()

    def get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._retrying(self._get, path, params)

    def _get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        try:
            resp = self._session.get(self._base + path, params=dict(params), timeout=10, allow_redirects=False,
                                     headers={"Authorization": f"Bearer {self._key.reveal()}"})
        except requests.RequestException as exc:
            raise ProviderTransientError(f"GET {path}: {type(exc).__name__}") from None
        raise_for_answer(resp, f"GET {path}")
        body = resp.json()
        if not isinstance(body, dict):
            raise ProviderSystemError(f"GET {path}: not a JSON object")
        return body

    def items(self, path: str, *, start: int = 0, **window: Any) -> Iterator[Any]:
        query = {k: v.isoformat() for k, v in window.items() if v is not None}
        return offset_pages(lambda offset, limit: self.get(path, {"offset": offset, "limit": limit, **query}),
                            page_size=7, items="results", total=self._count, start=start)


class KitProvider:
    """The hooks; ``mistake`` (one of :data:`MISTAKES`, or None) plants one error."""

    def __init__(self, mistake: str | None = None):
        assert mistake in (None, *MISTAKES), mistake
        self.mistake = mistake

    @hookimpl
    def provider_info(self) -> ProviderInfo:
        return ProviderInfo(name="kit", version="0.0.1", title="Kit", scopes=("catalog", "progress"),
                            settings_schema=Settings, secret_fields=("api_key",),
                            hosts=("*.kit.example.com",))

    @hookimpl
    def check_connection(self, connection: Connection) -> CheckResult:
        try:
            with Client(connection.settings) as client:
                client.get("/courses", {"offset": 0, "limit": 1})
        except ProviderError as exc:
            return CheckResult(False, str(exc))
        return CheckResult(True, "connected")

    @hookimpl
    def start_sandbox(self, options: Mapping[str, Any]) -> Any:
        from .sandbox import KitSandbox
        return KitSandbox(**{k: int(v) for k, v in options.items()}).start()

    @hookimpl
    def fetch_catalog(self, connection: Connection, context: SyncContext) -> Iterator[Any]:
        count = None if self.mistake == "no_listing_total" else "count"     # the count's key forgotten
        with Client(connection.settings, calls=context.calls, count=count, mistake=self.mistake) as client:
            yield from client.items("/courses")

    @hookimpl
    def record_id(self, record: Mapping[str, Any], scope: str) -> str | None:
        value = record.get("id") if scope == "catalog" else None
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else None

    @hookimpl
    def map_course(self, record: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(record.get("id"), int) or not isinstance(record.get("title"), str) \
                or not isinstance(record.get("url"), str):
            raise RecordRejected(None, {"id": ["an integer is required"], "title": ["required"], "url": ["required"]})
        return {"external_id": str(record["id"]), "title": record["title"], "description": None, "language": "en",
                "content_type": "course", "launch_url": record["url"], "image_url": None,
                "duration_minutes": record.get("video_minutes"), "difficulty_level": None,
                "sources": [{"name": "Kit", "logo_url": None}], "subjects": [], "skills": [],
                "provider_updated_at": None}

    @hookimpl
    def fetch_progress(self, connection: Connection, context: SyncContext, since: datetime | None,
                       until: datetime | None) -> Iterator[Any]:
        start = context.resume if isinstance(context.resume, int) else 0
        with Client(connection.settings, calls=context.calls, mistake=self.mistake) as client:
            yield from client.items("/progress", start=start, since=since, until=until)

    @hookimpl
    def map_stat(self, record: Mapping[str, Any], context: SyncContext) -> dict[str, Any]:
        mistake = self.mistake
        if not all(isinstance(record.get(k), int) for k in ("enrollment_id", "course_id", "user_id")):
            raise RecordRejected(None, {"enrollment_id": ["required"], "course_id": ["required"],
                                        "user_id": ["required"]})
        ratio = float(record.get("completion_ratio") or 0)
        completed = ratio >= 100 and (record.get("completed_on") is not None or mistake != "full_left_in_progress")
        progress = ratio / 100 if mistake == "progress_fraction" else ratio
        first, last = record.get("first_activity"), record.get("last_activity")
        if mistake == "first_last_swapped":
            first, last = last, first
        done, done_from = (record["completed_on"], "native") if record.get("completed_on") else (last, "derived")
        minutes = record.get("minutes_spent")
        course = str(record["course_id"])
        learner = str(record["sso_id"]) if mistake == "provider_id_from_sso" else str(record["user_id"])
        attempt = course if mistake == "attempt_is_course" else str(record["enrollment_id"])
        if mistake == "provider_id_shared":            # the e-mail's domain: one id for the whole company
            learner = str(record.get("email")).rpartition("@")[2]
            attempt = f"{learner}~{course}"
        return {
            "course_external_id": course,
            "learner": {"email": record.get("email"), "provider_id": learner},
            "attempt_id": attempt,
            "completion_status": "completed" if completed else ("in_progress" if ratio else "not_started"),
            "progress_percent": 100.0 if completed else progress,
            "score_percent": None, "result": None,
            "first_activity_at": first, "last_activity_at": last, "completed_at": done if completed else None,
            "time_spent_seconds": None if minutes is None else (minutes if mistake == "minutes_as_seconds"
                                                                else minutes * 60),
            "provenance": {"completion_status": "derived", "progress_percent": "native", "score_percent": "absent",
                           "result": "absent", "first_activity_at": "native", "last_activity_at": "native",
                           "completed_at": done_from if completed else "absent",
                           "time_spent_seconds": "native"},
            "as_of": context.now.isoformat(),
        }
