"""The conformance suite's checks beyond shape: hosts, listing totals, meaning, retry."""
