// Browser tests of the mle console (run by crates/mle-cli/tests/console.rs, which starts the
// server and the jobs): Debian's chromium driven by playwright-core, with node's test runner.
// Environment: MLE_URL, MLE_TOKEN (server admin), MLE_VIEWER_TOKEN (viewer of `default`),
// MLE_TRAIN_JOB + MLE_EVALS (a finished job and its evaluation count), MLE_TUNE_JOB (a finished
// tuning job), MLE_EXAMPLES (examples/), MLE_WORK (a scratch dir), MLE_PROFILES (where fresh
// profiles go), MLE_SHOTS (save screenshots there).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const URL_ = process.env.MLE_URL;
const ADMIN = process.env.MLE_TOKEN;
const VIEWER = process.env.MLE_VIEWER_TOKEN;
const TRAIN = process.env.MLE_TRAIN_JOB;
const EVALS = Number(process.env.MLE_EVALS);
const TUNE = process.env.MLE_TUNE_JOB;
const SHOTS = process.env.MLE_SHOTS || '';
const EXAMPLES = process.env.MLE_EXAMPLES;
const WORK = process.env.MLE_WORK;
const PROJECT = 'default';
const XSS = '<img src=x onerror=alert(1)>';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

let context;
const dialogs = [];
const pageErrors = [];

before(async () => {
  mkdirSync(process.env.MLE_PROFILES, { recursive: true });
  // A fresh profile: launchPersistentContext passes it as --user-data-dir (and --headless).
  const profile = mkdtempSync(join(process.env.MLE_PROFILES, 'profile-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium', headless: true, args: FLAGS, viewport: { width: 1280, height: 800 },
  });
  if (SHOTS) mkdirSync(SHOTS, { recursive: true });
});

after(async () => { if (context) await context.close(); });

/** A new tab (its own sessionStorage: a fresh session), with dialogs and script errors recorded. */
async function tab(viewport) {
  const page = await context.newPage();
  if (viewport) await page.setViewportSize(viewport);
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  return page;
}

async function signIn(page, token) {
  await page.goto(`${URL_}/console/`);
  await page.fill('#token', token);
  await page.press('#token', 'Enter');
  await page.waitForSelector('#nav a[href$="/jobs"]');
}

async function shot(page, name) {
  if (SHOTS) await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: name !== 'jobs-390' });
}

/** A REST call with `token`: [status, JSON]. */
async function call(token, method, path, body) {
  const r = await fetch(`${URL_}${path}`, {
    method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return [r.status, await r.json().catch(() => null)];
}

const jobUrl = (id) => `${URL_}/console/#/p/${PROJECT}/jobs/${id}`;

test('/ leads to the console, whose files carry a strict Content-Security-Policy', async () => {
  const r = await fetch(`${URL_}/`, { redirect: 'manual' });
  assert.ok([301, 302, 303, 307, 308].includes(r.status), `status ${r.status}`);
  assert.equal(r.headers.get('location'), '/console/');
  const page = await fetch(`${URL_}/console/`);
  const csp = page.headers.get('content-security-policy');
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.match(await page.text(), /<script type="module" src="js\/main.js">/);
  // The API behind it still wants a token.
  assert.equal((await fetch(`${URL_}/v1/principal`)).status, 401);
});

test('sign in: a wrong token says so, the token stays out of the URL, sign out forgets it', async () => {
  const page = await tab();
  await page.goto(`${URL_}/console/`);
  assert.equal(await page.getAttribute('#token', 'type'), 'password');
  await shot(page, 'signin');
  await page.fill('#token', 'not-a-token');
  await page.press('#token', 'Enter');
  await page.waitForSelector('.signin [role=alert]:has-text("not valid")');
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await page.fill('#token', ADMIN);
  await page.press('#token', 'Enter');
  await page.waitForSelector('#jobs-table');
  assert.ok(!page.url().includes(ADMIN), page.url());
  assert.equal(await page.evaluate(() => sessionStorage.getItem('mle.token')), ADMIN);
  await page.click('button:has-text("Sign out")');
  await page.waitForSelector('#token');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('mle.token')), null);
  await page.close();
});

