// Models and versions: the project's models (create one), a model's versions (state, origin,
// default; create one from a job's export, set the default, delete), and a "Try it" form that
// sends instances to a version and shows the predictions.

import { h, fill, time, status, showError, field } from './dom.js';
import { api, get, post, project as projectPath } from './api.js';

const REFRESH_MS = 2000;

export function modelsPage({ project, params, can, main }) {
  const out = status();
  const body = h('tbody');
  let dead = false;
  let timer = null;
  const origin = params.get('origin') || '';
  const name = h('input', { id: 'model-name', name: 'name', required: true, pattern: '[A-Za-z][A-Za-z0-9_]*', autocomplete: 'off' });
  const desc = h('input', { id: 'model-desc', name: 'description', autocomplete: 'off' });
  const create = can('ml.models.create') ? h('form', { class: 'card', id: 'create-model', onsubmit: async (e) => {
    e.preventDefault();
    try {
      await post(`${projectPath(project)}/models`, { name: name.value.trim(), description: desc.value });
      const q = origin ? `?${new URLSearchParams({ origin })}` : '';
      location.hash = `#/p/${encodeURIComponent(project)}/models/${encodeURIComponent(name.value.trim())}${q}`;
    } catch (err) { showError(out, err); }
  } }, h('h2', {}, 'Create a model'), field('Name', name), field('Description', desc), h('button', { type: 'submit' }, 'Create model')) : null;
  fill(main, h('h1', {}, 'Models'),
    origin ? h('p', { class: 'hint' }, 'Pick (or create) the model the new version of ', h('code', {}, origin), ' goes into.') : null,
    h('div', { class: 'scroll' }, h('table', { id: 'models-table' }, h('caption', { class: 'sr-only' }, 'Models'),
      h('thead', {}, h('tr', {}, ['Model', 'Description', 'Default version', 'Labels'].map((c) => h('th', { scope: 'col' }, c)))), body)),
    out, create);

  async function load() {
    clearTimeout(timer);
    try {
      const r = await get(`${projectPath(project)}/models?pageSize=100`);
      if (dead) return;
      const q = origin ? `?${new URLSearchParams({ origin })}` : '';
      fill(body, (r.models || []).map((m) => {
        const id = m.name.split('/').pop();
        return h('tr', { dataset: { model: id } },
          h('th', { scope: 'row' }, h('a', { href: `#/p/${encodeURIComponent(project)}/models/${encodeURIComponent(id)}${q}` }, id)),
          h('td', {}, m.description || ''),
          h('td', {}, m.defaultVersion ? m.defaultVersion.name.split('/').pop() : ''),
          h('td', {}, Object.entries(m.labels || {}).map(([k, v]) => `${k}=${v}`).join(', ')));
      }));
      if (!(r.models || []).length) body.append(h('tr', {}, h('td', { colspan: '4' }, 'No models yet.')));
    } catch (e) { if (!dead) showError(out, e); }
    if (!dead) timer = setTimeout(load, REFRESH_MS * 3);
  }
  load();
  return () => { dead = true; clearTimeout(timer); };
}

function tryIt(path, version) {
  const input = h('textarea', { id: `instances-${version}`, rows: '4', spellcheck: 'false', class: 'mono' }, '[\n  [5.1, 3.5, 1.4, 0.2]\n]');
  const result = h('pre', { class: 'result', id: `predictions-${version}`, tabindex: '0' });
  const out = status();
  const form = h('form', { class: 'try', dataset: { version }, onsubmit: async (e) => {
    e.preventDefault();
    showError(out, null);
    let instances;
    try { instances = JSON.parse(input.value); } catch (err) { showError(out, new Error(`The instances are not JSON: ${err.message}`)); return; }
    if (!Array.isArray(instances)) { showError(out, new Error('The instances must be a JSON list, one item per instance.')); return; }
    out.textContent = 'predicting…';
    try {
      const r = await post(`${path}/versions/${encodeURIComponent(version)}:predict`, { instances });
      result.textContent = JSON.stringify(r.predictions, null, 2);
      out.textContent = `${(r.predictions || []).length} predictions`;
    } catch (err) { showError(out, err); }
  } }, h('h3', {}, `Try ${version}`), field('Instances (JSON list)', input), h('button', { type: 'submit' }, 'Predict'), out, result);
  return form;
}

