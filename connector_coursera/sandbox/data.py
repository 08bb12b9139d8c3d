"""A deterministic Coursera organisation, generated from a seed.

Contents are few (up to tens of thousands) and built eagerly. Enrollment rows can number in the
millions and are computed from their index on demand: row ``i`` always has the same learner,
content and values for the same seed and sizes, and rows are ordered by ``(enrolledAt, id)``
because ``enrolledAt`` grows with ``i``. Mutations made through the control API (removed or
modified contents, progress changes) are kept as small overlays on top of the generated data.
"""
from __future__ import annotations

import base64
import hashlib
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

DAY_MS = 86_400_000
DATA_EPOCH_MS = 1_735_689_600_000      # 2025-01-01T00:00:00Z: first enrollment
DATA_NOW_MS = 1_764_547_200_000        # 2025-12-01T00:00:00Z: when reports were last refreshed

_ADJ = ["Applied", "Practical", "Modern", "Foundations of", "Advanced", "Introduction to",
        "Hands-on", "Strategic", "Data-Driven", "Effective"]
_TOPIC = ["Machine Learning", "Project Management", "Financial Accounting", "Python Programming",
          "Negotiation", "Cloud Architecture", "UX Design", "Statistics", "Leadership", "Cybersecurity",
          "Marketing Analytics", "Supply Chain", "SQL", "Public Speaking", "Data Visualization"]
_PARTNERS = [("Stanford University", "stanford"), ("DeepLearning.AI", "dlai"), ("Google", "google"),
             ("University of Michigan", "umich"), ("IBM", "ibm"), ("Duke University", "duke"),
             ("Coursera Project Network", "cpn")]
_DOMAINS = [("Data Science", "Machine Learning"), ("Business", "Leadership and Management"),
            ("Computer Science", "Software Development"), ("Information Technology", "Security")]
_LANGS = ["en", "en", "en", "fr", "es", "de", "pt-BR"]
_FIRST = ["Jane", "Bob", "Ana", "Li", "Omar", "Eva", "Raj", "Mia", "Noah", "Zoe"]
_LAST = ["Doe", "Smith", "Garcia", "Chen", "Haddad", "Novak", "Patel", "Rossi", "Kim", "Moreau"]


def _h(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def coursera_id(*parts: object) -> str:
    """A 22-character base64url id, like Coursera's."""
    raw = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).digest()
    return base64.urlsafe_b64encode(raw).decode()[:22]


@dataclass
class OrgSpec:
    """Sizes and knobs of the generated organisation (all deterministic for one ``seed``)."""

    org_id: str = "DjYCkBQTQV69TtWA7RuNug"
    org_name: str = "Acme Corp"
    seed: int = 42
    programs: int = 3
    contents: int = 40
    learners: int = 25
    enrollments: int = 120
    clips_enabled: bool = False
    broken_every: int = 0               # every Nth content and enrollment lacks a required field
    deleted_member_every: int = 50      # every Nth learner left the organisation

    def __post_init__(self) -> None:
        if min(self.programs, self.contents, self.learners) < 1 or self.enrollments < 0:
            raise ValueError("programs, contents and learners must be >= 1, enrollments >= 0")
        if self.enrollments > self.learners * self.contents:
            raise ValueError(f"{self.enrollments} enrollments need learners x contents >= that "
                             f"({self.learners} x {self.contents})")


def program_ids(item: dict[str, Any]) -> list[Any]:
    """The content's program ids, tolerating what a test may have put in ``programs``."""
    programs = item.get("programs")
    return [p.get("programId") for p in programs if isinstance(p, dict)] if isinstance(programs, list) else []


def partner_names(item: dict[str, Any]) -> list[Any]:
    partners = item.get("partners")
    return [p.get("name") for p in partners if isinstance(p, dict)] if isinstance(partners, list) else []


_NOT_STARTED = {"isCompleted": False, "completedAt": None, "grade": None, "overallProgress": 0,
                "lastActivityAt": None, "approxTotalCourseHrs": 0.0, "contentCertificateUrl": None}


