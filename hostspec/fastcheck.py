"""A fast, sound pre-check of data against a strict marshmallow schema.

marshmallow's machinery (error stores, per-field getters, deserialisation of every value) costs
tens of microseconds per record; at a million records per sync it is the largest single cost.
:func:`compile_check` walks a schema's fields once and returns a plain function that answers
``True`` only when the data certainly passes the schema: exact JSON types, required keys present,
no unknown keys, and every field validator and schema validator of the original schema applied
(the very same validator objects). For anything else it answers ``False`` and the caller asks
marshmallow, which stays the only judge of what is rejected and produces the messages. So the
set of rejected records is marshmallow's by construction; tests check that ``True`` is never
given to data marshmallow would refuse.
"""
from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Any, Callable, Mapping

from marshmallow import RAISE, Schema, ValidationError, fields, validate

Check = Callable[[Any], bool]
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")
# marshmallow's own validators: their answer depends on the value alone, so it may be remembered
_PURE = (validate.Regexp, validate.Email, validate.URL, validate.Length, validate.OneOf)
_COSTLY = (validate.Regexp, validate.Email, validate.URL)     # worth remembering (a regular expression each)
MEMO_SIZE = 4096


def _memo(check: Check) -> Check:
    """``check`` of strings, remembered for the last :data:`MEMO_SIZE` values.

    A run repeats the same tenant, connection, learner emails and dates in thousands of events;
    each is matched against its regular expression once. Only for checks that depend on the
    string alone."""
    return functools.lru_cache(maxsize=MEMO_SIZE)(check)


def _validators(field: fields.Field) -> Check:
    validators = list(field.validators)
    if not validators:
        return lambda value: True

    def check(value: Any) -> bool:
        try:
            for validator in validators:
                if validator(value) is False:
                    return False
        except ValidationError:
            return False
        return True

    return check


def _iso_datetime(value: Any) -> bool:
    if type(value) is not str or not _ISO.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _type_check(field: fields.Field) -> Check | None:
    """A check of the value's JSON type for the field kinds our event schemas use."""
    if isinstance(field, fields.Nested):
        return compile_check(type(field.schema)) if not field.many else None
    if isinstance(field, fields.List):
        inner = _field_check(field.inner)
        return lambda v: type(v) is list and all(inner(x) for x in v)
    if isinstance(field, fields.Dict):
        keys = _field_check(field.key_field) if field.key_field else (lambda k: True)
        values = _field_check(field.value_field) if field.value_field else (lambda v: True)
        return lambda v: type(v) is dict and all(keys(k) and values(x) for k, x in v.items())
    if isinstance(field, fields.DateTime):
        if field.format != "iso":
            return None
        dates = _memo(_iso_datetime)
        return lambda v: type(v) is str and dates(v)
    if isinstance(field, fields.String):  # Email and Url are Strings with validators
        return lambda v: type(v) is str
    if isinstance(field, fields.Integer):
        return lambda v: type(v) is int
    if isinstance(field, fields.Float):
        return lambda v: type(v) in (int, float) and v == v and v not in (float("inf"), float("-inf"))
    if isinstance(field, fields.Boolean):
        return lambda v: type(v) is bool
    if type(field) is fields.Raw:
        return lambda v: True
    return None


def _choices(field: fields.Field | None) -> frozenset[Any] | None:
    """The allowed values of a plain string field whose only validator is ``OneOf`` (None else)."""
    if (field is None or type(field) is not fields.String or field.allow_none or len(field.validators) != 1
            or type(field.validators[0]) is not validate.OneOf):
        return None
    return frozenset(c for c in field.validators[0].choices if type(c) is str)


def _field_check(field: fields.Field) -> Check:
    type_ok = _type_check(field)
    if type_ok is None:  # a field kind we do not reproduce: always defer to marshmallow
        return lambda v: False
    allow_none = field.allow_none
    # the shapes most of an event's fields have, as one expression each (a record's check runs
    # a few hundred of these: each Python call saved is a microsecond per record)
    choices = _choices(field)
    if choices is not None:
        return lambda v: type(v) is str and v in choices
    if isinstance(field, fields.Dict) and not field.validators:
        keys, values = _choices(field.key_field), _choices(field.value_field)
        if keys is not None and values is not None:
            def enum_map(v: Any) -> bool:
                if v is None:
                    return allow_none
                return type(v) is dict and keys.issuperset(v) and \
                    all(type(x) is str for x in v.values()) and values.issuperset(v.values())
            return enum_map
    if type(field) is fields.String and not field.validators:
        return (lambda v: v is None or type(v) is str) if allow_none else (lambda v: type(v) is str)
    validators_ok = _validators(field)
    if isinstance(field, fields.String) and all(isinstance(v, _PURE) for v in field.validators) \
            and any(isinstance(v, _COSTLY) for v in field.validators):
        strings_ok = _memo(validators_ok)

        def string(value: Any) -> bool:
            if value is None:
                return allow_none
            return type(value) is str and strings_ok(value)

        return string

    def check(value: Any) -> bool:
        if value is None:
            return allow_none
        return type_ok(value) and validators_ok(value)

    return check


def compile_check(schema_cls: type[Schema]) -> Check:
    """A function answering True only for data ``schema_cls().validate`` accepts."""
    schema = schema_cls()
    if schema.unknown != RAISE:
        raise ValueError("compile_check reproduces strict (unknown=RAISE) schemas only")
    checks = {name: _field_check(f) for name, f in schema.fields.items() if not f.dump_only}
    required = frozenset(name for name, f in schema.fields.items() if f.required)
    known = frozenset(checks)
    hook_table = getattr(schema, "_hooks", {})
    hooks = [getattr(schema, attr) for attr, _many, _kw in hook_table.get("validates_schema", [])]
    if hook_table.get("validates"):  # per-field @validates hooks are not reproduced: always defer
        return lambda data: False

    def check(data: Any) -> bool:
        if type(data) is not dict:
            return False
        keys = data.keys()
        if not required <= keys or not keys <= known:
            return False
        for name, value in data.items():
            if not checks[name](value):
                return False
        try:
            for hook in hooks:
                hook(data)
        except ValidationError:
            return False
        return True

    return check


def compile_all(schemas: Mapping[str, type[Schema]]) -> dict[str, Check]:
    return {name: compile_check(cls) for name, cls in schemas.items()}
