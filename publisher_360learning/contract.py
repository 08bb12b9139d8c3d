"""What the publisher knows about 360Learning's API v2, in one module.

Every fact carries its public source, a key of :data:`SOURCES` in brackets (each key resolves to
the address it was read at), or INFERRED: our reading where the documentation is silent (a
first production run should check those; see the README). A correction is a change here; the
sandbox imports the same constants, so both move together.
"""
from __future__ import annotations

_OAS = "https://github.com/api-evangelist/360learning/blob/471fd01ad1417f429f5400b474b61619141b3bd9/openapi/_original/"
SOURCES = {
    # 360Learning's published OpenAPI files, mirrored by api-evangelist (commit 471fd01)
    "OAS-core": _OAS + "360learning-core-api.json",
    "OAS-bulk": _OAS + "360learning-bulk-api.json",
    # 360Learning's developer guides
    "D-pag": "https://360learning.readme.io/docs/pagination",
    "D-rl": "https://360learning.readme.io/docs/copy-of-rate-limiting-errors",
    # the Link header's grammar and how a relative target is resolved
    "RFC8288": "https://www.rfc-editor.org/rfc/rfc8288#section-3.2",
}

# -- hosts and authentication ---------------------------------------------------------------------
REGIONS = {"eu": "https://app.360learning.com", "us": "https://app.us.360learning.com"}   # [OAS-core] servers
TOKEN_PATH = "/api/v2/oauth2/token"          # [OAS-core] JSON body {grant_type, client_id, client_secret}
TOKEN_GRANT = "client_credentials"           # [OAS-core]
TOKEN_DEFAULT_TTL_S = 3600                   # [OAS-core] "for 1 hour"; ``expires_in`` typed number, example "3600"
TOKEN_RENEW_MARGIN_S = 60                    # INFERRED: renew a minute early
VERSION_HEADER = "360-api-version"           # [OAS-core] required header of every v2 operation
VERSION = "v2.0"                             # [OAS-core]

# -- paths ------------------------------------------------------------------------------------------
INTEGRATIONS = "/api/v2/integrations"                                 # [OAS-core] filter externalPlatform, page 100
BULK_COURSES = "/api/v2/bulk/integrations/{integration_id}/courses"   # [OAS-bulk] PUT upsert, DELETE archive
BULK_STATS = "/api/v2/bulk/integrations/{integration_id}/stats"       # [OAS-bulk] POST import
OPERATION = "/api/v2/bulk/operations/{operation_id}"                  # [OAS-bulk]
OPERATION_RESULTS = "/api/v2/bulk/operations/{operation_id}/results"  # [OAS-bulk]
OPERATIONS = "/api/v2/bulk/operations"       # [OAS-bulk] list, page 20; filters status, type, createdAt
EXTERNAL_COURSE = "/api/v2/integrations/{integration_id}/courses/{external_id}"   # [OAS-core]
USERS = "/api/v2/users"                      # [OAS-core] filter mail, page 500
TAGS = "/api/v2/tags"                        # [OAS-core] page 5,000
COURSE_TAGS = "/api/v2/courses/{course_id}/tags"  # [OAS-core] PUT replaces every tag of the course
COURSE_STATS = "/api/v2/courses/stats"       # [OAS-core] attempts; filters courseId, userId, completedAt; page 500
COURSE_STATS_USERS_PER_CALL = 50             # INFERRED: ``userId[in]`` accepted like ``mail[in]``, 50 at a time

# -- limits -----------------------------------------------------------------------------------------
MAX_UPSERT_ITEMS = 10_000                    # [OAS-bulk] maxItems
MAX_ARCHIVE_ITEMS = 1_000                    # [OAS-bulk] maxItems
MAX_STAT_ITEMS = 10_000                      # [OAS-bulk] maxItems
MAX_TAGS_PER_COURSE = 100                    # [OAS-core] UpdateCourseTagsBody.tagIds maxItems
BULK_CONCURRENCY = 3                         # [D-rl] running bulk operations per company
READS_PER_S = 50                             # [D-rl] per company
WRITES_PER_S = 10                            # [D-rl] per company (POST, PUT, PATCH, DELETE)

# -- pagination ---------------------------------------------------------------------------------------
# [D-pag] ``Link: <URL>; rel="next"``, only a next page, no header on the last one. The URL may be
# relative: the OpenAPI's example is ``<my/resource/url>; rel="next"`` [OAS-core]. It is resolved
# against the URL of the page that carried it [RFC8288]; INFERRED: that is what 360Learning means.

