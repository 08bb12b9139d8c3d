"""Found by an adversarial review: the retry's "already stored" check compared with the *latest*
document only, so a commit that timed out but went through, followed by another writer's change
before the retry reconnected, was answered RevisionConflict (409 with If-Match; without it
plane.put computed again and wrote the same change a second time on top of the other writer's).
The writer now knows its record by its event id and content (``Documents.where_stored``)."""
from __future__ import annotations

import pytest
from kafka.errors import KafkaTimeoutError

from hostspec.errors import RevisionConflict
from tests.hostspec.config.test_control_writer import NOW, doc, writer_with


def test_a_timed_out_commit_that_went_through_is_not_a_conflict_when_another_wrote_after_it(monkeypatch):
    writer, log = writer_with(monkeypatch, {"commit": KafkaTimeoutError()})
    real_connect = writer._connect

    def connect_after_the_other_wrote_on_top():
        if writer.connects == 1:       # our revision 1 is stored; another process writes revision 2 on it
            assert log.document("acme")["revision"] == 1
            log.store_doc(doc(2, client_id="the-other"), 5)
        real_connect()

    monkeypatch.setattr(writer, "_connect", connect_after_the_other_wrote_on_top)
    try:
        writer.write(doc(1), NOW, based_on=0)
    except RevisionConflict:
        pytest.fail("our revision 1 was stored, yet the writer answers RevisionConflict "
                    "(plane.put without If-Match then writes the change again as revision 3)")
