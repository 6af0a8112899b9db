// Swagger UI in a real headless browser (Debian's chromium, driven by playwright-core), as a
// person uses it: Authorize with the demo's token, then "Try it out" + "Execute" on every
// operation of the document. Each Execute must send the request of *that* operation (method and
// path), and GET/POST /v1/snapshots must succeed. Nothing may be fetched from another host (no
// online validator, no CDN). Run by `.ci/clients` against a running `snapgate demo`:
//   node tests/clients/swagger_ui_check.mjs target/swagger-ui.png

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const url = process.env.SNAPGATE_URL;
const token = process.env.SNAPGATE_TOKEN;
const screenshot = process.argv[2] ?? "target/swagger-ui.png";
const koyeb = process.env.SNAPGATE_DEMO_KOYEB_ACCOUNT;
const koyebSource = process.env.SNAPGATE_DEMO_KOYEB_SOURCES.split(",")[0];
if (!url || !token || !koyeb) throw new Error("run with the demo's export lines in the environment");

// Harmless values for path parameters: operations other than the two listed snapshot ones only
// need to reach the right route (a 404 for an unknown id is fine).
const pathValues = {
  account: "swagger-ui-check",
  snapshot: "swagger-ui-check:1",
  operation: "op_swagger_ui_check",
  name: "swagger-ui-check",
  webhook: "wh_00000000000000000000000000000000",
  delivery: "dlv_00000000000000000000000000000000",
  policy: "pol_00000000000000000000000000000000",
};
const mustSucceed = {
  listSnapshots: { status: [200] },
  createSnapshot: {
    status: [202],
    body: { account: koyeb, source_id: koyebSource, name: "from-swagger-ui" },
  },
  // The prefilled example body is one the server accepts (409 once it exists).
  createAccount: { status: [201, 409] },
  // The prefilled example endpoint is one the demo accepts (it allows any target).
  createWebhook: { status: [201] },
  listWebhooks: { status: [200] },
  createPolicy: {
    status: [201],
    body: { account: koyeb, source_ids: [koyebSource], schedule: { interval_secs: 3600 } },
  },
  listPolicies: { status: [200] },
};

const origin = new URL(url).origin;
const userDataDir = mkdtempSync(join(tmpdir(), "snapgate-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 1000 },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const failures = [];
const foreign = [];
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith("data:")) foreign.push(u);
  });
  const doc = await (await fetch(`${url}/openapi.json`)).json();

  await page.goto(`${url}/docs/`);
  await page.waitForSelector(".swagger-ui .info .title");
  const title = await page.textContent(".swagger-ui .info .title");
  if (!title.includes("snapgate")) failures.push(`title: ${title}`);
  if (await page.locator(".swagger-ui .errors-wrapper").count()) {
    failures.push(`error banner: ${await page.textContent(".swagger-ui .errors-wrapper")}`);
  }

  // Authorize with the bearer token.
  await page.click(".auth-wrapper button.authorize");
  await page.fill(".modal-ux input", token);
  await page.click(".modal-ux .auth-btn-wrapper button.authorize");
  await page.click(".modal-ux button.btn-done");

  let tried = 0;
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const id = op.operationId;
      const tag = op.tags[0];
      const block = page.locator(`#operations-${tag}-${id}`);
      await block.locator(".opblock-summary").first().click();
      // The docs open with "Try it out" already on (tryItOutEnabled); press it where it is not.
      const tryOut = block.locator("button.try-out__btn", { hasText: "Try it out" });
      if (await tryOut.count()) await tryOut.click();
      for (const p of op.parameters ?? []) {
        if (p.in !== "path") continue;
        await block
          .locator(`tr[data-param-name="${p.name}"][data-param-in="path"] input`)
          .fill(pathValues[p.name]);
      }
      const expected = mustSucceed[id];
      if (expected?.body) {
        await block.locator("textarea.body-param__text").fill(JSON.stringify(expected.body));
      }
      const pattern = new RegExp(
        "^" + path.replace(/\{[^}]+\}/g, "[^/?]+") + "(\\?.*)?$",
      );
      const sent = page.waitForResponse(
        (r) => r.url().startsWith(origin) && !r.url().includes("/openapi.json") && !r.url().includes("/docs/"),
        { timeout: 15000 },
      );
      await block.locator("button.execute").click();
      const response = await sent.catch(() => null);
      if (!response) {
        await page.screenshot({ path: `${screenshot}.${id}.failed.png` });
        failures.push(`${id}: Execute sent no request (expected ${method.toUpperCase()} ${path})`);
        console.log(`FAIL ${id}: Execute sent no request`);
        await block.locator(".opblock-summary").first().click();
        continue;
      }
      const request = response.request();
      const requestPath = new URL(request.url()).pathname + new URL(request.url()).search;
      const ok =
        request.method() === method.toUpperCase() &&
        pattern.test(requestPath) &&
        (!expected || expected.status.includes(response.status()));
      const line = `${id}: ${request.method()} ${requestPath} -> ${response.status()}`;
      console.log(`${ok ? "ok  " : "FAIL"} ${line}`);
      if (!ok) failures.push(`${line} (expected ${method.toUpperCase()} ${path}${expected ? ` ${expected.status}` : ""})`);
      tried += 1;
      // Collapse again so the page stays short and the next block is in view.
      await block.locator(".opblock-summary").first().click();
    }
  }
  // The screenshot shows the list call's result, expanded.
  const list = page.locator("#operations-snapshots-listSnapshots");
  await list.locator(".opblock-summary").first().click();
  await list.locator("button.execute").click();
  await list.locator(".responses-table .response .microlight").first().waitFor();
  await list.scrollIntoViewIfNeeded();
  await page.screenshot({ path: screenshot, fullPage: false });
  console.log(`tried ${tried} operations; screenshot: ${screenshot}`);
  if (tried !== Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0)) {
    failures.push("not every operation was tried");
  }
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
if (foreign.length) failures.push(`requests to other hosts: ${[...new Set(foreign)].join(", ")}`);
if (failures.length) {
  console.error(`swagger ui check failed:\n  ${failures.join("\n  ")}`);
  process.exit(1);
}
console.log("swagger ui check: ok");
