"""Every fact about Coursera's API the connector relies on, in one place.

Marks follow the contract we work from: CONFIRMED facts were seen in Coursera's published
OpenAPI files or in code run against production; INFERRED ones are reconstructions. When
Coursera's real behaviour differs from an INFERRED value, this is the file to change (the sandbox
imports the same constants, so both move together).
"""
from __future__ import annotations

# -- hosts and paths (CONFIRMED) ----------------------------------------------------------------
DEFAULT_BASE_URL = "https://api.coursera.com"
TOKEN_PATH = "/oauth2/client_credentials/token"
BUSINESS = "/ent/api/businesses.v1/{org_id}"
ORG_PATH = BUSINESS
PROGRAMS_PATH = BUSINESS + "/programs"
CONTENTS_PATH = BUSINESS + "/contents"
CONTENT_PATH = BUSINESS + "/contents/{content_key}"          # content_key = "Course~<contentId>"
ENROLLMENT_REPORTS_PATH = BUSINESS + "/enrollmentReports"

# -- auth (CONFIRMED: Basic client credentials, 1799 s tokens, no refresh token) ------------------
TOKEN_GRANT = "client_credentials"
TOKEN_RENEW_MARGIN_S = 60            # renew this long before expiry (public clients do the same)
TOKEN_DEFAULT_TTL_S = 1799

# -- pagination (CONFIRMED: start/limit, paging.next omitted on the last page) ------------------
PAGE_START = "start"
PAGE_LIMIT = "limit"
PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000                 # INFERRED for contents/enrollmentReports (stated for users)
PAGING_TOTAL = "total"               # CONFIRMED required int; INFERRED: the last page's is the one to trust

# -- query parameters (CONFIRMED names) ----------------------------------------------------------
CONTENTS_MODIFIED_SINCE = "modifiedSinceTimestamp"          # epoch SECONDS
CONTENTS_TYPES = "contentTypes"
REPORTS_LAST_ACTIVITY_AFTER = "lastActivityAfter"           # epoch MILLISECONDS, exclusive bound
REPORTS_LAST_ACTIVITY_BEFORE = "lastActivityBefore"         # epoch MILLISECONDS, exclusive bound
REPORTS_ENROLLED_AFTER = "enrollAtAfter"                    # epoch MILLISECONDS, inclusive bound
REPORTS_ENROLLED_BEFORE = "enrollAtBefore"                  # epoch MILLISECONDS, inclusive bound
REPORTS_INCLUDE_S12N = "includeS12n"
REPORTS_INCLUDE_DELETED = "includeDeletedMembers"

# -- rate limits (UNKNOWN: not documented; public clients pace calls 250 ms apart) ----------------
CALLS_PER_SECOND = 4                  # default budget per API client (connection key account_calls_per_second)

# -- units (CONFIRMED) ---------------------------------------------------------------------------
CONTENT_TIMESTAMP_UNIT_S = 1          # contents.lastUpdatedAt is epoch seconds
REPORT_TIMESTAMP_UNIT_S = 0.001       # enrollmentReports.*At are epoch milliseconds
LEARNING_TIME_UNIT_S = 1              # extraMetadata.definition.estimatedLearningTime is seconds
HOURS_SPENT_FIELD = "approxTotalCourseHrs"

# -- grades --------------------------------------------------------------------------------------
# enrollmentReports.grade: typed string, "Average percentage score across all graded assignments",
# example 0.922300033569336 (0-1); courseGradebookReports.overallCourseGrade: "A number between 0 to
# 100" (example 96.7). Which scale production's grade uses is INFERRED: both are accepted, per page.
GRADE_FIELD = "grade"
GRADE_SCALES = (1.0, 100.0)           # 0-1 (the grade example), 0-100 (the gradebook's scale)
GRADE_FRACTION_MAX = 1.0              # INFERRED: a page with any grade above this is on 0-100

# -- content kinds -------------------------------------------------------------------------------
# Coursera contentType -> 360Learning external-course contentType. Professional certificates
# arrive as Specialization and guided projects as Course (INFERRED), so they map with those.
CONTENT_TYPES = {"Course": "course", "Specialization": "specialization", "Video": "video"}
# Kinds a program may name that are not launchable content: skipped (counted), never dead-lettered.
# SkillSet: CONFIRMED in the programs' contentIds enum; INFERRED that no launch URL exists for it.
SKIPPED_CONTENT_TYPES = {"SkillSet": "a SkillSet groups skills across contents; it has no page of its own to launch"}
DIFFICULTY = {"BEGINNER": "beginner", "INTERMEDIATE": "intermediate", "ADVANCED": "advanced"}

# Public pages used only when an item carries no program launch URL (INFERRED patterns).
PUBLIC_URL = {"Course": "https://www.coursera.org/learn/{slug}",
              "Specialization": "https://www.coursera.org/specializations/{slug}",
              "Video": "https://www.coursera.org/learn/{slug}"}

# -- errors and throttling (INFERRED: undocumented upstream) -------------------------------------
APIGEE_QUOTA_ERRORCODES = ("policies.ratelimit.SpikeArrestViolation", "policies.ratelimit.QuotaViolation")
APIGEE_TOKEN_ERRORCODES = ("keymanagement.service.invalid_access_token",
                           "keymanagement.service.access_token_expired")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
