// The blog's pages in a real browser: Debian's chromium driven by playwright-core.
//
// One journey, run with JavaScript on and with it off (every step is a plain form post):
// an author signs up, writes a post (a form with problems first, then a preview, then
// Save), publishes it, finds it in /blog and under its tag; another person comments with
// hostile text; a moderator (made by `basis admin create-user`, see scripts/browser-test)
// deletes the comment; the author deletes the post. On every page: no dialog (hostile text must stay text), no script
// error, no Content-Security-Policy report, a nonce in the policy; with JavaScript on,
// axe-core in the light and dark themes, failing on serious or critical violations.
// Screenshots of each page go to the artifacts directory.
//
// Usage: BLOG_MODERATOR_EMAIL=… BLOG_MODERATOR_PASSWORD=… node blog.js <base-url> <artifacts-dir>

import { join } from "node:path";
import { Failure, HOSTILE, PASSWORD, check, journeyArgs, runJourney, watchedPage } from "./lib.js";

const moderator = {
  email: process.env.BLOG_MODERATOR_EMAIL,
  password: process.env.BLOG_MODERATOR_PASSWORD,
};
const MODERATOR_USAGE = "BLOG_MODERATOR_EMAIL=… BLOG_MODERATOR_PASSWORD=… ";
const { base, artifacts } = journeyArgs("blog.js", MODERATOR_USAGE);
if (!moderator.email || !moderator.password) {
  console.error(`usage: ${MODERATOR_USAGE}node blog.js <base-url> <artifacts-dir>`);
  process.exit(2);
}

/** A person: their own browser context and page, watched for dialogs and errors. */
async function person(browser, mode, who, problems) {
  const watched = await watchedPage(browser, {
    base,
    artifacts,
    javaScript: mode === "js",
    label: `${mode} ${who}`,
    shots: `blog-${mode}-${who}`,
    problems,
  });
  const { context, page, visit, goto } = watched;
  // Every form's answer here is checked: 200 unless the step says otherwise.
  const submit = (button, status = 200) => watched.submit(button, status);
  const signUp = async (email, name) => {
    await goto("/signup", "signup");
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Name").fill(name);
    await page.getByLabel("Password").fill(PASSWORD);
    await submit(page.getByRole("button", { name: "Sign up" }));
  };
  return { context, page, visit, goto, submit, signUp };
}

