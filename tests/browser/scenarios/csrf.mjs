// State-changing forms refuse a forged or a missing CSRF token with the "Form refused" page,
// and nothing changes: no user is invited, no session is logged out.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { scenario, submit, text, users, visit } from '../lib/harness.mjs';

await scenario('csrf', async (run) => {
  // A forged token on the admin's invitation form.
  const admin = await run.loggedIn(users.admin);
  await visit(admin, '/users');
  const email = `invited-${randomUUID()}@example.test`;
  const invite = admin.locator('form[action="/users"]');
  await invite.getByLabel('Email address').fill(email);
  // A token of the right shape that is not this session's.
  await invite.locator('input[name="csrf"]').evaluate((input) => {
    input.value = 'f'.repeat(input.value.length);
  });
  let response = await submit(admin, invite.getByRole('button', { name: 'Invite', exact: true }));
  assert.equal(response.status(), 403);
  assert.equal(await admin.getByRole('heading', { level: 1 }).innerText(), 'Form refused');
  await visit(admin, '/users');
  assert.equal(await admin.locator(`tr[data-user="${email}"]`).count(), 0, 'no user was invited');
  // The same form with its own token invites: the token alone made the difference.
  await admin.locator('form[action="/users"]').getByLabel('Email address').fill(email);
  response = await submit(admin, admin.getByRole('button', { name: 'Invite', exact: true }));
  assert.equal(response.status(), 200);
  await visit(admin, '/users');
  assert.equal(await admin.locator(`tr[data-user="${email}"]`).count(), 1);

  // A missing token on "Log out every other session".
  const user = await run.newUser('viewer');
  const here = await run.loggedIn(user);
  const elsewhere = await run.loggedIn(user);
  await visit(here, '/account/sessions');
  const sessions = await here.locator('#sessions tbody tr').count();
  assert.ok(sessions >= 2, `two browsers are logged in, the page lists ${sessions}`);
  await here.locator('form[action="/account/sessions/revoke-others"] input[name="csrf"]').evaluate((input) => input.remove());
  response = await submit(here, here.getByRole('button', { name: 'Log out every other session' }));
  assert.equal(response.status(), 403);
  assert.match(await text(here), /This form was refused/);
  response = await visit(elsewhere, '/account/sessions');
  assert.equal(new URL(elsewhere.url()).pathname, '/account/sessions', 'the other browser is still logged in');
  assert.equal(await elsewhere.locator('#sessions tbody tr').count(), sessions, 'no session was logged out');
});