test('a running job turns SUCCEEDED on the jobs page without a reload', async () => {
  const page = await tab();
  await signIn(page, ADMIN);
  await page.waitForSelector('#jobs-table tbody tr');
  await page.evaluate(() => { window.stayed = true; });
  const id = `live_${Date.now()}`;
  const [code, job] = await call(ADMIN, 'POST', `/v1/projects/${PROJECT}/jobs`,
    { jobId: id, trainingInput: { masterConfig: { containerCommand: ['sh', '-c', 'sleep 4'] } } });
  assert.equal(code, 200, JSON.stringify(job));
  const row = `#jobs-table tr[data-job="${id}"]`;
  await page.waitForSelector(`${row}[data-state="RUNNING"]`, { timeout: 60000 });
  // Newest first: the new job heads the table.
  assert.equal(await page.getAttribute('#jobs-table tbody tr:first-child', 'data-job'), id);
  await shot(page, 'jobs');
  await page.waitForSelector(`${row}[data-state="SUCCEEDED"]`, { timeout: 60000 });
  assert.equal(await page.textContent(`${row} td.state`), 'SUCCEEDED');
  assert.equal(await page.evaluate(() => window.stayed), true, 'the page was not reloaded');
  // The state filter keeps only matching jobs.
  await page.selectOption('#state-filter', 'FAILED');
  await page.waitForFunction(() => location.hash.includes('state=FAILED'));
  await page.waitForFunction((i) => !document.querySelector(`tr[data-job="${i}"]`), id);
  await page.close();
});

test("a job's page draws its loss and eval curves with one point per evaluation", async () => {
  const page = await tab();
  await signIn(page, ADMIN);
  await page.goto(jobUrl(TRAIN));
  await page.waitForSelector('#job-state:text("SUCCEEDED")');
  const loss = 'figure.chart[data-tag="loss"][data-points]';
  await page.waitForSelector(loss);
  const points = JSON.parse(await page.getAttribute(loss, 'data-points'));
  assert.equal(points.eval, EVALS, JSON.stringify(points));
  assert.ok(points.train > 0, 'the training loss is drawn too');
  const rmse = JSON.parse(await page.getAttribute('figure.chart[data-tag="rmse"]', 'data-points'));
  assert.deepEqual(rmse, { eval: EVALS });
  assert.ok(await page.$(`${loss} canvas`), 'uPlot drew a canvas');
  // Input and logs.
  assert.match(await page.textContent('main'), /--eval-every-steps/);
  await page.waitForSelector('#log-lines li:has-text("eval_loss")');
  await page.selectOption('#log-severity', '3');
  assert.equal(await page.$$eval('#log-lines li[data-severity="INFO"]', (l) => l.length), 0);
  await page.selectOption('#log-severity', '0');
  // The download is the whole log as JSON lines.
  const shown = await page.$$eval('#log-lines li', (l) => l.length);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('button:has-text("Download")')]);
  const { readFileSync } = await import('node:fs');
  const lines = readFileSync(await download.path(), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, shown);
  assert.equal(lines.filter((l) => /eval_loss/.test(l.message)).length, EVALS);
  await shot(page, 'job');
  await page.close();
});

