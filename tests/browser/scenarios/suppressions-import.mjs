// A marketer imports a suppression list by choosing the CSV file: its rows are listed after
// the import, a bad row is named by its line, and a file over 2 MB is refused in the form.

import assert from 'node:assert/strict';

import { scenario, submit, visit } from '../lib/harness.mjs';

await scenario('suppressions-import', async (run) => {
  const user = await run.newUser('marketer');
  const page = await run.loggedIn(user);
  await visit(page, '/settings/suppressions');

  const file = page.getByLabel('File', { exact: true });
  assert.ok(await file.isVisible(), 'the file field is shown when scripts run');
  const csv = 'address,reason\nfile-one@import.example,asked by phone\nnot an address,typo\nfile-two@import.example,\n';
  await file.setInputFiles({ name: 'list.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
  const textarea = page.getByLabel('CSV', { exact: true });
  await textarea.evaluate((element, expected) => new Promise((resolve, reject) => {
    const started = Date.now();
    (function check() {
      if (element.value === expected) return resolve();
      if (Date.now() - started > 5000) return reject(new Error(`the file was not read: ${element.value}`));
      setTimeout(check, 20);
    })();
  }), csv);

  const response = await submit(page, page.getByRole('button', { name: 'Import' }));
  assert.equal(response.status(), 200);
  for (const address of ['file-one@import.example', 'file-two@import.example']) {
    assert.equal(await page.locator(`#suppressions tr[data-address="${address}"]`).count(), 1, `${address} is listed`);
  }
  assert.match(await page.locator('#import-errors').innerText(), /Line 3/, 'the bad row is named by its line');

  // Too large a file is refused before it is read, and names its size.
  await visit(page, '/settings/suppressions');
  const big = Buffer.alloc(2 * 1024 * 1024 + 1, 'a');
  await page.getByLabel('File', { exact: true }).setInputFiles({ name: 'huge.csv', mimeType: 'text/csv', buffer: big });
  const error = page.locator('#import-file-error');
  await error.waitFor({ state: 'visible' });
  assert.match(await error.innerText(), /huge\.csv is 2\.0 MB; the largest file taken is 2 MB/);
  assert.equal(await page.getByLabel('CSV', { exact: true }).inputValue(), '', 'nothing was read');
});
