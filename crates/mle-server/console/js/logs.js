// A job's (or one trial's) logs: followed live from the server's log stream, filtered by
// severity, and downloadable as JSON lines. The page keeps the newest lines only.

import { h, fill } from './dom.js';
import { followLogs, get } from './api.js';

const KEEP = 5000;
const RANK = { DEBUG: 0, INFO: 1, NOTICE: 1, WARNING: 2, ERROR: 3, CRITICAL: 4 };

function rank(sev) { return RANK[String(sev || 'INFO').toUpperCase()] ?? 1; }

export function logsPanel(container, { path, trial }) {
  const ctl = new AbortController();
  const entries = [];
  const q = trial ? `?trial=${encodeURIComponent(trial)}` : '';
  const sev = h('select', { id: 'log-severity', 'aria-label': 'Lowest severity shown' },
    [['0', 'all'], ['1', 'INFO and up'], ['2', 'WARNING and up'], ['3', 'ERROR and up']].map(([v, l]) => h('option', { value: v }, l)));
  const list = h('ol', { class: 'log', id: 'log-lines', 'aria-live': 'off', tabindex: '0', 'aria-label': 'Log lines' });
  const state = h('span', { class: 'hint', role: 'status' }, 'following…');
  const download = h('button', { type: 'button', class: 'secondary', onclick: save }, 'Download');
  fill(container, h('div', { class: 'toolbar' }, h('label', { for: 'log-severity' }, 'Severity'), sev, download, state), list);
  sev.addEventListener('change', redraw);

  function row(e) {
    const s = String(e.severity || 'INFO').toUpperCase();
    return h('li', { class: `sev-${s}`, dataset: { severity: s } },
      h('span', { class: 'ts' }, e.time ? new Date(e.time * 1000).toLocaleTimeString() : ''),
      h('span', { class: 'sev' }, s),
      h('span', { class: 'task' }, [e.trial ? `trial ${e.trial} ` : '', e.task || '']),
      h('span', { class: 'msg' }, e.message === undefined ? JSON.stringify(e) : String(e.message)));
  }

  function visible(e) { return rank(e.severity) >= Number(sev.value); }

  function redraw() { fill(list, entries.filter(visible).map(row)); }

  function add(batch) {
    const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    entries.push(...batch);
    const over = entries.length - KEEP;
    if (over > 0) { entries.splice(0, over); redraw(); } else { list.append(...batch.filter(visible).map(row)); }
    if (atEnd) list.scrollTop = list.scrollHeight;
  }

  // The whole log, page by page, as JSON lines (not only what the page keeps).
  async function save() {
    download.disabled = true;
    try {
      const lines = [];
      let token = '';
      for (let i = 0; i < 10000; i += 1) {
        const sep = q ? '&' : '?';
        const r = await get(`${path}/logs${q}${sep}pageToken=${encodeURIComponent(token)}`);
        for (const e of r.entries || []) lines.push(JSON.stringify(e));
        if (!(r.entries || []).length || r.nextPageToken === token) break;
        token = r.nextPageToken;
      }
      const url = URL.createObjectURL(new Blob([lines.join('\n') + '\n'], { type: 'application/x-ndjson' }));
      const a = h('a', { href: url, download: `${path.split('/').pop()}${trial ? `-trial-${trial}` : ''}.log.jsonl` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      state.textContent = e.message;
    } finally {
      download.disabled = false;
    }
  }

  followLogs(`${path}/logs/stream${q}`, {
    signal: ctl.signal,
    onEntries: (batch) => { if (batch.length) add(batch); },
    onEnd: (s) => { state.textContent = `the job is ${s}; ${entries.length} lines`; },
    onError: (e) => { state.textContent = `reconnecting (${e.message})`; },
  });
  return () => ctl.abort();
}