test("a tuning job's page: trials sorted by metric, one line per trial, a trial's curves", async () => {
  const [, job] = await call(ADMIN, 'GET', `/v1/projects/${PROJECT}/jobs/${TUNE}`);
  const trials = job.trainingOutput.trials;
  const scored = trials.filter((t) => t.finalMetric);
  const page = await tab();
  await signIn(page, ADMIN);
  await page.goto(jobUrl(TUNE));
  await page.waitForSelector(`#trials-table tbody tr:nth-child(${trials.length})`);
  const metrics = async () => page.$$eval('#trials-table tbody td.metric', (c) => c.map((x) => x.textContent).filter(Boolean).map(Number));
  const desc = await metrics();
  assert.equal(desc.length, scored.length);
  assert.deepEqual(desc, [...desc].sort((a, b) => b - a), 'best first (MAXIMIZE)');
  const bestId = await page.getAttribute('#trials-table tbody tr.best', 'data-trial');
  const want = scored.reduce((a, b) => (b.finalMetric.objectiveValue > a.finalMetric.objectiveValue ? b : a));
  assert.equal(Number(job.trainingOutput.trials.find((t) => t.trialId === bestId).finalMetric.objectiveValue), want.finalMetric.objectiveValue);
  // The text filter keeps the matching trials only.
  const oneValue = job.trainingOutput.trials[0].hyperparameters['first-layer-size'];
  await page.fill('#trial-filter', oneValue);
  const kept = await page.$$eval('#trials-table tbody tr', (r) => r.map((x) => x.dataset.trial));
  assert.ok(kept.includes(job.trainingOutput.trials[0].trialId) && kept.length < trials.length, String(kept));
  await page.fill('#trial-filter', '');
  await page.click('#trials-table th button[data-key="metric"]');
  const asc = await metrics();
  assert.deepEqual(asc, [...desc].reverse(), 'a click sorts the other way');
  assert.equal(await page.$$eval('svg.parallel polyline.trial', (l) => l.length), scored.length);
  assert.match(await page.textContent('svg.parallel'), /learning-rate \(log\)/);
  const axes = () => page.$$eval('svg.parallel g.axis', (a) => a.length);
  assert.equal(await axes(), 5, 'four parameters and the objective');
  await page.uncheck('#axis-num-layers');
  assert.equal(await axes(), 4);
  await page.check('#axis-num-layers');
  assert.ok(await page.$('#objective canvas'), 'the objective-per-trial chart');
  // A trial's line takes the focus, and Enter (as a click) shows its curves and its logs.
  await page.focus(`svg.parallel polyline[data-trial="${bestId}"]`);
  await page.keyboard.press('Enter');
  await page.waitForSelector(`#h-curves:text("Curves of trial ${bestId}")`);
  await page.waitForSelector('#curves figure.chart[data-tag="accuracy"][data-points]');
  await page.waitForSelector(`#h-logs:text("Logs of trial ${bestId}")`);
  await page.waitForSelector('#log-lines li');
  const others = await page.$$eval('#log-lines li .task', (t, id) => t.filter((x) => !x.textContent.startsWith(`trial ${id} `)).length, bestId);
  assert.equal(others, 0, "only the trial's lines");
  await page.click('#trials-table th button[data-key="metric"]');
  await shot(page, 'tuning');
  await page.close();
});

test('create a model and a version from the page, predict from the form, see the classes', async () => {
  const [, job] = await call(ADMIN, 'GET', `/v1/projects/${PROJECT}/jobs/${TUNE}`);
  const best = job.trainingOutput.trials.filter((t) => t.finalMetric)
    .reduce((a, b) => (b.finalMetric.objectiveValue > a.finalMetric.objectiveValue ? b : a));
  const page = await tab();
  await signIn(page, ADMIN);
  await page.goto(`${jobUrl(TUNE)}?trial=${best.trialId}`);
  await page.click('a:has-text("Create a version from it")');
  await page.waitForSelector('#create-model');
  await page.fill('#model-name', 'iris_console');
  await page.fill('#model-desc', 'made in the console');
  await page.click('#create-model button[type=submit]');
  await page.waitForSelector('#create-version');
  assert.match(await page.inputValue('#version-origin'), new RegExp(`/${best.trialId}/export/iris$`));
  await page.fill('#version-name', 'v1');
  await page.click('#create-version button[type=submit]');
  await page.waitForSelector('#versions-table tr[data-version="v1"][data-state="READY"]', { timeout: 120000 });
  await page.waitForSelector('form.try[data-version="v1"]');
  await page.fill('#instances-v1', '[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]');
  await page.click('form.try[data-version="v1"] button[type=submit]');
  await page.waitForSelector('#predictions-v1:has-text("classes")');
  const preds = JSON.parse(await page.textContent('#predictions-v1'));
  assert.equal(preds.length, 2);
  assert.equal(preds[0].classes[0], 'setosa', JSON.stringify(preds));
  // Bad instances are told, not sent.
  await page.fill('#instances-v1', '{not json');
  await page.click('form.try[data-version="v1"] button[type=submit]');
  await page.waitForSelector('form.try .status.error:has-text("not JSON")');
  await page.fill('#instances-v1', '[[5.1, 3.5, 1.4, 0.2]]');
  await page.click('form.try[data-version="v1"] button[type=submit]');
  await page.waitForSelector('form.try .status:has-text("1 predictions")');
  await shot(page, 'models');
  await page.close();
});

