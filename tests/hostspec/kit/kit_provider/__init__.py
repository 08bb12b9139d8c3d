"""The test kit's own provider: a small fake provider (and its sandbox) built from the template's
patterns, with the mistakes of issue 30 plantable one at a time (:data:`plugin.MISTAKES`), so
that each conformance check is shown to fail, with a message naming the cause. Not a product
provider: nothing registers it."""
