"""The conformance suite's meaning checks can fail: the kit's own provider passes the whole suite,
and each mistake of issue 30 planted in it fails the check meant for it, with a message naming
the cause."""
from __future__ import annotations

import pytest

from hostspec import hookimpl
from hostspec.kit.testing import open_run, provider_test_class

from pathlib import Path

from .kit_provider.plugin import MISTAKES, KitProvider

OPTIONS = {"courses": 8, "learners": 6, "enrollments": 30}
GOLDEN = Path(__file__).parent / "kit_provider" / "golden"

TestKitProviderConformance = provider_test_class(KitProvider(), name="kit", sandbox_options=OPTIONS, golden=GOLDEN)

# mistake -> (the check that must fail, words its message must hold)
EXPECTED = {
    "progress_fraction": ("test_progress_is_a_percent", "mapped as a 0–1 fraction"),
    "provider_id_from_sso": ("test_provider_ids_name_one_learner_each", "missing for some learners"),
    "provider_id_shared": ("test_provider_ids_name_one_learner_each", "is given to"),
    "attempt_is_course": ("test_attempt_ids_are_not_course_or_learner_ids", "is just the course id"),
    "minutes_as_seconds": ("test_time_spent_is_in_seconds", "minutes (or hours) passed as seconds"),
    "full_left_in_progress": ("test_full_progress_is_completed", "a raw 100 % row without a completion date"),
    "no_listing_total": ("test_the_catalog_listing_states_its_total", "no ListingTotal"),
    "retry_after_ignored": ("test_retry_after_is_honoured_and_retried_more_than_three_times",
                            "Retry-After is ignored"),
    "three_tries": ("test_retry_after_is_honoured_and_retried_more_than_three_times", "the provider gave up"),
    "first_last_swapped": ("test_first_and_last_activity_are_in_order", "the field mapping swaps first and last"),
}


def test_every_planted_mistake_has_an_expected_failure():
    assert set(EXPECTED) == set(MISTAKES)


@pytest.mark.parametrize("mistake", list(EXPECTED))
def test_a_planted_mistake_fails_its_check_naming_the_cause(mistake):
    check, words = EXPECTED[mistake]
    suite = provider_test_class(KitProvider(mistake), name="kit", sandbox_options=OPTIONS)()
    with open_run(KitProvider(mistake), name="kit", sandbox_options=OPTIONS) as run:
        with pytest.raises(AssertionError) as failure:
            getattr(suite, check)(run)
    assert words in str(failure.value), str(failure.value)


def test_a_shared_provider_id_also_fails_the_unique_key_check():
    suite = provider_test_class(KitProvider("provider_id_shared"), name="kit", sandbox_options=OPTIONS)()
    with open_run(KitProvider("provider_id_shared"), name="kit", sandbox_options=OPTIONS) as run:
        with pytest.raises(AssertionError, match="land on one Kafka key"):
            suite.test_stat_keys_are_unique_in_one_sync(run)


def test_a_provider_declaring_no_total_is_not_asked_for_one():
    from dataclasses import replace

    class NoTotalKit(KitProvider):
        @hookimpl
        def provider_info(self):
            return replace(KitProvider.provider_info(self), states_listing_total=False)

    suite = provider_test_class(NoTotalKit("no_listing_total"), name="kit", sandbox_options=OPTIONS)()
    with open_run(NoTotalKit("no_listing_total"), name="kit", sandbox_options=OPTIONS) as run:
        suite.test_the_catalog_listing_states_its_total(run)


def test_the_since_check_names_the_swap_not_the_filter():
    suite = provider_test_class(KitProvider("first_last_swapped"), name="kit", sandbox_options=OPTIONS)()
    with open_run(KitProvider("first_last_swapped"), name="kit", sandbox_options=OPTIONS) as run:
        with pytest.raises(AssertionError) as failure:
            suite.test_since_and_until_are_honoured(run)
    assert "swaps first and last" in str(failure.value) and "since is not applied" not in str(failure.value)


def test_a_waived_heuristic_is_skipped_with_its_reason_and_a_waiver_needs_one():
    suite = provider_test_class(KitProvider("full_left_in_progress"), name="kit", sandbox_options=OPTIONS,
                                waivers={"full_progress_completed": "100 % means watched, not passed"})()
    with open_run(KitProvider("full_left_in_progress"), name="kit", sandbox_options=OPTIONS) as run:
        with pytest.raises(pytest.skip.Exception, match="watched, not passed"):
            suite.test_full_progress_is_completed(run)
        blank = provider_test_class(KitProvider(), name="kit", waivers={"progress_scale": " ", "nope": "x"})()
        with pytest.raises(AssertionError, match="gives no reason"):
            blank.test_waivers_are_known_and_give_reasons(run)


def test_a_golden_record_converting_minutes_wrongly_fails_with_a_diff_naming_the_field():
    suite = provider_test_class(KitProvider("minutes_as_seconds"), name="kit", sandbox_options=OPTIONS,
                                golden=GOLDEN)()
    with open_run(KitProvider("minutes_as_seconds"), name="kit", sandbox_options=OPTIONS) as run:
        with pytest.raises(AssertionError) as failure:
            suite.test_golden_records_map_as_expected(run)
    message = str(failure.value)
    assert "time_spent_seconds: expected 720, got 12" in message, message
    assert "minutes spent to seconds" in message and "progress_percent" not in message, message
