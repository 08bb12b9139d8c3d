"""The CloudEvents Kafka protocol binding, as far as the host needs it.

Every event the project writes is a *structured-mode* record: the whole CloudEvent as JSON in
the value, and the header ``content-type: application/cloudevents+json; charset=UTF-8`` that
tells a reader so (the Java SDK reads a record without it in binary mode, and refuses ours).
Records that are not events (state, ledger, scheduler leases, rate signals) carry no header.

Events produced by others are accepted in both modes: :func:`structured_value` turns a
*binary-mode* record (attributes in ``ce_*`` headers, the data alone in the value) into the
structured JSON the rest of the host reads.
"""
from __future__ import annotations

import json
from typing import Iterable

CONTENT_TYPE = "content-type"
STRUCTURED_TYPE = "application/cloudevents+json; charset=UTF-8"
STRUCTURED = [(CONTENT_TYPE, STRUCTURED_TYPE.encode("ascii"))]
_PREFIX = "ce_"

Headers = Iterable[tuple[str, bytes | None]]


def structured_value(headers: Headers | None, value: bytes | None) -> bytes | None:
    """The record's CloudEvent as structured JSON: the value itself unless the headers say binary
    mode (a ``ce_specversion`` header), then the event rebuilt from headers and value. A value
    that is not an event stays as it is (the caller refuses it with its reason)."""
    if not headers:
        return value    # most records: ours (one header) or none at all
    found = {k.lower(): v for k, v in headers if isinstance(k, str)}
    if _PREFIX + "specversion" not in found:
        return value
    event: dict[str, object] = {}
    for key, raw in found.items():
        if key.startswith(_PREFIX) and raw is not None:
            event[key[len(_PREFIX):]] = raw.decode("utf-8", errors="replace")
    content_type = (found.get(CONTENT_TYPE) or b"").decode("ascii", errors="replace")
    if content_type:
        event["datacontenttype"] = content_type.split(";")[0].strip()
    if value is not None:
        try:
            event["data"] = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            event["data_base64"] = value.hex()    # not JSON: kept, and refused as such by the reader
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


__all__ = ["CONTENT_TYPE", "STRUCTURED", "STRUCTURED_TYPE", "structured_value"]
