// The overview with its assets stays under 200 KB transferred on a first visit (cold cache):
// the bytes the browser itself counts (Resource Timing's transferSize: headers and body as
// they crossed the network) for the page and everything it loaded.

import assert from 'node:assert/strict';

import { scenario, users, visit } from '../lib/harness.mjs';

const BUDGET_BYTES = 200 * 1024;

await scenario('page-weight', async (run) => {
  // The session of a login, in a new context whose cache is empty: the overview is fetched
  // with every asset, as on a first visit.
  const login = await run.loggedIn(users.admin);
  const page = await run.page('laptop', { storageState: await login.context().storageState() });
  await visit(page, '/');
  await page.waitForLoadState('networkidle');
  const entries = await page.evaluate(() =>
    [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')].map((entry) => ({
      name: new URL(entry.name).pathname,
      bytes: entry.transferSize,
    })),
  );
  const total = entries.reduce((sum, entry) => sum + entry.bytes, 0);
  console.log(
    `overview: ${(total / 1024).toFixed(1)} KB transferred\n${entries
      .map((entry) => `  ${entry.name}: ${entry.bytes} B`)
      .join('\n')}`,
  );
  assert.ok(entries.some((entry) => entry.name.endsWith('uPlot.iife.min.js')), 'the chart library was loaded');
  assert.ok(total > 0, 'the browser counted the transfer');
  assert.ok(total < BUDGET_BYTES, `the overview transferred ${total} bytes, over ${BUDGET_BYTES}`);
});