async function journey(browser, javaScript) {
  const mode = javaScript ? "js" : "no-js";
  const problems = [];
  const people = [];
  const tag = `journey-${mode}`;
  const title = `Notes from the ${mode} journey ${HOSTILE}`;
  try {
    // The author writes: a form with problems first.
    const author = await person(browser, mode, "author", problems);
    people.push(author);
    const { page } = author;
    await author.signUp(`writer-${mode}@example.com`, `Wren ${mode}`);
    await author.goto("/blog", "blog-before");
    const nav = page.getByRole("navigation", { name: "Main" });
    await author.submit(nav.getByRole("link", { name: "Write" }));
    check(new URL(page.url()).pathname === "/blog/new", `${mode}: Write led to ${page.url()}`);
    await author.visit("editor");
    await page.getByLabel("Tags").fill(HOSTILE);
    await author.submit(page.getByRole("button", { name: "Save" }), 422);
    for (const field of ["Title", "Body", "Tags"]) {
      check(
        (await page.getByLabel(field, { exact: true }).getAttribute("aria-invalid")) === "true",
        `${mode}: ${field} is not marked invalid`,
      );
    }
    check((await page.getByLabel("Tags").inputValue()) === HOSTILE, `${mode}: the tags were not kept`);
    await author.visit("editor-invalid");

    // Then a preview, then Save, published.
    await page.getByLabel("Title").fill(title);
    await page.getByLabel("Body", { exact: true }).fill(
      "Some **bold** words.\n\n<script>alert(1)</script>\n\n- one\n- two\n\n[a link](javascript:alert(3))",
    );
    await page.getByLabel("Tags").fill(`${tag}, rust`);
    await page.getByLabel(/Published:/).check();
    await author.submit(page.getByRole("button", { name: "Preview" }));
    const preview = page.getByRole("region", { name: "Preview" });
    check(await preview.isVisible(), `${mode}: no preview`);
    check((await preview.locator("strong").innerText()) === "bold", `${mode}: the preview is not rendered`);
    check((await preview.locator("script").count()) === 0, `${mode}: a script in the preview`);
    check(await page.getByLabel(/Published:/).isChecked(), `${mode}: the choice was not kept`);
    await author.visit("preview");
    await author.submit(page.getByRole("button", { name: "Save" }));
    const postPath = new URL(page.url()).pathname;
    check(/^\/blog\/\d+$/.test(postPath), `${mode}: Save led to ${page.url()}`);
    check((await page.getByRole("heading", { level: 1 }).innerText()) === title, `${mode}: the title is not shown as text`);
    check((await page.locator("article.post-body a[href^='javascript']").count()) === 0, `${mode}: a javascript: link survived`);
    await author.visit("post");

    // It is in the list, and under its tag.
    await author.goto("/blog", "blog");
    const listed = page.getByRole("article").filter({ hasText: `Notes from the ${mode} journey` });
    check((await listed.count()) === 1, `${mode}: the post is not listed`);
    check((await listed.innerText()).includes("Some bold words."), `${mode}: no excerpt`);
    await author.submit(listed.getByRole("link", { name: `#${tag}` }));
    check(page.url().includes(`tag=${tag}`), `${mode}: the tag led to ${page.url()}`);
    check((await page.getByRole("article").count()) === 1, `${mode}: the tag's list is not just this post`);
    await author.visit("blog-by-tag");

    // The list and the post fit a phone's width.
    await page.setViewportSize({ width: 375, height: 740 });
    for (const [path, label] of [["/blog", "phone-blog"], [postPath, "phone-post"], ["/blog/new", "phone-editor"]]) {
      await author.goto(path, label);
      if (mode === "js") {
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        check(overflow <= 0, `${mode} ${path}: ${overflow}px wider than a phone`);
      }
    }
    await page.setViewportSize({ width: 1280, height: 800 });

    // Someone else comments, with hostile text: first empty (422), then for real.
    const reader = await person(browser, mode, "reader", problems);
    people.push(reader);
    await reader.signUp(`reader-${mode}@example.com`, `Cy ${HOSTILE}`);
    await reader.goto(postPath, "post-for-reader");
    await reader.submit(reader.page.getByRole("button", { name: "Post comment" }), 422);
    check(
      (await reader.page.getByLabel("Your comment").getAttribute("aria-invalid")) === "true",
      `${mode}: the empty comment is not marked invalid`,
    );
    await reader.visit("comment-invalid");
    await reader.page.getByLabel("Your comment").fill(`Thanks! ${HOSTILE}`);
    await reader.submit(reader.page.getByRole("button", { name: "Post comment" }));
    check(reader.page.url().endsWith(`${postPath}#comments`), `${mode}: the comment led to ${reader.page.url()}`);
    const comment = reader.page.locator("li.comment").filter({ hasText: "Thanks!" });
    check((await comment.innerText()).includes("<script>"), `${mode}: the comment is not shown as text`);
    await reader.visit("commented");

    // A moderator deletes it.
    const mod = await person(browser, mode, "moderator", problems);
    people.push(mod);
    await mod.goto("/signin", "moderator-signin");
    await mod.page.getByLabel("Email").fill(moderator.email);
    await mod.page.getByLabel("Password").fill(moderator.password);
    await mod.submit(mod.page.getByRole("button", { name: "Sign in" }));
    await mod.goto(postPath, "post-for-moderator");
    const toDelete = mod.page.locator("li.comment").filter({ hasText: "Thanks!" });
    await mod.submit(toDelete.getByRole("button", { name: /^Delete comment/ }));
    check(await mod.page.getByText("The comment was deleted.").isVisible(), `${mode}: no deletion notice`);
    check((await mod.page.locator("li.comment").filter({ hasText: "Thanks!" }).count()) === 0, `${mode}: still shown`);
    await mod.visit("comment-deleted");

    // The author deletes the post, behind a confirmation.
    await author.goto(postPath, "post-before-delete");
    await author.submit(page.getByRole("link", { name: /^Delete/ }));
    check(await page.getByRole("heading", { name: "Delete this post?" }).isVisible(), `${mode}: no confirmation`);
    await author.visit("confirm-delete");
    await author.submit(page.getByRole("button", { name: "Delete the post" }));
    check(await page.getByText("The post was deleted.").isVisible(), `${mode}: no deletion notice`);
    check((await page.getByRole("article").filter({ hasText: `Notes from the ${mode} journey` }).count()) === 0, `${mode}: still listed`);
    await author.visit("post-deleted");
    await author.goto(postPath, "deleted-post", 404);

    // Missing posts are the 404 page.
    await reader.goto("/blog/999999999", "missing-post", 404);
  } catch (error) {
    problems.push(error instanceof Failure ? error.message : `${mode}: ${error.stack}`);
    for (const [n, who] of people.entries()) {
      await who.page.screenshot({ path: join(artifacts, `blog-${mode}-failure-${n}.png`), fullPage: true }).catch(() => {});
    }
  } finally {
    for (const who of people) {
      await who.context.close();
    }
  }
  return problems;
}

await runJourney("blog journey", artifacts, journey);
