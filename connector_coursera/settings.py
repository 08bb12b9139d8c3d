"""The ``settings`` table of a Coursera connection, validated by marshmallow."""
from __future__ import annotations

from dataclasses import dataclass, field

from marshmallow import Schema, fields, post_load, validate

from hostspec import Secret, SecretField

from . import contract


@dataclass(frozen=True)
class CourseraSettings:
    org_id: str
    client_id: str
    client_secret: Secret = field(repr=False)
    base_url: str = contract.DEFAULT_BASE_URL
    token_url: str | None = None
    program_id: str | None = None
    page_size: int = contract.PAGE_SIZE_DEFAULT
    timeout_s: float = 30.0
    max_attempts: int = 6
    max_retry_after_s: float = 120.0
    include_specializations: bool = True
    include_deleted_members: bool = False

    @property
    def resolved_token_url(self) -> str:
        return self.token_url or self.base_url.rstrip("/") + contract.TOKEN_PATH

    def __repr__(self) -> str:
        return (f"CourseraSettings(org_id={self.org_id!r}, client_id={self.client_id!r}, "
                f"client_secret={self.client_secret!r}, base_url={self.base_url!r})")


class CourseraSettingsSchema(Schema):
    """Connection settings: org id, client credentials, and tuning knobs with safe defaults."""

    org_id = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$"))
    client_id = fields.String(required=True, validate=validate.Length(min=1))
    client_secret = SecretField(required=True)
    base_url = fields.Url(load_default=contract.DEFAULT_BASE_URL, require_tld=False,
                          schemes={"http", "https"})
    token_url = fields.Url(load_default=None, allow_none=True, require_tld=False, schemes={"http", "https"})
    program_id = fields.String(load_default=None, allow_none=True)
    page_size = fields.Integer(load_default=contract.PAGE_SIZE_DEFAULT,
                               validate=validate.Range(min=1, max=contract.PAGE_SIZE_MAX))
    timeout_s = fields.Float(load_default=30.0, validate=validate.Range(min=0.1, max=600))
    max_attempts = fields.Integer(load_default=6, validate=validate.Range(min=1, max=20))
    max_retry_after_s = fields.Float(load_default=120.0, validate=validate.Range(min=0, max=3600))
    include_specializations = fields.Boolean(load_default=True)
    include_deleted_members = fields.Boolean(load_default=False)

    @post_load
    def _make(self, data, **_kwargs):
        return CourseraSettings(**data)
