// Training curves: one uPlot chart per scalar tag (loss, rmse, ...), one line per run (the
// event files' directory below the job dir: `train` for the job dir itself, `eval`, ...).
// Updates keep the user's zoom: once a range is selected, new data no longer rescales it
// (a double click resets it, as uPlot does).

import uPlot from '../vendor/uPlot.esm.js';
import { h, fill } from './dom.js';

const COLORS = ['#1f6feb', '#d9480f', '#2f9e44', '#9c36b5', '#e67700', '#0c8599', '#c2255c', '#5c940d'];

/** `series` ([{run, tag, steps, values}]) grouped by tag: Map tag → [{run, steps, values}]. */
function byTag(series) {
  const out = new Map();
  for (const s of series) {
    if (!out.has(s.tag)) out.set(s.tag, []);
    out.get(s.tag).push({ ...s, run: s.run || 'train' });
  }
  return out;
}

/** uPlot's aligned data: the union of the runs' steps, and each run's values at them (null where it has none). */
function aligned(runs) {
  const xs = [...new Set(runs.flatMap((r) => r.steps))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const ys = runs.map((r) => {
    const y = new Array(xs.length).fill(null);
    r.steps.forEach((s, i) => { y[at.get(s)] = r.values[i]; });
    return y;
  });
  return [xs, ...ys];
}

/** A set of curve charts in `container`; `update(series)` redraws them, `destroy()` ends them. */
export function curves(container, { empty = 'No event files under the job dir yet.' } = {}) {
  const charts = new Map(); // tag → {u, figure, runs, zoomed}
  const note = h('p', { class: 'hint' }, empty);
  fill(container, note);
  const resize = new ResizeObserver(() => {
    for (const c of charts.values()) c.u.setSize(size(c.figure));
  });
  resize.observe(container);

  function size(figure) {
    const w = Math.max(240, (figure.clientWidth || container.clientWidth || 600) - 8);
    return { width: w, height: Math.round(Math.min(260, Math.max(160, w * 0.4))) };
  }

  function make(tag, runs) {
    const plot = h('div', { class: 'plot' });
    const figure = h('figure', { class: 'chart', dataset: { tag } }, h('figcaption', {}, tag), plot);
    container.append(figure);
    const c = { figure, runs: runs.map((r) => r.run), zoomed: false };
    const opts = {
      ...size(figure),
      scales: { x: { time: false } },
      axes: [{ label: 'step' }, { label: tag, size: 60 }],
      series: [{ label: 'step' }, ...runs.map((r, i) => ({ label: r.run, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true, points: { show: r.steps.length <= 60 } }))],
      cursor: { drag: { x: true, y: false, setScale: true } },
      hooks: {
        setSelect: [(u) => { if (u.select.width > 0) { c.zoomed = true; figure.dataset.zoomed = 'true'; } }],
        setScale: [(u, key) => { if (key === 'x') figure.dataset.xrange = `${u.scales.x.min},${u.scales.x.max}`; }],
      },
    };
    c.u = new uPlot(opts, aligned(runs), plot);
    plot.addEventListener('dblclick', () => {
      c.zoomed = false;
      figure.dataset.zoomed = 'false';
    });
    return c;
  }

  return {
    update(series) {
      const tags = byTag(series);
      note.hidden = tags.size > 0;
      for (const [tag, runs] of tags) {
        let c = charts.get(tag);
        const names = runs.map((r) => r.run);
        if (c && names.join('\n') !== c.runs.join('\n')) {
          c.u.destroy(); c.figure.remove(); charts.delete(tag); c = null;
        }
        if (!c) { c = make(tag, runs); charts.set(tag, c); } else { c.u.setData(aligned(runs), !c.zoomed); }
        c.figure.dataset.points = JSON.stringify(Object.fromEntries(runs.map((r) => [r.run, r.steps.length])));
        c.figure.dataset.zoomed = String(c.zoomed);
        c.figure.dataset.xrange = `${c.u.scales.x.min},${c.u.scales.x.max}`;
      }
      for (const [tag, c] of charts) {
        if (!tags.has(tag)) { c.u.destroy(); c.figure.remove(); charts.delete(tag); }
      }
    },
    destroy() {
      resize.disconnect();
      for (const c of charts.values()) c.u.destroy();
      charts.clear();
    },
  };
}

/** Objective per trial (points) and the best so far (a stepped line). */
export function objective(container, trials, goal) {
  const done = trials.filter((t) => t.finalMetric && Number.isFinite(Number(t.finalMetric.objectiveValue)))
    .sort((a, b) => Number(a.trialId) - Number(b.trialId));
  fill(container);
  if (!done.length) { container.append(h('p', { class: 'hint' }, 'No trial has a final metric yet.')); return null; }
  const xs = done.map((t) => Number(t.trialId));
  const ys = done.map((t) => Number(t.finalMetric.objectiveValue));
  const better = goal === 'MINIMIZE' ? Math.min : Math.max;
  let best = ys[0];
  const bests = ys.map((y) => (best = better(best, y)));
  const plot = h('div', { class: 'plot' });
  const figure = h('figure', { class: 'chart', dataset: { tag: 'objective' } }, h('figcaption', {}, 'Objective per trial'), plot);
  container.append(figure);
  const w = Math.max(240, (container.clientWidth || 600) - 8);
  return new uPlot({
    width: w, height: 220, scales: { x: { time: false } },
    axes: [{ label: 'trial', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, { label: 'objective', size: 60 }],
    series: [{ label: 'trial' },
      { label: 'objective', stroke: COLORS[0], width: 0, points: { show: true, size: 7, fill: COLORS[0] } },
      { label: 'best so far', stroke: COLORS[1], width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } }],
  }, [xs, ys, bests], plot);
}
