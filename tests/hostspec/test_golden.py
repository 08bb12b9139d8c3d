"""hostspec.kit.golden: the field-by-field diff and the golden-file format."""
import json

import pytest

from hostspec.kit.golden import diff, load_golden


def test_the_diff_names_each_differing_field_nested_and_missing_ones_too():
    expected = {"time_spent_seconds": 720, "learner": {"provider_id": "7"}, "completed_at": None, "x": 1}
    actual = {"time_spent_seconds": 12, "learner": {"provider_id": "8", "email": None}, "completed_at": None}
    assert diff(expected, actual) == ["time_spent_seconds: expected 720, got 12",
                                      'learner.provider_id: expected "7", got "8"', "x: expected 1, got <missing>"]


def test_fields_left_out_are_not_compared_and_instants_compare_as_instants():
    assert diff({"a": "2026-01-01T00:00:00Z", "b": 1.0}, {"a": "2026-01-01T00:00:00.000+00:00", "b": 1, "c": 3}) == []
    assert diff({"a": True}, {"a": 1}) == ["a: expected true, got 1"]


def test_a_golden_file_with_an_unknown_kind_is_refused(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"stat": [{"raw": {}, "expected": {}}]}))
    with pytest.raises(ValueError, match="unknown keys"):
        list(load_golden(tmp_path))
