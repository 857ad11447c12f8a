// The steward console in a real browser: Debian's Chromium driven by
// playwright-core (both installed by scripts/setup-peers.sh), against a
// `ctxplane serve` on the example organisation started by
// tests/console_browser.rs.
//
//   node console_browser.cjs PLAYWRIGHT_CORE_DIR CHROMIUM BASE_URL OUT_DIR
//
// Prints one line per check and "N passed, 0 failed" at the end; exits 1
// on the first failure. Screenshots of every page go to OUT_DIR.
"use strict";
const http = require("http");
const path = require("path");
const fs = require("fs");

const [pwDir, chromiumPath, base, outDir] = process.argv.slice(2);
const { chromium } = require(pwDir);

const TOKENS = {
  steward: "demo-steward-token",
  agent: "demo-agent-platform-token",
  ci: "demo-ci-token",
  developer: "demo-dev-token",
};
// A description that would run script if it were not escaped.
const MARKUP = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">';

let passed = 0;
function ok(cond, what) {
  if (!cond) {
    console.log(`FAIL ${what}`);
    console.log(`${passed} passed, 1 failed`);
    process.exit(1);
  }
  passed += 1;
  console.log(`ok   ${what}`);
}

/// The HTTP API with a bearer token (to act as an agent or change things
/// behind the page's back).
function api(method, p, token, body) {
  return new Promise((resolve, reject) => {
    const data = body ? JSON.stringify(body) : "";
    const req = http.request(base + p, {
      method,
      headers: Object.assign(
        { Authorization: `Bearer ${token}` },
        body ? { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data) } : {},
      ),
    }, (res) => {
      let text = "";
      res.on("data", (c) => { text += c; });
      res.on("end", () => resolve({ status: res.statusCode, text }));
    });
    req.on("error", reject);
    req.end(data);
  });
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(outDir, `${name}.png`), fullPage: true });
}

async function unlabelled(page) {
  return page.evaluate(() => Array.from(document.querySelectorAll("input, select, textarea"))
    .filter((el) => el.type !== "hidden" && (!el.labels || el.labels.length === 0))
    .map((el) => el.name || el.id));
}

async function signIn(page, token) {
  await page.goto(`${base}/console`);
  // Keyboard only: tab to the token field, type, press Enter.
  for (let i = 0; i < 6; i++) {
    await page.keyboard.press("Tab");
    if (await page.evaluate(() => document.activeElement && document.activeElement.id === "token")) break;
  }
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  ok(focused === "token", "the token field is reachable with the keyboard");
  await page.keyboard.type(token);
  const [resp] = await Promise.all([
    page.waitForNavigation(),
    page.keyboard.press("Enter"),
  ]);
  return resp;
}

