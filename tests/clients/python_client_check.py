"""A user's program written against the Python client generated from openapi/openapi.json.

Run by `.ci/clients` against a running `snapgate demo` (its `export` lines in the environment)
with the client generated into `target/clients/python/snapgate_client`. Every call goes through
the generated code, so a route the generator skipped, a status it does not know or a problem
body it cannot type fails here.
"""

import os
import sys
import time
import uuid

import httpx

sys.path.insert(0, sys.argv[1])

from snapgate_client import AuthenticatedClient  # noqa: E402
from snapgate_client.api.operations import get_operation  # noqa: E402
from snapgate_client.api.providers import list_providers  # noqa: E402
from snapgate_client.api.snapshots import (  # noqa: E402
    create_snapshot,
    delete_snapshot,
    get_snapshot,
    list_snapshots,
    update_snapshot,
)
from snapgate_client.api.webhooks import (  # noqa: E402
    create_webhook,
    delete_webhook,
    list_webhook_deliveries,
    test_webhook,
)
from snapgate_client.models import (  # noqa: E402
    Accepted,
    CreateWebhook,
    Delivery,
    DeliveryPage,
    WebhookWithSecret,
    CreateSnapshot,
    OperationState,
    Problem,
    ProviderKind,
    ProviderList,
    Snapshot,
    SnapshotPage,
    SnapshotStatus,
    UpdateSnapshot,
)

URL = os.environ["SNAPGATE_URL"]
SIMULATOR = os.environ["SNAPGATE_DEMO_SIMULATOR_URL"]
ACCOUNT = os.environ["SNAPGATE_DEMO_KOYEB_ACCOUNT"]
SOURCE = os.environ["SNAPGATE_DEMO_KOYEB_SOURCES"].split(",")[0]

client = AuthenticatedClient(base_url=URL, token=os.environ["SNAPGATE_TOKEN"], raise_on_unexpected_status=True)


def expect(value, kind, what):
    if not isinstance(value, kind):
        raise AssertionError(f"{what}: expected {kind.__name__}, got {value!r}")
    return value


def settle(operation_id):
    """Polls an operation until it finishes (the demo's simulated work takes a few seconds)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        op = get_operation.sync(operation_id, client=client)
        if op.state in (OperationState.SUCCEEDED, OperationState.FAILED):
            assert op.state == OperationState.SUCCEEDED, f"operation failed: {op.error}"
            return op
        time.sleep(0.5)
    raise AssertionError(f"operation {operation_id} did not finish in 60 s")


# Providers.
providers = expect(list_providers.sync(client=client), ProviderList, "list providers")
assert {p.name for p in providers.items} == set(ProviderKind), providers
print(f"providers: {', '.join(sorted(p.name.value for p in providers.items))}")

# The merged list, with filters.
page = expect(
    list_snapshots.sync(
        client=client,
        provider=[ProviderKind.KOYEB],
        status=[SnapshotStatus.AVAILABLE],
        page_size=5,
    ),
    SnapshotPage,
    "list snapshots",
)
assert page.items, f"the demo has available Koyeb snapshots: {page.errors}"
assert all(s.provider == ProviderKind.KOYEB and s.status == SnapshotStatus.AVAILABLE for s in page.items)
assert all(isinstance(e, Problem) for e in page.errors)
print(f"listed {len(page.items)} available koyeb snapshots")

# Create with an Idempotency-Key: the retry replays the first answer.
key = f"client-check-{uuid.uuid4()}"
name = f"client-check-{uuid.uuid4().hex[:8]}"
body = CreateSnapshot(account=ACCOUNT, source_id=SOURCE, name=name)
first = create_snapshot.sync_detailed(client=client, body=body, idempotency_key=key)
assert first.status_code == 202, first
accepted = expect(first.parsed, Accepted, "create")
retry = expect(create_snapshot.sync(client=client, body=body, idempotency_key=key), Accepted, "retry")
assert retry.operation.id == accepted.operation.id, "the retry replays the same operation"
location = first.headers["location"]
assert location.endswith(accepted.operation.id), location
op = settle(accepted.operation.id)
snapshot_id = op.snapshot_id
assert isinstance(snapshot_id, str) and snapshot_id.startswith(f"{ACCOUNT}:"), op
print(f"created {snapshot_id} (operation {op.id})")

# Get, rename, delete.
snap = expect(get_snapshot.sync(snapshot_id, client=client), Snapshot, "get")
assert snap.name == name and snap.status == SnapshotStatus.AVAILABLE, snap
renamed = expect(
    update_snapshot.sync(snapshot_id, client=client, body=UpdateSnapshot(name=name + "-renamed")),
    Accepted,
    "rename",
)
settle(renamed.operation.id)
snap = expect(get_snapshot.sync(snapshot_id, client=client), Snapshot, "get after rename")
assert snap.name == name + "-renamed", snap
deleted = expect(
    delete_snapshot.sync(snapshot_id, client=client, idempotency_key=f"delete-{key}"), Accepted, "delete"
)
settle(deleted.operation.id)
print(f"renamed and deleted {snapshot_id}")

# A 404 arrives as a typed Problem.
gone = get_snapshot.sync_detailed(snapshot_id, client=client)
assert gone.status_code == 404, gone
problem = expect(gone.parsed, Problem, "404")
assert problem.code == "snapshot_not_found" and problem.status == 404, problem
print(f"404 -> Problem(code={problem.code!r})")

# A vendor 429 arrives as a typed Problem with Retry-After (the simulator's fault injection).
fault = httpx.put(f"{SIMULATOR}/faults/koyeb", json={"rate_limit_retry_after": 1, "times": 1})
assert fault.status_code == 204, fault.text
limited = get_snapshot.sync_detailed(page.items[0].id, client=client)
assert limited.status_code == 429, limited
problem = expect(limited.parsed, Problem, "429")
assert problem.code == "provider_rate_limited" and problem.retryable is True, problem
assert limited.headers["retry-after"] == "1", limited.headers
print(f"429 -> Problem(code={problem.code!r}), Retry-After: {limited.headers['retry-after']}")

# A webhook through the generated client: created with its secret, tested, its log typed.
hook = expect(
    create_webhook.sync(client=client, body=CreateWebhook(url="http://127.0.0.1:9/python-client")),
    WebhookWithSecret,
    "create webhook",
)
assert hook.secret.startswith("whsec_") and hook.enabled, hook
queued = expect(test_webhook.sync(hook.id, client=client), Delivery, "test webhook")
assert queued.event_type == "webhook.test", queued
log = expect(list_webhook_deliveries.sync(hook.id, client=client), DeliveryPage, "deliveries")
assert [d.id for d in log.items] == [queued.id], log
assert delete_webhook.sync_detailed(hook.id, client=client).status_code == 204
print(f"webhook {hook.id}: created, tested ({queued.id}), deleted")
print("python client check: ok")
