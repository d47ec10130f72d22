// Password reset by a one-time link (`clarion users reset-link`): a bad confirmation is shown
// beside its field, the new password logs the person in and replaces the old one, sessions
// from before are logged out, and the link refuses a second use (as does a tampered link).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { login, scenario, setPassword, submit, visit } from '../lib/harness.mjs';

await scenario('password-reset', async (run) => {
  const user = await run.newUser('viewer');
  const before = await run.loggedIn(user);
  const link = run.clarion('users', 'reset-link', '--email', user.email);

  const tampered = link.replace(/.$/, (last) => (last === 'A' ? 'B' : 'A'));
  const page = await run.page();
  assert.equal((await visit(page, tampered)).status(), 410, 'a tampered link is refused');

  let response = await setPassword(page, link, 'long enough password', 'another password');
  assert.equal(response.status(), 422);
  assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Choose a new password');
  assert.match(await page.locator('#confirm-error').innerText(), /does not match/);

  // The same link open in another tab, to be submitted after it was used.
  const stale = await run.page();
  await visit(stale, link);

  const password = `new-${randomUUID()}`;
  response = await setPassword(page, link, password);
  assert.equal(response.status(), 200);
  assert.equal(new URL(page.url()).pathname, '/', 'the new password logs the person in');

  response = await visit(page, link);
  assert.equal(response.status(), 410, 'the link works once');
  assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Link not valid');

  const late = `late-${randomUUID()}`;
  await stale.getByLabel('New password').fill(late);
  await stale.getByLabel('Repeat the password').fill(late);
  response = await submit(stale, stale.getByRole('button', { name: 'Save password and log in' }));
  assert.equal(response.status(), 410, 'a form of the used link is refused too');

  await visit(before, '/');
  assert.equal(new URL(before.url()).pathname, '/login', 'sessions from before the reset are logged out');

  const other = await run.page();
  assert.equal((await login(other, user)).status(), 401, 'the old password no longer works');
  assert.equal((await login(other, { ...user, password: late })).status(), 401, 'nor does the late one');
  assert.equal((await login(other, { ...user, password })).status(), 200, 'the new one does');
});
