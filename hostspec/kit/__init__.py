"""The provider author's toolbox: HTTP (token, retry, gate), paging, sandboxes, the conformance
suite and its pytest plugin, golden records, the scaffold."""
