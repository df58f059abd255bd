// The admin pages in a real browser: Debian's chromium driven by playwright-core.
//
// One journey, run with JavaScript on and with it off (every step is a plain form post):
// a person signs up with hostile text in their name and is refused the admin pages (403);
// an admin (made by `basis admin create-user`, see scripts/browser-test) is sent to sign
// in and back to /admin, follows the admin navigation to every page, finds the person by
// email, makes them a moderator, sees it in the audit log, and purges the dead letters
// through the confirmation page (a running server has none to replay unless a job fails
// for good, which a journey cannot cause from outside). On every page: no dialog, no script
// error, no CSP report, a nonce in the policy; with JavaScript on, axe-core in the light and
// dark themes, failing on serious or critical violations. Screenshots go to the artifacts
// directory.
//
// Usage: ADMIN_EMAIL=… ADMIN_PASSWORD=… node admin.js <base-url> <artifacts-dir>

import { join } from "node:path";
import { Failure, HOSTILE, PASSWORD, check, journeyArgs, runJourney, watchedPage } from "./lib.js";

const admin = { email: process.env.ADMIN_EMAIL, password: process.env.ADMIN_PASSWORD };
const USAGE = "ADMIN_EMAIL=… ADMIN_PASSWORD=… ";
const { base, artifacts } = journeyArgs("admin.js", USAGE);
if (!admin.email || !admin.password) {
  console.error(`usage: ${USAGE}node admin.js <base-url> <artifacts-dir>`);
  process.exit(2);
}

/** The admin pages, by their link in the admin navigation. */
const PAGES = [
  ["Users", "/admin/users", "users"],
  ["Queues", "/admin/job-queues", "queues"],
  ["Rate limits", "/admin/rate-limits", "rate-limits"],
  ["Audit log", "/admin/audit-log", "audit-log"],
  ["Overview", "/admin", "overview-again"],
];

async function journey(browser, javaScript) {
  const mode = javaScript ? "js" : "no-js";
  const problems = [];
  const contexts = [];
  const watch = async (who) => {
    const watched = await watchedPage(browser, {
      base,
      artifacts,
      javaScript,
      label: `${mode} ${who}`,
      shots: `admin-${mode}-${who}`,
      problems,
    });
    contexts.push(watched);
    // Every form's answer here is checked: 200 unless the step says otherwise.
    return { ...watched, submit: (button, status = 200) => watched.submit(button, status) };
  };
  try {
    // A person who is not an admin is refused, with the 403 page.
    const member = await watch("member");
    const memberEmail = `member-${mode}@example.com`;
    await member.goto("/signup", "signup");
    await member.page.getByLabel("Email").fill(memberEmail);
    await member.page.getByLabel("Name").fill(`Mo ${HOSTILE}`);
    await member.page.getByLabel("Password").fill(PASSWORD);
    await member.submit(member.page.getByRole("button", { name: "Sign up" }));
    check(
      (await member.page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Admin" }).count()) === 0,
      `${mode}: a member sees the Admin link`,
    );
    await member.goto("/admin", "refused", 403);
    check(await member.page.getByRole("heading", { name: "Admins only" }).isVisible(), `${mode}: no 403 page`);

    // The admin is sent to sign in, and back.
    const boss = await watch("admin");
    const { page } = boss;
    await page.goto("/admin");
    check(new URL(page.url()).pathname === "/signin", `${mode}: /admin led to ${page.url()}`);
    await boss.visit("signin");
    await page.getByLabel("Email").fill(admin.email);
    await page.getByLabel("Password").fill(admin.password);
    await boss.submit(page.getByRole("button", { name: "Sign in" }));
    check(new URL(page.url()).pathname === "/admin", `${mode}: signing in led to ${page.url()}, not /admin`);
    check(await page.getByRole("heading", { name: "Health" }).isVisible(), `${mode}: no health on the overview`);
    await boss.visit("overview");

    // Every page, through the admin navigation.
    for (const [link, path, name] of PAGES) {
      await boss.submit(page.getByRole("navigation", { name: "Admin" }).getByRole("link", { name: link, exact: true }));
      check(new URL(page.url()).pathname === path, `${mode}: ${link} led to ${page.url()}`);
      await boss.visit(name);
    }

    // Find the member, make them a moderator.
    await boss.goto("/admin/users", "users-before");
    await page.getByLabel("Name or email contains").fill(memberEmail.toUpperCase());
    await boss.submit(page.getByRole("button", { name: "Search" }));
    const row = page.locator("tbody tr").filter({ hasText: memberEmail });
    check((await row.count()) === 1, `${mode}: the search did not find ${memberEmail}`);
    check((await page.locator("tbody tr").count()) === 1, `${mode}: the search found others too`);
    check((await row.innerText()).includes("<script>"), `${mode}: the name is not shown as text`);
    await boss.visit("users-found");
    await row.getByRole("combobox").selectOption("moderator");
    await boss.submit(row.getByRole("button", { name: /^Change/ }));
    check(await page.getByText(/is now moderator/).isVisible(), `${mode}: no notice of the role change`);
    await boss.visit("role-changed");
    await boss.goto("/admin/audit-log", "audit-after");
    check(
      (await page.locator("tbody tr").filter({ hasText: "role.changed" }).count()) >= 1,
      `${mode}: the role change is not in the audit log`,
    );

    // Purge, behind its confirmation page.
    await boss.goto("/admin/job-queues/purge", "purge-confirm");
    check(await page.getByRole("heading", { name: "Purge dead letters?" }).isVisible(), `${mode}: no confirmation`);
    await boss.submit(page.getByRole("button", { name: "Purge" }));
    check(new URL(page.url()).pathname === "/admin/job-queues", `${mode}: the purge led to ${page.url()}`);
    check(await page.getByText(/^Purged \d+ dead letter/).isVisible(), `${mode}: no purge notice`);
    await boss.visit("purged");

    // Missing dead letters are the 404 page.
    await boss.goto("/admin/job-queues/dead/999999999", "missing-dead-letter", 404);
  } catch (error) {
    problems.push(error instanceof Failure ? error.message : `${mode}: ${error.stack}`);
    for (const [n, who] of contexts.entries()) {
      await who.page.screenshot({ path: join(artifacts, `admin-${mode}-failure-${n}.png`), fullPage: true }).catch(() => {});
    }
  } finally {
    for (const who of contexts) {
      await who.context.close();
    }
  }
  return problems;
}

await runJourney("admin journey", artifacts, journey);
