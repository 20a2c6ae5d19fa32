// The official `openai` client (v6) over https:// to `drover serve` with TLS on its client
// listener (a test CA made with the openssl CLI), client keys with limits (docs/security.md):
// 200 for a good key (plain and streamed, with and without usage asked), 401 for a wrong one,
// 403 for a model outside the key's globs, and 429 where the client's own retry honours our
// Retry-After and x-ratelimit-* headers and then succeeds.
//
// The CA is made at run time, so NODE_EXTRA_CA_CERTS (read at process start) cannot name it:
// the client gets a `fetch` built on node:https with `ca` set — the SDK's documented fetch
// option — so nothing trusts the CA but this client.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import OpenAI from 'openai';
import { DROVER, Proc, gatewayModels, parseKv, poll, startServe, stateDir, stopAll } from './lib.mjs';

const CHAT_MODEL = 'llama3.2:1b';

function makePki() {
  const d = stateDir('pki');
  const ossl = (...args) => execFileSync('openssl', args, { cwd: d, stdio: 'pipe', timeout: 60000 });
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=drover-e2e-ca', '-keyout', 'ca.key', '-out', 'ca.pem');
  ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=drover-e2e',
    '-keyout', 'srv.key', '-out', 'srv.csr');
  writeFileSync(join(d, 'srv.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ossl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-extfile', 'srv.ext', '-out', 'srv.pem');
  return { dir: d, ca: readFileSync(join(d, 'ca.pem')) };
}

// A WHATWG fetch over node:https that trusts `ca` (and keeps connections alive). Every
// attempt is recorded: when it was sent, its status and the limit headers.
function caFetch(ca, attempts = []) {
  return (input, init = {}) => new Promise((resolve, reject) => {
    const url = new URL(typeof input === 'string' ? input : input.url);
    const headers = {};
    new Headers(init.headers || {}).forEach((v, k) => { headers[k] = v; });
    const a = { at: Date.now(), status: null, retryAfter: null, remaining: null };
    attempts.push(a);
    const req = httpsRequest(url, { method: init.method || 'GET', headers, ca, signal: init.signal }, (res) => {
      a.status = res.statusCode;
      a.retryAfter = res.headers['retry-after'] ?? null;
      a.remaining = res.headers['x-ratelimit-remaining-requests'] ?? null;
      const h = new Headers();
      for (const [k, v] of Object.entries(res.headers)) h.set(k, Array.isArray(v) ? v.join(', ') : String(v));
      const body = res.statusCode === 204 ? null : Readable.toWeb(res);
      resolve(new Response(body, { status: res.statusCode, headers: h }));
    });
    req.on('error', reject);
    if (init.body) req.end(typeof init.body === 'string' ? init.body : Buffer.from(init.body));
    else req.end();
  });
}

async function createKey(admin, spec) {
  const r = await fetch(`${admin}/admin/v1/keys`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spec),
    signal: AbortSignal.timeout(5000),
  });
  const body = await r.json();
  assert.equal(r.status, 201, JSON.stringify(body));
  return body.secret;
}