# -- bulk operations ----------------------------------------------------------------------------------
OP_STATUSES = ("pending", "queued", "running", "completed", "error")   # [OAS-bulk] *OperationDTO
OP_TERMINAL = frozenset({"completed", "error"})                        # [OAS-bulk]
OP_UNFINISHED = ("pending", "queued", "running")                       # [OAS-bulk]
OP_TYPES = {"upsert": "importExternalCourses", "archive": "archiveExternalCourses",   # [OAS-bulk]
            "stats": "importExternalStatistics"}
# [OAS-bulk] each result (SuccessResultDTO, ErrorResultDTO) carries the ``input`` it answers; no
# order is documented, so results are paired with inputs by ``input``, never by position.
RESULT_INPUT = "input"                       # [OAS-bulk]

# -- error codes --------------------------------------------------------------------------------------
RATE_LIMITED = "tooManyRequests"             # [OAS-core] flat body on 429
BULK_BUSY = "bulkOperationsConcurrencyLimitReached"   # [OAS-bulk] nested body on 429
BULK_DISABLED = "bulkAPIDisabled"            # [OAS-bulk] nested body on 503
INVALID_TOKEN = "invalid_token"              # [OAS-core] flat body on 401
INVALID_CLIENT = "invalid_client"            # [OAS-core] token endpoint, 401
RESERVED_NAME = "reservedPlatformName"       # [OAS-core] [OAS-bulk]
DUPLICATE_PLATFORM = "duplicateExternalPlatform"      # [OAS-core]
TAG_NAME_TAKEN = "tagNameNotAvailable"       # [OAS-core]
OP_NOT_RUN = "bulkOperationNotRun"           # [OAS-bulk] results asked before the operation ran
INTEGRATION_NOT_FOUND = "integrationNotFound"         # [OAS-core] [OAS-bulk] 404: the integration is gone
# [OAS-core] GET EXTERNAL_COURSE answers 400 with this code for an externalId the integration does
# not hold; its 404 is only ever INTEGRATION_NOT_FOUND
COURSE_NOT_IN_INTEGRATION = "courseNotBelongToIntegration"

# -- the statistics import ------------------------------------------------------------------------------
TIME_SPENT_UNIT_MS = 1000                    # [OAS-bulk] ``timeSpent`` in milliseconds, minimum 1
FORCE_NEW = False                            # [OAS-bulk] the default; we send it: update the attempt a
                                             # learner started in 360Learning
# [OAS-bulk] attempt rules, both strict: an import creates an attempt when ``firstActivityAt`` is
# *later* than the end (``lastActivityAt`` or ``completedAt``) of every attempt, and updates the
# non-completed attempts whose end it is *earlier* than. At an equal instant neither rule applies
# (INFERRED: nothing changes), so the publisher keeps its dates a step apart, one millisecond being
# the format's precision ("2025-07-08T22:00:00.000Z" [OAS-bulk]).
INSTANT_STEP_MS = 1                          # [OAS-bulk] dates carry milliseconds

# -- languages ---------------------------------------------------------------------------------------------
# [OAS-bulk] ExternalCourseDTO.defaultLang (also the stats' ``lang``): these codes, spelled exactly so
# (``he_IL``, ``zh_tw`` in lower case next to ``zh_HANT``). The published list names ``el`` twice; it
# is kept once here. Persian (``fa``) is not in it.
LANGUAGES = (
    "bg", "cs", "da", "de", "el", "en", "es", "fi", "fr", "hr", "ht_HT", "hu", "id", "it", "ja", "kar_MM",
    "ko", "lt", "mh_MH", "nl", "nl_BE", "no", "pl", "pt", "ro", "ru", "rw_RW", "sk", "sl", "so_SO", "sv",
    "sw_KE", "th", "ti_ET", "tr", "uk", "zh", "am_ET", "bn", "bs", "ca", "cy", "en_CA", "en_GB", "es_AR",
    "es_MX", "et", "fr_CA", "gu", "he_IL", "hy", "kk", "km", "lo", "lv", "mi", "mn_MN", "mr", "ms", "my_MM",
    "nn_NO", "or", "pa", "pt_BR", "pt_MZ", "rn_BI", "si", "ta", "te", "tl_PH", "ur", "uz", "yo_NG", "zh_tw",
    "hi", "sr", "ar", "vi", "zh_HANT",
)
DEFAULT_LANGUAGE = "en"                      # INFERRED: a target's language when it names none
