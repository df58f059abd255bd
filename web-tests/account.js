// The account pages in a real browser: Debian's chromium driven by playwright-core.
//
// One journey, run with JavaScript on and off: sign up, change the password (a wrong
// current one first), make an API key and revoke it behind its confirmation, end a
// session started in another browser, forget the password (ask on /reset, read the mail
// the server sent to a real SMTP receiver, smtp-sink.js, follow its link, choose a new
// password, sign in with it), turn on two-step sign-in (the key read from the page, its
// codes computed here) and sign in again with a code on the second page. On every page:
// no CSP report, no script error, no dialog, axe-core (with JavaScript), and a screenshot.
//
// Usage: MAIL_DIR=dir node account.js <base-url> <artifacts-dir>
//   (MAIL_DIR: where smtp-sink.js writes the mail the server sends;
//    CHROMIUM=path, default /usr/bin/chromium)

import { createHmac } from "node:crypto";
import {
  HOSTILE,
  PASSWORD,
  check,
  journeyArgs,
  readable,
  recordFailure,
  runJourney,
  waitForMail,
  watchedPage,
} from "./lib.js";

const { base, artifacts } = journeyArgs("account.js", "MAIL_DIR=dir ");
const mailDir = process.env.MAIL_DIR;
if (!mailDir) {
  console.error("usage: MAIL_DIR=dir node account.js <base-url> <artifacts-dir>");
  process.exit(2);
}
const NEW_PASSWORD = "amber kites drift over quiet harbours";
const RESET_PASSWORD = "copper gulls circle the salt marsh";

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

async function journey(browser, javaScript) {
  const mode = javaScript ? "js" : "no-js";
  const problems = [];
  const { context, page, visit, goto, submit } = await watchedPage(browser, {
    base,
    artifacts,
    javaScript,
    label: mode,
    shots: `account-${mode}`,
    problems,
  });
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

    // A forgotten password: asked for on /reset, the mail read from the SMTP receiver,
    // its link followed, a new password chosen, and a sign-in with it.
    await submit(page.getByRole("button", { name: "Sign out" }));
    await goto("/reset", "reset");
    await page.getByLabel("Email").fill(email);
    await submit(page.getByRole("button", { name: "Send the link" }));
    check(await page.getByText("a reset link is on its way").isVisible(), `${mode}: no answer to the reset request`);
    await visit("reset-sent");
    const mail = await waitForMail(mailDir, email);
    const link = readable(mail.data)
      .split(/\r?\n/)
      .map((line) => line.trim())
      .find((line) => line.startsWith("http") && line.includes("/reset/new?token="));
    check(link !== undefined && link.startsWith(`${base}/`), `${mode}: no reset link in the mail`);
    const mailed = new URL(link);
    await goto(`${mailed.pathname}${mailed.search}`, "reset-new");
    await page.getByLabel("New password").fill(RESET_PASSWORD);
    await submit(page.getByRole("button", { name: "Set the new password" }));
    check(await page.getByText("Your new password is set").isVisible(), `${mode}: the new password was not set`);
    await visit("reset-done");
    await submit(page.getByRole("link", { name: "Sign in with the new password" }));
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(RESET_PASSWORD);
    await submit(page.getByRole("button", { name: "Sign in" }));
    check(new URL(page.url()).pathname === "/my/links", `${mode}: the new password signed in to ${page.url()}`);
    // The link worked once.
    await goto(`${mailed.pathname}${mailed.search}`, "reset-link-used", 410);

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
    await page.getByLabel("Password").fill(RESET_PASSWORD);
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
    await recordFailure(error, page, mode, `account-${mode}-failure.png`, artifacts, problems);
  } finally {
    await context.close();
  }
  return problems;
}

await runJourney("account journey", artifacts, journey);
