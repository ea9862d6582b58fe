// A job's page: its input, state and times, its curves (from the event files under its job
// dir, live while it runs), its logs (live), and for a tuning job the trials (trials.js).

import { h, fill, time, duration, jobType, ended, status, showError } from './dom.js';
import { get, post, project as projectPath } from './api.js';
import { curves } from './charts.js';
import { logsPanel } from './logs.js';
import { trialsSection } from './trials.js';

const REFRESH_MS = 2000;
const MAX_POINTS = 1000;

function dl(rows) {
  return h('dl', { class: 'facts' }, rows.filter(([, v]) => v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, Array.isArray(v) ? h('ul', { class: 'plain' }, v.map((x) => h('li', {}, h('code', {}, String(x))))) : String(v))]));
}

function replicas(t) {
  const r = [['master', t.masterType || '', 1]];
  if (Number(t.workerCount)) r.push(['worker', t.workerType || t.masterType || '', Number(t.workerCount)]);
  if (Number(t.parameterServerCount)) r.push(['parameter server', t.parameterServerType || t.masterType || '', Number(t.parameterServerCount)]);
  if (Number(t.evaluatorCount)) r.push(['evaluator', t.evaluatorType || t.masterType || '', Number(t.evaluatorCount)]);
  return r.map(([k, m, n]) => `${n} × ${k}${m ? ` (${m})` : ''}`);
}

function inputFacts(job) {
  const t = job.trainingInput;
  if (t) {
    const cmd = t.masterConfig && t.masterConfig.containerCommand;
    return dl([
      ['Scale tier', t.scaleTier || 'BASIC'], ['Replicas', replicas(t)], ['Region', t.region],
      ['Job dir', t.jobDir], ['Python module', t.pythonModule], ['Packages', t.packageUris || []],
      ['Command', cmd && cmd.length ? cmd.join(' ') : ''], ['Arguments', t.args || []],
      ['Runtime', [t.runtimeVersion, t.pythonVersion].filter(Boolean).join(' / python ')],
    ]);
  }
  const p = job.predictionInput || {};
  return dl([
    ['Data format', p.dataFormat], ['Input paths', p.inputPaths || []], ['Output path', p.outputPath],
    ['Model', p.versionName || p.modelName || p.uri], ['Batch size', p.batchSize],
  ]);
}

