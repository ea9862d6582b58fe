// Building the page from data, safely: every user string becomes a text node (never HTML),
// attributes are set one by one, and event handlers are functions, never strings.

/** An element `tag` with `attrs` and `children` (strings become text, null/false are skipped). */
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (k === 'value' || k === 'checked' || k === 'selected') {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** RFC 3339 time as local time, or '' for none. */
export function time(t) {
  if (!t) return '';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleString();
}

/** Seconds between two RFC 3339 times (or until now), as `1h 2m 3s`. */
export function duration(start, end) {
  if (!start) return '';
  const a = Date.parse(start);
  const b = end ? Date.parse(end) : Date.now();
  if (Number.isNaN(a) || Number.isNaN(b)) return '';
  let s = Math.max(0, Math.round((b - a) / 1000));
  const parts = [];
  if (s >= 3600) { parts.push(`${Math.floor(s / 3600)}h`); s %= 3600; }
  if (s >= 60 || parts.length) { parts.push(`${Math.floor(s / 60)}m`); s %= 60; }
  parts.push(`${s}s`);
  return parts.join(' ');
}

/** A number for a table cell: up to 6 significant digits. */
export function num(x) {
  if (x === null || x === undefined || x === '') return '';
  const n = Number(x);
  return Number.isFinite(n) ? String(Number(n.toPrecision(6))) : String(x);
}

/** A job's kind: training, tuning or prediction. */
export function jobType(job) {
  if (job.predictionInput) return 'prediction';
  if (job.trainingInput && job.trainingInput.hyperparameters) return 'tuning';
  return 'training';
}

/** Whether a job state is final. */
export function ended(state) {
  return ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(state);
}

/** A labelled form field. */
export function field(label, input) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

/** A status line for errors and progress (announced to screen readers). */
export function status() {
  return h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
}

/** Shows an error (or clears it with null). */
export function showError(el, err) {
  el.classList.toggle('error', Boolean(err));
  el.textContent = err ? (err.message || String(err)) : '';
}
