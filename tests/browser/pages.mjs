// The dashboard's main pages. scenarios/pages.mjs opens each at laptop and phone size, checks
// it with axe-core (no serious or critical violation) and saves a screenshot
// <artifacts>/<name>-<width>x<height>.png. A new page is one line here.
//
// name: the screenshot's name; path: where it is, or a function of the Run returning that;
// as: the role of the account that opens it (none: logged out); status: the answer expected
// (200 unless given).

/** The path under the campaign the pages scenario launched. */
const springSale = (rest) => async (run) => {
  const { campaigns } = await run.api('GET', '/api/v1/campaigns');
  return `/campaigns/${campaigns.find((c) => c.name === 'Spring sale').id}${rest}`;
};

export const pages = [
  { name: 'login', path: '/login' },
  { name: 'set-password', path: (run) => run.invite('viewer').link },
  { name: 'link-not-valid', path: '/password/not-a-valid-link', status: 410 },
  { name: 'overview', path: '/', as: 'admin' },
  { name: 'overview-viewer', path: '/', as: 'viewer' },
  { name: 'sessions', path: '/account/sessions', as: 'marketer' },
  { name: 'users', path: '/users', as: 'admin' },
  { name: 'campaigns', path: '/campaigns', as: 'marketer' },
  { name: 'campaign-new', path: '/campaigns/new', as: 'marketer' },
  { name: 'campaigns-viewer', path: '/campaigns', as: 'viewer' },
  { name: 'campaign', path: springSale(''), as: 'marketer' },
  { name: 'campaign-report', path: springSale('/report'), as: 'viewer' },
  { name: 'campaign-timing', path: springSale('/schedule'), as: 'marketer' },
  { name: 'forbidden', path: '/users', as: 'viewer', status: 403 },
  { name: 'contacts', path: '/contacts', as: 'viewer' },
  { name: 'contact', path: '/contacts/page-0', as: 'viewer' },
  { name: 'segments', path: '/segments', as: 'marketer' },
  { name: 'segment', path: '/segments/gold-customers', as: 'viewer' },
  { name: 'segment-builder', path: '/segments/gold-customers/edit', as: 'marketer' },
  { name: 'crosstab', path: '/segments/crosstab?rows_kind=attr&rows=tier&columns_kind=segment&columns=gold-customers', as: 'viewer' },
  { name: 'suggestions', path: '/segments/suggestions', as: 'marketer' },
  { name: 'forgot-password', path: '/forgot-password' },
  { name: 'channels', path: '/channels', as: 'admin' },
  { name: 'channels-forbidden', path: '/channels', as: 'viewer', status: 403 },
  { name: 'settings', path: '/settings', as: 'admin' },
  { name: 'suppressions', path: '/settings/suppressions', as: 'marketer' },
  { name: 'suppressions-viewer', path: '/settings/suppressions', as: 'viewer' },
];