export function jobPage(ctx, jobId) {
  const { project, params, can, main } = ctx;
  const path = `${projectPath(project)}/jobs/${encodeURIComponent(jobId)}`;
  const out = status();
  const stateEl = h('span', { class: 'state', id: 'job-state' }, '…');
  const cancel = h('button', { type: 'button', class: 'danger', hidden: true, onclick: async () => {
    cancel.disabled = true;
    try { await post(`${path}:cancel`); load(); } catch (e) { showError(out, e); cancel.disabled = false; }
  } }, 'Cancel job');
  const facts = h('section', { class: 'card', 'aria-labelledby': 'h-input' });
  const timesEl = h('section', { class: 'card', 'aria-labelledby': 'h-state' });
  const trialsEl = h('section', { class: 'card', id: 'trials', hidden: true });
  const curvesEl = h('div', { class: 'charts', id: 'curves' });
  const curvesHead = h('h2', { id: 'h-curves' }, 'Training curves');
  const curvesCard = h('section', { class: 'card', 'aria-labelledby': 'h-curves' }, curvesHead, curvesEl);
  const exportsEl = h('div', { class: 'exports' });
  const logsEl = h('div');
  const logsHead = h('h2', { id: 'h-logs' }, 'Logs');
  fill(main,
    h('p', { class: 'crumbs' }, h('a', { href: `#/p/${encodeURIComponent(project)}/jobs` }, 'Jobs'), ' / '),
    h('h1', {}, h('span', { id: 'job-id' }, jobId), ' ', stateEl, ' ', cancel),
    out, h('div', { class: 'grid' }, timesEl, facts), trialsEl, curvesCard, exportsEl,
    h('section', { class: 'card', 'aria-labelledby': 'h-logs' }, logsHead, logsEl));

  let job = null;
  let timer = null;
  let dead = false;
  let trial = params.get('trial') || '';
  let stopLogs = () => {};
  let trials = null;
  const chart = curves(curvesEl);

  function startLogs() {
    stopLogs();
    logsHead.textContent = trial ? `Logs of trial ${trial}` : 'Logs';
    stopLogs = logsPanel(logsEl, { path, trial });
  }

  function pick(id) {
    trial = id === trial ? '' : id;
    const q = trial ? `?trial=${encodeURIComponent(trial)}` : '';
    history.replaceState(null, '', `#/p/${encodeURIComponent(project)}/jobs/${encodeURIComponent(jobId)}${q}`);
    curvesHead.textContent = trial ? `Curves of trial ${trial}` : 'Training curves';
    chart.update([]);
    if (trials) trials.select(trial);
    startLogs();
    loadCurves();
  }

  async function loadCurves() {
    const q = new URLSearchParams({ maxPoints: String(MAX_POINTS) });
    if (trial) q.set('trial', trial);
    try {
      const m = await get(`${path}/metrics?${q}`);
      if (dead) return;
      chart.update(m.series || []);
      fill(exportsEl);
      if ((m.exports || []).length && job && job.state === 'SUCCEEDED' && can('ml.versions.create')) {
        exportsEl.append(h('section', { class: 'card' }, h('h2', {}, 'Exports'), h('ul', { class: 'plain' }, m.exports.map((e) => h('li', {},
          h('code', {}, e), ' ',
          h('a', { class: 'button', href: `#/p/${encodeURIComponent(project)}/models?${new URLSearchParams({ origin: e, job: jobId })}` }, 'Create a version from it'))))));
      }
    } catch (e) {
      if (!dead) showError(out, e);
    }
  }

  function render() {
    stateEl.textContent = job.state;
    stateEl.className = `state ${job.state}`;
    cancel.hidden = ended(job.state) || job.state === 'CANCELLING' || !can('ml.jobs.cancel');
    fill(timesEl, h('h2', { id: 'h-state' }, 'State'), dl([
      ['Type', jobType(job)], ['State', job.state], ['Created', time(job.createTime)], ['Started', time(job.startTime)],
      ['Ended', time(job.endTime)], ['Duration', duration(job.startTime, job.endTime)],
      ['Labels', Object.entries(job.labels || {}).map(([k, v]) => `${k}=${v}`)],
      ['Predictions', job.predictionOutput && job.predictionOutput.predictionCount],
      ['Errors', job.predictionOutput && job.predictionOutput.errorCount],
    ]), job.errorMessage ? h('p', { class: 'error', id: 'job-error' }, job.errorMessage) : null);
    fill(facts, h('h2', { id: 'h-input' }, 'Input'), inputFacts(job));
    const hp = job.trainingInput && job.trainingInput.hyperparameters;
    if (hp) {
      trialsEl.hidden = false;
      if (!trials) trials = trialsSection(trialsEl, { spec: hp, onPick: pick });
      trials.update((job.trainingOutput && job.trainingOutput.trials) || [], trial);
    }
    curvesCard.hidden = jobType(job) === 'prediction';
  }

  async function load() {
    clearTimeout(timer);
    try {
      job = await get(path);
      if (dead) return;
      render();
      showError(out, null);
      if (!curvesCard.hidden) await loadCurves();
    } catch (e) {
      if (dead) return;
      showError(out, e);
      if (e.status === 404 || e.status === 403) return;
    }
    if (!dead && !(job && ended(job.state))) timer = setTimeout(load, REFRESH_MS);
  }

  curvesHead.textContent = trial ? `Curves of trial ${trial}` : 'Training curves';
  startLogs();
  load();
  return () => { dead = true; clearTimeout(timer); stopLogs(); chart.destroy(); if (trials) trials.destroy(); };
}
