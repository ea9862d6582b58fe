// The browser half of bench/console.sh: medians of RUNS alternating loads of the jobs page (first
// page of 10,000 jobs), a bare route (the limit), the raw API call, the 100,000-step curve page
// and its metrics call; prints a table and the ratios.
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/console/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const { MLE_URL: url, MLE_TOKEN: token, RUNS, MLE_PROFILE: profile } = process.env;
const runs = Number(RUNS || 15);
mkdirSync(profile, { recursive: true });
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium', headless: true, viewport: { width: 1280, height: 800 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await ctx.newPage();
await page.goto(`${url}/console/`);
await page.evaluate((t) => sessionStorage.setItem('mle.token', t), token);

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const t = { jobs: [], bare: [], api: [], curve: [], metrics: [] };
const api = async (path) => {
  const t0 = performance.now();
  const r = await fetch(`${url}${path}`, { headers: { Authorization: `Bearer ${token}` } });
  const body = await r.json();
  return [performance.now() - t0, body];
};
let drawn = null;
for (let i = 0; i < runs; i += 1) {
  // A full navigation each time (a reload of the console, not a hash change).
  await page.goto('about:blank');
  await page.goto(`${url}/console/#/p/bench/jobs`);
  await page.waitForSelector('#jobs-table tbody tr:nth-child(20)');
  t.jobs.push(await page.evaluate(() => performance.now()));
  await page.goto('about:blank');
  await page.goto(`${url}/healthz`);
  t.bare.push(await page.evaluate(() => performance.getEntriesByType('navigation')[0].loadEventEnd || performance.now()));
  t.api.push((await api('/v1/projects/bench/jobs?pageSize=20&orderBy=createTime%20desc'))[0]);
  await page.goto('about:blank');
  await page.goto(`${url}/console/#/p/bench/jobs/curve`);
  await page.waitForSelector('figure.chart[data-tag="loss"][data-points] canvas');
  t.curve.push(await page.evaluate(() => performance.now()));
  drawn = JSON.parse(await page.getAttribute('figure.chart[data-tag="loss"]', 'data-points'));
  const [ms, m] = await api('/v1/projects/bench/jobs/curve/metrics?maxPoints=1000');
  t.metrics.push(ms);
  if (m.series[0].count !== 100000) throw new Error(`the curve has ${m.series[0].count} steps`);
}
await ctx.close();
const row = (name, k, note) => console.log(`| ${name} | ${median(t[k]).toFixed(1)} | ${note} |`);
console.log(`\n${runs} runs each, alternating; headless, 1280×800\n`);
console.log('| what | median ms | |');
console.log('|---|---:|---|');
row('jobs page, first 20 of 10,000 jobs (navigation → rows drawn)', 'jobs', 'the console');
row('bare route `/healthz` in the same browser (navigation → load)', 'bare', 'the limit');
row('the list call the page makes (`GET .../jobs?pageSize=20&orderBy=createTime desc`)', 'api', 'its data');
row('job page drawing a 100,000-step curve (navigation → chart drawn)', 'curve', `${JSON.stringify(drawn)} points drawn`);
row('its metrics call (`GET .../jobs/curve/metrics?maxPoints=1000`)', 'metrics', '100,000 steps read, downsampled');
console.log(`\njobs page / bare route: ${(median(t.jobs) / median(t.bare)).toFixed(1)}×; first page under 1 s: ${median(t.jobs) < 1000 ? 'yes' : 'NO'}`);
