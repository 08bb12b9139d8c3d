"""Conformance checks on what a provider's events *mean*, not only on their shape.

The schema and the learning rules accept a stat whose progress is a 0–1 fraction, whose learner
id is the text ``"None"`` for every learner, or whose time spent is minutes passed as seconds.
These checks look at one sandbox sync as a whole and fail with the likely cause when the
sandbox's data make such a mistake visible. :class:`MeaningChecks` is mixed into
:class:`hostspec.kit.testing.ProviderConformance`.

Identity (never waivable: the host's keys depend on them):

* ``unique_stat_keys``: within one sync, every stat key (course, learner ``provider_id``,
  ``attempt_id``) is emitted for one enrollment only;
* ``provider_id``: never ``None``, empty or the text ``"None"``/``"null"``, and not one value for
  learners with different e-mail addresses;
* ``attempt_id``: not just the course id, the learner's ``provider_id`` or e-mail;
* ``stable_learner_keys``: a second sync of the same data gives each learner the same key.

Scale and unit heuristics (each may be waived per provider with a reason, see ``waivers``):

* ``progress_scale``: every in-progress stat has ``progress_percent`` ≤ 1 (at least
  :data:`MIN_SAMPLE` of them): progress was mapped as a 0–1 fraction, the host wants 0–100;
* ``time_spent_scale``: for stats at least half done of courses with a ``duration_minutes``,
  the median of time spent / (duration × progress) is below :data:`TIME_RATIO_FLOOR`: time
  spent is in minutes (or milliseconds the other way) where the host wants seconds;
* ``full_progress_completed``: a stat at 100 % is ``in_progress``: an API stating 100 % with no
  completion date still means completed (derive ``completed_at``, provenance ``derived``);
* ``activity_order``: the mapped ``first_activity_at`` is after ``last_activity_at``: the field
  mapping swaps the two (the learning rules reject such stats; this names the cause).

A provider whose API really behaves so (progress that stays at 100 % until an exam is passed)
passes ``waivers={"full_progress_completed": "100 % means watched, not passed"}`` to
:func:`hostspec.kit.testing.provider_test_class`; the check is then skipped with that reason.
"""
from __future__ import annotations

import statistics
from collections import Counter
from typing import Any, Iterable, Mapping

import pytest

from hostspec import events as ev
from hostspec.rules import _instant

WAIVABLE = ("progress_scale", "time_spent_scale", "full_progress_completed", "activity_order")
MIN_SAMPLE = 3
TIME_RATIO_FLOOR = 1 / 20
BLANK_IDS = {"", "none", "null", "undefined", "nan"}


def waived(waivers: Mapping[str, str], check: str) -> None:
    """Skip ``check`` when the provider waived it; a waiver needs a reason."""
    if check not in waivers:
        return
    reason = waivers[check]
    assert isinstance(reason, str) and reason.strip(), f"the waiver of {check!r} must give a reason"
    pytest.skip(f"{check} waived by the provider: {reason}")


def check_waivers(waivers: Mapping[str, str]) -> list[str]:
    """Problems with a provider's ``waivers`` (unknown names, missing reasons)."""
    problems = [f"{name!r} is not a waivable check (those are {', '.join(WAIVABLE)})"
                for name in waivers if name not in WAIVABLE]
    problems += [f"the waiver of {name!r} gives no reason" for name, reason in waivers.items()
                 if not isinstance(reason, str) or not reason.strip()]
    return problems


def stats_of(events: Iterable[Any]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == ev.LEARNER_STAT_UPSERTED]


def _learner(stat: Mapping[str, Any]) -> Mapping[str, Any]:
    learner = stat.get("learner")
    return learner if isinstance(learner, Mapping) else {}


