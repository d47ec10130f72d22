// A person sees the browsers logged in to their account on /account/sessions and logs one of
// them out: that browser is sent to the login page, this one stays logged in.

import assert from 'node:assert/strict';

import { scenario, submit, visit } from '../lib/harness.mjs';

const OTHER_BROWSER = 'Clarion scenario: the other browser';

await scenario('sessions', async (run) => {
  const user = await run.newUser('marketer');
  const here = await run.loggedIn(user);
  const elsewhere = await run.loggedIn(user, 'phone', { userAgent: OTHER_BROWSER });

  await visit(here, '/account/sessions');
  const rows = here.locator('#sessions tbody tr');
  const before = await rows.count();
  const other = rows.filter({ hasText: OTHER_BROWSER });
  assert.equal(await other.count(), 1, 'the other browser is listed by its user agent');
  assert.equal(await rows.filter({ hasText: 'this browser' }).count(), 1, 'this browser is marked');

  const response = await submit(here, other.getByRole('button', { name: /^Revoke session/ }));
  assert.equal(response.status(), 200);
  assert.equal(await here.getByRole('status').innerText(), 'The session was logged out.');
  assert.equal(await rows.count(), before - 1);
  assert.equal(await rows.filter({ hasText: OTHER_BROWSER }).count(), 0);

  await visit(elsewhere, '/');
  assert.equal(new URL(elsewhere.url()).pathname, '/login', 'the revoked browser must log in again');
  await visit(here, '/');
  assert.equal(new URL(here.url()).pathname, '/', 'this browser is still logged in');
});