test('user strings (args, log lines, descriptions) show as text and run nothing', async () => {
  const id = `xss_${Date.now()}`;
  let [code, body] = await call(ADMIN, 'POST', `/v1/projects/${PROJECT}/jobs`, { jobId: id, trainingInput: {
    masterConfig: { containerCommand: ['sh', '-c', 'echo "$1"; exit 3', 'sh', XSS] }, args: [XSS] } });
  assert.equal(code, 200, JSON.stringify(body));
  // Labels refuse such values (the API's own rule); the console shows that error as text too.
  [code] = await call(ADMIN, 'PATCH', `/v1/projects/${PROJECT}/jobs/${id}?updateMask=labels`, { labels: { x: XSS } });
  assert.equal(code, 400);
  [code, body] = await call(ADMIN, 'POST', `/v1/projects/${PROJECT}/models`, { name: 'xss_model', description: XSS });
  assert.equal(code, 200, JSON.stringify(body));
  const before = dialogs.length;
  const page = await tab();
  await signIn(page, ADMIN);
  await page.goto(jobUrl(id));
  await page.waitForSelector('#job-state:text("FAILED")', { timeout: 60000 });
  await page.waitForSelector(`#log-lines li .msg:text-is("${XSS}")`);
  assert.match(await page.textContent('main'), /<img src=x onerror=alert\(1\)>/);
  await page.goto(`${URL_}/console/#/p/${PROJECT}/models`);
  await page.waitForSelector('#models-table tr[data-model="xss_model"]');
  assert.equal(await page.textContent('#models-table tr[data-model="xss_model"] td'), XSS);
  await page.goto(`${URL_}/console/#/p/${PROJECT}/models/xss_model`);
  await page.waitForSelector(`main p.hint:text-is("${XSS}")`);
  assert.equal(await page.$$eval('img', (i) => i.length), 0, 'no element was made of the strings');
  assert.equal(dialogs.length, before, `no script ran: ${dialogs}`);
  await page.close();
});

test('a viewer sees no submit, cancel or delete buttons, and the API refuses it', async () => {
  const id = `long_${Date.now()}`;
  const [code] = await call(ADMIN, 'POST', `/v1/projects/${PROJECT}/jobs`,
    { jobId: id, trainingInput: { masterConfig: { containerCommand: ['sleep', '60'] } } });
  assert.equal(code, 200);
  // The admin sees the cancel button (so its absence below means something).
  const admin = await tab();
  await signIn(admin, ADMIN);
  await admin.goto(jobUrl(id));
  await admin.waitForSelector('#job-state:text("RUNNING")', { timeout: 60000 });
  assert.ok(await admin.isVisible('button:has-text("Cancel job")'));
  const page = await tab();
  await signIn(page, VIEWER);
  assert.match(await page.textContent('#nav .who'), /watcher \(viewer\)/);
  await page.goto(jobUrl(id));
  await page.waitForSelector('#job-state:text("RUNNING")');
  assert.equal(await page.isVisible('button:has-text("Cancel job")'), false);
  await page.goto(`${URL_}/console/#/p/${PROJECT}/models`);
  await page.waitForSelector('#models-table tr[data-model="iris_console"]');
  assert.equal(await page.$('#create-model'), null);
  await page.goto(`${URL_}/console/#/p/${PROJECT}/models/iris_console`);
  await page.waitForSelector('#versions-table tr[data-version="v1"]');
  assert.equal(await page.$('#create-version'), null);
  assert.equal(await page.$$eval('#versions-table button', (b) => b.length), 0, 'no make-default or delete');
  assert.equal(await page.$('form.try'), null, 'a viewer may not predict');
  // The API says the same.
  for (const [method, path, body] of [
    ['POST', `/v1/projects/${PROJECT}/jobs`, { jobId: 'nope', trainingInput: { masterConfig: { containerCommand: ['true'] } } }],
    ['POST', `/v1/projects/${PROJECT}/jobs/${id}:cancel`, {}],
    ['DELETE', `/v1/projects/${PROJECT}/models/iris_console/versions/v1`, undefined],
    ['POST', `/v1/projects/${PROJECT}/models/iris_console:predict`, { instances: [[1, 2, 3, 4]] }],
  ]) {
    const [status] = await call(VIEWER, method, path, body);
    assert.equal(status, 403, `${method} ${path}`);
  }
  // The admin cancels it from the page.
  await admin.click('button:has-text("Cancel job")');
  await admin.waitForSelector('#job-state:text-matches("CANCELL(ING|ED)")', { timeout: 30000 });
  await admin.close();
  await page.close();
});

