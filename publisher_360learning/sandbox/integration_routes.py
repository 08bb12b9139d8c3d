"""The 360Learning sandbox's integration routes: integrations (list, create, edit, delete), an
integration's course by external id, bulk submissions (upsert, archive, stats) and bulk
operations with their results.

Mixed into :class:`publisher_360learning.sandbox.api.Api` (``sb``: the sandbox, ``c()``: its company,
``fault``: the fault rule of the request being served)."""
from __future__ import annotations

from urllib.parse import unquote

from .. import contract
from .errors import Problem


class IntegrationRoutes:
    """``/api/v2/integrations…`` and ``/api/v2/bulk/…``."""

    def integrations(self, path, q, body):
        return self._list("integrations", path, q, lambda: self.c().integrations.values())

    def create_integration(self, path, q, body):
        return 201, self.c().create_integration(body), {}

    def patch_integration(self, path, q, body, iid):
        integration = self.c().integration(iid)
        editable = {"externalPlatform", "authorId", "defaultCompletion", "defaultProgress", "noGroupPropagation",
                    "externalPlatformLogoUrl", "externalPlatformUnicolorLogoUrl"}
        if not isinstance(body, dict) or set(body) - editable:
            raise Problem(400, "invalidInput", f"only {', '.join(sorted(editable))} can change")
        integration.update(body)
        return 200, {k: v for k, v in integration.items() if k != "_id"}, {}

    def delete_integration(self, path, q, body, iid):
        self.c().integration(iid)
        company = self.c()
        for (owner, _ext), cid in company.by_external.items():
            if owner == iid:
                company.courses[cid]["status"] = "archived"
        del company.integrations[iid]
        return 204, None, {}

    def external_course(self, path, q, body, iid, external_id):
        """404 integrationNotFound for an integration that is gone; 400 courseNotBelongToIntegration
        for a course it does not hold (the only 404 is the integration's)."""
        company = self.c()
        company.integration(iid)
        external_id = unquote(external_id)        # a path parameter: ``a%2F1`` is the course ``a/1``
        cid = company.by_external.get((iid, external_id))
        if cid is None:
            raise Problem(400, contract.COURSE_NOT_IN_INTEGRATION, f"No course {external_id} in integration {iid}")
        return 200, {**company.external_fields[cid], "courseId": cid,
                     "authorId": company.courses[cid]["authorId"], "translations": []}, {}

    def bulk(self, kind: str):
        def submit(path, q, body, iid):
            p = self.fault.params if self.fault else {}
            action = self.fault.action if self.fault else None
            op = self.c().submit(
                kind, iid, body,
                hold_queued_s=float(p.get("hold_s", 2.0)) if action == "op_stuck" else 0.0,
                run_s=float(p.get("run_s", 2.0)) if action == "op_slow" else None,
                fail_with=str(p.get("message", "Internal error while running the operation"))
                if action == "op_error" else None,
                fail_items=[str(p["external_id"])] if action == "item_error" and p.get("external_id") else ())
            return 202, None, {"Location": f"{self.sb.url}/api/v2/bulk/operations/{op.id}"}
        return submit

    def operations(self, path, q, body):
        return self._list("operations", path, q, lambda: [o.to_json() for o in self.c().operations.values()])

    def _op(self, oid):
        op = self.c().operations.get(oid)
        if op is None:
            raise Problem(404, "bulkOperationNotFound", f"No bulk operation {oid}")
        return op

    def operation(self, path, q, body, oid):
        return 200, self._op(oid).to_json(), {}

    def results(self, path, q, body, oid):
        op = self._op(oid)
        if op.status != "completed":
            raise Problem(400, contract.OP_NOT_RUN, "The bulk operation has not run yet")
        return 200, op.results, {}
