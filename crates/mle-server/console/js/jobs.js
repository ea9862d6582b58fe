// The jobs page: a table of the project's jobs, newest first, filtered by state and id prefix,
// paged by the server, and refreshed every few seconds while the page is open.

import { h, fill, time, duration, jobType, status, showError } from './dom.js';
import { get, project as projectPath } from './api.js';

const STATES = ['', 'QUEUED', 'PREPARING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLING', 'CANCELLED'];
const REFRESH_MS = 2000;

export function jobsPage({ project, params, main }) {
  const state = params.get('state') || '';
  const prefix = params.get('prefix') || '';
  const size = Math.min(100, Math.max(1, Number(params.get('pageSize')) || 20));
  // The tokens of the pages before this one (for "Previous") and this page's own.
  const tokens = [''];
  let at = 0;
  let timer = null;
  let dead = false;

  const stateSel = h('select', { id: 'state-filter', name: 'state' }, STATES.map((s) => h('option', { value: s, selected: s === state }, s || 'any')));
  const prefixIn = h('input', { id: 'prefix-filter', name: 'prefix', type: 'search', value: prefix, placeholder: 'id prefix', autocomplete: 'off' });
  const filters = h('form', { class: 'filters', role: 'search', onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (stateSel.value) q.set('state', stateSel.value);
    if (prefixIn.value.trim()) q.set('prefix', prefixIn.value.trim());
    location.hash = `#/p/${encodeURIComponent(project)}/jobs${q.toString() ? `?${q}` : ''}`;
  } },
  h('div', { class: 'field' }, h('label', { for: 'state-filter' }, 'State'), stateSel),
  h('div', { class: 'field' }, h('label', { for: 'prefix-filter' }, 'Job id'), prefixIn),
  h('button', { type: 'submit' }, 'Filter'));
  stateSel.addEventListener('change', () => filters.requestSubmit());

  const body = h('tbody');
  const table = h('table', { class: 'jobs', id: 'jobs-table' },
    h('caption', { class: 'sr-only' }, `Jobs of project ${project}`),
    h('thead', {}, h('tr', {}, ['Job id', 'Type', 'State', 'Created', 'Duration', 'Labels'].map((c) => h('th', { scope: 'col' }, c)))),
    body);
  const prev = h('button', { type: 'button', class: 'secondary', disabled: true, onclick: () => { at -= 1; load(); } }, 'Previous');
  const next = h('button', { type: 'button', class: 'secondary', disabled: true, onclick: () => { at += 1; load(); } }, 'Next');
  const out = status();
  fill(main, h('h1', {}, 'Jobs'), filters, h('div', { class: 'scroll' }, table), h('div', { class: 'pager' }, prev, next), out);

  async function load() {
    clearTimeout(timer);
    const q = new URLSearchParams({ pageSize: String(size), orderBy: 'createTime desc' });
    const terms = [];
    if (state) terms.push(`state:${state}`);
    if (prefix) terms.push(`jobId:${prefix}*`);
    if (terms.length) q.set('filter', terms.join(' AND '));
    if (tokens[at]) q.set('pageToken', tokens[at]);
    try {
      const r = await get(`${projectPath(project)}/jobs?${q}`);
      if (dead) return;
      tokens[at + 1] = r.nextPageToken || '';
      render(r.jobs || []);
      prev.disabled = at === 0;
      next.disabled = !r.nextPageToken;
      showError(out, null);
      out.textContent = `${(r.jobs || []).length ? `Page ${at + 1}` : 'No jobs match.'} Updated ${new Date().toLocaleTimeString()}.`;
    } catch (e) {
      if (dead) return;
      showError(out, e);
    }
    timer = setTimeout(load, REFRESH_MS);
  }

  function render(jobs) {
    fill(body, jobs.map((j) => h('tr', { dataset: { job: j.jobId, state: j.state } },
      h('th', { scope: 'row' }, h('a', { href: `#/p/${encodeURIComponent(project)}/jobs/${encodeURIComponent(j.jobId)}` }, j.jobId)),
      h('td', {}, jobType(j)),
      h('td', { class: `state ${j.state}` }, j.state),
      h('td', {}, time(j.createTime)),
      h('td', {}, duration(j.startTime, j.endTime)),
      h('td', { class: 'labels' }, Object.entries(j.labels || {}).map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`))))));
  }

  load();
  return () => { dead = true; clearTimeout(timer); };
}
