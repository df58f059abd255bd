// The pages in a real browser: Debian's chromium driven by playwright-core.
//
// One journey (sign up, shorten with options, see the link and its QR code, copy it, list
// the links, delete one behind its confirmation, sign out, sign in), run twice: with
// JavaScript on and with it off, where every step must work as plain form posts. On every
// page: no Content-Security-Policy report, no script error, no dialog (hostile text typed
// into the fields must stay text), and in the run with JavaScript (axe-core is a script)
// axe-core, failing on serious or critical violations; the server sends the same page to
// both runs. With JavaScript on, a keyboard-only pass too: sign in, shorten and copy with
// Tab, typing and Enter. Screenshots of each page go to the artifacts directory.
//
// Usage: node journey.js <base-url> <artifacts-dir>   (CHROMIUM=path, default /usr/bin/chromium)

import { Failure, HOSTILE, PASSWORD, check, journeyArgs, recordFailure, runJourney, watchedPage } from "./lib.js";

const { base, artifacts } = journeyArgs("journey.js");

/** Presses Tab until the element matching `selector` has the focus (at most 20 times). */
async function tabTo(page, selector, mode) {
  for (let i = 0; i < 20; i += 1) {
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) {
      return;
    }
    await page.keyboard.press("Tab");
  }
  throw new Failure(`${mode}: Tab never reached ${selector}`);
}

/** Signs in, shortens and copies with the keyboard alone. */
async function keyboardOnly(page, mode, email) {
  await page.context().clearCookies();
  await page.goto("/signin");
  await tabTo(page, "#f-email", mode);
  await page.keyboard.type(email);
  await page.keyboard.press("Tab");
  await page.keyboard.type(PASSWORD);
  await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
  check(new URL(page.url()).pathname === "/my/links", `${mode} keyboard: sign-in landed on ${page.url()}`);
  await page.goto("/");
  await tabTo(page, "#f-url", mode);
  await page.keyboard.type("https://example.com/typed");
  await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
  check(page.url().includes("/?created="), `${mode} keyboard: shorten landed on ${page.url()}`);
  await tabTo(page, "button[data-copy]", mode);
  await page.keyboard.press("Enter");
  await page.getByText("Copied to the clipboard.").waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  const shown = await page.locator("#short-url").inputValue();
  check(copied === shown, `${mode} keyboard: copied ${copied}, shown ${shown}`);
}

