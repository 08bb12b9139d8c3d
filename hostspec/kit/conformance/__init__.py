"""The conformance suite's parts (:mod:`hostspec.kit.testing` assembles them): the run machinery
(``run``), the checks of a provider's surface (``basics``), of a full sync's events (``events``), of
fetching and syncing again (``fetching``), and beyond shape: hosts, listing totals, meaning, retry."""
