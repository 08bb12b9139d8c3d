"""The ``settings`` table of a LinkedIn Learning connection."""
from __future__ import annotations

from dataclasses import dataclass, field

from marshmallow import RAISE, Schema, fields, post_load, validate

from hostspec import Secret, SecretField

from . import contract


@dataclass(frozen=True)
class LinkedInSettings:
    client_id: str
    client_secret: Secret = field(repr=False)
    api_url: str = contract.DEFAULT_API_URL
    token_url: str = contract.DEFAULT_TOKEN_URL
    locale: str = "en_US"
    page_size: int = contract.PAGE_SIZE_DEFAULT
    timeout_s: float = 30.0
    max_attempts: int = 6
    max_retry_after_s: float = 120.0
    first_sync_days: int = contract.REPORT_FIRST_SYNC_DAYS

    def __repr__(self) -> str:
        return f"LinkedInSettings(client_id={self.client_id!r}, client_secret=***, api_url={self.api_url!r})"


class LinkedInSettingsSchema(Schema):
    class Meta:
        unknown = RAISE

    client_id = fields.String(required=True, validate=validate.Length(min=1))
    client_secret = SecretField(required=True)
    api_url = fields.Url(load_default=contract.DEFAULT_API_URL, require_tld=False, schemes={"http", "https"})
    token_url = fields.Url(load_default=contract.DEFAULT_TOKEN_URL, require_tld=False, schemes={"http", "https"})
    locale = fields.String(load_default="en_US", validate=validate.Regexp(r"^[a-z]{2}_[A-Z]{2}$"))
    page_size = fields.Integer(load_default=contract.PAGE_SIZE_DEFAULT,
                               validate=validate.Range(min=1, max=contract.PAGE_SIZE_MAX))
    timeout_s = fields.Float(load_default=30.0, validate=validate.Range(min=0.1, max=600))
    max_attempts = fields.Integer(load_default=6, validate=validate.Range(min=1, max=20))
    max_retry_after_s = fields.Float(load_default=120.0, validate=validate.Range(min=0, max=3600))
    first_sync_days = fields.Integer(load_default=contract.REPORT_FIRST_SYNC_DAYS,
                                     validate=validate.Range(min=1, max=3650))

    @post_load
    def _make(self, data, **_kwargs):
        return LinkedInSettings(**data)