async function journey(browser, javaScript) {
  const mode = javaScript ? "js" : "no-js";
  const problems = [];
  const { context, page, visit, goto, submit } = await watchedPage(browser, {
    base,
    artifacts,
    javaScript,
    label: mode,
    shots: mode,
    problems,
    prepare: async (context) => {
      if (javaScript) {
        await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
      }
    },
  });

  try {
    const email = `ann-${mode}@example.com`;
    // Sign up, with hostile text as the name.
    await goto("/signup", "signup");
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Name").fill(`Ann ${HOSTILE}`);
    await page.getByLabel("Password").fill(PASSWORD);
    await submit(page.getByRole("button", { name: "Sign up" }));
    check(new URL(page.url()).pathname === "/my/links", `${mode}: sign-up landed on ${page.url()}`);
    check(await page.getByText("You have no links yet").isVisible(), `${mode}: no empty list`);
    check((await page.locator("header").innerText()).includes("<script>"), `${mode}: the name is shown as text`);
    await visit("my-links-empty");

    // A form with problems comes back with them beside the fields.
    await goto("/", "home");
    await page.getByLabel("Long URL").fill("not a url");
    const refused = await submit(page.getByRole("button", { name: "Shorten" }));
    check(refused.status() === 422, `${mode}: invalid form answered ${refused.status()}`);
    check(
      (await page.getByLabel("Long URL").getAttribute("aria-invalid")) === "true",
      `${mode}: the URL field is not marked invalid`,
    );
    check((await page.getByLabel("Long URL").inputValue()) === "not a url", `${mode}: the URL was not kept`);
    await visit("home-invalid");

    // Shorten with options.
    const alias = `launch-${mode}`;
    await page.getByLabel("Long URL").fill("https://example.com/launch");
    if (!(await page.getByLabel("Custom alias").isVisible())) {
      await page.locator("summary", { hasText: "Options" }).click();
    }
    await page.getByLabel("Custom alias").fill(alias);
    await page.getByLabel("Click limit").fill("100");
    await page.getByLabel("Redirect type").selectOption("302");
    await submit(page.getByRole("button", { name: "Shorten" }));
    check(page.url().endsWith(`/?created=${alias}`), `${mode}: shorten landed on ${page.url()}`);
    const shortUrl = `${base}/${alias}`;
    check((await page.locator("#short-url").inputValue()) === shortUrl, `${mode}: the short URL is not shown`);
    const qr = page.getByRole("img", { name: `QR code for ${shortUrl}` });
    const side = (await qr.boundingBox())?.width ?? 0;
    check(side >= 100, `${mode}: the QR code is ${side}px wide`);
    if (javaScript) {
      check(await qr.evaluate((img) => img.complete && img.naturalWidth > 0), `${mode}: the QR code did not load`);
    }
    const copy = page.getByRole("button", { name: "Copy" });
    if (javaScript) {
      await copy.click();
      await page.getByText("Copied to the clipboard.").waitFor();
      const copied = await page.evaluate(() => navigator.clipboard.readText());
      check(copied === shortUrl, `${mode}: copied ${copied}`);
    } else {
      check(!(await copy.isVisible()), `${mode}: the copy button shows without JavaScript`);
    }
    await visit("shortened");
    const png = await page.request.get(`/${alias}/qr.png`);
    check(png.status() === 200 && png.headers()["content-type"] === "image/png", `${mode}: no PNG QR code`);

    // The list, and delete behind its confirmation; on a phone's width first.
    await page.setViewportSize({ width: 375, height: 740 });
    for (const [path, label] of [["/", "phone-home"], ["/my/links", "phone-my-links"]]) {
      await goto(path, label);
      if (javaScript) {
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        check(overflow <= 0, `${mode} ${path}: ${overflow}px wider than a phone`);
      }
    }
    await page.setViewportSize({ width: 1280, height: 800 });
    await goto("/my/links", "my-links");
    const row = page.getByRole("row", { name: new RegExp(alias) });
    check(await row.isVisible(), `${mode}: the link is not listed`);
    await submit(row.getByRole("link", { name: `Delete ${alias}` }));
    check(await page.getByRole("heading", { name: "Delete this link?" }).isVisible(), `${mode}: no confirmation`);
    await visit("confirm-delete");
    await submit(page.getByRole("button", { name: "Delete" }));
    check(await page.getByText(`Deleted ${alias}.`).isVisible(), `${mode}: no deletion notice`);
    check(!(await page.getByRole("row", { name: new RegExp(alias) }).count()), `${mode}: still listed`);
    await visit("deleted");

    // Sign out, and back in.
    await submit(page.getByRole("button", { name: "Sign out" }));
    const nav = page.getByRole("navigation", { name: "Main" });
    check(await nav.getByRole("link", { name: "Sign in" }).isVisible(), `${mode}: still signed in`);
    await goto("/my/links", "signin-for-my-links");
    check(new URL(page.url()).pathname === "/signin", `${mode}: my links without a session`);
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(PASSWORD);
    await submit(page.getByRole("button", { name: "Sign in" }));
    check(new URL(page.url()).pathname === "/my/links", `${mode}: not sent back to my links`);

    if (javaScript) {
      await keyboardOnly(page, mode, email);
    }

    await goto("/no/such/page", "not-found", 404);
  } catch (error) {
    await recordFailure(error, page, mode, `${mode}-failure.png`, artifacts, problems);
  } finally {
    await context.close();
  }
  return problems;
}

await runJourney("browser journey", artifacts, journey);
