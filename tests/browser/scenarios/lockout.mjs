// A login locked out after repeated failures: after as many wrong passwords as
// `dashboard.lockout_account_failures` (5 by default), the right password is refused too and
// the page says why; other accounts still log in from the same address.

import assert from 'node:assert/strict';

import { login, scenario, users, visit } from '../lib/harness.mjs';

/** `lockout_account_failures` of config/default.toml, which the test server runs with. */
const ALLOWED_FAILURES = 5;

await scenario('lockout', async (run) => {
  const user = await run.newUser('viewer');
  const page = await run.page();
  for (let attempt = 1; attempt <= ALLOWED_FAILURES; attempt += 1) {
    const response = await login(page, { email: user.email, password: `wrong guess ${attempt}` });
    assert.equal(response.status(), 401, `failure ${attempt} is a wrong password`);
    assert.match(await page.getByRole('alert').innerText(), /email address or password is wrong/);
  }

  const response = await login(page, user);
  assert.equal(response.status(), 429, 'the right password is refused while locked out');
  assert.match(
    await page.getByRole('alert').innerText(),
    /^Too many failed logins for this account or from this address\. Logins are refused, even with the right password, for 15 minutes\.$/,
  );
  await visit(page, '/');
  assert.equal(new URL(page.url()).pathname, '/login', 'no session was started');

  // The lock is on the account: another person logs in from the same address.
  const other = await run.page();
  assert.equal((await login(other, users.viewer)).status(), 200);
});
