"""Every fact about Coursera's API the connector relies on, in one place.

Each fact names its public source: ``[KEY where]`` is the document ``SOURCES[KEY]`` at the place
``where`` (an OpenAPI path, parameter or schema); ``INFERRED`` marks a reconstruction or a choice
of ours that no public source states. When Coursera's real behaviour differs from an INFERRED
value, this is the file to change (the sandbox imports the same constants, so both move together).
"""
from __future__ import annotations

_SPEC = "https://github.com/fmbetancourt/coursera-mcp/blob/c0087cc9e70fd6d0763ed0916d97d96a5720af35/"
SOURCES = {
    # Coursera's published OpenAPI files, mirrored in a public repository (pinned commit)
    "C4B": _SPEC + "documentation/courseraApiSpec/coursera-for-business-api-product.yaml",
    "OAUTH": _SPEC + "documentation/courseraApiSpec/oauth-credentials.yaml",
    # a public client of the same repository that runs against the Business API
    "MCP-AUTH": "https://github.com/fmbetancourt/coursera-mcp/blob/28bb887236597307a45c0d838bb066099283ddb4/"
                "src/services/enterpriseAuth.ts",
}

# -- hosts and paths -----------------------------------------------------------------------------
DEFAULT_BASE_URL = "https://api.coursera.com"                 # [OAUTH servers] [C4B servers: .../ent]
TOKEN_PATH = "/oauth2/client_credentials/token"               # [OAUTH paths]
BUSINESS = "/ent/api/businesses.v1/{org_id}"                  # [C4B servers /ent + paths /api/businesses.v1/{orgId}]
ORG_PATH = BUSINESS                                           # [C4B paths /api/businesses.v1/{orgId}]
PROGRAMS_PATH = BUSINESS + "/programs"                        # [C4B paths .../programs]
CONTENTS_PATH = BUSINESS + "/contents"                        # [C4B paths .../contents]
CONTENT_PATH = BUSINESS + "/contents/{content_key}"           # [C4B paths .../contents/{id}: "ContentType~Id"]
ENROLLMENT_REPORTS_PATH = BUSINESS + "/enrollmentReports"     # [C4B paths .../enrollmentReports]

# -- auth: Basic client credentials [OAUTH securitySchemes.BasicAuth], no refresh token ----------
TOKEN_GRANT = "client_credentials"    # [OAUTH requestBody grant_type enum]
TOKEN_RENEW_MARGIN_S = 60             # [MCP-AUTH getAccessToken: "60s buffer"] renew this long before expiry
TOKEN_DEFAULT_TTL_S = 1799            # [OAUTH ClientCredentialsTokenResponse.expires_in example]

# -- pagination: start/limit, paging.next omitted on the last page ------------------------------
PAGE_START = "start"                  # [C4B enrollmentReports parameters: start, default 0]
PAGE_LIMIT = "limit"                  # [C4B enrollmentReports parameters: limit]
PAGE_SIZE_DEFAULT = 100               # [C4B enrollmentReports parameters: limit default 100]
PAGE_SIZE_MAX = 1000                  # INFERRED for contents/enrollmentReports ([C4B users limit maximum 1000] states it for users)
PAGING_TOTAL = "total"                # [C4B schemas.Pagination: total required int]; INFERRED: the last page's is the one to trust

# -- query parameters ----------------------------------------------------------------------------
CONTENTS_MODIFIED_SINCE = "modifiedSinceTimestamp"  # [C4B contents parameters: "in epoch seconds", positive]
CONTENTS_TYPES = "contentTypes"                     # [C4B contents parameters: contentTypes]
# enrollmentReports bounds, epoch MILLISECONDS: lastActivity bounds drop the rows "lower/greater than AND
# equal to" them (exclusive), enrollAt bounds the rows "lower/greater than" them (inclusive).
# report_window asks a millisecond more on each side and keeps the window's rows itself.
REPORTS_LAST_ACTIVITY_AFTER = "lastActivityAfter"    # [C4B enrollmentReports parameters: lastActivityAfter] exclusive
REPORTS_LAST_ACTIVITY_BEFORE = "lastActivityBefore"  # [C4B enrollmentReports parameters: lastActivityBefore] exclusive
REPORTS_ENROLLED_AFTER = "enrollAtAfter"             # [C4B enrollmentReports parameters: enrollAtAfter] inclusive
REPORTS_ENROLLED_BEFORE = "enrollAtBefore"           # [C4B enrollmentReports parameters: enrollAtBefore] inclusive
REPORTS_INCLUDE_S12N = "includeS12n"                 # [C4B enrollmentReports parameters: includeS12n, default false]
REPORTS_INCLUDE_DELETED = "includeDeletedMembers"    # [C4B enrollmentReports parameters: includeDeletedMembers]

