// A parallel-coordinates plot of a study's trials, in SVG: one vertical axis per chosen
// hyperparameter (log-scaled for UNIT_LOG_SCALE, evenly spaced values for CATEGORICAL and
// DISCRETE) and one for the objective, one polyline per trial coloured by its objective.
// A click (or Enter on a focused line) selects that trial.

import { h, fill, num } from './dom.js';

const W = 900;
const H = 320;
const PAD = { top: 28, bottom: 34, left: 80, right: 80 };

/** A colour from low (0) to high (1) objective: blue → teal → yellow. */
export function color(t) {
  const stops = [[59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  return `rgb(${c.join(',')})`;
}

/** How one axis maps a trial's value to [0, 1] (bottom to top), and its tick labels. */
function axisFor(param, values) {
  const name = param.parameterName;
  if (param.type === 'CATEGORICAL' || param.type === 'DISCRETE') {
    const cats = param.type === 'CATEGORICAL'
      ? [...(param.categoricalValues || [])]
      : [...(param.discreteValues || [])].map(Number).sort((a, b) => a - b).map(String);
    for (const v of values) if (!cats.includes(v)) cats.push(v);
    const pos = (v) => (cats.length <= 1 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1));
    return { name, log: false, pos, ticks: cats.map((c) => [pos(c), c]) };
  }
  const log = param.scaleType === 'UNIT_LOG_SCALE';
  const nums = values.map(Number).filter((v) => Number.isFinite(v) && (!log || v > 0));
  let lo = Number.isFinite(param.minValue) ? param.minValue : Math.min(...nums);
  let hi = Number.isFinite(param.maxValue) ? param.maxValue : Math.max(...nums);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) { lo = 0; hi = 1; }
  const f = (v) => (log ? Math.log10(v) : v);
  const a = f(lo);
  const b = f(hi);
  const pos = (v) => {
    const x = Number(v);
    if (!Number.isFinite(x) || (log && x <= 0)) return null;
    return b === a ? 0.5 : (f(x) - a) / (b - a);
  };
  return { name, log, pos, ticks: [[0, num(lo)], [0.5, num(log ? 10 ** ((a + b) / 2) : (lo + hi) / 2)], [1, num(hi)]] };
}

/**
 * Draws `trials` into `container` over the axes `chosen` (parameter names) and the objective.
 * `onPick(trialId)` is called on a click; `selected` is highlighted.
 */
export function parallel(container, { trials, params, chosen, goal, selected, onPick }) {
  const done = trials.filter((t) => t.finalMetric && Number.isFinite(Number(t.finalMetric.objectiveValue)));
  const objs = done.map((t) => Number(t.finalMetric.objectiveValue));
  const omin = Math.min(...objs);
  const omax = Math.max(...objs);
  const axes = params.filter((p) => chosen.includes(p.parameterName))
    .map((p) => axisFor(p, trials.map((t) => (t.hyperparameters || {})[p.parameterName])));
  const objAxis = { name: 'objective', log: false, pos: (v) => (omax === omin ? 0.5 : (Number(v) - omin) / (omax - omin)), ticks: [[0, num(omin)], [1, num(omax)]] };
  const all = [...axes, objAxis];
  const x = (i) => PAD.left + (all.length <= 1 ? 0 : (i * (W - PAD.left - PAD.right)) / (all.length - 1));
  const y = (p) => PAD.top + (1 - p) * (H - PAD.top - PAD.bottom);
  const svg = h('svg:svg', { viewBox: `0 0 ${W} ${H}`, class: 'parallel', role: 'img', 'aria-label': `Parallel coordinates of ${done.length} trials` });
  const lines = h('svg:g', { class: 'lines' });
  svg.append(lines);
  for (const t of done) {
    const v = Number(t.finalMetric.objectiveValue);
    const pts = all.map((a, i) => {
      const raw = a === objAxis ? v : (t.hyperparameters || {})[a.name];
      const p = a.pos(raw);
      return p === null ? null : `${x(i).toFixed(1)},${y(p).toFixed(1)}`;
    }).filter(Boolean);
    const norm = omax === omin ? 0.5 : (v - omin) / (omax - omin);
    const good = goal === 'MINIMIZE' ? 1 - norm : norm;
    const line = h('svg:polyline', {
      points: pts.join(' '), stroke: color(good), class: t.trialId === selected ? 'trial selected' : 'trial',
      tabindex: '0', role: 'button', 'aria-label': `trial ${t.trialId}: objective ${num(v)}`, dataset: { trial: t.trialId },
      onclick: () => onPick(t.trialId),
      onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onPick(t.trialId); } },
    }, h('svg:title', {}, `trial ${t.trialId}: ${num(v)}`));
    lines.append(line);
  }
  all.forEach((a, i) => {
    const g = h('svg:g', { class: 'axis' },
      h('svg:line', { x1: x(i), x2: x(i), y1: y(0), y2: y(1) }),
      h('svg:text', { x: x(i), y: PAD.top - 10, 'text-anchor': 'middle', class: 'axis-name' }, a.log ? `${a.name} (log)` : a.name));
    for (const [p, label] of a.ticks) {
      g.append(h('svg:text', { x: x(i) + 4, y: y(p) + 4, class: 'tick' }, label));
    }
    svg.append(g);
  });
  fill(container, svg);
  return svg;
}
