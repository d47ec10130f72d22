// Logging in and out: a wrong password is refused on the page (what was typed is kept), the
// right one lands where the person was going, and logging out ends the session.

import assert from 'node:assert/strict';

import { login, scenario, submit, text, users, visit } from '../lib/harness.mjs';

await scenario('login', async (run) => {
  const page = await run.page();
  const user = users.marketer;

  // A page behind the login sends the person to it, and back after.
  let response = await visit(page, '/account/sessions');
  assert.match(page.url(), /\/login\?next=%2Faccount%2Fsessions$|\/login\?next=\/account\/sessions$/);

  await page.getByLabel('Email address').fill(user.email);
  await page.getByLabel('Password', { exact: true }).fill('not the password');
  response = await submit(page, page.getByRole('button', { name: 'Log in', exact: true }));
  assert.equal(response.status(), 401);
  assert.match(await page.getByRole('alert').innerText(), /email address or password is wrong/);
  assert.equal(await page.getByLabel('Email address').inputValue(), user.email, 'the email address is kept');

  // Empty fields are named beside the field.
  await page.getByLabel('Email address').fill('');
  response = await submit(page, page.getByRole('button', { name: 'Log in', exact: true }));
  assert.equal(response.status(), 422);
  assert.equal(await page.locator('#email-error').innerText(), 'Enter your email address.');
  assert.equal(await page.locator('#password-error').innerText(), 'Enter your password.');
  assert.equal(await page.getByLabel('Email address').getAttribute('aria-invalid'), 'true');

  await page.getByLabel('Email address').fill(user.email);
  await page.getByLabel('Password', { exact: true }).fill(user.password);
  response = await submit(page, page.getByRole('button', { name: 'Log in', exact: true }));
  assert.equal(response.status(), 200);
  assert.equal(new URL(page.url()).pathname, '/account/sessions');
  assert.match(await page.locator('header').innerText(), new RegExp(user.email.replace('.', '\\.')));

  // The overview is there for a logged-in person.
  response = await visit(page, '/');
  assert.equal(response.status(), 200);
  assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Overview');

  // Logging out ends the session: the overview asks for a login again.
  response = await submit(page, page.getByRole('button', { name: 'Log out' }));
  assert.equal(new URL(page.url()).pathname, '/login');
  response = await visit(page, '/');
  assert.equal(new URL(page.url()).pathname, '/login');

  // A second login works as the first (the failures before did not lock the account).
  response = await login(page, user);
  assert.equal(response.status(), 200);
  assert.match(await text(page), /Overview/);
});
