// A viewer or a marketer cannot reach admin actions: no link or button to them is shown, the
// users page answers the 403 page, and an admin action posted with their own valid CSRF token
// (a viewer promoting themselves) is refused without effect.

import assert from 'node:assert/strict';

import { scenario, submit, users, visit } from '../lib/harness.mjs';

/** Links and forms that lead to admin actions. */
const ADMIN_CONTROLS = 'a[href^="/users"], form[action^="/users"]';

await scenario('roles', async (run) => {
  const admin = await run.loggedIn(users.admin);
  assert.equal(await admin.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Users' }).count(), 1);

  for (const role of ['viewer', 'marketer']) {
    const page = await run.loggedIn(users[role]);
    for (const path of ['/', '/account/sessions']) {
      await visit(page, path);
      assert.equal(await page.locator(ADMIN_CONTROLS).count(), 0, `${role} sees no admin control on ${path}`);
    }
    const response = await visit(page, '/users');
    assert.equal(response.status(), 403, `${role} opening /users`);
    assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Not allowed');
    assert.match(await page.locator('main').innerText(), new RegExp(`admin role or higher; you are a ${role}`));
    assert.equal(await page.locator(ADMIN_CONTROLS).count(), 0);
  }

  // A viewer posts "make me an admin" from their own page, with their own session's token.
  const viewer = await run.newUser('viewer');
  await visit(admin, '/users');
  const roleForm = admin.locator(`tr[data-user="${viewer.email}"] form[action$="/role"]`);
  const action = await roleForm.getAttribute('action');
  const page = await run.loggedIn(viewer);
  await page.evaluate((action) => {
    const token = document.querySelector('form[action="/logout"] input[name="csrf"]').value;
    const form = document.createElement('form');
    form.method = 'post';
    form.action = action;
    for (const [name, value] of [['csrf', token], ['role', 'admin']]) {
      const input = document.createElement('input');
      input.type = 'hidden';
      input.name = name;
      input.value = value;
      form.append(input);
    }
    const button = document.createElement('button');
    button.id = 'escalate';
    button.textContent = 'Make me an admin';
    form.append(button);
    document.body.append(form);
  }, action);
  const response = await submit(page, page.locator('#escalate'));
  assert.equal(response.status(), 403);
  assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Not allowed');
  await visit(admin, '/users');
  assert.equal(
    await admin.locator(`tr[data-user="${viewer.email}"] select[name="role"]`).inputValue(),
    'viewer',
    'the role did not change',
  );
  assert.equal((await visit(page, '/users')).status(), 403);
});
