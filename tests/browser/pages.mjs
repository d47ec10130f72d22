// The dashboard's main pages. scenarios/pages.mjs opens each at laptop and phone size, checks
// it with axe-core (no serious or critical violation) and saves a screenshot
// <artifacts>/<name>-<width>x<height>.png. A new page is one line here.
//
// name: the screenshot's name; path: where it is, or a function of the Run returning that;
// as: the role of the account that opens it (none: logged out); status: the answer expected
// (200 unless given).

export const pages = [
  { name: 'login', path: '/login' },
  { name: 'set-password', path: (run) => run.invite('viewer').link },
  { name: 'link-not-valid', path: '/password/not-a-valid-link', status: 410 },
  { name: 'overview', path: '/', as: 'admin' },
  { name: 'overview-viewer', path: '/', as: 'viewer' },
  { name: 'sessions', path: '/account/sessions', as: 'marketer' },
  { name: 'users', path: '/users', as: 'admin' },
  { name: 'forbidden', path: '/users', as: 'viewer', status: 403 },
];
