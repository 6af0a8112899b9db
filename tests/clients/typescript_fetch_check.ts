// A program written against the client openapi-generator's `typescript-fetch` generator makes
// from openapi/openapi.json, compiled with `tsc --strict` together with it and run by node
// against a running `snapgate demo` (its `export` lines in the environment). `.ci/clients`
// copies it next to the generated `client/`.
import {
  Configuration,
  ProviderKind,
  ProvidersApi,
  ResponseError,
  SnapshotsApi,
  WebhooksApi,
} from "./client";

// node's globals, without @types/node.
declare const process: {
  env: Record<string, string | undefined>;
  exit(code: number): never;
};

const url = process.env.SNAPGATE_URL as string;
const token = process.env.SNAPGATE_TOKEN as string;
const account = process.env.SNAPGATE_DEMO_KOYEB_ACCOUNT as string;
const config = new Configuration({ basePath: url, accessToken: async () => token });

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(what);
}

async function main(): Promise<void> {
  const providers = await new ProvidersApi(config).listProviders();
  const names: ProviderKind[] = providers.items.map((p) => p.name).sort();
  for (const kind of ["hostinger", "hyperstack", "koyeb", "oktawave", "syminet"]) {
    check(names.includes(kind as ProviderKind), `provider ${kind} missing: ${names}`);
  }
  console.log(`providers: ${names.join(", ")}`);

  const page = await new SnapshotsApi(config).listSnapshots({ account: [account] });
  check(page.errors.length === 0, `errors: ${JSON.stringify(page.errors)}`);
  check(page.items.every((s) => s.account === account), "a snapshot of another account");
  console.log(`listed ${page.items.length} snapshots of ${account}`);

  const hooks = new WebhooksApi(config);
  const made = await hooks.createWebhook({
    createWebhook: { url: `http://127.0.0.1:9/ts-${Date.now()}` },
  });
  check(made.secret.startsWith("whsec_"), "the secret is shown once, at creation");
  check((await hooks.getWebhook({ webhook: made.id })).url === made.url, "read back");
  await hooks.deleteWebhook({ webhook: made.id });
  try {
    await hooks.getWebhook({ webhook: made.id });
    throw new Error("a deleted webhook is still there");
  } catch (e) {
    if (!(e instanceof ResponseError)) throw e;
    check(e.response.status === 404, `status ${e.response.status}`);
    const problem = (await e.response.json()) as { code: string };
    check(problem.code === "webhook_not_found", `code ${problem.code}`);
    console.log(`webhook ${made.id}: created, read, deleted, then ${problem.code}`);
  }
  console.log("typescript-fetch client check: ok");
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
