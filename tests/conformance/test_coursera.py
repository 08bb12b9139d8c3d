"""The Coursera provider passes the provider conformance suite."""
from pathlib import Path

import connector_coursera.plugin
from hostspec.kit.testing import provider_test_class

TestCourseraConformance = provider_test_class(connector_coursera.plugin,
                                              sandbox_options={"contents": 30, "learners": 10, "enrollments": 150},
                                              golden=Path(__file__).parents[1] / "connector_coursera" / "golden")  # 2 report pages