def stat_key(stat: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return stat.get("course_external_id"), _learner(stat).get("provider_id"), stat.get("attempt_id")


def duplicate_stat_keys(stats: list[Mapping[str, Any]]) -> str | None:
    counts = Counter(stat_key(s) for s in stats)
    dups = {k: n for k, n in counts.items() if n > 1}
    if not dups:
        return None
    key, n = next(iter(dups.items()))
    return (f"{sum(dups.values())} stats of one sync share {len(dups)} keys (course, provider_id, attempt_id), "
            f"e.g. {key} {n} times: different enrollments land on one Kafka key and overwrite each other. "
            f"learner.provider_id or attempt_id is built from a field that is not unique (or missing).")


def bad_provider_ids(stats: list[Mapping[str, Any]]) -> str | None:
    blank = [s for s in stats if _learner(s).get("provider_id") is None
             or str(_learner(s).get("provider_id")).strip().lower() in BLANK_IDS]
    if blank:
        return (f"{len(blank)} stats have learner.provider_id {_learner(blank[0]).get('provider_id')!r}: it is built "
                f"from a field that is missing for some learners (str(None)?); use the API's own, always-present "
                f"learner id")
    by_id: dict[Any, set[Any]] = {}
    for s in stats:
        email = _learner(s).get("email")
        if email:
            by_id.setdefault(_learner(s).get("provider_id"), set()).add(str(email).lower())
    shared = {pid: emails for pid, emails in by_id.items() if len(emails) > 1}
    if shared:
        pid, emails = next(iter(shared.items()))
        return (f"learner.provider_id {pid!r} is given to {len(emails)} learners with different e-mails "
                f"({', '.join(sorted(emails)[:3])}…): provider_id must identify one learner (not constant, "
                f"not an organization or course field)")
    return None


def bad_attempt_ids(stats: list[Mapping[str, Any]]) -> str | None:
    for s in stats:
        attempt = s.get("attempt_id")
        for name, value in (("the course id", s.get("course_external_id")),
                            ("the learner's provider_id", _learner(s).get("provider_id")),
                            ("the learner's e-mail", _learner(s).get("email"))):
            if value is not None and attempt is not None and str(attempt) == str(value):
                return (f"attempt_id {attempt!r} is just {name}: an attempt names one learner's enrollment in "
                        f"one course (the API's enrollment id, or learner~course)")
    return None


def changed_learner_keys(first: list[Mapping[str, Any]], second: list[Mapping[str, Any]]) -> str | None:
    def keys(stats: list[Mapping[str, Any]]) -> dict[Any, Any]:
        return {(s.get("course_external_id"), s.get("attempt_id")): _learner(s).get("provider_id") for s in stats}

    a, b = keys(first), keys(second)
    moved = [(k, a[k], b[k]) for k in a.keys() & b.keys() if a[k] != b[k]]
    if moved or set(a) != set(b):
        example = moved[0] if moved else sorted(set(a) ^ set(b), key=str)[:1]
        return (f"a second sync of the same data gave other learner keys (e.g. {example}): provider_id and "
                f"attempt_id must come from the record, never from a counter, the clock or randomness")
    return None


def progress_as_fraction(stats: list[Mapping[str, Any]]) -> str | None:
    values = [s.get("progress_percent") for s in stats if s.get("completion_status") == "in_progress"]
    values = [v for v in values if isinstance(v, (int, float))]
    if len(values) >= MIN_SAMPLE and all(v <= 1 for v in values) and any(v > 0 for v in values):
        return (f"all {len(values)} in-progress stats have progress_percent ≤ 1 (max {max(values)}): progress is "
                f"mapped as a 0–1 fraction; the host wants percent 0–100 (do not divide the API's ratio by 100, "
                f"or multiply a 0–1 ratio by 100)")
    return None


def time_spent_too_small(stats: list[Mapping[str, Any]], durations: Mapping[Any, Any]) -> str | None:
    ratios = []
    for s in stats:
        spent, progress = s.get("time_spent_seconds"), s.get("progress_percent")
        minutes = durations.get(s.get("course_external_id"))
        if isinstance(spent, (int, float)) and isinstance(progress, (int, float)) and progress >= 50 \
                and isinstance(minutes, (int, float)) and minutes > 0:
            ratios.append(spent / (minutes * 60 * progress / 100))
    if len(ratios) < MIN_SAMPLE:
        return None
    median = statistics.median(ratios)
    if median < TIME_RATIO_FLOOR:
        return (f"time_spent_seconds is implausibly small against the content length: for {len(ratios)} stats at "
                f"least half done, the median time spent is {median:.3f} of the course's duration × progress: "
                f"time spent is probably minutes (or hours) passed as seconds; convert to seconds")
    return None


def full_progress_in_progress(stats: list[Mapping[str, Any]]) -> str | None:
    stuck = [s for s in stats if isinstance(s.get("progress_percent"), (int, float))
             and s["progress_percent"] >= 100 and s.get("completion_status") != "completed"]
    if stuck:
        s = stuck[0]
        return (f"{len(stuck)} stats at 100 % are {s.get('completion_status')!r}, e.g. course "
                f"{s.get('course_external_id')!r}: a raw 100 % row without a completion date is still completed; "
                f"map it to 'completed' with completed_at derived from the last activity (provenance 'derived')")
    return None


def swapped_activity(stats: list[Mapping[str, Any]]) -> str | None:
    swapped = [s for s in stats if (f := _instant(s.get("first_activity_at"))) is not None
               and (la := _instant(s.get("last_activity_at"))) is not None and la < f]
    if swapped:
        s = swapped[0]
        return (f"{len(swapped)} of {len(stats)} mapped stats have first_activity_at after last_activity_at "
                f"(e.g. first {s.get('first_activity_at')}, last {s.get('last_activity_at')}): the field mapping "
                f"swaps first and last activity; last_activity_at must be the latest activity (the one the API's "
                f"since/until filter applies to)")
    return None


class MeaningChecks:
    """Identity and scale checks over the run's sync (``run``: :class:`hostspec.kit.conformance.run.Run`)."""

    waivers: Mapping[str, str] = {}

    def _stats(self, run: Any) -> list[dict[str, Any]]:
        if "progress" not in run.provider.info.scopes:
            pytest.skip("no progress scope")
        stats = stats_of(run.sink.events)
        if not stats:
            pytest.skip("the sync emitted no stats")
        return stats

    def test_waivers_are_known_and_give_reasons(self, run):
        problems = check_waivers(type(self).waivers)
        assert not problems, "; ".join(problems)

    def test_stat_keys_are_unique_in_one_sync(self, run):
        problem = duplicate_stat_keys(self._stats(run))
        assert problem is None, problem

    def test_provider_ids_name_one_learner_each(self, run):
        problem = bad_provider_ids(self._stats(run))
        assert problem is None, problem

    def test_attempt_ids_are_not_course_or_learner_ids(self, run):
        problem = bad_attempt_ids(self._stats(run))
        assert problem is None, problem

    def test_learner_keys_are_stable_across_syncs(self, run):
        first = self._stats(run)
        again, _report = run.sync()
        problem = changed_learner_keys(first, stats_of(again.events))
        assert problem is None, problem

    def _judge(self, run: Any, waiver: str, check: Any, *extra: Any) -> None:
        stats = self._stats(run)
        waived(type(self).waivers, waiver)
        problem = check(stats, *extra)
        assert problem is None, problem

    def test_progress_is_a_percent(self, run):
        self._judge(run, "progress_scale", progress_as_fraction)

    def test_time_spent_is_in_seconds(self, run):
        durations = {e.data.get("external_id"): e.data.get("duration_minutes")
                     for e in run.sink.of_type(ev.COURSE_UPSERTED)}
        self._judge(run, "time_spent_scale", time_spent_too_small, durations)

    def test_full_progress_is_completed(self, run):
        self._judge(run, "full_progress_completed", full_progress_in_progress)

    def test_first_and_last_activity_are_in_order(self, run):
        if "progress" not in run.provider.info.scopes:
            pytest.skip("no progress scope")
        waived(type(self).waivers, "activity_order")
        problem = swapped_activity(run.stats(run.fetch("progress")))   # mapped, before the rules reject them
        assert problem is None, problem


__all__ = ["MeaningChecks", "WAIVABLE", "check_waivers"]
