"""The fast row loader agrees with the marshmallow schema whenever it answers."""
from __future__ import annotations

import random

from marshmallow import ValidationError

from connector_coursera.api_schemas import ENROLLMENT_REPORT, fast_report
from connector_coursera.sandbox.data import Org, OrgSpec
from tests.conftest import load_fixture
from tests.hostspec.test_fastcheck import mutations


def schema_load(record):
    try:
        return ENROLLMENT_REPORT.load(record)
    except ValidationError:
        return "rejected"


def test_well_typed_rows_take_the_fast_path_and_load_the_same():
    org = Org.generate(OrgSpec(contents=20, learners=30, enrollments=400))
    rows = [org.row(i) for i in range(400)] + list(load_fixture("coursera", "enrollment_reports.json").values())
    fast_count = 0
    for row in rows:
        fast = fast_report(row)
        if fast is not None:
            fast_count += 1
            assert fast == schema_load(row)
    assert fast_count >= 400  # every generated row; fixtures with type flips may defer


def test_mutated_rows_never_load_differently():
    rng = random.Random(5)
    org = Org.generate(OrgSpec(contents=10, learners=10, enrollments=60))
    answered = 0
    for base in [org.row(i) for i in range(0, 60, 6)]:
        for record in mutations(base, rng, 400):
            fast = fast_report(record)
            if fast is not None:
                answered += 1
                assert fast == schema_load(record), record
    assert answered > 100
