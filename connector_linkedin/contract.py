"""What this provider knows about LinkedIn Learning's APIs, in one module.

From LinkedIn's public Learning API documentation (learn.microsoft.com/linkedin/learning):
CONFIRMED where the reference shows it, INFERRED where we filled a gap. A correction is a change
here, nowhere else.
"""
from __future__ import annotations

DEFAULT_API_URL = "https://api.linkedin.com"
DEFAULT_TOKEN_URL = "https://www.linkedin.com/oauth/v2/accessToken"   # CONFIRMED: 2-legged OAuth
TOKEN_GRANT = "client_credentials"                                    # CONFIRMED (form body)
TOKEN_DEFAULT_TTL_S = 1800                                            # INFERRED: read expires_in
TOKEN_RENEW_MARGIN_S = 60

ASSETS_PATH = "/v2/learningAssets"                                    # CONFIRMED
ASSETS_FINDER = "localeAndType"                                       # CONFIRMED: bulk catalog import
REPORTS_PATH = "/v2/learningActivityReports"                          # CONFIRMED
REPORTS_FINDER = "criteria"                                           # CONFIRMED

PAGE_START, PAGE_COUNT = "start", "count"                             # CONFIRMED: Rest.li paging
PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX = 100, 1000                          # INFERRED maximum

CALLS_PER_SECOND = 4              # INFERRED: LinkedIn throttles per application; a prudent default budget

REPORT_WINDOW_MAX_DAYS = 365      # INFERRED limit; a longer window is cut to this many days from its start
REPORT_FIRST_SYNC_DAYS = 365      # how far back a first progress sync reads

# engagement types of learningActivityReports (CONFIRMED names; units INFERRED)
SECONDS_VIEWED = "SECONDS_VIEWED"          # engagementValue in seconds
PROGRESS_PERCENTAGE = "PROGRESS_PERCENTAGE"  # engagementValue 0-100
COMPLETIONS = "COMPLETIONS"                # engagementValue: number of completions

ASSET_TYPE = "COURSE"                      # only courses become 360Learning courses
TIME_UNITS_S = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600}   # timeToComplete.unit (INFERRED set)
LEVELS = {"BEGINNER": "beginner", "INTERMEDIATE": "intermediate", "ADVANCED": "advanced"}
SKILL_TYPES = ("SKILL",)                   # classifications that become tags
SUBJECT_TYPES = ("TOPIC", "SUBJECT", "LIBRARY")
