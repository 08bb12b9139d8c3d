"""``connector-host``: one module per command group."""
