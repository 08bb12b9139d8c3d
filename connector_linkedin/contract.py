"""What this provider knows about LinkedIn Learning's APIs, in one module.

Every fact names its public source (the address of the page that shows it) or says INFERRED
where we filled a gap; a correction is a change here, nowhere else. The sources:

AUTH     https://learn.microsoft.com/en-us/linkedin/learning/getting-started/authentication
ASSETS   https://learn.microsoft.com/en-us/linkedin/learning/integrations/locale-and-type-api
ASSET    https://learn.microsoft.com/en-us/linkedin/learning/reference/learningassets
REPORTS  https://learn.microsoft.com/en-us/linkedin/learning/reference/learning-activity-reports-reference
REPORTS_GUIDE https://learn.microsoft.com/en-us/linkedin/learning/integrations/learning-activity-reports
PROTOCOL https://learn.microsoft.com/en-us/linkedin/shared/api-guide/concepts/protocol-version
RESTLI   https://linkedin.github.io/rest.li/spec/protocol
LIMITS   https://learn.microsoft.com/en-us/linkedin/shared/api-guide/concepts/rate-limits
"""
from __future__ import annotations

# -- authentication (AUTH) ---------------------------------------------------------------------
DEFAULT_API_URL = "https://api.linkedin.com"                          # AUTH, REPORTS (sample requests)
DEFAULT_TOKEN_URL = "https://www.linkedin.com/oauth/v2/accessToken"   # AUTH: two-legged OAuth 2.0
TOKEN_GRANT = "client_credentials"                                    # AUTH: form body with client_id/secret
TOKEN_DEFAULT_TTL_S = 1800        # INFERRED fallback: AUTH's answer states expires_in (7775999 in its sample)
TOKEN_RENEW_MARGIN_S = 60         # our choice

# -- Rest.li protocol (PROTOCOL, RESTLI) ----------------------------------------------------------
# PROTOCOL: "If you don't pass a header, your call will default to version 1.0"; 2.0 needs the
# header X-Restli-Protocol-Version: 2.0.0 and writes objects as (k:v,...) and lists as List(...).
# Every LinkedIn Learning request shown by ASSETS and REPORTS sends no header and writes nested
# parameters in the 1.0 dotted style (sourceLocale.language=en, timeOffset.unit=DAY): the client
# declares 1.0 and writes 1.0, the only form those pages show working against these endpoints.
# PROTOCOL warns that 1.0 will be deprecated: switching is this one line (restli.py writes both).
RESTLI_HEADER = "X-Restli-Protocol-Version"                           # PROTOCOL
RESTLI_1, RESTLI_2 = "1.0.0", "2.0.0"                                 # PROTOCOL (2.0.0 is the header value)
RESTLI_PROTOCOL = RESTLI_1                                            # ASSETS, REPORTS (no header shown)

# -- catalog (ASSETS, ASSET) ----------------------------------------------------------------------
ASSETS_PATH = "/v2/learningAssets"                                    # ASSETS
ASSETS_FINDER = "localeAndType"                                       # ASSETS: bulk catalog import
ASSETS_LOCALE = "sourceLocale"    # ASSETS: sourceLocale.language / sourceLocale.country in its paging links
ASSETS_EXPAND_DEPTH = 1                                               # ASSETS (paging links: expandDepth=1)
ASSET_TYPE = "COURSE"             # ASSETS (assetType=COURSE); only courses become 360Learning courses

# -- paging (ASSETS: "paging": {"total", "count", "start"}) -----------------------------------------
PAGE_START, PAGE_COUNT = "start", "count"                             # ASSETS, REPORTS
PAGE_SIZE_DEFAULT = 100                                               # our choice
PAGE_SIZE_MAX = 1000                                                  # INFERRED

# -- activity reports (REPORTS, REPORTS_GUIDE) ----------------------------------------------------
REPORTS_PATH = "/v2/learningActivityReports"                          # REPORTS
REPORTS_FINDER = "criteria"                                           # REPORTS (q=criteria)
REPORT_TIME_UNIT = "DAY"                                              # REPORTS (timeOffset.unit=DAY)
# REPORTS, REPORTS_GUIDE: activity aggregated by account, group, individual or content; the sample
# spells ACCOUNT, so INDIVIDUAL and CONTENT are INFERRED spellings
REPORT_AGGREGATION = {"primary": "INDIVIDUAL", "secondary": "CONTENT"}
REPORT_CONTENT_SOURCE = "ALL_SOURCES"                                 # REPORTS (contentSource=ALL_SOURCES)
# REPORTS: startedAt starts the range of records "returned or summarized": SECONDS_VIEWED and
# COMPLETIONS count that range only, never a lifetime (lifetime.py adds the ranges up).
REPORT_WINDOW_MAX_DAYS = 365      # INFERRED limit of timeOffset.duration; longer history is read in parts
REPORT_FIRST_SYNC_DAYS = 365      # our choice: how far back a first progress sync reads
REPORT_SETTLE_DAYS = 3            # INFERRED report lag: the last days are read day by day, run after run

# engagement types: REPORTS describes "course completions, seconds of content viewed"; its sample
# shows DAYS_ACTIVE and VIEWS, so these three spellings are INFERRED
SECONDS_VIEWED = "SECONDS_VIEWED"          # INFERRED spelling; seconds within the report range
PROGRESS_PERCENTAGE = "PROGRESS_PERCENTAGE"  # INFERRED spelling and 0-100 scale, as of the range's end
COMPLETIONS = "COMPLETIONS"                # INFERRED spelling; completions within the report range
TOTAL = "TOTAL"                            # REPORTS (engagementMetricQualifier, beside UNIQUE)
REPORT_ASSET_TYPE = ASSET_TYPE             # INFERRED: the report's assetType filter takes catalog types

# -- asset details (ASSET) -----------------------------------------------------------------------
TIME_UNITS_S = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600}   # timeToComplete.unit: INFERRED set
LEVELS = {"BEGINNER": "beginner", "INTERMEDIATE": "intermediate", "ADVANCED": "advanced"}  # INFERRED values
SKILL_TYPES = ("SKILL",)                   # classifications that become tags (INFERRED type names)
SUBJECT_TYPES = ("TOPIC", "SUBJECT", "LIBRARY")   # INFERRED type names

# -- rate limits (LIMITS) ------------------------------------------------------------------------
# LIMITS: daily limits per application and per member, reset at midnight UTC, answered with 429
# (retried by hostspec.kit.http); the numbers are not published (the Developer Portal shows them).
CALLS_PER_SECOND = 4              # INFERRED: a prudent default budget (no per-second limit is published)
