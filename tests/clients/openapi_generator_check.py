"""A program written against the client openapi-generator's `python` generator makes from
openapi/openapi.json (the generator most platform teams already run).

Run by `.ci/clients` against a running `snapgate demo` (its `export` lines in the environment)
with the client generated into `target/clients/openapi-generator-python` as package
`snapgate_gen`. The webhook management API and the events snapgate sends to receivers must
both survive generation (they once shared a tag, and one file overwrote the other), and every
call below goes through the generated code and its typed models.
"""

import os
import sys
import uuid

sys.path.insert(0, sys.argv[1])

import snapgate_gen  # noqa: E402
from snapgate_gen.api.providers_api import ProvidersApi  # noqa: E402
from snapgate_gen.api.snapshots_api import SnapshotsApi  # noqa: E402
from snapgate_gen.api.webhooks_api import WebhooksApi  # noqa: E402
from snapgate_gen.exceptions import NotFoundException  # noqa: E402
from snapgate_gen.models.create_webhook import CreateWebhook  # noqa: E402
from snapgate_gen.models.problem import Problem  # noqa: E402

URL = os.environ["SNAPGATE_URL"]
ACCOUNT = os.environ["SNAPGATE_DEMO_KOYEB_ACCOUNT"]

config = snapgate_gen.Configuration(host=URL, access_token=os.environ["SNAPGATE_TOKEN"])
with snapgate_gen.ApiClient(config) as api:
    kinds = {p.name.value for p in ProvidersApi(api).list_providers().items}
    assert {"hostinger", "hyperstack", "koyeb", "oktawave", "syminet"} <= kinds, kinds
    print("providers:", ", ".join(sorted(kinds)))

    page = SnapshotsApi(api).list_snapshots(account=[ACCOUNT])
    assert page.errors == [], page.errors
    assert all(s.account == ACCOUNT for s in page.items)
    print(f"listed {len(page.items)} snapshots of {ACCOUNT}")

    hooks = WebhooksApi(api)
    made = hooks.create_webhook(CreateWebhook(url=f"http://127.0.0.1:9/{uuid.uuid4().hex}"))
    assert made.secret.startswith("whsec_"), "the secret is shown once, at creation"
    assert hooks.get_webhook(made.id).url == made.url
    hooks.delete_webhook(made.id)
    try:
        hooks.get_webhook(made.id)
        raise AssertionError("a deleted webhook is still there")
    except NotFoundException as e:
        problem = Problem.from_json(e.body)
        assert problem.code == "webhook_not_found", problem
    print(f"webhook {made.id}: created, read, deleted, then {problem.code}")

print("openapi-generator python client check: ok")