async function main() {
  fs.mkdirSync(outDir, { recursive: true });
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const csp = [];
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("console", (m) => { if (/Content Security Policy|Refused to/.test(m.text())) csp.push(m.text()); });
  page.on("dialog", (d) => d.accept());

  // --- Agents and CI are refused at sign-in.
  for (const role of ["agent", "ci"]) {
    const r = await signIn(page, TOKENS[role]);
    ok(r.status() === 403, `an ${role} token is refused at sign-in (403)`);
    const told = await page.textContent("body");
    ok(told.includes("cannot sign in"), `the ${role} is told why (${told.slice(0, 300)})`);
    ok((await context.cookies()).every((c) => c.name !== "ctxplane_session"), `no session for the ${role}`);
  }
  await shot(page, "01-signin-refused");
  const bad = await signIn(page, "not-a-token");
  ok(bad.status() === 401, "an unknown token is refused (401)");

  // --- The steward signs in; the token goes nowhere but the POST body.
  const r = await signIn(page, TOKENS.steward);
  ok(r.ok() && page.url() === `${base}/console/sources`, "the steward signs in and lands on Sources");
  ok(!page.url().includes(TOKENS.steward), "the token is not in the URL");
  const cookie = (await context.cookies()).find((c) => c.name === "ctxplane_session");
  ok(cookie && cookie.httpOnly && cookie.sameSite === "Strict" && cookie.expires > 0,
    "the session cookie is HttpOnly, SameSite=Strict and expiring");
  const stored = await page.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie);
  ok(!stored.includes(TOKENS.steward) && !stored.includes("ctxplane_session"), "no token or session in page storage");
  const headers = r.headers();
  ok((headers["content-security-policy"] || "").includes("default-src 'none'") &&
     (headers["content-security-policy"] || "").includes("frame-ancestors 'none'"), "a strict CSP");
  ok((await unlabelled(page)).length === 0, `every control on Sources has a label (${await unlabelled(page)})`);
  ok((await page.locator("tr[data-source]").count()) === 4, "the four sources are listed");
  await shot(page, "02-sources");

  // --- Propose a source whose description is markup: it renders inert.
  await page.fill("#p-id", "markup-test");
  await page.selectOption("#p-kind", "dir");
  await page.fill("#p-location", "sources/platform-docs");
  await page.fill("#p-owner", "platform-enablement");
  await page.selectOption("#p-tier", "1");
  await page.fill("#p-desc", MARKUP);
  await Promise.all([page.waitForNavigation(), page.click("form[action='/console/sources'] button[type=submit]")]);
  ok(page.url().endsWith("/console/sources/markup-test"), "proposing goes to the new source's page");
  ok((await page.textContent(".flash")).includes("proposed markup-test"), "the proposal is confirmed");
  await page.goto(`${base}/console/sources`);
  const row = page.locator("tr[data-source='markup-test']");
  ok((await row.textContent()).includes(MARKUP), "the markup description shows as text");
  ok((await row.locator("img, script").count()) === 0, "no element was made from it");
  ok((await page.evaluate(() => window.__pwned)) === undefined, "no script from it ran");
  ok((await page.textContent("#waiting")).includes("markup-test"), "it waits for a decision");

  // --- Approve the proposed people-ops source and see it indexed.
  await page.click("a[href='/console/sources/people-ops']");
  await page.fill("#approve-reason", "reviewed with people-ops");
  await Promise.all([page.waitForNavigation(), page.click("form[action$='/approve'] button")]);
  ok((await page.textContent(".flash")).includes("source.approve people-ops"), "the approval is confirmed");
  const chunks = await page.textContent("#index");
  const n = Number((chunks.match(/Chunks\s*(\d+)/) || [])[1]);
  ok(n > 0, `people-ops is indexed at once (${n} chunks)`);
  ok((await page.textContent("#history")).includes("source.approve"), "its audit history shows the approval");
  await shot(page, "03-source-approved");

  // --- Ask the policy about paths.
  await page.fill("#paths", "handbook.md\nsecrets/payroll.env");
  await Promise.all([page.waitForNavigation(), page.click("form[action$='/decide'] button")]);
  const decided = await page.textContent(".flash");
  ok(decided.includes("allow") && decided.includes("deny"), "the policy answers allow and deny per path");

  // --- Revoke ledger-worker: the purge proof shows zeros.
  await page.goto(`${base}/console/sources/ledger-worker`);
  ok(Number(((await page.textContent("#index")).match(/Chunks\s*(\d+)/) || [])[1]) > 0, "ledger-worker has chunks before");
  await page.fill("#revoke-reason", "leaked customer data in fixtures");
  await Promise.all([page.waitForNavigation(), page.click("form[action$='/revoke'] button")]);
  const proof = await page.textContent(".flash");
  ok(proof.includes("Purge proof") && proof.includes("Purge verified: yes"), "the revocation shows a verified purge proof");
  const cells = await page.locator(".proof td").allTextContents();
  ok(cells.slice(0, 5).every((c) => c === "0") && cells[5] === "yes", `every store holds nothing of it (${cells})`);
  await shot(page, "04-revoke-purge-proof");

  // --- Grant an exception and see it listed.
  await page.goto(`${base}/console/exceptions`);
  ok((await unlabelled(page)).length === 0, "every control on Exceptions has a label");
  await page.selectOption("#x-source", "payments-api");
  await page.fill("#x-path", "config/ci-fixture.pem");
  await page.fill("#x-reason", "test fixture with a throwaway key");
  await page.fill("#x-days", "400");
  ok(await page.evaluate(() => !document.querySelector("#x-days").checkValidity()), "the form itself caps days at 366");
  await page.fill("#x-days", "30");
  await Promise.all([page.waitForNavigation(), page.click("form[action='/console/exceptions'] button")]);
  ok((await page.textContent(".flash")).includes("granted"), "the exception is granted");
  const granted = page.locator("#exceptions tr", { hasText: "config/ci-fixture.pem" });
  ok((await granted.count()) === 1, "it is listed");
  const gcells = await granted.locator("td").allTextContents();
  ok(gcells.includes("rivera") && gcells.includes("30"), `with its approver and 30 days left (${gcells})`);
  ok((await page.textContent("#exceptions")).includes("okafor"), "the example's exception shows who approved it");
  await shot(page, "05-exceptions");

  // --- Add a principal: the token is shown once.
  await page.goto(`${base}/console/principals`);
  ok((await unlabelled(page)).length === 0, "every control on Principals has a label");
  await page.fill("#n-name", "review-bot");
  await page.selectOption("#n-role", "agent");
  await page.selectOption("#n-tier", "1");
  await page.fill("#n-sources", "platform-docs");
  await Promise.all([page.waitForNavigation(), page.click("form[action='/console/principals'] button")]);
  const token = (await page.textContent("code.token")) || "";
  ok(/^ctx_[0-9a-f]{64}$/.test(token), "the new token is shown");
  ok((await page.textContent("tr[data-principal='review-bot']")).includes("platform-docs"), "the principal and what it may read are listed");
  await shot(page, "06-principals-token-once");
  await page.reload();
  ok(!(await page.textContent("body")).includes(token), "the token is not shown again");
  const asNew = await api("POST", "/v1/context", token, { query: "how are deploys rolled back?" });
  ok(asNew.status === 200, "the new principal's token works on the API");

  // --- Topic packages.
  await page.goto(`${base}/console/packages`);
  ok((await page.locator("tr[data-package]").count()) > 0, "topic packages are listed");
  await shot(page, "07-packages");

  // --- Live: a change made elsewhere appears without a reload.
  await page.goto(`${base}/console/sources`);
  await page.waitForTimeout(2500);
  const proposed = await api("POST", "/v1/sources", TOKENS.steward, {
    id: "live-test", kind: "dir", location: "sources/platform-docs", owner: "platform-enablement", tier: 1,
  });
  ok(proposed.status === 201, "a source is proposed over the HTTP API");
  await page.waitForSelector("tr[data-source='live-test']", { timeout: 15000 });
  ok(true, "the Sources list shows it without a reload");

  // --- Stop and resume.
  await page.click("details.danger-zone summary");
  await page.fill("#stop-reason", "incident 42: suspected leak");
  await Promise.all([page.waitForNavigation(), page.click("details.danger-zone button")]);
  ok((await page.textContent("#stop")).includes("incident 42"), "the stop and its reason are shown");
  const refused = await api("POST", "/v1/context", TOKENS.agent, { query: "retry a capture" });
  ok(refused.status === 503, "agents are refused while stopped");
  await page.goto(`${base}/console/packages`);
  ok((await page.textContent("#stop")).includes("incident 42"), "the stop stays visible on every page");
  await shot(page, "08-stopped");
  await Promise.all([page.waitForNavigation(), page.click("#stop button")]);
  ok((await page.textContent("#stop")).trim() === "", "resumed: the banner is gone");
  ok((await api("POST", "/v1/context", TOKENS.agent, { query: "retry a capture" })).status === 200, "agents are served again");

  // --- Activity: verify the chain, filter.
  await page.goto(`${base}/console/activity`);
  await Promise.all([page.waitForNavigation(), page.click("form[action='/console/activity/verify'] button")]);
  ok(/Audit chain intact: \d+ entries verified/.test(await page.textContent(".flash")), "the audit chain verifies");
  ok((await page.textContent("#queries")).includes("review-bot"), "queries are counted per principal");
  await page.fill("#f-action", "source");
  await Promise.all([page.waitForNavigation(), page.click("form.filters button")]);
  const actions = await page.locator("#entries td code").allTextContents();
  ok(actions.length > 0 && actions.every((a) => a.startsWith("source.")), `the filter keeps source.* actions (${actions.length})`);
  ok(actions.includes("source.revoke") && actions.includes("source.approve"), "the console's decisions are in the audit log");
  ok(!page.url().includes("token"), "filters are the only thing in the URL");
  await shot(page, "09-activity");

  // --- A forged cross-site form post is refused.
  const evil = http.createServer((req, res) => {
    res.setHeader("Content-Type", "text/html");
    res.end(`<form id=f method=post action="${base}/console/stop"><input name=reason value=forged></form>` +
      `<script>document.getElementById('f').submit()</script>`);
  });
  await new Promise((res) => evil.listen(0, "127.0.0.1", res));
  const evilUrl = `http://127.0.0.1:${evil.address().port}/`;
  const forged = await Promise.all([
    page.waitForResponse((resp) => resp.url() === `${base}/console/stop`),
    page.goto(evilUrl),
  ]);
  ok(forged[0].status() === 403, "a forged cross-site form post is refused (403)");
  evil.close();
  const ready = JSON.parse((await api("GET", "/readyz", TOKENS.steward)).text);
  ok(ready.stopped === null || ready.stopped === undefined, "and nothing was stopped");

  // --- Phone width: readable, the page itself does not scroll sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/console/sources`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  ok(overflow <= 1, `no sideways scrolling at phone width (${overflow}px)`);
  await shot(page, "10-sources-phone");

  // --- Sign out ends the session.
  await Promise.all([page.waitForNavigation(), page.click("form[action='/console/signout'] button")]);
  await page.goto(`${base}/console/sources`);
  ok(page.url().endsWith("/console/signin"), "after signing out, pages ask to sign in again");

  // --- A developer signs in read-only.
  await page.setViewportSize({ width: 1280, height: 900 });
  await signIn(page, TOKENS.developer);
  ok(page.url().endsWith("/console/sources"), "a developer signs in");
  ok((await page.locator("form[method=post]:not([action='/console/signout'])").count()) === 0, "with no forms that change anything");
  ok((await page.locator("nav a[href='/console/activity']").count()) === 0, "and no steward pages in the menu");
  const dev = await page.goto(`${base}/console/activity`);
  ok(dev.status() === 403, "a steward page is refused to a developer (403)");
  await shot(page, "11-developer-refused");

  ok(csp.length === 0, `no Content-Security-Policy violations (${csp.join(" | ")})`);
  await browser.close();
  console.log(`${passed} passed, 0 failed`);
}

main().catch((e) => {
  console.log(`FAIL ${e && e.stack ? e.stack : e}`);
  console.log(`${passed} passed, 1 failed`);
  process.exit(1);
});