export function modelPage({ project, params, can, main }, model) {
  const path = `${projectPath(project)}/models/${encodeURIComponent(model)}`;
  const out = status();
  const info = h('p', { class: 'hint' });
  const body = h('tbody');
  const tries = h('div', { class: 'grid' });
  let dead = false;
  let timer = null;
  let shown = '';
  const vname = h('input', { id: 'version-name', required: true, pattern: '[A-Za-z][A-Za-z0-9_]*', autocomplete: 'off' });
  const origin = h('input', { id: 'version-origin', required: true, value: params.get('origin') || '', placeholder: 'a job export dir, local or gs:// / s3://', autocomplete: 'off' });
  const create = can('ml.versions.create') ? h('form', { class: 'card', id: 'create-version', onsubmit: async (e) => {
    e.preventDefault();
    showError(out, null);
    try {
      await post(`${path}/versions`, { name: vname.value.trim(), deploymentUri: origin.value.trim() });
      out.textContent = `Creating version ${vname.value.trim()}…`;
      vname.value = '';
      load();
    } catch (err) { showError(out, err); }
  } }, h('h2', {}, 'Create a version'), field('Name', vname), field('Deployment URI (an export)', origin), h('button', { type: 'submit' }, 'Create version')) : null;
  fill(main,
    h('p', { class: 'crumbs' }, h('a', { href: `#/p/${encodeURIComponent(project)}/models` }, 'Models'), ' / '),
    h('h1', {}, model), info,
    h('div', { class: 'scroll' }, h('table', { id: 'versions-table' }, h('caption', { class: 'sr-only' }, 'Versions'),
      h('thead', {}, h('tr', {}, ['Version', 'State', 'Default', 'Deployment URI', 'Framework', 'Created', ''].map((c) => h('th', { scope: 'col' }, c)))), body)),
    out, create, tries);

  async function act(method, url, what) {
    showError(out, null);
    try { await api(method, url, method === 'DELETE' ? undefined : {}); out.textContent = what; load(); } catch (e) { showError(out, e); }
  }

  async function load() {
    clearTimeout(timer);
    try {
      const m = await get(path);
      const r = await get(`${path}/versions?pageSize=100`);
      if (dead) return;
      info.textContent = m.description || '';
      const versions = r.versions || [];
      fill(body, versions.map((v) => {
        const id = v.name.split('/').pop();
        const buttons = [];
        if (v.state === 'READY' && !v.isDefault && can('ml.versions.setDefault')) buttons.push(h('button', { type: 'button', class: 'secondary', onclick: () => act('POST', `${path}/versions/${encodeURIComponent(id)}:setDefault`, `${id} is the default`) }, 'Make default'));
        if (can('ml.versions.delete')) buttons.push(h('button', { type: 'button', class: 'danger', onclick: () => { if (confirm(`Delete version ${id}?`)) act('DELETE', `${path}/versions/${encodeURIComponent(id)}`, `deleting ${id}`); } }, 'Delete'));
        return h('tr', { dataset: { version: id, state: v.state } },
          h('th', { scope: 'row' }, id),
          h('td', { class: `state ${v.state}` }, v.state, v.errorMessage ? h('span', { class: 'error' }, ` ${v.errorMessage}`) : null),
          h('td', {}, v.isDefault ? 'default' : ''),
          h('td', {}, h('code', {}, v.deploymentUri || '')),
          h('td', {}, v.framework || ''),
          h('td', {}, time(v.createTime)),
          h('td', { class: 'actions' }, buttons));
      }));
      if (!versions.length) body.append(h('tr', {}, h('td', { colspan: '7' }, 'No versions yet.')));
      const ready = versions.filter((v) => v.state === 'READY').map((v) => v.name.split('/').pop());
      const key = ready.join(',');
      if (key !== shown && (can('ml.versions.predict') || can('ml.models.predict'))) {
        shown = key;
        fill(tries, ready.map((v) => h('section', { class: 'card' }, tryIt(path, v))));
      }
      const busy = versions.some((v) => v.state === 'CREATING' || v.state === 'DELETING');
      if (busy) timer = setTimeout(load, REFRESH_MS);
      else if (!out.classList.contains('error')) out.textContent = '';
    } catch (e) { if (!dead) showError(out, e); }
  }
  load();
  return () => { dead = true; clearTimeout(timer); };
}
