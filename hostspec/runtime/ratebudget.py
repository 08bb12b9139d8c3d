"""One call budget per provider account, held across the fleet without a central database.

Providers limit calls per API client, not per connection: two synchronized groups of one company
share a Coursera client id, and a replay may run beside the scheduled sync. An account (a
provider's ``ProviderInfo.account_setting``, e.g. Coursera's ``client_id``, identified per tenant
and secret, or shared by the operator's policy: :mod:`hostspec.accounts`) has a budget of calls
per second (the smallest ``account_calls_per_second`` of its connections, or the policy's), and
it holds whichever workers run its connections:

* **Split by home partition.** The budget is divided among the partitions that are home to the
  account's connections (enabled or not: a disabled one still runs what it is sent), in
  proportion to their connections (whole calls, largest remainder, at least one each:
  :func:`shares`; a budget smaller than the number of those partitions, at most six, is raised
  to it, with a warning). A partition's share is spent only by its owner, and a
  partition has one owner at a time (the runs of a revoked partition are cancelled before it
  moves), so the shares in use never add up to more than the budget. A worker owning several of
  those partitions pools their shares in one gate; a single worker gets the whole budget.
* **A gate per account and worker** (:class:`CallGate`) admits a call while fewer than its
  allowance are in flight or ended less than a second ago. Counting from the *end* of calls
  makes the bound hold where the provider sees it: a call arrives before it ends, and the call
  that takes its place starts a second after that end, so at most the allowance of calls
  *arrive* in any one-second window, however late the network delivers them.
* **429s shrink it for all its connections** (the same account: never another tenant's budget
  on the same client id). The gate that saw one pauses for its ``Retry-After`` (at
  most five minutes) and halves its allowance (growing back by one call every ``recover_s``
  without 429), and the signal goes to every worker through a Kafka topic
  (:mod:`hostspec.transport.signals`), whose gates of that account pause as long from the moment
  they read it (durations, not instants: clocks of two machines may differ) and shrink alike.
* **Edits follow.** A new version of the connections re-splits every budget (the worker's loop
  reads the file at least every poll); between two workers reading an edit, the shares may
  briefly add up to the old and the new split.

The price of needing no coordination: a connection running alone on a worker that owns one of
the account's two partitions uses half the budget.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Callable, Collection, Iterable, Mapping

from hostspec.accounts import AccountKey, account_key
from hostspec.errors import HostError, RunAbandoned
from hostspec.runtime.tasks import home_partition

if TYPE_CHECKING:
    from hostspec.config.connections import ConnectionStore
    from hostspec.engine.plugins import HostPluginManager
    from hostspec.provider import Connection

log = logging.getLogger(__name__)

WINDOW_S = 1.0
GUARD_S = 0.01                 # clock granularity
DEFAULT_PAUSE_S = 1.0          # a 429 without Retry-After
MAX_PAUSE_S = 300.0            # a longer Retry-After pauses this long (the clients' own waits are capped too)
Signal = Callable[[str, float], None]   # (account id, seconds to pause)


class CallGate:
    """At most ``allowance`` calls in flight or ended within ``WINDOW_S`` (+ ``GUARD_S``) seconds;
    shared by the runs of one account on one worker (thread-safe). Each :meth:`acquire` must be
    followed by :meth:`done` once the call ended, answered or not. ``account`` names it in logs;
    ``account_id`` (default: the name) is what its 429s are signalled under."""

    def __init__(self, account: str, allowance: int, *, account_id: str | None = None,
                 on_throttle: Signal | None = None, recover_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.account = account
        self.account_id = account_id or account
        self._ceiling = max(1, allowance)
        self._deficit = 0     # calls per window below the ceiling since the last 429s
        self._on_throttle, self._recover_s = on_throttle, recover_s
        self._clock, self._sleep = clock, sleep
        self._ends: deque[float] = deque()    # when the recent calls ended
        self._in_flight = 0
        self._paused_until = 0.0
        self._changed_at = clock()
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def __repr__(self) -> str:
        return f"CallGate({self.account!r}, allowance={self.allowance}/{self._ceiling})"

    @property
    def allowance(self) -> int:
        return max(1, self._ceiling - self._deficit)

    def set_ceiling(self, allowance: int) -> None:
        """The configured share changed (partitions moved, connections edited)."""
        with self._lock:
            self._ceiling = max(1, allowance)
            self._deficit = min(self._deficit, self._ceiling - 1)

    def acquire(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Wait for the right to start one call (:class:`RunAbandoned` if ``should_stop`` says so:
        a run of a revoked partition makes no call after it, so its share is free at once)."""
        while True:
            if should_stop():
                raise RunAbandoned(f"stopped while waiting for the call budget of {self.account}")
            with self._lock:
                now = self._clock()
                self._recover(now)
                while self._ends and self._ends[0] <= now - WINDOW_S - GUARD_S:
                    self._ends.popleft()
                wait = self._paused_until - now
                busy = self._in_flight + len(self._ends) - self.allowance
                if busy >= 0:   # wait for the oldest recent end to leave the window (or a call to end)
                    oldest = self._ends[busy] if busy < len(self._ends) else now
                    wait = max(wait, oldest + WINDOW_S + GUARD_S - now, 0.01)
                if wait <= 0:
                    self._in_flight += 1
                    return
            step = min(wait, 0.25)
            self.waited_s += step
            self._sleep(step)

    def done(self) -> None:
        """The call admitted by the last matching :meth:`acquire` ended."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._ends.append(self._clock())

    def throttled(self, retry_after_s: float | None) -> None:
        """The provider answered 429: pause, shrink, and tell the other workers."""
        pause_s = self.pause(retry_after_s if retry_after_s is not None else DEFAULT_PAUSE_S)
        if self._on_throttle is not None:
            self._on_throttle(self.account_id, pause_s)

    def pause(self, seconds: float) -> float:
        """No call for ``seconds`` from now (at most ``MAX_PAUSE_S``: a Retry-After of a week would
        hold every run of the account), allowance halved. Relative, so that a signal from a machine
        whose clock is off pauses for the same time. Returns the pause applied."""
        seconds = min(max(0.0, seconds), MAX_PAUSE_S)
        with self._lock:
            now = self._clock()
            self._paused_until = max(self._paused_until, now + seconds)
            self._deficit = self._ceiling - max(1, self.allowance // 2)
            self._changed_at = now
        log.warning("call budget of %s: paused %.1fs, %d calls per second for now", self.account, seconds,
                    self.allowance)
        return seconds

    def _recover(self, now: float) -> None:
        if self._deficit and now - self._changed_at >= self._recover_s:
            self._deficit -= 1
            self._changed_at = now


class RunCalls:
    """An account's gate as one run sees it (``context.calls``): its waits end when the run must stop."""

    def __init__(self, gate: CallGate, should_stop: Callable[[], bool]):
        self.gate, self._should_stop = gate, should_stop

    def __repr__(self) -> str:
        return f"RunCalls({self.gate!r})"

    def acquire(self) -> None:
        self.gate.acquire(self._should_stop)

    def done(self) -> None:
        self.gate.done()

    def throttled(self, retry_after_s: float | None) -> None:
        self.gate.throttled(retry_after_s)


