// What every browser journey shares: its arguments, a page watched for dialogs, script
// errors and CSP reports, axe-core in both themes with a screenshot of each page, and the
// run with JavaScript on and then off in one chromium.

import { mkdirSync, readFileSync, readdirSync, watch } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

/** Text that would run a script if any page put it in unescaped. */
export const HOSTILE = `"><script>alert(1)</script><img src=x onerror=alert(2)>`;
/** A password every account rule accepts. */
export const PASSWORD = "velvet otter juggles nine lanterns";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** A failed expectation: reported as its message, without a stack. */
export class Failure extends Error {}

export function check(condition, message) {
  if (!condition) {
    throw new Failure(message);
  }
}

/**
 * The journey's `<base-url> <artifacts-dir>` arguments (the directory is made), or the
 * usage line and exit code 2. `usage` names what else the journey needs.
 */
export function journeyArgs(script, usage = "") {
  const [base, artifacts] = process.argv.slice(2);
  if (!base || !artifacts) {
    console.error(`usage: ${usage}node ${script} <base-url> <artifacts-dir>`);
    process.exit(2);
  }
  mkdirSync(artifacts, { recursive: true });
  return { base, artifacts };
}

/** Runs axe-core on the page and records serious or critical violations in `problems`. */
export async function audit(page, label, problems) {
  // Evaluated over the DevTools protocol, which the page's CSP does not govern.
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

/** Fails unless `response` carries a strict policy: a script nonce, no `unsafe-inline`. */
export function checkPolicy(response, what) {
  const policy = response.headers()["content-security-policy"] || "";
  check(/script-src 'nonce-[^']+'/.test(policy), `${what}: no nonce in the CSP`);
  check(!policy.includes("unsafe-inline"), `${what}: unsafe-inline in the CSP`);
}

/**
 * A browser context and page for one person of a journey, watched: a dialog (a script that
 * ran), a script error or a CSP report is recorded in `problems` under `label`.
 * - `visit(name)`: axe-core in the light and the dark theme (with JavaScript; without it
 *   nothing can be evaluated in the page) and a screenshot `<shots>-NN-<name>.png`;
 * - `goto(path, name, status = 200)`: opens `path`, checks the status and the policy, visits;
 * - `submit(button, status)`: clicks and waits for the next page; with `status`, checks it
 *   and the answer's policy.
 * `prepare(context)` may grant permissions or route requests before the page opens.
 */
export async function watchedPage(browser, { base, artifacts, javaScript, label, shots, problems, prepare }) {
  const context = await browser.newContext({ baseURL: base, javaScriptEnabled: javaScript, colorScheme: "light" });
  context.setDefaultTimeout(15000);
  if (prepare) {
    await prepare(context);
  }
  const page = await context.newPage();
  page.on("dialog", async (dialog) => {
    problems.push(`${label}: a dialog opened (${dialog.message()}): a script ran`);
    await dialog.dismiss();
  });
  page.on("pageerror", (error) => problems.push(`${label}: script error: ${error.message}`));
  page.on("console", (message) => {
    if (/Content.Security.Policy/i.test(message.text())) {
      problems.push(`${label}: CSP report: ${message.text()}`);
    }
  });
  let shot = 0;
  const visit = async (name) => {
    shot += 1;
    const file = `${shots}-${String(shot).padStart(2, "0")}-${name}`;
    if (javaScript) {
      await audit(page, `${label} ${name}`, problems);
      // The dark theme too: its own colours, its own contrast.
      await page.emulateMedia({ colorScheme: "dark" });
      await audit(page, `${label} ${name} (dark)`, problems);
      await page.screenshot({ path: join(artifacts, `${file}-dark.png`), fullPage: true });
      await page.emulateMedia({ colorScheme: "light" });
    }
    await page.screenshot({ path: join(artifacts, `${file}.png`), fullPage: true });
  };
  const goto = async (path, name, status = 200) => {
    const response = await page.goto(path);
    check(response.status() === status, `${label} ${path}: status ${response.status()}, not ${status}`);
    checkPolicy(response, `${label} ${path}`);
    await visit(name);
    return response;
  };
  const submit = async (button, status) => {
    const [response] = await Promise.all([page.waitForNavigation(), button.click()]);
    if (status !== undefined) {
      check(response.status() === status, `${label}: the form answered ${response.status()}, not ${status}`);
      checkPolicy(response, `${label} a form's answer`);
    }
    return response;
  };
  return { context, page, visit, goto, submit };
}

/**
 * Runs `journey(browser, javaScript)` (which answers its problems) with JavaScript on and
 * then off in one headless chromium (`CHROMIUM`, default Debian's), prints a line for each
 * run, and exits non-zero with every problem if any run found one.
 */
export async function runJourney(name, artifacts, journey) {
  // Playwright starts the browser with a fresh profile directory of its own (and refuses a
  // --user-data-dir argument), removed when the browser closes.
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
      console.log(`${name}, JavaScript ${javaScript ? "on" : "off"}: ${found.length ? "FAILED" : "ok"}`);
      problems = problems.concat(found);
    }
  } finally {
    await browser.close();
  }
  if (problems.length) {
    console.error(problems.join("\n"));
    process.exit(1);
  }
  console.log(`${name} passed; screenshots in ${artifacts}`);
}

/** Records a journey's failure and a screenshot of the page it happened on. */
export async function recordFailure(error, page, mode, file, artifacts, problems) {
  problems.push(error instanceof Failure ? error.message : `${mode}: ${error.stack}`);
  await page.screenshot({ path: join(artifacts, file), fullPage: true }).catch(() => {});
}

/**
 * The first message the journey's SMTP sink (smtp-sink.js, writing to `dir`) received for
 * `address` that `seen` does not hold yet: `{ to, data }`. Waits for it as it arrives (the
 * directory is watched, not polled), failing after `timeoutMs`.
 */
export function waitForMail(dir, address, seen = new Set(), timeoutMs = 20000) {
  const find = () => {
    for (const name of readdirSync(dir).filter((n) => n.endsWith(".json")).sort()) {
      if (seen.has(name)) {
        continue;
      }
      const mail = JSON.parse(readFileSync(join(dir, name), "utf8"));
      if (mail.to.includes(address)) {
        seen.add(name);
        return mail;
      }
    }
    return null;
  };
  return new Promise((resolve, reject) => {
    const done = (error, mail) => {
      watcher.close();
      clearTimeout(timer);
      error ? reject(error) : resolve(mail);
    };
    const watcher = watch(dir, () => {
      const mail = find();
      if (mail) {
        done(null, mail);
      }
    });
    const timer = setTimeout(() => done(new Failure(`no mail for ${address} within ${timeoutMs} ms`)), timeoutMs);
    // A message that arrived before the watch began.
    const mail = find();
    if (mail) {
      done(null, mail);
    }
  });
}

/** A mail's text as its reader sees it: a quoted-printable body decoded. */
export function readable(data) {
  if (!/Content-Transfer-Encoding: quoted-printable/i.test(data)) {
    return data;
  }
  const joined = data.replace(/=\r?\n/g, "");
  const bytes = [];
  for (let i = 0; i < joined.length; i += 1) {
    const hex = joined.slice(i + 1, i + 3);
    if (joined[i] === "=" && /^[0-9A-F]{2}$/i.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(joined[i], "utf8"));
    }
  }
  return Buffer.from(bytes).toString("utf8");
}