describe('openai client over https with client keys', { timeout: 90000 }, () => {
  const procs = [];
  let gw;
  let pki;
  let base;
  const keys = {};

  before(async () => {
    pki = makePki();
    const sim = new Proc('sim', DROVER, ['sim', '--port', '0', '--nodes', '1', '--model', CHAT_MODEL,
      '--tokens-per-second', '0']);
    procs.push(sim);
    const port = Number(parseKv(await sim.waitLine('drover-sim ready')).port);
    gw = await startServe([`a=http://127.0.0.1:${port}`], [
      '--set', `tls.cert=${join(pki.dir, 'srv.pem')}`, '--set', `tls.key=${join(pki.dir, 'srv.key')}`]);
    procs.push(gw.proc);
    base = gw.base.replace('http://', 'https://');
    keys.good = await createKey(gw.admin, { name: 'good', models: ['llama*'] });
    keys.other = await createKey(gw.admin, { name: 'other', models: ['mistral-*'] });
    keys.limited = await createKey(gw.admin, { name: 'limited', rpm: 60 });
    const f = caFetch(pki.ca);
    await poll(`${CHAT_MODEL} routable`, async () => {
      const r = await f(`${base}/v1/models`, { headers: { authorization: `Bearer ${keys.good}` } });
      const body = await r.json();
      return r.status === 200 && body.data.some((m) => m.id === CHAT_MODEL);
    });
  });

  after(async () => {
    const reports = await stopAll(procs);
    assert.deepEqual(reports, [], 'sanitizer reports in the processes\' logs');
  });

  const client = (apiKey, opts = {}) => new OpenAI({
    baseURL: `${base}/v1`, apiKey, timeout: 15000, maxRetries: 0, fetch: caFetch(pki.ca, opts.attempts), ...opts.sdk,
  });

  test('200: a good key over TLS, plain and streamed', async () => {
    const c = client(keys.good);
    const { data, response } = await c.chat.completions
      .create({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }).withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.object, 'chat.completion');
    assert.ok(data.usage.completion_tokens > 0);

    // the client did not ask for usage: no usage chunk reaches it (the gateway asked the node)
    const chunks = [];
    for await (const ch of await c.chat.completions.create({
      model: CHAT_MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, stream: true,
    })) chunks.push(ch);
    assert.ok(chunks.length >= 5, `${chunks.length} chunks`);
    assert.ok(chunks.every((ch) => ch.choices.length === 1 && !ch.usage), JSON.stringify(chunks.at(-1)));

    // asked: the last chunk carries it
    const asked = [];
    for await (const ch of await c.chat.completions.create({
      model: CHAT_MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, stream: true,
      stream_options: { include_usage: true },
    })) asked.push(ch);
    assert.equal(asked.at(-1).choices.length, 0);
    assert.equal(asked.at(-1).usage.completion_tokens, 5);
  });

  test('401: a wrong key', async () => {
    await assert.rejects(
      client('dk-not-a-key-000000000000000000000000000000').chat.completions
        .create({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
      (e) => e instanceof OpenAI.AuthenticationError && e.status === 401 && e.code === 'invalid_api_key');
  });

  test('403: a model outside the key\'s globs', async () => {
    await assert.rejects(
      client(keys.other).chat.completions
        .create({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
      (e) => e instanceof OpenAI.PermissionDeniedError && e.status === 403 && e.code === 'model_not_found');
  });

  test('429: the SDK waits our Retry-After and its retry succeeds', async () => {
    // rpm 60: a burst of 60, then one a second; spend the burst
    const spend = client(keys.limited);
    for (let i = 0; i < 60; i++) {
      await spend.chat.completions.create({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 1 });
    }
    // without retries: the SDK's RateLimitError with OpenAI's headers
    const err = await client(keys.limited).chat.completions
      .create({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 1 })
      .catch((e) => e);
    assert.ok(err instanceof OpenAI.RateLimitError, String(err));
    assert.equal(err.status, 429);
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.equal(err.headers.get('x-ratelimit-limit-requests'), '60');
    assert.equal(err.headers.get('x-ratelimit-remaining-requests'), '0');
    assert.match(err.headers.get('x-ratelimit-reset-requests'), /^[0-9.]+m?s$/);
    assert.equal(Number(err.headers.get('retry-after')), 1);

    // with its own retries: 429, a wait of our Retry-After (1 s), then 200
    const attempts = [];
    const c = client(keys.limited, { attempts, sdk: { maxRetries: 2 } });
    const { data, response } = await c.chat.completions
      .create({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }).withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.object, 'chat.completion');
    assert.deepEqual(attempts.map((a) => a.status), [429, 200], JSON.stringify(attempts));
    assert.equal(attempts[0].retryAfter, '1');
    const gap = attempts[1].at - attempts[0].at;
    assert.ok(gap >= 950 && gap < 3000, `retried after ${gap} ms, Retry-After 1 s`);
  });
});
