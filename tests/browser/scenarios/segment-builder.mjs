// A marketer builds a segment in the visual builder and watches its size in the live
// preview, switches to the text form and back without losing anything, sees a syntax error
// marked where it is (the text kept, the switch refused), and saves.

import assert from 'node:assert/strict';

import { scenario, submit, users, visit } from '../lib/harness.mjs';

await scenario('segment-builder', async (run) => {
  const contacts = Array.from({ length: 7 }, (_, n) => ({
    external_id: `builder-${n}`,
    email: `builder-${n}@example.test`,
    attributes: { builder_plan: n < 3 ? 'pro' : 'free' },
  }));
  await run.api('POST', '/api/v1/contacts/batch', { contacts });
  const page = await run.loggedIn(users.marketer);
  assert.equal((await visit(page, '/segments/new')).status(), 200);
  await page.getByLabel('Name', { exact: true }).fill('Builder pros');

  // Visual builder: one condition, and the preview follows each change.
  const size = page.locator('#preview-size');
  await page.getByRole('button', { name: 'Add condition to this group' }).click();
  await page.getByLabel('Attribute name').fill('builder_plan');
  await page.getByLabel('Value', { exact: true }).fill('pro');
  await assert.doesNotReject(size.filter({ hasText: /^3$/ }).waitFor());
  await page.getByLabel('Value', { exact: true }).fill('free');
  await size.filter({ hasText: /^4$/ }).waitFor();

  // To the text form and back: the same rule.
  await page.getByRole('tab', { name: 'Text' }).click();
  const text = page.getByLabel('Rule in the text form');
  await text.waitFor();
  assert.equal(await text.inputValue(), 'builder_plan = "free"');
  await page.getByRole('tab', { name: 'Visual builder' }).click();
  await page.getByLabel('Attribute name').waitFor();
  assert.equal(await page.getByLabel('Attribute name').inputValue(), 'builder_plan');
  assert.equal(await page.getByLabel('Value', { exact: true }).inputValue(), 'free');

  // A syntax error typed in the text form: marked, kept, and the switch refused.
  await page.getByRole('tab', { name: 'Text' }).click();
  const typo = 'builder_plan = "pro" and (';
  await text.fill(typo);
  await page.locator('#rule-problem mark').waitFor();
  await page.getByRole('tab', { name: 'Visual builder' }).click();
  await page.locator('#switch-error').filter({ hasText: /line 1, column/ }).waitFor();
  assert.equal(await page.getByRole('tab', { name: 'Text' }).getAttribute('aria-selected'), 'true');
  assert.equal(await text.inputValue(), typo, 'what was typed is kept');

  // Fixed, switched back to the visual builder, saved.
  await text.fill('builder_plan = "pro"');
  await size.filter({ hasText: /^3$/ }).waitFor();
  await page.getByRole('tab', { name: 'Visual builder' }).click();
  await page.getByLabel('Attribute name').waitFor();
  const response = await submit(page, page.getByRole('button', { name: 'Save segment' }));
  assert.equal(response.status(), 200);
  assert.equal(await page.locator('#figure-size').innerText(), '3');
});
