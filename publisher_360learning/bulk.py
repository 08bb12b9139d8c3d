"""Bulk calls: items sent in chunks, up to three operations at once, each result paired with
the item it answers, the ledger told what became of each."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from . import contract
from .client import Learning360Client
from .errors import TransientError
from .ledger import DELIVERED, FAILED, SENT, Ledger, Record
from .outcomes import Inbound, Outcome, Verdicts
from .results import UnpairedResults, pair_results


def bulk(ledger: Ledger, verdicts: Verdicts, client: Learning360Client, method: str, path: str,
         entries: list[tuple[Inbound, Record, dict[str, Any]]], size: int, out: Outcome,
         done: set[int], *, then: Callable[[Inbound, Record, str], None] | None = None,
         refused: list[tuple[Inbound, Record]] | None = None) -> list[tuple[Inbound, Record, str]]:
    """Send ``entries`` in chunks of ``size`` (up to three operations at once); returns the
    successes with their resource ids (``then`` runs for each, before the ledger says
    delivered) and dead-letters the items 360Learning refused, or hands them to ``refused``
    when given (to try once more)."""
    if not entries:
        return []
    chunks = [entries[i:i + size] for i in range(0, len(entries), size)]
    for chunk in chunks:
        ledger.mark([(rec, SENT, None, None, None, body) for _item, rec, body in chunk])
    with ThreadPoolExecutor(max_workers=min(len(chunks), contract.BULK_CONCURRENCY)) as pool:
        answers = list(pool.map(lambda chunk: client.run_bulk(method, path, [b for _i, _r, b in chunk]), chunks))
    successes = []
    for chunk, (op_id, results) in zip(chunks, answers):
        try:     # by the ``input`` each result echoes: 360Learning documents no order
            results = pair_results([b for _i, _r, b in chunk], results)
        except UnpairedResults as exc:
            raise TransientError(f"bulk operation {op_id}: {exc}") from None
        marks = []
        for (item, record, body), result in zip(chunk, results):
            if result.get("status") == "success":
                if then is not None:
                    then(item, record, result.get("resourceId"))
                marks.append((record, DELIVERED, op_id, result.get("resourceId"), None, None))
                successes.append((item, record, result.get("resourceId")))
                verdicts.done(item, "delivered", out, done)
            elif refused is not None:
                refused.append((item, record))
            else:
                message = str(result.get("errorMessage") or "refused without a message")
                marks.append((record, FAILED, op_id, None, message, None))
                verdicts.reject(item, "refused_by_360learning", {"operation": op_id, "message": message}, out, done,
                             mark=False)
        ledger.mark(marks)
    return successes
