// The account pages in a real browser: Debian's chromium driven by playwright-core.
//
// One journey, run with JavaScript on and off: sign up, change the password (a wrong
// current one first), make an API key and revoke it behind its confirmation, end a
// session started in another browser, turn on two-step sign-in (the key read from the
// page, its codes computed here) and sign in again with a code on the second page. On
// every page: no CSP report, no script error, no dialog, axe-core (with JavaScript), and a
// screenshot. The reset mail is not part of it (this server has no SMTP sink): the Rust
// tests follow the mailed link (crates/server/tests/api/web_reset.rs).
//
// Usage: node account.js <base-url> <artifacts-dir>   (CHROMIUM=path, default /usr/bin/chromium)

import { createHmac } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, artifacts] = process.argv.slice(2);
if (!base || !artifacts) {
  console.error("usage: node account.js <base-url> <artifacts-dir>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const HOSTILE = `"><script>alert(1)</script><img src=x onerror=alert(2)>`;
const PASSWORD = "velvet otter juggles nine lanterns";
const NEW_PASSWORD = "amber kites drift over quiet harbours";

class Failure extends Error {}
function check(condition, message) {
  if (!condition) {
    throw new Failure(message);
  }
}

/** The TOTP code (RFC 6238: SHA-1, six digits, 30 s) of a base32 `secret` at `step`. */
function totp(secret, step) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "")) {
    bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, "0");
}
const stepNow = () => Math.floor(Date.now() / 30000);

/** Runs axe-core on the page and fails on serious or critical violations. */
async function audit(page, label, problems) {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const results = await globalThis.axe.run(document, { resultTypes: ["violations"] });
    return results.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => n.target.join(" ")),
    }));
  });
  for (const v of violations.filter((v) => v.impact === "serious" || v.impact === "critical")) {
    problems.push(`${label}: axe ${v.impact} ${v.id} (${v.help}) at ${v.nodes.join(", ")}`);
  }
}

async function journey(browser, javaScript) {
  const mode = javaScript ? "js" : "no-js";
  const context = await browser.newContext({ baseURL: base, javaScriptEnabled: javaScript, colorScheme: "light" });
  context.setDefaultTimeout(15000);
  const page = await context.newPage();
  const problems = [];
  page.on("dialog", async (dialog) => {
    problems.push(`a dialog opened (${dialog.message()}): a script ran`);
    await dialog.dismiss();
  });
  page.on("pageerror", (error) => problems.push(`script error: ${error.message}`));
  page.on("console", (message) => {
    if (/Content.Security.Policy/i.test(message.text())) {
      problems.push(`CSP report: ${message.text()}`);
    }
  });
  let shot = 0;
  const visit = async (label) => {
    shot += 1;
    const name = `account-${mode}-${String(shot).padStart(2, "0")}-${label}`;
    if (javaScript) {
      await audit(page, `${mode} ${label}`, problems);
      await page.emulateMedia({ colorScheme: "dark" });
      await audit(page, `${mode} ${label} (dark)`, problems);
      await page.screenshot({ path: join(artifacts, `${name}-dark.png`), fullPage: true });
      await page.emulateMedia({ colorScheme: "light" });
    }
    await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
  };
  const goto = async (path, label) => {
    const response = await page.goto(path);
    check(response.status() === 200, `${mode} ${path}: status ${response.status()}`);
    check(!(response.headers()["content-security-policy"] || "").includes("unsafe-inline"), `${mode} ${path}: unsafe-inline`);
    await visit(label);
  };
  const submit = async (button) => {
    const [response] = await Promise.all([page.waitForNavigation(), button.click()]);
    return response;
  };
  try {
    const email = `acct-${mode}@example.com`;
    await goto("/signup", "signup");
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Name").fill(`Ann ${HOSTILE}`);
    await page.getByLabel("Password").fill(PASSWORD);
    await submit(page.getByRole("button", { name: "Sign up" }));
    await goto("/account", "account");
    check((await page.locator("main").innerText()).includes("<script>"), `${mode}: the name is shown as text`);

    // The password: a wrong current one is refused beside its field, then the change.
    await goto("/account/password", "password");
    await page.getByLabel("Current password").fill("not the password at all");
    await page.getByLabel("New password").fill(NEW_PASSWORD);
    const wrong = await submit(page.getByRole("button", { name: "Change the password" }));
    check(wrong.status() === 422, `${mode}: a wrong current password answered ${wrong.status()}`);
    check((await page.getByLabel("Current password").getAttribute("aria-invalid")) === "true", `${mode}: not marked`);
    await visit("password-wrong");
    await page.getByLabel("Current password").fill(PASSWORD);
    await page.getByLabel("New password").fill(NEW_PASSWORD);
    await submit(page.getByRole("button", { name: "Change the password" }));
    check(await page.getByText("Your password is changed").isVisible(), `${mode}: no notice of the change`);
    await visit("password-changed");

    // An API key: made, shown once, revoked behind a confirmation.
    await goto("/account/keys", "keys");
    await page.getByLabel("Name", { exact: true }).fill(`deploy ${HOSTILE}`);
    await page.getByLabel("Read your links and their statistics").check();
    const made = await submit(page.getByRole("button", { name: "Make the key" }));
    check(made.status() === 201, `${mode}: making a key answered ${made.status()}`);
    const key = await page.locator("#new-key").inputValue();
    check(key.length > 20, `${mode}: no key shown`);
    await visit("key-made");
    const me = await page.request.get("/auth/me", { headers: { "x-api-key": key } });
    check(me.status() === 200, `${mode}: the key does not work (${me.status()})`);
    await goto("/account/keys", "keys-listed");
    check(!(await page.content()).includes(key), `${mode}: the key is shown again`);
    await submit(page.getByRole("link", { name: /Revoke/ }).first());
    check(await page.getByRole("heading", { name: "Revoke this key?" }).isVisible(), `${mode}: no confirmation`);
    await visit("key-confirm");
    await submit(page.getByRole("button", { name: "Revoke" }));
    check(await page.getByText("The key is revoked").isVisible(), `${mode}: no notice of the revocation`);
    const refused = await page.request.get("/auth/me", { headers: { "x-api-key": key } });
    check(refused.status() === 401, `${mode}: a revoked key answered ${refused.status()}`);

    // A session in another browser, ended from here.
    // (Signed in through the API's session sign-in: every POST /signin from this address
    // counts against one login limit, which the other journey shares.)
    const other = await browser.newContext({ baseURL: base, userAgent: "Elsewhere/1.0 (journey)" });
    const started = await other.request.post("/auth/session", { data: { email, password: NEW_PASSWORD } });
    check(started.status() === 201, `${mode}: the other browser did not sign in (${started.status()})`);
    await goto("/account/sessions", "sessions");
    const row = page.getByRole("row", { name: /Elsewhere\/1\.0/ });
    check(await row.isVisible(), `${mode}: the other session is not listed`);
    await submit(row.getByRole("button", { name: /End/ }));
    check(await page.getByText("The session has ended.").isVisible(), `${mode}: no notice of the end`);
    const after = await other.request.get("/auth/session");
    check(after.status() === 401, `${mode}: the other browser is still signed in (${after.status()})`);
    await other.close();

    // Two-step sign-in: the key from the page, a first code, the recovery codes.
    await goto("/account/two-step", "two-step-off");
    await submit(page.getByRole("button", { name: "Set it up" }));
    await visit("two-step-enrol");
    const qr = page.getByRole("img", { name: /QR code/ });
    check(((await qr.boundingBox())?.width ?? 0) >= 100, `${mode}: no QR code`);
    if (javaScript) {
      check(await qr.evaluate((img) => img.complete && img.naturalWidth > 0), `${mode}: the QR code did not load`);
    }
    const secret = (await page.locator("code.secret").innerText()).trim();
    const step = stepNow();
    await page.getByLabel("Code").fill(totp(secret, step));
    await submit(page.getByRole("button", { name: "Turn on two-step sign-in" }));
    check(await page.getByText("shown only now").isVisible(), `${mode}: no recovery codes`);
    await visit("two-step-on");

    // Sign out; the password, then the code (the next step's: this one is spent).
    await submit(page.getByRole("button", { name: "Sign out" }));
    await page.goto("/signin?next=%2Faccount");
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(NEW_PASSWORD);
    await submit(page.getByRole("button", { name: "Sign in" }));
    check(await page.getByRole("heading", { name: "Enter your code" }).isVisible(), `${mode}: no second step`);
    await visit("code-step");
    await page.getByLabel("Code").fill("000000");
    const bad = await submit(page.getByRole("button", { name: "Sign in" }));
    check(bad.status() === 422, `${mode}: a wrong code answered ${bad.status()}`);
    await visit("code-wrong");
    await page.getByLabel("Code").fill(totp(secret, Math.max(step, stepNow()) + 1));
    await submit(page.getByRole("button", { name: "Sign in" }));
    check(new URL(page.url()).pathname === "/account", `${mode}: the code step landed on ${page.url()}`);
    await visit("signed-in-with-code");
  } catch (error) {
    problems.push(error instanceof Failure ? error.message : `${mode}: ${error.stack}`);
    await page.screenshot({ path: join(artifacts, `account-${mode}-failure.png`), fullPage: true }).catch(() => {});
  } finally {
    await context.close();
  }
  return problems;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
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
let problems = [];
try {
  for (const javaScript of [true, false]) {
    const found = await journey(browser, javaScript);
    console.log(`account pages, JavaScript ${javaScript ? "on" : "off"}: ${found.length ? "FAILED" : "ok"}`);
    problems = problems.concat(found);
  }
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`account journey passed; screenshots in ${artifacts}`);
