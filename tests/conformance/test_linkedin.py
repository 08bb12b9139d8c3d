"""The LinkedIn Learning provider passes the provider conformance suite."""
from pathlib import Path

import connector_linkedin.plugin
from hostspec.kit.testing import provider_test_class

TestLinkedInConformance = provider_test_class(connector_linkedin.plugin,
                                              sandbox_options={"courses": 12, "learners": 8, "activities": 40},
                                              golden=Path(__file__).parents[1] / "connector_linkedin" / "golden")