# -- rate limits: not documented anywhere found ---------------------------------------------------
CALLS_PER_SECOND = 4                  # INFERRED: default budget per API client (connection key account_calls_per_second)

# -- units ---------------------------------------------------------------------------------------
CONTENT_TIMESTAMP_UNIT_S = 1          # [C4B schemas.Content.lastUpdatedAt example 1733368795] epoch seconds
REPORT_TIMESTAMP_UNIT_S = 0.001       # [C4B schemas.EnrollmentReport *At examples, e.g. 1568748366896] epoch ms
LEARNING_TIME_UNIT_S = 1              # [C4B schemas.Content.extraMetadata: "estimated learning time in seconds"]
HOURS_SPENT_FIELD = "approxTotalCourseHrs"  # [C4B schemas.EnrollmentReport.approxTotalCourseHrs: hours spent]

# -- grades --------------------------------------------------------------------------------------
# enrollmentReports' grade is typed string, "Average percentage score across all graded assignments",
# example 0.922300033569336 (0-1); courseGradebookReports' overallCourseGrade is "A number between 0 to
# 100" (example 96.7). Which scale production's grade uses is not settled: both are accepted, per page.
GRADE_FIELD = "grade"                 # [C4B schemas.EnrollmentReport.grade]
GRADE_SCALES = (1.0, 100.0)           # [C4B EnrollmentReport.grade example] 0-1, [C4B CourseGradebookReport.overallCourseGrade] 0-100
GRADE_FRACTION_MAX = 1.0              # INFERRED: grades above this vote for a 0-100 page (grade_scale.scale_of)

# -- content kinds -------------------------------------------------------------------------------
# Coursera contentType -> 360Learning external-course contentType. Professional certificates
# arrive as Specialization and guided projects as Course (INFERRED), so they map with those.
CONTENT_TYPES = {"Course": "course", "Specialization": "specialization",   # [C4B schemas.Content.contentType enum];
                 "Video": "video"}                                          # the values are ours (INFERRED)
# Kinds a program may name that are not launchable content: skipped (counted), never dead-lettered.
SKIPPED_CONTENT_TYPES = {  # [C4B schemas.ContentId.contentType enum has SkillSet]; INFERRED that it has no page to launch
    "SkillSet": "a SkillSet groups skills across contents; it has no page of its own to launch"}
DIFFICULTY = {"BEGINNER": "beginner", "INTERMEDIATE": "intermediate",  # [C4B schemas.Content.difficultyLevel enum]
              "ADVANCED": "advanced"}

# Public pages used only when an item carries no program launch URL ([C4B schemas.Content.programs
# contentUrl] is the launch URL when there is one).
PUBLIC_URL = {"Course": "https://www.coursera.org/learn/{slug}",              # INFERRED patterns
              "Specialization": "https://www.coursera.org/specializations/{slug}",
              "Video": "https://www.coursera.org/learn/{slug}"}

# -- errors and throttling -----------------------------------------------------------------------
APIGEE_QUOTA_ERRORCODES = ("policies.ratelimit.SpikeArrestViolation",  # INFERRED: Apigee's codes, 429s undocumented
                           "policies.ratelimit.QuotaViolation")
APIGEE_TOKEN_ERRORCODES = ("keymanagement.service.invalid_access_token",  # [C4B examples.401_Unauthorized_*]
                           "keymanagement.service.access_token_expired")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})  # INFERRED: transient statuses, none documented
