// The dashboard in a real browser: Debian's chromium driven by puppeteer-core, against a
// `drover serve` in front of `drover sim` nodes started here on free ports. Every page loads
// with no console error and has labelled, keyboard-reachable controls; every action changes
// what the page shows; a node killed during the test turns unhealthy on the page within the
// probe window; the session cookie works only with its CSRF header; a viewer sees no actions.
// Screenshots of every page go to an artifacts directory printed at the end.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';
import { DROVER, Proc, parseKv, poll, startServe, stateDir, stopAll } from '../e2e/lib.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TOKEN = 'ui-test-admin-token';
const VIEWER_TOKEN = 'ui-test-viewer-token';
const ART = process.env.DROVER_UI_ARTIFACTS || mkdtempSync(join(tmpdir(), 'drover-ui-artifacts-'));
mkdirSync(ART, { recursive: true });
const PAGES = ['fleet', 'models', 'ops', 'log', 'charts', 'keys'];

const procs = [];
let browser, gw, sims = {};

async function startSim(name, extra = []) {
  const p = new Proc(`sim-${name}`, DROVER, ['sim', '--port', '0', ...extra]);
  procs.push(p);
  const kv = parseKv(await p.waitLine('drover-sim ready'));
  return { proc: p, port: Number(kv.port) };
}

async function launch() {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: mkdtempSync(join(tmpdir(), 'drover-ui-chromium-')),
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'],
  });
}

// A page that records console errors and uncaught exceptions.
async function openPage(context) {
  const page = await context.newPage();
  await page.setViewport({ width: 1400, height: 900 });
  page.errors = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // the Keys page asks /admin/v1/keys and shows a placeholder when it is not there (404)
    if (/\/admin\/v1\/keys$/.test(m.location().url || '')) return;
    page.errors.push(`${m.text()} ${m.location().url || ''}`);
  });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  return page;
}

async function login(page, { viewer = false, token = TOKEN } = {}) {
  await page.goto(`${gw.admin}/ui/`, { waitUntil: 'load' });
  await page.waitForSelector('#login:not([hidden])');
  await page.$eval('#login-token', (e, t) => { e.value = t; }, token);
  if (viewer) await page.click('#login-viewer');
  await page.click('#login-form button[type=submit]');
}

async function gotoPage(page, name) {
  await page.evaluate((n) => { location.hash = `#/${n}`; }, name);
  await page.waitForFunction((n) => document.title === `drover · ${n}` && document.querySelector('#page h1'), {}, name);
  await page.waitForNetworkIdle({ idleTime: 300, timeout: 10000 }).catch(() => {}); // the SSE page never idles
}

async function rowText(page, node) {
  return page.$eval(`tr[data-node="${node}"]`, (r) => r.innerText).catch(() => null);
}

async function clickAction(page, node, action, fields) {
  const sel = `button[data-action="${action}"][data-node="${node}"]`;
  await page.waitForSelector(sel, { timeout: 10000 });
  await page.click(sel);
  await page.waitForSelector('#confirm[open]');
  for (const [k, v] of Object.entries(fields || {})) await page.type(`#confirm-${k}`, v);
  await page.click('#confirm-ok');
  await page.waitForFunction(() => !document.querySelector('#confirm[open]'));
}

// Every interactive element of the accessibility tree has a name.
async function unnamedControls(page) {
  const tree = await page.accessibility.snapshot({ interestingOnly: false });
  const bad = [];
  const walk = (n) => {
    if (['button', 'textbox', 'searchbox', 'combobox', 'checkbox', 'link', 'menuitem'].includes(n.role) && !(n.name || '').trim())
      bad.push(`${n.role}`);
    for (const c of n.children || []) walk(c);
  };
  if (tree) walk(tree);
  return bad;
}

// What Tab reaches, from the top of the document, in order.
async function tabStops(page, max = 120) {
  await page.evaluate(() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); });
  await page.focus('body').catch(() => {});
  const seen = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const d = await page.evaluate(() => {
      const a = document.activeElement;
      if (!a || a === document.body) return null;
      return `${a.tagName.toLowerCase()}|${a.dataset.action || ''}|${a.getAttribute('aria-label') || a.textContent.trim().slice(0, 30)}`;
    });
    if (!d) continue;
    if (seen.length && d === seen[0]) break; // wrapped around
    seen.push(d);
  }
  return seen;
}

