// The keyboard alone is enough: on the login page, Tab and Shift+Tab visit the skip link, the
// form and the footer in reading order, each with a visible focus outline; the form submits
// with Enter; on the overview the skip link moves focus to the content.

import assert from 'node:assert/strict';
import path from 'node:path';

import { artifacts, scenario, users, visit } from '../lib/harness.mjs';

/** What has the focus: its label (form fields) or text, and whether an outline shows it. */
function focused(page) {
  return page.evaluate(() => {
    const element = document.activeElement;
    const style = getComputedStyle(element);
    return {
      name: (element.labels?.[0]?.textContent ?? element.textContent).trim(),
      outlined: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
    };
  });
}

await scenario('keyboard', async (run) => {
  const page = await run.page();
  await visit(page, '/login');
  assert.equal((await focused(page)).name, 'Email address', 'the login form starts in the email field');

  // Back from the email field to the top, then forward through the whole page.
  const order = [];
  for (const key of ['Shift+Tab', 'Shift+Tab', 'Tab', 'Tab', 'Tab', 'Tab', 'Tab', 'Tab', 'Tab']) {
    await page.keyboard.press(key);
    const now = await focused(page);
    assert.ok(now.outlined, `"${now.name}" shows that it has the focus`);
    order.push(now.name);
    if (now.name === 'Skip to content') {
      await page.screenshot({ path: path.join(artifacts, 'keyboard-skip-link-1280x800.png') });
    }
  }
  assert.deepEqual(order, [
    'Clarion',
    'Skip to content',
    'Clarion',
    'Email address',
    'Password',
    'Log in',
    'Forgot your password?',
    'API reference',
    'Third-party licenses',
  ]);

  await page.getByLabel('Email address').focus();
  await page.keyboard.type(users.viewer.email);
  await page.keyboard.press('Tab');
  await page.keyboard.type(users.viewer.password);
  await Promise.all([page.waitForURL((url) => url.pathname === '/'), page.keyboard.press('Enter')]);
  assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Overview');

  // A page just loaded: the first Tab reaches the skip link.
  await page.keyboard.press('Tab');
  assert.equal((await focused(page)).name, 'Skip to content');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'main', 'the skip link moves focus to the content');
});
