// A marketer creates a campaign with a variant for each of two segments through the form,
// launches it (after the confirmation page) to the real SMTP server, watches the progress
// htmx polls reach done, and opens the report, whose figures match what the server received.

import assert from 'node:assert/strict';

import { receivedMail, scenario, submit, users, visit, waitFor } from '../lib/harness.mjs';

/** Fills the fields of one segment's first variant. */
async function variant(page, target, { segment, name, subject, html }) {
  await page.locator(`#t${target}-segment`).selectOption(segment);
  await page.locator(`#t${target}-v0-name`).fill(name);
  await page.locator(`#t${target}-v0-from`).fill('Shop <news@shop.example>');
  await page.locator(`#t${target}-v0-subject`).fill(subject);
  await page.locator(`#t${target}-v0-html`).fill(html);
}

await scenario('campaign-flow', async (run) => {
  const contacts = Array.from({ length: 5 }, (_, n) => ({
    external_id: `flow-${n}`,
    email: `flow-${n}@example.test`,
    first_name: `Flow${n}`,
    attributes: { flow_tier: n < 2 ? 'gold' : 'new' },
  }));
  await run.api('POST', '/api/v1/contacts/batch', { contacts });
  for (const tier of ['gold', 'new']) {
    await run.api('POST', '/api/v1/segments', {
      name: `Flow ${tier}`,
      slug: `flow-${tier}`,
      category: 'value',
      rule: { attr: 'flow_tier', op: '=', value: tier },
    });
  }

  const page = await run.loggedIn(users.marketer);
  assert.equal((await visit(page, '/campaigns/new')).status(), 200);
  await page.getByLabel('Name', { exact: true }).fill('Flow launch');
  await page.getByLabel('Holdout (%)').fill('0');
  await variant(page, 0, { segment: 'flow-gold', name: 'Gold', subject: 'For our best, {{ contact.first_name }}', html: '<p>Gold offer</p>' });
  // A second segment: the form comes back with one more section, what was typed kept.
  await submit(page, page.getByRole('button', { name: 'Add a segment' }));
  assert.equal(await page.locator('#t0-v0-subject').inputValue(), 'For our best, {{ contact.first_name }}');
  await variant(page, 1, { segment: 'flow-new', name: 'Welcome', subject: 'Welcome, {{ contact.first_name }}', html: '<p>Welcome offer</p>' });
  const saved = await submit(page, page.getByRole('button', { name: 'Save draft' }).last());
  assert.equal(saved.status(), 200);
  assert.match(new URL(page.url()).pathname, /^\/campaigns\/\d+$/);
  assert.equal(await page.locator('#campaign-status').innerText(), 'draft');

  // Launch asks first; the campaign page then shows progress until the run is done.
  await submit(page, page.getByRole('link', { name: 'Launch' }));
  assert.match(await page.getByRole('heading', { level: 1 }).innerText(), /^Launch Flow launch\?/);
  await submit(page, page.getByRole('button', { name: 'Yes, launch it' }));
  await page.locator('#progress[data-run-status="completed"]').waitFor();
  assert.equal(await page.locator('#total-sent').innerText(), '5');

  const delivered = () => receivedMail().filter((mail) => mail.rcpt_tos.some((to) => to.startsWith('flow-')));
  await waitFor(() => delivered().length === 5, 'five messages at the SMTP server');
  const subjects = delivered()
    .map((mail) => /^Subject: (.*)$/m.exec(mail.raw)[1].trim())
    .sort();
  assert.deepEqual(subjects, ['For our best, Flow0', 'For our best, Flow1', 'Welcome, Flow2', 'Welcome, Flow3', 'Welcome, Flow4']);

  await submit(page, page.getByRole('link', { name: 'Report' }));
  assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Report: Flow launch');
  assert.equal(await page.locator('#figure-sent').innerText(), '5');
  const perSegment = await page.locator('#segments tbody tr').evaluateAll((rows) =>
    rows.map((row) => [row.dataset.segment, row.querySelector('[data-figure="sent"]').textContent]));
  assert.equal(perSegment.length, 2, 'a row per segment');
  assert.deepEqual(perSegment.map(([, sent]) => sent).sort(), ['2', '3']);
});
