// The console's shell: sign-in, the header (project, pages, sign-out), and the hash router
// (`#/p/PROJECT/jobs`, `#/p/PROJECT/jobs/ID`, `#/p/PROJECT/models`, `#/p/PROJECT/models/M`).
// Each page is a function that fills `main` and returns what stops its timers and streams.

import { h, fill } from './dom.js';
import { get, token, setToken, signOut, whenUnauthorized, ApiError } from './api.js';
import { jobsPage } from './jobs.js';
import { jobPage } from './job.js';
import { modelsPage, modelPage } from './models.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let stop = () => {};
let me = null;

/** What the signed-in principal may do in `project`: `can('ml.jobs.cancel')`. */
function permissionsIn(project) {
  if (me.role === 'serverAdmin') return () => true;
  const p = (me.projects || []).find((x) => x.projectId === project);
  const held = new Set(p ? p.permissions : []);
  return (name) => held.has(name);
}

function signInPage(message) {
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'current-password', required: true, id: 'token' });
  const out = h('p', { class: 'status error', role: 'alert' }, message || '');
  const form = h('form', { class: 'card signin', onsubmit: async (e) => {
    e.preventDefault();
    out.textContent = '';
    try {
      me = await get('/v1/principal', { quiet401: true, tok: input.value.trim() });
      setToken(input.value.trim());
      route();
    } catch (err) {
      out.textContent = err instanceof ApiError && err.status === 401
        ? 'That token is not valid on this server.'
        : err.message;
      input.focus();
    }
  } },
  h('h1', {}, 'Sign in to mle'),
  h('div', { class: 'field' }, h('label', { for: 'token' }, 'Access token'), input),
  h('p', { class: 'hint' }, 'The server admin token is in <data-dir>/token; others come from `mle server tokens create`. It is kept in this tab only.'),
  h('button', { type: 'submit' }, 'Sign in'),
  out);
  fill(nav);
  fill(main, form);
  input.focus();
}

function header(project, page) {
  const projects = (me.projects || []).map((p) => p.projectId);
  if (!projects.includes(project)) projects.unshift(project);
  const select = h('select', { id: 'project', 'aria-label': 'Project', onchange: () => { location.hash = `#/p/${encodeURIComponent(select.value)}/jobs`; } },
    projects.map((p) => h('option', { value: p, selected: p === project }, p)));
  const link = (to, label) => h('a', { href: `#/p/${encodeURIComponent(project)}/${to}`, 'aria-current': page === to ? 'page' : null }, label);
  fill(nav,
    h('a', { href: '#/', class: 'brand' }, 'mle'),
    select,
    link('jobs', 'Jobs'),
    link('models', 'Models'),
    h('span', { class: 'who', title: me.role }, `${me.name} (${me.role})`),
    h('button', { type: 'button', class: 'secondary', onclick: () => { signOut(); me = null; location.hash = '#/signin'; route(); } }, 'Sign out'));
}

async function route() {
  stop();
  stop = () => {};
  if (!token()) return signInPage();
  if (!me) {
    try {
      me = await get('/v1/principal');
    } catch (e) {
      return signInPage(e.status === 401 ? 'Your token is no longer valid.' : e.message);
    }
  }
  const raw = location.hash.replace(/^#\/?/, '');
  const [pathPart, query = ''] = raw.split('?');
  const parts = pathPart.split('/').map(decodeURIComponent);
  const params = new URLSearchParams(query);
  if (parts[0] !== 'p' || !parts[1]) {
    const first = (me.projects && me.projects[0] && me.projects[0].projectId) || 'default';
    location.replace(`#/p/${encodeURIComponent(first)}/jobs`);
    return;
  }
  const project = parts[1];
  const ctx = { project, params, can: permissionsIn(project), main };
  const page = parts[2] || 'jobs';
  header(project, page);
  document.title = `mle · ${parts.slice(2).join(' · ') || 'jobs'} · ${project}`;
  if (page === 'jobs' && parts[3]) stop = jobPage(ctx, parts[3]);
  else if (page === 'jobs') stop = jobsPage(ctx);
  else if (page === 'models' && parts[3]) stop = modelPage(ctx, parts[3]);
  else if (page === 'models') stop = modelsPage(ctx);
  else fill(main, h('p', { class: 'status error' }, `No page '${page}'.`));
  main.focus({ preventScroll: true });
}

whenUnauthorized(() => { signOut(); me = null; signInPage('Your token is no longer valid.'); });
window.addEventListener('hashchange', route);
route();
