// The link pages in a real browser: Debian's chromium driven by playwright-core.
//
// One journey, run with JavaScript on and off: make three links (one protected by a
// password), open a link's page and edit it (a refused value first, then hostile text as
// its title), read its statistics (the chart and the table behind it, bots shown and
// hidden, another period), delete two links at once through the confirmation, and follow
// the protected link through its password form (a wrong password, then the right one).
// On every page: no dialog (hostile text stays text), no script error, no CSP report, and
// with JavaScript on, axe-core in the light and dark themes, failing on serious or
// critical violations. Screenshots of each page go to the artifacts directory.
//
// Usage: node links.js <base-url> <artifacts-dir>   (CHROMIUM=path, default /usr/bin/chromium)

import { HOSTILE, PASSWORD, check, journeyArgs, recordFailure, runJourney, watchedPage } from "./lib.js";

const { base, artifacts } = journeyArgs("links.js");
const LINK_PASSWORD = "open sesame";
// Targets are on example.com, which the browser never reaches: requests there are answered
// here (only the protected link, whose redirect the browser follows itself, leads back to us).
const TARGET = "https://example.com/";
const DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
const CRAWLER = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

async function journey(browser, javaScript) {
  const mode = javaScript ? "js" : "no-js";
  const problems = [];
  const { context, page, visit, goto, submit } = await watchedPage(browser, {
    base,
    artifacts,
    javaScript,
    label: mode,
    shots: `links-${mode}`,
    problems,
    prepare: (context) =>
      context.route(`${TARGET}**`, (route) => route.fulfill({ status: 200, contentType: "text/plain", body: "arrived" })),
  });
  const shorten = async (url, alias, password) => {
    await page.goto("/");
    await page.getByLabel("Long URL").fill(url);
    if (!(await page.getByLabel("Custom alias").isVisible())) {
      await page.locator("summary", { hasText: "Options" }).click();
    }
    await page.getByLabel("Custom alias").fill(alias);
    if (password) {
      await page.getByLabel("Password", { exact: true }).fill(password);
    }
    await submit(page.getByRole("button", { name: "Shorten" }));
    check(page.url().endsWith(`/?created=${alias}`), `${mode}: shortening ${alias} landed on ${page.url()}`);
  };

  try {
    await page.goto("/signup");
    await page.getByLabel("Email").fill(`links-${mode}@example.com`);
    await page.getByLabel("Name").fill("Lin");
    await page.getByLabel("Password").fill(PASSWORD);
    await submit(page.getByRole("button", { name: "Sign up" }));
    const [main, other, locked] = ["main", "other", "locked"].map((word) => `${word}-${mode}`);
    await shorten(`${TARGET}main`, main);
    await shorten(`${TARGET}other`, other);
    // The protected link leads back to this server, by another name (a link to the
    // service's own host is refused as a loop): a browser follows a form's redirect beyond
    // Playwright's routing (which sees only the first request), so its target must exist.
    const lockedTarget = `${base.replace("//127.0.0.1", "//localhost")}/?arrived=${locked}`;
    await shorten(lockedTarget, locked, LINK_PASSWORD);

    // The list leads to the link's page.
    await goto("/my/links", "my-links");
    await submit(page.getByRole("row", { name: new RegExp(main) }).getByRole("link", { name: `${base}/${main}` }));
    check(new URL(page.url()).pathname === `/my/links/${main}`, `${mode}: the list led to ${page.url()}`);
    check(await page.getByText("No clicks yet.").isVisible(), `${mode}: no empty state before any click`);
    check((await page.locator("svg").count()) === 0, `${mode}: a chart without clicks`);
    await visit("link-page-empty");

    // Edit: a refused value first, kept and marked; then a saved one.
    await page.getByLabel("Click limit").fill("0");
    const refused = await submit(page.getByRole("button", { name: "Save changes" }));
    check(refused.status() === 422, `${mode}: an invalid edit answered ${refused.status()}`);
    const limit = page.getByLabel("Click limit");
    check((await limit.getAttribute("aria-invalid")) === "true", `${mode}: the click limit is not marked`);
    check((await limit.inputValue()) === "0", `${mode}: the refused value was not kept`);
    check(await page.getByText("Click limit must be at least 1.").isVisible(), `${mode}: no message beside the field`);
    await visit("edit-invalid");
    await limit.fill("500");
    await page.getByLabel("Title").fill(`Main ${HOSTILE}`);
    await page.getByLabel("Tags").fill("launch, news");
    await page.getByLabel("Redirect type").selectOption("302");
    await submit(page.getByRole("button", { name: "Save changes" }));
    check(await page.getByText("Saved.").isVisible(), `${mode}: no saved notice`);
    check((await page.getByLabel("Title").inputValue()) === `Main ${HOSTILE}`, `${mode}: the title is not kept as text`);
    check((await page.getByLabel("Click limit").inputValue()) === "500", `${mode}: the click limit was not saved`);
    await visit("edited");

    // Clicks by people and by a bot, then the statistics.
    for (const agent of [DESKTOP, DESKTOP, CRAWLER]) {
      const followed = await page.request.get(`/${main}`, { headers: { "user-agent": agent }, maxRedirects: 0 });
      check(followed.status() === 302, `${mode}: following ${main} answered ${followed.status()}`);
    }
    await goto(`/my/links/${main}`, "statistics");
    const daily = page.locator("figure", { has: page.locator("figcaption", { hasText: "Clicks per day, last 30 days" }) });
    const chart = daily.getByRole("img");
    check(/over the last 30 days: 2 in all/.test((await chart.getAttribute("aria-label")) ?? ""), `${mode}: the chart does not say what it shows`);
    await daily.locator("summary").click();
    const rows = daily.locator("tbody tr");
    check((await rows.count()) === 30, `${mode}: the table behind the chart has ${await rows.count()} rows`);
    check((await rows.last().locator("td").nth(1).innerText()) === "2", `${mode}: today's clicks are not in the table`);
    await visit("statistics-table");
    const devices = page.locator("figure", { has: page.locator("figcaption", { hasText: "Devices" }) }).getByRole("img");
    check(!/bot/.test((await devices.getAttribute("aria-label")) ?? ""), `${mode}: bots shown before asked for`);
    await submit(page.getByRole("link", { name: "Show bots" }));
    check(page.url().includes("bots=show"), `${mode}: the toggle did not go to ${page.url()}`);
    check(/bot 1/.test((await devices.getAttribute("aria-label")) ?? ""), `${mode}: the bot is not shown`);
    await visit("statistics-bots");
    await submit(page.getByRole("navigation", { name: "Period" }).getByRole("link", { name: "7 days" }));
    const week = page.locator("figure", { has: page.locator("figcaption", { hasText: "Clicks per day, last 7 days" }) });
    check((await week.count()) === 1, `${mode}: the period did not change`);
    check(/with 1 bot clicks/.test((await week.getByRole("img").getAttribute("aria-label")) ?? ""), `${mode}: the period forgot the bots`);
    await visit("statistics-week");

    // Two links deleted together, behind a confirmation.
    await page.goto("/my/links");
    for (const alias of [main, other]) {
      await page.getByRole("checkbox", { name: `Select ${alias}` }).check();
    }
    await submit(page.getByRole("button", { name: "Delete selected" }));
    check(await page.getByRole("heading", { name: "Delete these 2 links?" }).isVisible(), `${mode}: no confirmation`);
    await visit("bulk-confirm");
    await submit(page.getByRole("button", { name: "Delete 2 links" }));
    check(await page.getByText("Deleted 2 links.").isVisible(), `${mode}: no deletion notice`);
    for (const alias of [main, other]) {
      check(!(await page.getByRole("row", { name: new RegExp(alias) }).count()), `${mode}: ${alias} still listed`);
    }
    check(await page.getByRole("row", { name: new RegExp(locked) }).isVisible(), `${mode}: the third link went too`);
    await visit("bulk-deleted");

    // The protected link: its password form, a wrong password, then the right one.
    await goto(`/${locked}`, "password-form");
    check(await page.getByRole("heading", { name: "This link needs a password" }).isVisible(), `${mode}: no password form`);
    await page.getByLabel("Password").fill("not it");
    const wrong = await submit(page.getByRole("button", { name: "Follow the link" }));
    check(wrong.status() === 422, `${mode}: a wrong password answered ${wrong.status()}`);
    check((await page.getByLabel("Password").getAttribute("aria-invalid")) === "true", `${mode}: the field is not marked`);
    await visit("password-wrong");
    await page.getByLabel("Password").fill(LINK_PASSWORD);
    const [answer] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname === `/${locked}`),
      submit(page.getByRole("button", { name: "Follow the link" })),
    ]);
    check(answer.status() === 303, `${mode}: the right password answered ${answer.status()}`);
    check(page.url() === lockedTarget, `${mode}: the right password led to ${page.url()}`);
  } catch (error) {
    await recordFailure(error, page, mode, `links-${mode}-failure.png`, artifacts, problems);
  } finally {
    await context.close();
  }
  return problems;
}

await runJourney("link pages' journey", artifacts, journey);