def shares(budget: int, homes: Mapping[int, int]) -> dict[int, int]:
    """Whole calls per second for each partition (``homes``: partition -> connections of the
    account living there): at least one each, the rest in proportion, summing to ``budget``
    (or to the number of partitions, when the budget is smaller)."""
    if not homes:
        return {}
    out = {p: 1 for p in homes}
    rest = budget - len(homes)
    if rest <= 0:
        return out
    total = sum(homes.values())
    exact = {p: rest * n / total for p, n in homes.items()}
    for p, x in exact.items():
        out[p] += int(x)
    left = rest - sum(int(x) for x in exact.values())
    for p in sorted(exact, key=lambda p: (-(exact[p] - int(exact[p])), p))[:left]:
        out[p] += 1
    return out


class AccountBudgets:
    """The gates of one worker: one per account (:class:`~hostspec.accounts.AccountKey`), its
    allowance the shares of the partitions the worker owns. ``partitions``: the state topic's
    partition count (homes depend on it). Shared accounts come from the policy of the connections
    read (:attr:`ConnectionStore.policy`).

    The worker's main loop alone calls :meth:`owned` (its partitions changed) and :meth:`refresh`
    (the connections it read may have changed); run threads only ask for a :meth:`gate`.
    """

    def __init__(self, plugins: "HostPluginManager", partitions: int, *, on_throttle: Signal | None = None):
        self._plugins, self._partitions, self._on_throttle = plugins, partitions, on_throttle
        self._gates: dict[str, CallGate] = {}      # by account id
        self._owned: frozenset[int] = frozenset()
        self._store: "ConnectionStore | None" = None
        self._accounts: dict[str, tuple[int, Counter[int]]] = {}    # account id -> (budget, homes)
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def owned(self, partitions: Iterable[int], store: "ConnectionStore | None" = None) -> None:
        """The worker's partitions changed: every gate's allowance follows."""
        with self._lock:
            self._owned = frozenset(partitions)
        self._follow(store)

    def refresh(self, store: "ConnectionStore") -> None:
        """Called with the connections as last read: a new version re-splits every budget."""
        if store is not self._store:
            self._follow(store)

    def key(self, connection: "Connection", store: "ConnectionStore") -> AccountKey | None:
        """The account ``connection`` spends the budget of (None: its provider names none)."""
        policy = store.policy
        return account_key(connection, self._plugins, policy.shared_accounts if policy is not None else None)

    def gate(self, connection: "Connection", store: "ConnectionStore") -> CallGate | None:
        key = self.key(connection, store)
        if key is None:
            return None
        if store is not self._store or key.id not in self._accounts:   # a new version, or a secret changed since
            self._follow(store, again=True)
        allowance = self._allowance(key)
        with self._lock:
            gate = self._gates.get(key.id)
            if gate is None:
                gate = self._gates[key.id] = CallGate(key.name, allowance, account_id=key.id,
                                                      on_throttle=self._on_throttle)
                return gate
        gate.set_ceiling(allowance)
        return gate

    def signal(self, account_id: str, pause_s: float) -> None:
        """Another worker saw a 429 for the account ``account_id`` (an unknown id: not ours to pause)."""
        gate = self._gates.get(account_id)
        if gate is not None:
            gate.pause(pause_s)

    def _follow(self, store: "ConnectionStore | None", *, again: bool = False) -> None:
        if store is not None and (again or store is not self._store):
            accounts: dict[str, tuple[int, Counter[int]]] = {}
            for c in _connections(store, self._plugins):
                key = self.key(c, store)
                if key is None:
                    continue
                own = key.budget or c.account_calls_per_second or self._default(c)
                budget, homes = accounts.get(key.id, (own, Counter()))
                homes[home_partition(c.name, self._partitions)] += 1
                accounts[key.id] = (min(budget, own), homes)
            with self._lock:
                self._store, self._accounts = store, accounts
        for gate in list(self._gates.values()):
            gate.set_ceiling(self._allowance(gate))

    def _allowance(self, key: AccountKey | CallGate) -> int:
        account_id = key.id if isinstance(key, AccountKey) else key.account_id
        budget, homes = self._accounts.get(account_id, (1, Counter()))
        if len(homes) > budget and account_id not in self._warned:
            self._warned.add(account_id)
            log.warning("account %s: a budget of %d calls per second for connections on %d partitions; each "
                        "partition still gets one call per second, %d in all",
                        key.name if isinstance(key, AccountKey) else key.account, budget, len(homes), len(homes))
        split = shares(budget, homes)
        return sum(n for p, n in split.items() if p in self._owned)

    def _default(self, connection: "Connection") -> int:
        return self._plugins.provider(connection.provider).info.calls_per_second or 1


def _connections(store: "ConnectionStore", plugins: "HostPluginManager") -> Collection["Connection"]:
    """Every valid connection, enabled or not (a disabled one still runs the requests sent to it)."""
    out = []
    for name in store.names:
        try:
            out.append(store.get(name, plugins))
        except HostError:   # an invalid connection has no runs: it spends nothing
            continue
    return out


__all__ = ["AccountBudgets", "CallGate", "RunCalls", "shares"]
