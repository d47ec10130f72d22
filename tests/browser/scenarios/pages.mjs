// Every main page (../pages.mjs) at laptop and phone size: it answers as expected, axe-core
// finds no serious or critical violation, and its screenshot is saved for people to look at.

import assert from 'node:assert/strict';
import path from 'node:path';

import {
  VIEWPORTS,
  accessibilityProblems,
  artifacts,
  login,
  receivedMail,
  scenario,
  users,
  visit,
  waitFor,
} from '../lib/harness.mjs';
import { pages } from '../pages.mjs';

/** Contacts, a segment and a launched campaign, so that the overview's tables and chart
 * show something. */
async function seed(run) {
  const contacts = Array.from({ length: 6 }, (_, n) => ({
    external_id: `page-${n}`,
    email: `page-${n}@example.test`,
    attributes: { tier: n < 4 ? 'gold' : 'silver' },
  }));
  await run.api('POST', '/api/v1/contacts/batch', { contacts });
  const segment = await run.api('POST', '/api/v1/segments', {
    name: 'Gold customers',
    category: 'value',
    rule: { attr: 'tier', op: '=', value: 'gold' },
  });
  const campaign = await run.api('POST', '/api/v1/campaigns', {
    name: 'Spring sale',
    goal: { event: 'purchase', window_hours: 168 },
    holdout_percent: 0,
    channels: ['email'],
    targets: [
      {
        segment: segment.slug,
        variants: [{ name: 'Gold', email: { subject: 'Spring', html: '<p>Spring is here.</p>', from: 'Shop <news@shop.example>' } }],
      },
    ],
  });
  await run.api('POST', `/api/v1/campaigns/${campaign.id}/launch`);
  const gold = contacts.filter((contact) => contact.attributes.tier === 'gold').map((contact) => contact.email);
  // Other scenarios send mail to the same server: count this campaign's recipients only.
  const delivered = () => receivedMail().flatMap((mail) => mail.rcpt_tos.filter((to) => to.startsWith('page-')));
  await waitFor(() => delivered().length === gold.length, 'the campaign at the SMTP server');
  assert.deepEqual(delivered().sort(), gold);
}

await scenario('pages', async (run) => {
  await seed(run);
  const problems = [];
  // One login per role; later pages reuse its cookies.
  const sessions = {};
  for (const entry of pages) {
    for (const [size, { viewport }] of Object.entries(VIEWPORTS)) {
      const page = await run.page(size, { storageState: sessions[entry.as] });
      if (entry.as && !sessions[entry.as]) {
        assert.equal((await login(page, users[entry.as])).status(), 200, `${entry.as} logs in`);
        sessions[entry.as] = await page.context().storageState();
      }
      const target = typeof entry.path === 'function' ? await entry.path(run) : entry.path;
      const response = await visit(page, target);
      const where = `${entry.name} (${target}) at ${size} size`;
      if (response.status() !== (entry.status ?? 200)) {
        problems.push(`${where} answered ${response.status()}, not ${entry.status ?? 200}`);
      }
      // Charts draw and htmx settles before the check and the picture.
      await page.waitForLoadState('networkidle');
      for (const problem of await accessibilityProblems(page)) {
        problems.push(`${where}: ${problem}`);
      }
      await page.screenshot({
        path: path.join(artifacts, `${entry.name}-${viewport.width}x${viewport.height}.png`),
        fullPage: true,
      });
      await page.context().close();
    }
  }
  assert.deepEqual(problems, [], 'every main page answers as expected and passes axe-core');
});