@dataclass
class Org:
    spec: OrgSpec
    programs: list[dict[str, Any]] = field(default_factory=list)
    contents: list[dict[str, Any]] = field(default_factory=list)
    removed: set[str] = field(default_factory=set)             # contentIds
    removed_at: dict[str, int] = field(default_factory=dict)   # contentId -> epoch s
    progress_overrides: dict[int, dict[str, Any]] = field(default_factory=dict)
    late_rows: list[dict[str, Any]] = field(default_factory=list)   # enrollments made while serving
    version: int = 0

    # -- build ---------------------------------------------------------------------------------
    @classmethod
    def generate(cls, spec: OrgSpec) -> "Org":
        org = cls(spec)
        for p in range(spec.programs):
            pid = coursera_id(spec.seed, "program", p)
            slug = f"program-{p + 1}-{pid[:5].lower()}"
            org.programs.append({"id": pid, "name": f"Learning Program {p + 1}",
                                 "tagline": "Start learning on Coursera!",
                                 "url": f"https://www.coursera.org/programs/{slug}", "_slug": slug})
        for c in range(spec.contents):
            org.contents.append(org._content(c))
        return org

    def _content_type(self, c: int) -> str:
        if c % 7 == 3:
            return "Specialization"
        if self.spec.clips_enabled and c % 11 == 5:
            return "Video"
        return "Course"

    def _content(self, c: int) -> dict[str, Any]:
        s = self.spec
        kind = self._content_type(c)
        cid = coursera_id(s.seed, "content", c)
        h = _h(s.seed, "content", c)
        name = f"{_ADJ[h % len(_ADJ)]} {_TOPIC[(h >> 8) % len(_TOPIC)]}"
        if c >= len(_TOPIC):
            name += f" {c // len(_TOPIC) + 1}"
        slug = "-".join(name.lower().replace("-", " ").split()) + f"-{cid[:4].lower()}"
        program = self.programs[c % len(self.programs)]
        product = {"Course": "course", "Specialization": "s12n", "Video": "clip"}[kind]
        partner = _PARTNERS[(h >> 16) % len(_PARTNERS)]
        domain = _DOMAINS[(h >> 24) % len(_DOMAINS)]
        photo = f"https://d3njjcbhbojbot.cloudfront.net/sandbox/{cid}.png"
        if kind == "Course":
            meta = {"typeName": "courseMetadata", "definition": {
                "skills": [{"skillName": _TOPIC[(h >> 8) % len(_TOPIC)],
                            "skillId": _TOPIC[(h >> 8) % len(_TOPIC)].lower().replace(" ", "-")}],
                "estimatedLearningTime": 3600 * (2 + (h >> 32) % 40),
                "promoPhoto": photo,
                "domainTypes": [{"domain": {"name": domain[0], "domainId": domain[0].lower().replace(" ", "-")},
                                 "subdomain": {"name": domain[1], "subdomainId": domain[1].lower().replace(" ", "-")}}]}}
        elif kind == "Specialization":
            children = [coursera_id(s.seed, "content", (c + k) % s.contents) for k in (1, 2)]
            meta = {"typeName": "specializationMetadata", "definition": {
                "courseIds": [{"contentId": x, "contentType": "Course"} for x in children],
                "promoPhoto": photo, "tagline": f"Master {_TOPIC[(h >> 8) % len(_TOPIC)]}"}}
        else:
            meta = {"typeName": "clipMetadata", "definition": {
                "parentLessonName": "Lesson 1", "estimatedLearningTime": 300 + (h >> 32) % 600,
                "skillTags": [{"skillName": _TOPIC[(h >> 8) % len(_TOPIC)], "skillId": None}],
                "promoPhoto": photo, "parentCourseId": f"course~{coursera_id(s.seed, 'content', 0)}"}}
        item = {
            "id": f"{kind}~{cid}", "contentId": cid, "contentType": kind, "name": name, "slug": slug,
            "description": f"{name}: a sandbox {kind.lower()} generated for demos and tests.",
            "languageCode": _LANGS[(h >> 40) % len(_LANGS)],
            "subtitleLanguageCodes": ["en", "es"],
            "difficultyLevel": ["BEGINNER", "INTERMEDIATE", "ADVANCED", None][(h >> 44) % 4],
            "partners": [{"name": partner[0],
                          "logoUrl": f"https://d3njjcbhbojbot.cloudfront.net/sandbox/{partner[1]}.png"}],
            "instructors": [{"photoUrl": None, "name": f"{_FIRST[h % 10]} {_LAST[(h >> 4) % 10]}",
                             "title": "Instructor", "department": domain[0]}],
            "programs": [{"programId": program["id"], "contentUrl":
                          f"https://www.coursera.org/programs/{program['_slug']}?productId={cid}"
                          f"&productType={product}&showMiniModal=true&isExternal=true"}],
            "extraMetadata": meta,
            "lastUpdatedAt": DATA_NOW_MS // 1000 - (h >> 48) % (200 * 86400),
        }
        if s.broken_every and c % s.broken_every == s.broken_every - 1:
            del item["name"]  # a record with a missing required field
        return item

    # -- contents ------------------------------------------------------------------------------
    def visible_contents(self, *, clips: bool, types: Iterable[str] | None = None,
                         program_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        wanted = set(types) if types else None
        programs = set(program_ids) if program_ids else None
        out = []
        for item in self.contents:
            if item["contentId"] in self.removed:
                continue
            if item["contentType"] == "Video" and not clips:
                continue
            if wanted is not None and item["contentType"] not in wanted:
                continue
            if programs is not None and not set(program_ids(item)) & programs:
                continue
            out.append(item)
        return out

    def content_by_id(self, content_id: str) -> dict[str, Any] | None:
        for item in self.contents:
            if item["contentId"] == content_id:
                return item
        return None

    def remove_content(self, content_id: str, at_s: int) -> bool:
        if self.content_by_id(content_id) is None:
            return False
        self.removed.add(content_id)
        self.removed_at[content_id] = at_s
        self.version += 1
        return True

    def modify_content(self, content_id: str, changes: dict[str, Any], at_s: int) -> bool:
        item = self.content_by_id(content_id)
        if item is None:
            return False
        item.update(changes or {"description": (item.get("description") or "") + " (updated)"})
        item["lastUpdatedAt"] = at_s
        self.version += 1
        return True

    def add_content(self, at_s: int) -> dict[str, Any]:
        item = self._content(len(self.contents) + 10_000_000)
        item["lastUpdatedAt"] = at_s
        self.contents.append(item)
        self.version += 1
        return item

    # -- enrollment rows -----------------------------------------------------------------------
    def _row_keys(self, i: int) -> tuple[int, int]:
        s = self.spec
        learner = i % s.learners
        content = ((i // s.learners) + learner * 7) % s.contents
        return learner, content

    def learner(self, n: int) -> dict[str, str]:
        s = self.spec
        h = _h(s.seed, "learner", n)
        first, last = _FIRST[h % 10], _LAST[(h >> 4) % 10]
        email = f"{first.lower()}.{last.lower()}.{n}@acme.test"
        return {"externalId": email, "email": email, "fullName": f"{first} {last}"}

    def row(self, i: int) -> dict[str, Any]:
        """Enrollment report row ``i`` (0 <= i < enrollments, then the late enrollments)."""
        s = self.spec
        if i >= s.enrollments:
            return {**self.late_rows[i - s.enrollments], **self.progress_overrides.get(i, {})}
        learner_n, content_n = self._row_keys(i)
        item = self.contents[content_n]
        h = _h(s.seed, "row", i)
        enrolled = DATA_EPOCH_MS + i * max(1, (300 * DAY_MS) // max(1, s.enrollments))
        state = h % 10
        deleted = bool(s.deleted_member_every) and learner_n % s.deleted_member_every == s.deleted_member_every - 1
        is_s12n = item["contentType"] == "Specialization"
        row = self._row_fields(learner_n, item, enrolled, deleted,
                               "Guided Project" if (h >> 20) % 9 == 0 and not is_s12n else "Course")
        if state <= 2:        # enrolled, never started
            row.update(_NOT_STARTED)
        elif state <= 6:      # in progress
            last = enrolled + (1 + (h >> 8) % 60) * DAY_MS
            row.update(isCompleted=False, completedAt=None, grade=None,
                       overallProgress=5 + (h >> 16) % 90, lastActivityAt=last,
                       approxTotalCourseHrs=round(((h >> 24) % 400) / 10, 2), contentCertificateUrl=None)
        else:                 # completed
            done = enrolled + (5 + (h >> 8) % 90) * DAY_MS
            row.update(isCompleted=True, completedAt=done, grade=round(0.6 + ((h >> 16) % 400) / 1000, 4),
                       overallProgress=100 if state != 9 else 96, lastActivityAt=done,
                       approxTotalCourseHrs=round(5 + ((h >> 24) % 300) / 10, 2),
                       contentCertificateUrl=f"https://coursera.org/verify/{coursera_id(s.seed, 'cert', i)[:12]}")
        if is_s12n:
            row.pop("overallProgress")
            row["numCoursesInSpecialization"] = 2
        override = self.progress_overrides.get(i)
        if override:
            row.update(override)
        if s.broken_every and i % s.broken_every == s.broken_every - 1:
            del row["enrolledAt"]
        return row

    def _row_fields(self, learner_n: int, item: dict[str, Any], enrolled: int, deleted: bool,
                    course_type: str) -> dict[str, Any]:
        """The fields of a row that name its learner, content, program and enrollment."""
        s = self.spec
        learner = self.learner(learner_n)
        first = (program_ids(item) or [None])[0]
        program = next((p for p in self.programs if p["id"] == first), self.programs[0])
        return {
            "id": f"{learner['externalId']}~{item['contentType']}~{item['contentId']}",
            **learner, "programId": program["id"],
            "contentId": item["contentId"], "contentType": item["contentType"],
            "courseType": course_type,
            "contentName": item.get("name", ""), "contentSlug": item["slug"],
            "partnerNames": partner_names(item),
            "programName": program["name"], "programSlug": program["_slug"],
            "membershipState": "DELETED_MEMBER" if deleted else "MEMBER",
            "enrolledAt": enrolled, "updatedAt": DATA_NOW_MS,
            "deletedAt": DATA_NOW_MS - DAY_MS if deleted else None,
            "contractId": coursera_id(s.seed, "contract"), "contractName": "Acme 2026 Licenses",
            "collectionId": None, "collectionName": None,
        }

    def enroll(self, external_id: str, content_id: str, at_ms: int) -> dict[str, Any] | None:
        """A new enrollment of a learner in a content, not started (None: no such learner or
        content, or the learner is enrolled already)."""
        s = self.spec
        learner_n = next((n for n in range(s.learners) if self.learner(n)["externalId"] == external_id), None)
        item = self.content_by_id(content_id)
        if learner_n is None or item is None or self.row_index(external_id, content_id) is not None:
            return None
        row = {**self._row_fields(learner_n, item, at_ms, False, "Course"), "updatedAt": at_ms, **_NOT_STARTED}
        if item["contentType"] == "Specialization":
            row.pop("overallProgress")
            row["numCoursesInSpecialization"] = 2
        self.late_rows.append(row)
        self.version += 1
        return row

    def row_count(self) -> int:
        return self.spec.enrollments + len(self.late_rows)

    def row_index(self, external_id: str, content_id: str) -> int | None:
        """The row of one learner in one content, or None (linear in learners, not rows)."""
        s = self.spec
        for k, late in enumerate(self.late_rows):
            if late["externalId"] == external_id and late["contentId"] == content_id:
                return s.enrollments + k
        for learner_n in range(s.learners):
            if self.learner(learner_n)["externalId"] != external_id:
                continue
            content_n = next((n for n, c in enumerate(self.contents[: s.contents])
                              if c["contentId"] == content_id), None)
            if content_n is None:
                return None
            k = (content_n - learner_n * 7) % s.contents
            i = k * s.learners + learner_n
            return i if i < s.enrollments else None
        return None

    def select_plain(self, *, include_s12n: bool, include_deleted: bool) -> array | None:
        """Row indices for the usual filters, computed from learner and content alone (fast).

        None when overrides could change a row's membership or type (use :meth:`select_rows`).
        """
        if self.progress_overrides or self.late_rows:
            return None
        s = self.spec
        s12n = [c["contentType"] == "Specialization" for c in self.contents[: s.contents]]
        every = s.deleted_member_every
        out = array("q")
        for i in range(s.enrollments):
            learner, content = self._row_keys(i)
            if not include_s12n and s12n[content]:
                continue
            if not include_deleted and every and learner % every == every - 1:
                continue
            out.append(i)
        return out

    def select_rows(self, keep: Callable[[dict[str, Any]], bool]) -> array:
        """Indices of the rows ``keep`` accepts, in report order (computed once per filter)."""
        out = array("q")
        for i in range(self.row_count()):
            if keep(self.row(i)):
                out.append(i)
        return out
