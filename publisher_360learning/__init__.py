"""Applies the host's normalized events to 360Learning through its API v2.

* :mod:`.contract` — every fact about the API (paths, limits, headers, units) in one place;
* :mod:`.client` — the HTTP client (OAuth2, rate limits, retries, Link pagination, bulk calls);
* :mod:`.mapping` — pure conversion of events into bulk items, and the tag merge;
* :mod:`.ledger` — what was sent, when, under which operation, with which result;
* :mod:`.delivery` — one batch of events to 360Learning (integration, bulk calls, parking), with
  :mod:`.clients`, :mod:`.courses`, :mod:`.stat_import`, :mod:`.bulk` and :mod:`.outcomes`;
* :mod:`.service` — the Kafka consumer loop, with :mod:`.membership`, :mod:`.reading`,
  :mod:`.dispatch` and :mod:`.commits`; :mod:`.cli` — ``publisher-360learning``;
* :mod:`.sandbox` — a 360Learning stand-in over real HTTP on loopback.
"""

__version__ = "0.1.0"