describe('dashboard in chromium', { timeout: 240000 }, () => {
  before(async () => {
    sims.main = await startSim('main', ['--nodes', '3']);
    sims.faulty = await startSim('faulty', ['--nodes', '1', '--fault-rate', '1', '--fault', 'status=500']);
    sims.doomed = await startSim('doomed', ['--nodes', '1']);
    const p = sims.main.port;
    const cfg = join(stateDir('cfg'), 'drover.yaml');
    writeFileSync(cfg, `admin_tokens:\n  - {id: ro, token: ${VIEWER_TOKEN}, role: viewer}\n`);
    gw = await startServe([`a=http://127.0.0.1:${p}`, `b=http://127.0.0.1:${p + 1}`,
      `f=http://127.0.0.1:${sims.faulty.port}`, `k=http://127.0.0.1:${sims.doomed.port}`],
      ['--config', cfg, '--set', `admin_token=${TOKEN}`, '--set', 'join.token=ui-join', '--set', 'health.interval=1s',
        '--set', 'health.fall=2', '--set', 'health.timeout=500ms']);
    procs.push(gw.proc);
    // a node that joins (pending): approve, label and remove need one not from the config
    const r = await fetch(`${gw.base}/drover/v1/nodes/join`, { method: 'POST',
      headers: { Authorization: 'Bearer ui-join', 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'j1', url: `http://127.0.0.1:${p + 2}`, engine: 'openai', agent_version: 'ui-test' }) });
    assert.equal(r.status, 200, await r.text());
    browser = await launch();
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    const reports = await stopAll(procs);
    process.stderr.write(`drover ui: screenshots in ${ART}\n`);
    assert.deepEqual(reports, [], 'sanitizer reports');
  });

  let page;

  it('asks for the admin token, refuses a wrong one, and sets an HttpOnly SameSite=Strict cookie', async () => {
    page = await openPage(browser.defaultBrowserContext());
    await login(page, { token: 'wrong' });
    await page.waitForFunction(() => document.querySelector('#login-error').textContent.length > 0);
    await page.screenshot({ path: join(ART, 'login.png') });
    await login(page);
    await page.waitForSelector('#page:not([hidden]) h1');
    page.errors.length = 0; // the refused login's 401 is an expected console line
    const cookies = await page.cookies();
    const c = cookies.find((x) => x.name === 'drover_session');
    assert.ok(c, 'session cookie set');
    assert.equal(c.httpOnly, true);
    assert.equal(c.sameSite, 'Strict');
    assert.match(c.value, /^[0-9a-f]{64}$/);
    assert.ok(c.expires > Date.now() / 1000, 'the cookie has an expiry');
  });

  it('accepts the session cookie on the admin API only with its CSRF header', async () => {
    const r = await page.evaluate(async () => {
      const s = await (await fetch('/ui/session')).json();
      const without = await fetch('/admin/v1/nodes');
      const withCsrf = await fetch('/admin/v1/nodes', { headers: { 'X-Drover-CSRF': s.csrf } });
      const wrong = await fetch('/admin/v1/nodes/a/drain', { method: 'POST', headers: { 'X-Drover-CSRF': '0'.repeat(64) } });
      return [without.status, withCsrf.status, wrong.status];
    });
    assert.deepEqual(r, [401, 200, 401]);
    page.errors.length = 0;
  });

  it('loads every page with no console error, labelled controls and a keyboard path to the actions', async () => {
    for (const name of PAGES) {
      await gotoPage(page, name);
      await page.screenshot({ path: join(ART, `${name}.png`), fullPage: true });
      assert.deepEqual(page.errors, [], `console errors on ${name}`);
      assert.deepEqual(await unnamedControls(page), [], `controls without a name on ${name}`);
      const stops = await tabStops(page);
      assert.ok(stops.some((s) => s.startsWith('a|') && s.includes('Fleet')), `Tab reaches the navigation on ${name}: ${stops}`);
      if (name === 'fleet') {
        for (const act of ['drain', 'recover', 'approve', 'label', 'remove'])
          assert.ok(stops.some((s) => s.includes(`|${act}|`)), `Tab reaches ${act} on the fleet page: ${stops.join(', ')}`);
        // a keyboard user can open and cancel the confirmation
        const target = stops.findIndex((s) => s.includes('|drain|'));
        assert.ok(target >= 0);
      }
      if (name === 'log') assert.ok(stops.some((s) => s.startsWith('input|')), 'Tab reaches the filter');
      if (name === 'keys') {
        // usage per key and per model, from /admin/v1/usage (the test's requests made some)
        await page.waitForFunction(() => [...document.querySelectorAll('h2')].some((e) => e.textContent === 'Usage by model'));
      }
    }
  });

  it('confirms before acting, and a cancelled action changes nothing', async () => {
    await gotoPage(page, 'fleet');
    await page.waitForSelector('button[data-action="drain"][data-node="a"]');
    await page.focus('button[data-action="drain"][data-node="a"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#confirm[open]');
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !document.querySelector('#confirm[open]'));
    await new Promise((r) => setTimeout(r, 500));
    assert.match(await rowText(page, 'a'), /\bapproved\b/);
  });

  it('each action changes the state shown after it', async () => {
    await gotoPage(page, 'fleet');
    await poll('j1 pending', async () => /pending/.test(await rowText(page, 'j1') || ''));
    await clickAction(page, 'j1', 'approve');
    await poll('j1 approved on the page', async () => /\bapproved\b/.test(await rowText(page, 'j1') || ''));
    await clickAction(page, 'a', 'drain');
    await poll('a draining', async () => /\bdraining\b/.test(await rowText(page, 'a') || ''));
    await page.screenshot({ path: join(ART, 'fleet-draining.png'), fullPage: true });
    await clickAction(page, 'a', 'resume');
    await poll('a approved again', async () => /\bapproved\b/.test(await rowText(page, 'a') || ''));
    await clickAction(page, 'j1', 'label', { key: 'zone', value: 'blue' });
    await poll('j1 labelled', async () => /zone=blue/.test(await rowText(page, 'j1') || ''));
    // traffic makes the faulty node f excluded; recover ends it
    await poll('f healthy', async () => /healthy/.test(await rowText(page, 'f') || ''), { timeoutMs: 20000 });
    await poll('f excluded', async () => {
      for (let i = 0; i < 4; i++)
        await fetch(`${gw.base}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ model: 'sim-chat', messages: [{ role: 'user', content: 'hi' }] }) });
      return (await page.$eval('tr[data-node="f"] [data-excluded]', (e) => e.dataset.excluded).catch(() => '')) === 'true';
    }, { timeoutMs: 30000, intervalMs: 500 });
    await page.screenshot({ path: join(ART, 'fleet-excluded.png'), fullPage: true });
    await clickAction(page, 'f', 'recover');
    await poll('f not excluded', async () =>
      (await page.$eval('tr[data-node="f"] [data-excluded]', (e) => e.dataset.excluded).catch(() => '')) === 'false');
    assert.match(await rowText(page, 'f'), /faults 0 in a row/);
    await clickAction(page, 'j1', 'remove');
    await poll('j1 gone', async () => (await rowText(page, 'j1')) === null);
    assert.deepEqual(page.errors, []);
  });

  it('shows each request in the live log with its node, attempts and outcome class', async () => {
    await gotoPage(page, 'log');
    await page.waitForFunction(() => document.querySelector('#log-state').textContent === 'live');
    const before = await page.$$eval('#log-body tr', (r) => r.length);
    for (let i = 0; i < 3; i++)
      await fetch(`${gw.base}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: 'sim-chat', messages: [{ role: 'user', content: `log ${i}` }] }) });
    await page.waitForFunction((n) => document.querySelectorAll('#log-body tr').length >= n + 3, { timeout: 10000 }, before);
    const top = await page.$eval('#log-body tr', (r) => [...r.cells].map((c) => c.innerText));
    assert.equal(top[2], 'sim-chat');
    assert.match(top[3], /^(a|b|k|f|j1)$/);
    assert.match(top[4], /^\d+$/);
    assert.equal(top[6], '200');
    assert.equal(top[7], 'success');
    assert.equal(top[8], 'success');
    await page.screenshot({ path: join(ART, 'log-live.png'), fullPage: true });
    assert.deepEqual(page.errors, []);
  });

  it('draws the last hour from the per-minute history', async () => {
    await gotoPage(page, 'charts');
    const label = await page.$eval('svg.chart', (s) => s.getAttribute('aria-label'));
    const m = label.match(/latest ([\d.]+)/);
    assert.ok(m && Number(m[1]) > 0, `requests/s now > 0: ${label}`);
    await page.select('#chart-window', 'day');
    await page.waitForFunction(() => document.querySelector('#chart-window').value === 'day');
    await page.screenshot({ path: join(ART, 'charts-day.png'), fullPage: true });
    assert.deepEqual(page.errors, []);
  });

  it('turns a killed node unhealthy on the page within the probe window', async () => {
    await gotoPage(page, 'fleet');
    await poll('k healthy', async () => (await page.$eval('tr[data-node="k"] [data-liveness]', (e) => e.dataset.liveness).catch(() => '')) === 'healthy');
    await sims.doomed.proc.stop('SIGKILL');
    const t0 = Date.now();
    // interval 1 s, fall 2, timeout 0.5 s, the page polls every 2 s: well inside 10 s
    await poll('k unhealthy on the page', async () =>
      (await page.$eval('tr[data-node="k"] [data-liveness]', (e) => e.dataset.liveness).catch(() => '')) === 'unhealthy',
    { timeoutMs: 10000, intervalMs: 200 });
    process.stderr.write(`drover ui: node k shown unhealthy ${Date.now() - t0} ms after it was killed\n`);
    await page.screenshot({ path: join(ART, 'fleet-killed.png'), fullPage: true });
  });

  for (const [what, opts] of [['a viewer token', { token: VIEWER_TOKEN }], ['an operator who asks for less', { viewer: true }]]) {
    it(`hides the actions from ${what}, and the API refuses its writes`, async () => {
      const ctx = await browser.createBrowserContext();
      const vp = await openPage(ctx);
      await login(vp, opts);
      await vp.waitForSelector('tr[data-node="a"]');
      assert.equal(await vp.$$eval('button[data-action]', (b) => b.length), 0);
      assert.match(await vp.$eval('#who', (e) => e.textContent), /viewer/);
      const st = await vp.evaluate(async () => {
        const s = await (await fetch('/ui/session')).json();
        return (await fetch('/admin/v1/nodes/a/drain', { method: 'POST', headers: { 'X-Drover-CSRF': s.csrf } })).status;
      });
      assert.equal(st, 403);
      await vp.screenshot({ path: join(ART, `fleet-viewer-${opts.token ? 'token' : 'asked'}.png`), fullPage: true });
      await vp.click('#logout');
      await vp.waitForSelector('#login:not([hidden])');
      await ctx.close();
    });
  }

  it('never gives a viewer token more than viewer, and audits the dashboard\'s writes as its token', async () => {
    const up = await fetch(`${gw.admin}/ui/login`, { method: 'POST',
      headers: { Authorization: `Bearer ${VIEWER_TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ role: 'operator' }) });
    assert.equal(up.status, 403);
    const audit = await (await fetch(`${gw.admin}/admin/v1/audit?limit=100`, { headers: { Authorization: `Bearer ${TOKEN}` } })).json();
    const text = JSON.stringify(audit);
    assert.match(text, /nodes\/a\/drain/);
    assert.match(text, /admin_token/);
  });
});

describe('dashboard in dev mode (no admin token)', { timeout: 120000 }, () => {
  let dev, sim, b2;
  before(async () => {
    sim = new Proc('sim-dev', DROVER, ['sim', '--port', '0', '--nodes', '1']);
    const kv = parseKv(await sim.waitLine('drover-sim ready'));
    dev = await startServe([`d=http://127.0.0.1:${kv.port}`]);
    b2 = await launch();
  });
  after(async () => {
    if (b2) await b2.close().catch(() => {});
    await stopAll([sim, dev && dev.proc]);
  });
  it('works without a login and refuses another site\'s writes', async () => {
    const page = await openPage(b2.defaultBrowserContext());
    await page.goto(`${dev.admin}/ui/`, { waitUntil: 'load' });
    await page.waitForSelector('tr[data-node="d"]');
    assert.equal(await page.$eval('#login', (e) => e.hidden), true);
    assert.ok(await page.$('button[data-action="drain"][data-node="d"]'));
    assert.deepEqual(page.errors, []);
    const r = await fetch(`${dev.admin}/admin/v1/nodes/d/drain`, { method: 'POST', headers: { Origin: 'http://elsewhere.example' } });
    assert.equal(r.status, 403);
    await page.screenshot({ path: join(ART, 'dev-mode.png'), fullPage: true });
  });
});
