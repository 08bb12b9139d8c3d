"""Adversarial review (issue 26, guarantees 1 and 3): the offset tracker when two keys' re-reads
overlap."""
from __future__ import annotations

from hostspec.transport.offsets import OffsetTracker


def test_a_second_rewind_below_a_re_read_under_way_never_keeps_an_older_record_after_a_newer_one():
    """J left records behind from 5 (its lane was full), B from 8. J has room first: the
    partition is read again from 5 and J keeps 5, 10 and 11; 5 and 10 are delivered, 11 still
    waits in J's lane. Then B has room: ``rewind_to`` (hostspec/transport/offsets.py:82-87) goes back to 8,
    *below where J's re-read stands*, and keeps J in the re-read's keys with its old start (5).
    Reading 10 again, J keeps it a second time (it is finished, so not in ``_unfinished``), after
    11: J's lane now holds [11, 10] and delivers the older record last. For a course that is an
    older version (or an upsert after its removal) landing last in 360Learning: the ledger only
    skips content equal to the last delivered (ledger.already_delivered), so it does not stop it."""
    t = OffsetTracker(5)
    log = {5: "J", 8: "B", 10: "J", 11: "J", 12: "X"}
    lane_j: list[int] = []
    assert not t.read(5, "J", keep=False)      # J full
    assert not t.read(8, "B", keep=False)      # B full
    for o in (10, 11, 12):
        t.read(o, log[o])
    assert t.rewind_to({"J"}) == 5
    for o in (5, 8, 10, 11):
        if t.read(o, log[o]):
            lane_j.append(o)
    assert lane_j == [5, 10, 11]
    delivered = []
    for o in (5, 10):                           # J delivers a batch of two; 11 waits
        lane_j.remove(o)
        delivered.append(o)
        t.finished(o)
    assert t.rewind_to({"B"}) == 8              # B has room now: below J's re-read position (12)
    for o in (8, 10, 11, 12):
        if t.read(o, log[o]) and log[o] == "J":
            lane_j.append(o)
    delivered.extend(lane_j)
    assert delivered == sorted(delivered), f"J's records delivered in the order {delivered}"
