// Three `drover serve` on one PostgreSQL (a private cluster from scripts/pg.sh) behind HAProxy,
// with the official `openai` client (its own retries on) sending chats through HAProxy while
// one gateway is killed with SIGKILL: no request fails. HAProxy's health check (GET /v1/models,
// every 200 ms) takes the dead gateway out; what was in flight on it is retried by HAProxy
// (connection failures) or by the SDK (a connection cut, a 502/503 from HAProxy). Skips when
// haproxy or the PostgreSQL server binaries are not installed (scripts/deps.sh installs both).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import OpenAI from 'openai';
import { DROVER, Proc, REPO, freePort, gatewayModels, parseKv, poll, stopAll } from './lib.mjs';

const CHAT_MODEL = 'llama3.2:1b';
const HAPROXY = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((p) => existsSync(p));
const PG_BIN = (() => {
  try {
    const v = readdirSync('/usr/lib/postgresql').sort();
    const d = v.length ? `/usr/lib/postgresql/${v[v.length - 1]}/bin` : null;
    return d && existsSync(`${d}/initdb`) ? d : null;
  } catch {
    return null;
  }
})();
const skip = !HAPROXY ? 'no haproxy (scripts/deps.sh installs it)'
  : !PG_BIN ? 'no PostgreSQL server binaries (scripts/deps.sh installs postgresql-15)' : false;

describe('three gateways behind HAProxy, one killed', { timeout: 120000, skip }, () => {
  const procs = [];
  const gws = [];
  let pgDir;
  let base;

  before(async () => {
    pgDir = mkdtempSync(join(tmpdir(), 'drover-e2e-pg-'));
    const pg = spawnSync(join(REPO, 'scripts', 'pg.sh'), ['start', pgDir], { timeout: 120000 });
    assert.equal(pg.status, 0, `pg.sh start: ${pg.stderr}`);
    const url = readFileSync(join(pgDir, 'url'), 'utf8').trim();

    const sim = new Proc('sim', DROVER, ['sim', '--port', '0', '--nodes', '1', '--model', CHAT_MODEL,
      '--tokens-per-second', '0']);
    procs.push(sim);
    const simPort = Number(parseKv(await sim.waitLine('drover-sim ready')).port);
    for (let i = 0; i < 3; i++) {
      const p = new Proc(`serve${i}`, DROVER, ['serve', '--listen', '127.0.0.1:0',
        '--admin-listen', '127.0.0.1:0', '--node', `a=http://127.0.0.1:${simPort}`,
        '--set', 'health.interval=200ms', '--set', 'health.rise=1', '--set', 'store.lease=1s'],
      { env: { DROVER_STORE_ENGINE: 'postgres', DROVER_STORE_URL: url } });
      procs.push(p);
      const kv = parseKv(await p.waitLine('drover-serve ready'));
      gws.push({ proc: p, base: `http://${kv.listen}` });
    }
    for (const g of gws) {
      await poll(`${CHAT_MODEL} on ${g.base}`, async () => (await gatewayModels(g.base))[CHAT_MODEL]?.length === 1);
    }

    const port = await freePort();
    const cfg = join(pgDir, 'haproxy.cfg');
    writeFileSync(cfg, [
      'global',
      '    maxconn 1000',
      'defaults',
      '    mode http',
      '    timeout connect 1s',
      '    timeout client 30s',
      '    timeout server 30s',
      '    retries 3',
      '    option redispatch 1',
      '    retry-on conn-failure empty-response response-timeout 502 503',
      'frontend fe',
      `    bind 127.0.0.1:${port}`,
      '    default_backend drover',
      'backend drover',
      '    balance roundrobin',
      '    option http-buffer-request',
      '    option httpchk GET /v1/models',
      '    http-check expect status 200',
      ...gws.map((g, i) => `    server gw${i} ${g.base.slice(7)} check inter 200ms fall 2 rise 1`),
      '',
    ].join('\n'));
    const hap = new Proc('haproxy', HAPROXY, ['-db', '-f', cfg]);
    procs.push(hap);
    base = `http://127.0.0.1:${port}`;
    await poll('HAProxy answering', async () => (await gatewayModels(base))[CHAT_MODEL]?.length === 1);
  });

  after(async () => {
    const reports = await stopAll(procs);
    if (pgDir) {
      spawnSync(join(REPO, 'scripts', 'pg.sh'), ['stop', pgDir], { timeout: 60000 });
      rmSync(pgDir, { recursive: true, force: true });
    }
    assert.deepEqual(reports, [], 'sanitizer reports in the processes\' logs');
  });

  test('no request fails while a gateway is killed with SIGKILL', async () => {
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 5, timeout: 10000 });
    let ok = 0;
    const failed = [];
    let stop = false;
    const worker = async () => {
      while (!stop) {
        try {
          const r = await client.chat.completions.create({
            model: CHAT_MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4,
          });
          assert.ok(r.choices.length > 0);
          ok++;
        } catch (e) {
          failed.push(String(e && e.message ? e.message : e));
        }
      }
    };
    const workers = Array.from({ length: 6 }, worker);
    await delay(1500);
    await gws[1].proc.stop('SIGKILL');
    await delay(3000);
    stop = true;
    await Promise.all(workers);
    assert.deepEqual(failed, [], `failed requests (${failed.length}) out of ${ok + failed.length}`);
    assert.ok(ok > 50, `requests completed: ${ok}`);
  });
});
