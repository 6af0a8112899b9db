// A program written against the client @hey-api/openapi-ts generates from openapi/openapi.json
// (its bundled Fetch API client, `@hey-api/client-fetch`), compiled with `tsc --strict` together
// with it and run by node against a running `snapgate demo` (its `export` lines in the
// environment). `.ci/clients` copies it next to the generated `client/`.
//
// A round trip through the generated SDK functions and types: the providers, one demo account's
// snapshots, a create (202 and its operation), the operation long-polled with `wait` until it
// has succeeded, the snapshot it made, and a 404 read back as a problem with its `code`.
import {
  createSnapshot,
  getOperation,
  getSnapshot,
  listProviders,
  listSnapshots,
  type Operation,
  type Problem,
  type ProviderKind,
} from "./client";
import { createClient, createConfig } from "./client/client";

// node's globals, without @types/node.
declare const process: {
  env: Record<string, string | undefined>;
  exit(code: number): never;
};

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (source the demo's export lines)`);
  return value;
}

const account = env("SNAPGATE_DEMO_KOYEB_ACCOUNT");
const source = env("SNAPGATE_DEMO_KOYEB_SOURCES").split(",")[0];
// Every call below names this client: nothing relies on the generated module-level default.
// `auth` answers the bearer scheme each operation declares in its `security`.
const client = createClient(
  createConfig({ baseUrl: env("SNAPGATE_URL"), auth: env("SNAPGATE_TOKEN") }),
);

function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new Error(what);
}

async function main(): Promise<void> {
  const providers = await listProviders({ client, throwOnError: true });
  const names: ProviderKind[] = providers.data.items.map((p) => p.name).sort();
  for (const kind of ["hostinger", "hyperstack", "koyeb", "oktawave", "syminet"] as const) {
    check(names.includes(kind), `provider ${kind} missing: ${names.join(", ")}`);
  }
  console.log(`providers: ${names.join(", ")}`);

  // `account` is an array: the client must send it as a repeated query parameter.
  const page = await listSnapshots({ client, query: { account: [account] }, throwOnError: true });
  check(page.data.errors.length === 0, `errors: ${JSON.stringify(page.data.errors)}`);
  check(page.data.items.every((s) => s.account === account), "a snapshot of another account");
  console.log(`listed ${page.data.items.length} snapshots of ${account}`);

  const name = `heyapi-${Date.now()}`;
  const accepted = await createSnapshot({
    client,
    body: { account, source_id: source, name },
    throwOnError: true,
  });
  check(accepted.response.status === 202, `create answered ${accepted.response.status}`);
  let operation: Operation = accepted.data.operation;
  check(operation.kind === "create", `operation kind ${operation.kind}`);
  console.log(`create accepted: operation ${operation.id} ${operation.state}`);

  // Long-poll: each read waits up to 10 s for a change; the demo's simulated clouds finish a
  // create within seconds.
  for (let round = 0; round < 12 && operation.state !== "succeeded"; round++) {
    check(operation.state !== "failed", `operation failed: ${JSON.stringify(operation.error)}`);
    const read = await getOperation({
      client,
      path: { operation: operation.id },
      query: { wait: 10 },
      throwOnError: true,
    });
    operation = read.data;
  }
  check(operation.state === "succeeded", `operation still ${operation.state}`);
  const snapshotId = operation.snapshot_id;
  check(typeof snapshotId === "string", "a succeeded create names its snapshot");
  console.log(`operation ${operation.id}: ${operation.state}, snapshot ${snapshotId}`);

  const snapshot = await getSnapshot({ client, path: { snapshot: snapshotId }, throwOnError: true });
  check(snapshot.data.id === snapshotId, `read back ${snapshot.data.id}`);
  check(snapshot.data.name === name, `name ${snapshot.data.name}`);
  check(snapshot.data.account === account, `account ${snapshot.data.account}`);
  console.log(`snapshot ${snapshot.data.id}: ${snapshot.data.status}`);

  // Without throwOnError the result is { data } or { error }, the error typed from the
  // document's error responses (a Problem).
  const missing = await getSnapshot({
    client,
    path: { snapshot: `${account}:heyapi-no-such-snapshot` },
  });
  check(missing.response.status === 404, `status ${missing.response.status}`);
  check(missing.data === undefined, "a 404 has no data");
  const problem: Problem | undefined = missing.error;
  check(problem !== undefined, "a 404 has an error");
  check(problem.code === "snapshot_not_found", `code ${problem.code}`);
  check(problem.status === 404, `problem status ${problem.status}`);
  console.log(`missing snapshot: ${problem.status} ${problem.code}`);

  console.log("@hey-api/openapi-ts client check: ok");
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
