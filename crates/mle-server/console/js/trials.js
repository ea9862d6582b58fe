// A tuning job's trials: the table (hyperparameters, final metric, state, duration; sortable
// by any column, filtered by state and text; the best trial marked), the parallel-coordinates
// plot with a choice of axes, and the objective per trial with the best so far.

import { h, fill, duration, num } from './dom.js';
import { parallel } from './parallel.js';
import { objective } from './charts.js';

function metric(t) {
  const v = t.finalMetric ? Number(t.finalMetric.objectiveValue) : NaN;
  return Number.isFinite(v) ? v : null;
}

/** The best trial's id under `goal`, if any trial has a metric. */
export function bestTrial(trials, goal) {
  let best = null;
  for (const t of trials) {
    const v = metric(t);
    if (v === null) continue;
    if (!best || (goal === 'MINIMIZE' ? v < metric(best) : v > metric(best))) best = t;
  }
  return best && best.trialId;
}

export function trialsSection(container, { spec, onPick }) {
  const params = spec.params || [];
  const goal = spec.goal || 'MAXIMIZE';
  const tag = spec.hyperparameterMetricTag || 'objective';
  let trials = [];
  let selected = '';
  let sortKey = 'metric';
  let sortDir = goal === 'MINIMIZE' ? 1 : -1;
  let chosen = params.map((p) => p.parameterName);
  let objPlot = null;

  const stateSel = h('select', { id: 'trial-state', 'aria-label': 'Trial state' },
    ['', 'SUCCEEDED', 'RUNNING', 'FAILED', 'CANCELLED'].map((s) => h('option', { value: s }, s || 'any state')));
  const text = h('input', { id: 'trial-filter', type: 'search', placeholder: 'filter (e.g. 0.01)', 'aria-label': 'Filter trials' });
  const head = h('thead');
  const body = h('tbody');
  const table = h('table', { class: 'trials', id: 'trials-table' }, h('caption', { class: 'sr-only' }, 'Trials'), head, body);
  const axesEl = h('fieldset', { class: 'axes' });
  const plotEl = h('div', { class: 'parallel-wrap', id: 'parallel' });
  const objEl = h('div', { class: 'charts', id: 'objective' });
  const summary = h('p', { class: 'hint' });
  fill(container,
    h('h2', { id: 'h-trials' }, 'Trials'), summary,
    h('div', { class: 'filters' }, stateSel, text),
    h('div', { class: 'scroll' }, table),
    h('h3', {}, 'Parallel coordinates'), axesEl, plotEl,
    objEl);
  container.setAttribute('aria-labelledby', 'h-trials');
  stateSel.addEventListener('change', drawTable);
  text.addEventListener('input', drawTable);

  const columns = [
    ['trial', 'Trial', (t) => Number(t.trialId)],
    ...params.map((p) => [`hp:${p.parameterName}`, p.parameterName, (t) => {
      const v = (t.hyperparameters || {})[p.parameterName];
      const n = Number(v);
      return v !== undefined && Number.isFinite(n) && p.type !== 'CATEGORICAL' ? n : v;
    }]),
    ['metric', tag, metric],
    ['state', 'State', (t) => t.state],
    ['duration', 'Duration', (t) => (t.startTime ? (Date.parse(t.endTime || new Date().toISOString()) - Date.parse(t.startTime)) : null)],
  ];

  function drawHead() {
    fill(head, h('tr', {}, columns.map(([key, label]) => {
      const dir = key === sortKey ? (sortDir > 0 ? 'ascending' : 'descending') : 'none';
      return h('th', { scope: 'col', 'aria-sort': dir },
        h('button', { type: 'button', class: 'sort', dataset: { key }, onclick: () => {
          if (sortKey === key) sortDir = -sortDir; else { sortKey = key; sortDir = 1; }
          drawHead(); drawTable();
        } }, label, dir === 'ascending' ? ' ▲' : dir === 'descending' ? ' ▼' : ''));
    })));
  }

  function drawTable() {
    const get = columns.find(([k]) => k === sortKey)[2];
    const want = stateSel.value;
    const q = text.value.trim().toLowerCase();
    const best = bestTrial(trials, goal);
    const rows = trials.filter((t) => (!want || t.state === want)
      && (!q || [t.trialId, t.state, ...Object.values(t.hyperparameters || {}), String(metric(t))].some((x) => String(x).toLowerCase().includes(q))))
      .sort((a, b) => {
        const x = get(a); const y = get(b);
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
      });
    fill(body, rows.map((t) => h('tr', { class: [t.trialId === best ? 'best' : '', t.trialId === selected ? 'selected' : ''].join(' ').trim() || null, dataset: { trial: t.trialId } },
      h('th', { scope: 'row' }, h('button', { type: 'button', class: 'link', onclick: () => onPick(t.trialId), 'aria-pressed': String(t.trialId === selected) }, t.trialId),
        t.trialId === best ? h('span', { class: 'badge', title: 'best trial' }, ' ★ best') : null),
      params.map((p) => h('td', {}, num((t.hyperparameters || {})[p.parameterName]) || (t.hyperparameters || {})[p.parameterName] || '')),
      h('td', { class: 'metric' }, metric(t) === null ? '' : num(metric(t))),
      h('td', { class: `state ${t.state}` }, t.state, t.isTrialStoppedEarly ? ' (stopped early)' : ''),
      h('td', {}, duration(t.startTime, t.endTime)))));
  }

  function drawAxes() {
    fill(axesEl, h('legend', {}, 'Axes'), params.map((p) => {
      const id = `axis-${p.parameterName}`;
      const box = h('input', { type: 'checkbox', id, checked: chosen.includes(p.parameterName), onchange: () => {
        chosen = params.map((x) => x.parameterName).filter((n) => (n === p.parameterName ? box.checked : chosen.includes(n)));
        drawPlot();
      } });
      return h('label', { for: id, class: 'check' }, box, ` ${p.parameterName}${p.scaleType === 'UNIT_LOG_SCALE' ? ' (log)' : ''}`);
    }));
  }

  function drawPlot() {
    parallel(plotEl, { trials, params, chosen, goal, selected, onPick });
  }

  drawHead();
  drawAxes();
  return {
    update(next, sel) {
      trials = next;
      selected = sel;
      const done = trials.filter((t) => metric(t) !== null).length;
      const best = bestTrial(trials, goal);
      summary.textContent = `${trials.length} trials, ${done} with a final ${tag}; goal ${goal}${best ? `; best: trial ${best}` : ''}. Click a trial for its curves and logs.`;
      drawTable();
      drawPlot();
      if (objPlot) objPlot.destroy();
      objPlot = objective(objEl, trials, goal);
    },
    select(sel) { selected = sel; drawTable(); drawPlot(); },
    destroy() { if (objPlot) objPlot.destroy(); },
  };
}
