"""Learner statistics imported into 360Learning: newest content wins, learners found by e-mail,
open attempts read back (path sessions), stats of unknown learners or courses parked."""
from __future__ import annotations

import logging
from typing import Any, Callable

from . import contract
from .bulk import bulk
from .client import Learning360Client
from .errors import PermanentError
from .items import BulkStatItemSchema, NotConvertible, learner_mail, open_attempt_of, to_bulk_stat
from .ledger import Ledger, Record
from .outcomes import Inbound, Outcome, Verdicts
from .settings import Target

log = logging.getLogger(__package__ + ".delivery")     # the deliverer's log, as before its split
_STAT_ITEM = BulkStatItemSchema()


class StatImport:
    """Statistics, for the :class:`~.delivery.Deliverer`.

    :param course_id: the 360Learning id of an integration's course (None: not there yet).
    """

    def __init__(self, ledger: Ledger, verdicts: Verdicts,
                 course_id: Callable[[Learning360Client, str, str], str | None]):
        self.ledger, self.verdicts, self.course_id = ledger, verdicts, course_id

    def deliver(self, client: Learning360Client, target: Target, integration_id: str, items: list[Inbound],
               out: Outcome, done: set[int]) -> None:
        latest: dict[str, tuple[Inbound, Record]] = {}
        for item in items:     # newest content wins, whatever the order items came in
            record = item.record()
            kept = latest.get(record.key)
            if kept is None or (record.recency or "") > (kept[1].recency or ""):
                if kept is not None:
                    self.verdicts.done(kept[0], "superseded", out, done)
                latest[record.key] = (item, record)
            else:
                self.verdicts.done(item, "superseded", out, done)
        fresh: list[tuple[Inbound, Record]] = []
        for item, record in latest.values():
            held = self.ledger.delivered_recency(record)
            if held is not None and held >= (record.recency or ""):
                self.verdicts.done(item, "unchanged" if self.ledger.already_delivered(record) else "superseded", out, done)
            else:
                fresh.append((item, record))
        self._import(client, target, integration_id, fresh, out, done, retry_users=True)

    def _import(self, client: Learning360Client, target: Target, integration_id: str,
                entries: list[tuple[Inbound, Record]], out: Outcome, done: set[int], *, retry_users: bool) -> None:
        if not entries:
            return
        users = self._user_ids(client, target, [learner_mail(i.data) for i, _r in entries])
        courses: dict[str, str | None] = {}
        ready = []
        for item, record in entries:
            mail = learner_mail(item.data)
            if mail is None:
                self.verdicts.reject(item, "learner_without_email", "the learner has no e-mail address 360Learning could match",
                             out, done)
                continue
            if record.course not in courses:
                courses[record.course] = self.course_id(client, integration_id, record.course)
            if courses[record.course] is None:
                self.verdicts.park(item, "course_unknown", f"course {record.course} is not in 360Learning yet", out, done)
                continue
            user_id = users.get(mail.casefold())
            if user_id is None:
                self.verdicts.park(item, "learner_unknown", f"no active 360Learning user with e-mail {mail}", out, done)
                continue
            ready.append((item, record, courses[record.course], user_id))
        attempts = self._open_attempts(client, [(c, u, record) for item, record, c, u in ready
                                                if self.ledger.delivered_recency(record) is None])
        bodies = []
        for item, record, course_id, user_id in ready:
            try:
                body = to_bulk_stat(item.data, open_attempt=attempts.get((course_id, user_id)))
            except NotConvertible as exc:
                self.verdicts.reject(item, exc.reason, str(exc), out, done)
                continue
            body["userIdentifier"] = {"type": "internalId", "value": user_id}
            errors = _STAT_ITEM.validate(body)
            if errors:
                self.verdicts.reject(item, "invalid_for_360learning", errors, out, done)
                continue
            bodies.append((item, record, body))
        path = contract.BULK_STATS.format(integration_id=integration_id)
        refused: list[tuple[Inbound, Record]] = []
        bulk(self.ledger, self.verdicts, client, "POST", path, bodies, contract.MAX_STAT_ITEMS, out, done,
                   refused=refused if retry_users else None)
        if refused:
            # a learner deleted and created again in 360Learning has a new id: look it up afresh, once
            for item, _record in refused:
                self.ledger.forget_user(target.base_url, learner_mail(item.data) or "")
            self._import(client, target, integration_id, refused, out, done, retry_users=False)

    def _open_attempts(self, client: Learning360Client,
                       wanted: list[tuple[str, str, Record]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The open attempt of each (course id, user id) in 360Learning, read back in bulk; an
        attempt that another provider attempt of the learner was delivered to is not theirs to take.

        A refusal (a credential without ``courseStats:read``) costs the path-session continuity,
        not the delivery: it is logged and the imports go as they are."""
        users_of: dict[str, set[str]] = {}
        taken: dict[tuple[str, str], set[str]] = {}
        for course_id, user_id, record in wanted:
            users_of.setdefault(course_id, set()).add(user_id)
            taken.setdefault((course_id, user_id), set()).update(self.ledger.attempts_of_others(record))
        found: dict[tuple[str, str], list[dict[str, Any]]] = {}
        try:
            for course_id, users in users_of.items():
                for attempt in client.course_stats(course_id, sorted(users)):
                    found.setdefault((course_id, str(attempt.get("userId"))), []).append(attempt)
        except PermanentError as exc:
            log.warning("attempts not read back from 360Learning (%s): a course started in a path session "
                        "before the provider reported it may get a second attempt", exc)
            return {}
        return {pair: a for pair, attempts in found.items()
                if (a := open_attempt_of([x for x in attempts if x.get("_id") not in taken.get(pair, ())]))
                is not None}

    def _user_ids(self, client: Learning360Client, target: Target, mails: list[str | None]) -> dict[str, str]:
        """360Learning user ids by e-mail (casefolded): the ledger's, then one lookup for the rest."""
        ids: dict[str, str] = {}
        missing = []
        for mail in {m.casefold(): m for m in mails if m}.values():
            known = self.ledger.user_id(target.base_url, mail)
            if known:
                ids[mail.casefold()] = known
            else:
                missing.append(mail)
        for mail, user in client.users_by_mail(missing).items():
            ids[mail.casefold()] = user["_id"]
            self.ledger.remember_user(target.base_url, mail, user["_id"])
        return ids
