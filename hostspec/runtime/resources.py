"""What the worker opens when it runs, shared by its parts: the Kafka clients, the restorer, the
call budgets and the state topic's partition count (:meth:`hostspec.runtime.worker.Worker.run`
opens them; its parts read them when they act, never before)."""
from __future__ import annotations

from dataclasses import dataclass

from hostspec.runtime.ratebudget import AccountBudgets
from hostspec.runtime.restore import Restorer
from hostspec.transport.consumers import RequestConsumer
from hostspec.transport.producer_pool import ProducerPool
from hostspec.transport.signals import RateSignals


@dataclass
class Resources:
    consumer: RequestConsumer | None = None
    producers: ProducerPool | None = None         # the runs' transactions, one producer per thread
    main_producers: ProducerPool | None = None    # the main loop's: endings of requests that did not run
    restorer: Restorer | None = None
    budgets: AccountBudgets | None = None
    signals: RateSignals | None = None
    state_partitions: int = 0

    def call_budgets(self) -> AccountBudgets:
        assert self.budgets is not None
        return self.budgets


__all__ = ["Resources"]