test("a running job's curves update live and keep the user's zoom", async () => {
  const id = `zoom_${Date.now()}`;
  const [code, body] = await call(ADMIN, 'POST', `/v1/projects/${PROJECT}/jobs`, { jobId: id, trainingInput: {
    masterConfig: { containerCommand: ['mle', 'train'] }, jobDir: join(WORK, id),
    args: ['--model', join(EXAMPLES, 'abalone/model.yaml'), '--train-files', join(EXAMPLES, 'abalone/data/abalone_train.csv'),
      '--eval-files', join(EXAMPLES, 'abalone/data/abalone_test.csv'), '--train-steps', '5000000', '--train-batch-size', '32',
      '--eval-every-steps', '40000', '--no-progress'] } });
  assert.equal(code, 200, JSON.stringify(body));
  const page = await tab();
  await signIn(page, ADMIN);
  await page.goto(jobUrl(id));
  const fig = 'figure.chart[data-tag="rmse"]';
  const evals = async () => JSON.parse((await page.getAttribute(fig, 'data-points')) || '{}').eval || 0;
  await page.waitForFunction((f) => { const e = document.querySelector(f); return e && JSON.parse(e.dataset.points || '{}').eval >= 2; }, fig, { timeout: 120000 });
  // Drag across the middle of the plot: a zoom.
  const box = await page.locator(`${fig} .u-over`).boundingBox();
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  assert.equal(await page.getAttribute(fig, 'data-zoomed'), 'true');
  const zoomed = await page.getAttribute(fig, 'data-xrange');
  const before = await evals();
  // New evaluations arrive and are drawn, and the range stays the user's.
  await page.waitForFunction(([f, n]) => JSON.parse(document.querySelector(f).dataset.points).eval > n, [fig, before], { timeout: 120000 });
  assert.equal(await page.getAttribute(fig, 'data-xrange'), zoomed);
  // A double click gives the whole curve back, and the next update keeps following it.
  await page.dblclick(`${fig} .u-over`);
  assert.equal(await page.getAttribute(fig, 'data-zoomed'), 'false');
  const after = await evals();
  await page.waitForFunction(([f, n]) => JSON.parse(document.querySelector(f).dataset.points).eval > n, [fig, after], { timeout: 120000 });
  const [, max] = (await page.getAttribute(fig, 'data-xrange')).split(',').map(Number);
  assert.ok(max > Number(zoomed.split(',')[1]), `${max} vs ${zoomed}`);
  await call(ADMIN, 'POST', `/v1/projects/${PROJECT}/jobs/${id}:cancel`, {});
  await page.close();
});

test('keyboard navigation, and pages usable at 390×844', async () => {
  const page = await tab();
  await signIn(page, ADMIN);
  await page.waitForSelector('#jobs-table tbody tr a');
  // Tab from the top of the page to the first job's link, then Enter opens it.
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  let onLink = false;
  for (let i = 0; i < 30 && !onLink; i += 1) {
    await page.keyboard.press('Tab');
    onLink = await page.evaluate(() => Boolean(document.activeElement && document.activeElement.closest('#jobs-table tbody')));
  }
  assert.ok(onLink, 'a job link takes the focus');
  const href = await page.evaluate(() => document.activeElement.getAttribute('href'));
  await page.keyboard.press('Enter');
  await page.waitForFunction((h) => location.hash === h, href);
  await page.waitForSelector('#job-state');
  // A sortable trials header is a button: Enter sorts.
  await page.goto(jobUrl(TUNE));
  await page.waitForSelector('#trials-table th button[data-key="trial"]');
  await page.focus('#trials-table th button[data-key="trial"]');
  await page.keyboard.press('Enter');
  assert.equal(await page.getAttribute('#trials-table th:first-child', 'aria-sort'), 'ascending');
  // Small screens: nothing wider than the viewport (wide tables scroll inside their box).
  await page.setViewportSize({ width: 390, height: 844 });
  for (const url of [`${URL_}/console/#/p/${PROJECT}/jobs`, jobUrl(TRAIN), jobUrl(TUNE), `${URL_}/console/#/p/${PROJECT}/models/iris_console`]) {
    await page.goto(url);
    await page.waitForSelector('main table');
    await page.waitForTimeout(300);
    const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
    assert.ok(scroll <= width + 1, `${url}: ${scroll}px wide in a ${width}px viewport`);
  }
  await page.goto(`${URL_}/console/#/p/${PROJECT}/jobs`);
  await page.waitForSelector('#jobs-table tbody tr');
  await shot(page, 'jobs-390');
  await page.close();
  assert.deepEqual(pageErrors, [], 'no script errors on any page');
});
