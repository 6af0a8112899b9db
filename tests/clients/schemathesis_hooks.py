"""Schemathesis hooks for `.ci/clients`: two checks that judge snapgate's answers more exactly
than the built-in ones they stand in for (see schemathesis.toml for where and why)."""

import re

import schemathesis

# CPython 3.11.7 (this machine's Python) can raise `SystemError: AST constructor recursion depth
# mismatch` from `ast.parse` when Hypothesis parses Schemathesis' own (4,000-line) source just to
# name a lambda in a strategy's repr. Only that name is lost here: fall back to a placeholder
# instead of aborting the operation's test run.
try:
    from hypothesis.internal import lambda_sources as _lambda_sources

    _describe_lambda = _lambda_sources._lambda_description

    def _lambda_description_or_placeholder(f):
        try:
            return _describe_lambda(f)
        except SystemError:
            return "lambda: <source not parsed>"

    _lambda_sources._lambda_description = _lambda_description_or_placeholder
except (ImportError, AttributeError):
    pass

# 5xx answers that report a provider's verdict, as DESIGN.md §3 maps them. The accounts
# Schemathesis creates hold made-up credentials, so the simulated vendors refuse them (502
# provider_auth_failed); capabilities differ per provider (501 unsupported_operation).
VENDOR_VERDICTS = {
    501: {"unsupported_operation"},
    502: {"provider_auth_failed", "upstream_error", "account_failed"},
    503: {"provider_unavailable"},
    504: {"upstream_timeout", "deadline_exceeded"},
}

# Where a schema-valid request may still be refused with 422: rules of the account's provider,
# which the request does not name (its snapshot or account id does).
PROVIDER_DEPENDENT = {
    "createSnapshot",
    "updateSnapshot",
    "deleteSnapshot",
    "restoreSnapshot",
    "createImageFromSnapshot",
    "getSnapshot",
    "checkSnapshotName",
    "updateAccount",
}


# Rules of a policy (createPolicy, updatePolicy) that a schema cannot state: a cron expression
# croner reads, a known IANA time zone, a restic duration, placeholders of the name template,
# source ids without control characters or repeats, and an account that exists for this tenant.
# Refused with 422 `invalid_field` naming one of these fields, and nothing else.
POLICY_RULES = {"createPolicy", "updatePolicy"}
POLICY_FIELDS = {
    "account",
    "schedule.cron",
    "schedule.time_zone",
    "retention.keep_within",
    "name_template",
    "source_ids",
}


def _path_is_valid(case):
    """Whether the path parameters really match their schema. Stateful runs fill them from
    inferred links, and a link to a null member (an operation's `snapshot_id` before it is known)
    sends `None`: no longer the schema-valid request the case is marked as."""
    for p in case.operation.definition.raw.get("parameters", []):
        if p.get("in") != "path":
            continue
        pattern = (p.get("schema") or {}).get("pattern")
        value = str((case.path_parameters or {}).get(p.get("name"), ""))
        if pattern and (not re.search(pattern, value) or "\n" in value):
            return False
    return True


def _problem(response):
    assert response.headers.get("content-type", [""])[0].startswith(
        "application/problem+json"
    ), f"{response.status_code} without a problem+json body"
    return response.json()


@schemathesis.check
def server_errors_are_vendor_verdicts(ctx, response, case):
    """Stands in for not_a_server_error: a 5xx passes only as a documented vendor verdict."""
    status = response.status_code
    if status < 500:
        return None
    problem = _problem(response)
    code = problem.get("code")
    allowed = VENDOR_VERDICTS.get(status, set())
    assert code in allowed, f"{status} {code}: not a vendor verdict ({problem.get('detail')})"
    detail = problem.get("detail", "")
    assert "could not build" not in detail, f"the gateway built an invalid vendor request: {detail}"
    return None


@schemathesis.check
def valid_requests_are_refused_only_by_providers(ctx, response, case):
    """Stands in for positive_data_acceptance on provider-dependent routes (where it allows 400
    and 422): a schema-valid request may be refused only
    - by a rule of the account's provider (422 carrying `provider`, or naming a `credentials.` /
      `settings.` field),
    - by the vendor itself (400 `upstream_rejected`, DESIGN.md §3: e.g. Hostinger's "the virtual
      machine is locked" while an earlier action runs),
    - or because the generator sent one `Idempotency-Key` with two different requests (422
      `idempotency_key_reused`, as the IETF Idempotency-Key draft says)."""
    meta = case.meta
    status = response.status_code
    if status not in (400, 422) or meta is None or not meta.generation.mode.is_positive:
        return None
    operation_id = case.operation.definition.raw.get("operationId")
    if operation_id in POLICY_RULES and status == 422:
        problem = _problem(response)
        assert problem.get("code") == "invalid_field" and problem.get("field") in POLICY_FIELDS, (
            f"422 that is not a policy rule: {problem}"
        )
        return None
    assert operation_id in PROVIDER_DEPENDENT, f"{operation_id}: schema-valid request refused"
    problem = _problem(response)
    code = problem.get("code")
    if status == 400:
        if code == "invalid_path" and not _path_is_valid(case):
            return None
        assert code == "upstream_rejected", f"schema-valid request refused: {problem}"
        return None
    if code == "idempotency_key_reused":
        return None
    field = problem.get("field") or ""
    by_provider = problem.get("provider") is not None or field.startswith(("credentials.", "settings."))
    assert by_provider, f"422 that is not a provider rule: {problem}"
    return None


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """`page_token` is an opaque cursor signed by the server, bound to the filters, and the event
    log's `after` a cursor sealed for its tenant: no generator can make a valid one (a made-up
    one is rightly 400). Paging is tested in tests/it/listing.rs, following in tests/it/events.rs.
    So a schema-valid case loses them. A negative case keeps them: the made-up cursor is refused
    (400) as a negative case should be, and removing it could leave only a mutation that is valid
    once serialized (an `account` of integer 0 is the query string `account=0`, a valid id)."""
    meta = case.meta
    if meta is not None and not meta.generation.mode.is_positive:
        return
    if case.query and "page_token" in case.query:
        del case.query["page_token"]
    if case.query and "after" in case.query and case.operation.definition.raw.get("operationId") == "listEvents":
        del case.query["after"]
