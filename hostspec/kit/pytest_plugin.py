"""The ``hostspec`` pytest plugin (entry point ``pytest11``): assertion rewriting for the
conformance suite, so that its checks show their values when they fail in a provider's tests."""
import pytest

pytest.register_assert_rewrite("hostspec.kit.testing", "hostspec.kit.conformance")
