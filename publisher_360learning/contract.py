"""What the publisher knows about 360Learning's API v2, in one module.

Facts marked CONFIRMED come from 360Learning's published OpenAPI files and developer guides;
INFERRED ones are our reading where the documentation is silent. A correction is a change here.
"""
from __future__ import annotations

# -- hosts and authentication (CONFIRMED) ---------------------------------------------------------
REGIONS = {"eu": "https://app.360learning.com", "us": "https://app.us.360learning.com"}
TOKEN_PATH = "/api/v2/oauth2/token"          # JSON body {grant_type, client_id, client_secret}
TOKEN_GRANT = "client_credentials"
TOKEN_DEFAULT_TTL_S = 3600                   # ``expires_in`` comes as a number or a string
TOKEN_RENEW_MARGIN_S = 60                    # INFERRED: renew a minute early
VERSION_HEADER = "360-api-version"
VERSION = "v2.0"

# -- paths (CONFIRMED) -----------------------------------------------------------------------------
INTEGRATIONS = "/api/v2/integrations"
BULK_COURSES = "/api/v2/bulk/integrations/{integration_id}/courses"   # PUT upsert, DELETE archive
BULK_STATS = "/api/v2/bulk/integrations/{integration_id}/stats"       # POST import
OPERATION = "/api/v2/bulk/operations/{operation_id}"
OPERATION_RESULTS = "/api/v2/bulk/operations/{operation_id}/results"
OPERATIONS = "/api/v2/bulk/operations"      # list, page 20; filters status[eq], type[eq], createdAt
EXTERNAL_COURSE = "/api/v2/integrations/{integration_id}/courses/{external_id}"
USERS = "/api/v2/users"                      # filter mail[eq]
TAGS = "/api/v2/tags"
COURSE_TAGS = "/api/v2/courses/{course_id}/tags"  # PUT replaces every tag of the course
COURSE_STATS = "/api/v2/courses/stats"       # attempts; filters courseId, userId (page 500)
COURSE_STATS_USERS_PER_CALL = 50             # INFERRED: ``userId[in]`` accepted like ``mail[in]``

# -- limits (CONFIRMED) ---------------------------------------------------------------------------
MAX_UPSERT_ITEMS = 10_000
MAX_ARCHIVE_ITEMS = 1_000
MAX_STAT_ITEMS = 10_000
MAX_TAGS_PER_COURSE = 100
BULK_CONCURRENCY = 3                         # running bulk operations per company
READS_PER_S = 50                             # per company
WRITES_PER_S = 10                            # per company (POST, PUT, PATCH, DELETE)

# -- bulk operations (CONFIRMED) ---------------------------------------------------------------------
OP_STATUSES = ("pending", "queued", "running", "completed", "error")
OP_TERMINAL = frozenset({"completed", "error"})
OP_UNFINISHED = ("pending", "queued", "running")
OP_TYPES = {"upsert": "importExternalCourses", "archive": "archiveExternalCourses",
            "stats": "importExternalStatistics"}

# -- error codes (CONFIRMED) ---------------------------------------------------------------------------
RATE_LIMITED = "tooManyRequests"             # flat body on 429
BULK_BUSY = "bulkOperationsConcurrencyLimitReached"   # nested body on 429
BULK_DISABLED = "bulkAPIDisabled"            # nested body on 503
INVALID_TOKEN = "invalid_token"
INVALID_CLIENT = "invalid_client"
RESERVED_NAME = "reservedPlatformName"
DUPLICATE_PLATFORM = "duplicateExternalPlatform"
TAG_NAME_TAKEN = "tagNameNotAvailable"
OP_NOT_RUN = "bulkOperationNotRun"

# -- the statistics import (CONFIRMED units; INFERRED choices marked) ------------------------------------
TIME_SPENT_UNIT_MS = 1000                    # ``timeSpent`` in milliseconds, at least 1
FORCE_NEW = False                            # update the attempt a learner started in 360Learning
