// The harness of Clarion's browser scenarios. tests/e2e/browser.rs serves an instance and runs
// each script of scenarios/ with node; a script calls `scenario(name, body)` once, and `body`
// drives headless Chromium through playwright-core. A scenario fails by throwing (node's
// `assert` is the way to say what was expected); the harness then keeps a screenshot of every
// open page under <artifacts>/failures/, prints what each page showed and exits with 1.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/** A setting tests/e2e/browser.rs passes in the environment. */
function setting(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: scenarios run from tests/e2e/browser.rs (see tests/browser/README.md)`);
  }
  return value;
}

// The npm packages live under the build's target directory, not beside the scripts, and ES
// module imports do not search NODE_PATH: resolve them from there.
const modules = createRequire(path.join(setting('CLARION_BROWSER_NODE_MODULES'), '..', 'package.json'));
const { chromium } = modules('playwright-core');
const axeSource = readFileSync(modules.resolve('axe-core/axe.min.js'), 'utf8');

/** The served instance, e.g. `http://127.0.0.1:41234`. */
export const baseUrl = setting('CLARION_BASE_URL');
/** An account per role (`admin`, `marketer`, `viewer`): `{ email, password }`. Scenarios
 * must not change them (password, role, lockout): make an account of their own for that. */
export const users = JSON.parse(setting('CLARION_USERS'));
/** An admin API key of the instance, for setting up data through the API. */
export const apiKey = setting('CLARION_API_KEY');
/** Where screenshots go (target/screenshots/<backend>). */
export const artifacts = setting('CLARION_ARTIFACTS');

/** The two sizes every main page must work at. */
export const VIEWPORTS = {
  laptop: { viewport: { width: 1280, height: 800 } },
  phone: { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true },
};

// Headless, no sandbox (containers), and nothing that talks to Google or wants a display.
// playwright-core gives every launch a fresh --user-data-dir and removes it afterwards.
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** How long one scenario may take before it is stopped as hung. */
const SCENARIO_LIMIT_MS = 180_000;
/** How long one step (a click, a navigation, a wait for an element) may take. */
const STEP_LIMIT_MS = 20_000;

/** Runs one scenario: launches Chromium, runs `body(run)` with a {@link Run}, closes it. */
export async function scenario(name, body) {
  const watchdog = setTimeout(() => {
    console.error(`FAILED: ${name}: still running after ${SCENARIO_LIMIT_MS / 1000} s`);
    process.exit(1);
  }, SCENARIO_LIMIT_MS);
  const browser = await chromium.launch({
    executablePath: setting('CLARION_CHROMIUM'),
    headless: true,
    args: CHROMIUM_FLAGS,
  });
  const run = new Run(browser, name);
  try {
    await body(run);
    assert.deepEqual(run.scriptErrors, [], 'no page may fail in its scripts or break its content security policy');
    console.log(`ok: ${name}`);
  } catch (error) {
    process.exitCode = 1;
    console.error(`FAILED: ${name}\n${error.stack ?? error}`);
    await run.keepEvidence();
  } finally {
    await browser.close();
    clearTimeout(watchdog);
  }
}

/** What a scenario works with: pages in fresh browser contexts (each its own cookie jar, so
 * its own session), accounts, the `clarion` binary and the API. */
export class Run {
  constructor(browser, name) {
    this.browser = browser;
    this.name = name;
    this.pages = [];
    /** Uncaught script errors and content-security-policy violations of any page. */
    this.scriptErrors = [];
  }

  /** A page in a browser context of its own, at `size` (a key of {@link VIEWPORTS}), with
   * playwright's context `options` (such as `userAgent`). Paths given to `page.goto` are
   * relative to the instance. */
  async page(size = 'laptop', options = {}) {
    const context = await this.browser.newContext({ baseURL: baseUrl, ...VIEWPORTS[size], ...options });
    context.setDefaultTimeout(STEP_LIMIT_MS);
    const page = await context.newPage();
    page.on('pageerror', (error) => this.scriptErrors.push(`${page.url()}: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' && message.text().includes('Content Security Policy')) {
        this.scriptErrors.push(`${page.url()}: ${message.text()}`);
      }
    });
    this.pages.push(page);
    return page;
  }

  /** A new page (context) logged in as `user`, on the overview. */
  async loggedIn(user, size = 'laptop', options = {}) {
    const page = await this.page(size, options);
    const response = await login(page, user);
    assert.equal(response.status(), 200, `${user.email} logs in`);
    return page;
  }

  /** Runs the `clarion` binary on the served installation and returns what it printed on
   * stdout. Links it prints point at the instance. */
  clarion(...args) {
    return execFileSync(setting('CLARION_BIN'), args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  }

  /** A new account with `role` that has not set its password: its one-time invitation link. */
  invite(role) {
    const email = `${role}-${randomUUID()}@example.test`;
    return { email, role, link: this.clarion('users', 'create', '--email', email, '--role', role) };
  }

  /** A new account with `role` and a password, set through its invitation link in a browser
   * context that is closed again: `{ email, password, role }`. */
  async newUser(role) {
    const { email, link } = this.invite(role);
    const password = `pw-${randomUUID()}`;
    const page = await this.page();
    const response = await setPassword(page, link, password);
    assert.equal(response.status(), 200, `${email} sets a password through the invitation link`);
    await page.context().close();
    return { email, password, role };
  }

  /** Calls the API with the admin key; returns the parsed answer, failing on an error status. */
  async api(method, apiPath, body) {
    const response = await fetch(new URL(apiPath, baseUrl), {
      method,
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    assert.ok(response.ok, `${method} ${apiPath} answered ${response.status}: ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** After a failure: a screenshot and the text of every page still open. */
  async keepEvidence() {
    const folder = path.join(artifacts, 'failures');
    mkdirSync(folder, { recursive: true });
    let n = 0;
    for (const page of this.pages.filter((page) => !page.isClosed())) {
      n += 1;
      const file = path.join(folder, `${this.name}-${n}.png`);
      try {
        await page.screenshot({ path: file, fullPage: true, timeout: 5_000 });
        const text = await page.locator('body').innerText({ timeout: 2_000 });
        console.error(`page ${n} at ${page.url()} (screenshot ${file}):\n${text.slice(0, 1500)}`);
      } catch (error) {
        console.error(`page ${n} at ${page.url()}: no screenshot (${error.message})`);
      }
    }
  }
}

/** The messages the instance's SMTP server (aiosmtpd, started by the Rust test) accepted so
 * far: `{ mail_from, rcpt_tos, raw }`, `raw` being the message as received. */
export function receivedMail() {
  const folder = setting('CLARION_SMTP_DIR');
  return readdirSync(folder)
    .filter((name) => name.endsWith('.json'))
    .map((name) => ({
      ...JSON.parse(readFileSync(path.join(folder, name), 'utf8')),
      raw: readFileSync(path.join(folder, name.replace(/\.json$/, '.eml')), 'utf8'),
    }));
}

/** Waits until `condition()` (sync or async) is true, checking every 100 ms, for as long as a
 * step may take; fails naming `what` was awaited. For what no page shows, such as mail
 * arriving; on a page, wait for the element instead. */
export async function waitFor(condition, what) {
  const deadline = Date.now() + STEP_LIMIT_MS;
  while (!(await condition())) {
    assert.ok(Date.now() < deadline, `gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Opens `target` (a path or a URL); returns the answer to the last request of the
 * navigation (after redirects). */
export async function visit(page, target) {
  const response = await page.goto(target);
  assert.ok(response, `${target} answered`);
  return response;
}

/** Clicks a control that submits a form and waits for the page that answers; returns that
 * answer (after redirects). */
export async function submit(page, control) {
  const answer = page.waitForResponse(
    (response) =>
      response.request().isNavigationRequest() &&
      response.frame() === page.mainFrame() &&
      !(response.status() >= 300 && response.status() < 400),
  );
  await control.click();
  const response = await answer;
  await page.waitForLoadState();
  return response;
}

/** Logs in through the login form; returns the page that answers. */
export async function login(page, { email, password }) {
  await visit(page, '/login');
  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  return submit(page, page.getByRole('button', { name: 'Log in', exact: true }));
}

/** Sets a password through a one-time link's form; returns the page that answers. */
export async function setPassword(page, link, password, confirm = password) {
  await visit(page, link);
  await page.getByLabel('New password').fill(password);
  await page.getByLabel('Repeat the password').fill(confirm);
  return submit(page, page.getByRole('button', { name: 'Save password and log in' }));
}

/** The page's visible text. */
export function text(page) {
  return page.locator('body').innerText();
}

/** axe-core's serious and critical findings on the page, one line each. */
export async function accessibilityProblems(page) {
  await page.evaluate(axeSource);
  const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return results.violations
    .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
    .map(
      (violation) =>
        `${violation.id} (${violation.impact}): ${violation.help}; at ${violation.nodes
          .map((node) => node.target.join(' '))
          .join(', ')}`,
    );
}
