// The official `openai` client (v6) with its own retries on, through `drover serve` in front
// of ONE simulated node that goes down and comes back: a request made while the node is down
// gets our 503 + Retry-After, the client waits exactly that long (not its own shorter
// back-off) and its retry succeeds on the node that came back on the same port.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import OpenAI from 'openai';
import { DROVER, Proc, gatewayModels, getJson, parseKv, poll, startServe, stopAll } from './lib.mjs';

const CHAT_MODEL = 'llama3.2:1b';

function startSim(port) {
  return new Proc('sim', DROVER, ['sim', '--port', String(port), '--nodes', '1', '--model', CHAT_MODEL]);
}

// Rejects after `ms` with `what`: every wait of this test is bounded.
function within(ms, what, promise) {
  let timer;
  const t = new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

describe('openai client retries through a node restart', { timeout: 60000 }, () => {
  const procs = [];
  let port;
  let gw;

  before(async () => {
    const sim = startSim(0);
    procs.push(sim);
    const kv = parseKv(await sim.waitLine('drover-sim ready'));
    port = Number(kv.port);
    assert.ok(port > 0 && Number(kv.nodes) === 1, `sim readiness line: ${JSON.stringify(kv)}`);
    // startServe sets health.interval=200ms and health.rise=1 (fall stays at its default 3):
    // the node is seen down ~0.6 s after it dies and back ~0.2 s after it returns.
    gw = await startServe([`a=http://127.0.0.1:${port}`]);
    procs.push(gw.proc);
    await poll(`${CHAT_MODEL} on node a`, async () => (await gatewayModels(gw.base))[CHAT_MODEL]?.length === 1);
  });

  after(async () => {
    const reports = await stopAll(procs);
    assert.deepEqual(reports, [], 'sanitizer reports in the processes\' logs');
  });

  test('a request made while the only node is down succeeds once it is back, after our Retry-After', async () => {
    const sim = procs[0];
    await sim.stop('SIGKILL');

    // Until the probes notice, a chat is refused by the dead node (502 upstream_failed); once
    // they do, the gateway answers 503 + Retry-After itself. Raw fetch, no client retries.
    const down = await poll('the gateway to answer 503 with Retry-After', async () => {
      const r = await fetch(`${gw.base}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 4 }),
        signal: AbortSignal.timeout(3000),
      });
      const body = await r.json().catch(() => null);
      return r.status === 503 && r.headers.get('retry-after') && { ra: Number(r.headers.get('retry-after')), body };
    }, { timeoutMs: 10000 });
    assert.ok(down.ra >= 1, `Retry-After ${down.ra}`);
    assert.ok(['no_healthy_nodes', 'feasible_node_unhealthy'].includes(down.body?.error?.code), JSON.stringify(down.body));

    // Every HTTP attempt the client makes: when it was sent, what came back.
    const attempts = [];
    let firstAnswered;
    const firstSeen = new Promise((res) => { firstAnswered = res; });
    const counting = async (url, init) => {
      const a = { at: Date.now(), status: null, retryAfter: null };
      attempts.push(a);
      const r = await fetch(url, init);
      a.status = r.status;
      a.retryAfter = r.headers.get('retry-after');
      if (attempts.length === 1) firstAnswered();
      return r;
    };
    const client = new OpenAI({
      baseURL: `${gw.base}/v1`, apiKey: 'unused', timeout: 15000, maxRetries: 3, fetch: counting,
    });
    const pending = client.chat.completions
      .create({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 8 })
      .withResponse();
    pending.catch(() => {}); // awaited below; an early rejection must not be unhandled

    // The first attempt is answered while the node is down …
    await within(5000, 'the first attempt answered', firstSeen);
    assert.equal(attempts[0].status, 503, `first attempt: ${JSON.stringify(attempts[0])}`);
    const ra = Number(attempts[0].retryAfter);
    assert.ok(ra >= 1, `first attempt's Retry-After ${attempts[0].retryAfter}`);

    // … and ~1 s later a new sim comes up on the same port; the gateway must see it healthy
    // before the client's retry is due (rise=1 at 200 ms: expected within ~0.5 s).
    await delay(1000);
    const sim2 = startSim(port);
    procs.push(sim2);
    const kv2 = parseKv(await sim2.waitLine('drover-sim ready', 5000));
    assert.equal(Number(kv2.port), port, 'the new sim took the same port');
    await poll('node a healthy again', async () => {
      const { body } = await getJson(`${gw.admin}/admin/v1/nodes/a`);
      return body?.routable === true;
    }, { timeoutMs: 3000, intervalMs: 50 });
    assert.ok(Date.now() - attempts[0].at < ra * 1000,
      `node back only ${Date.now() - attempts[0].at} ms after the first attempt; the retry was due after ${ra * 1000} ms`);

    const { data, response } = await within(ra * 1000 + 10000, 'the client\'s request to resolve', pending);
    assert.equal(data.object, 'chat.completion');
    assert.ok(data.choices[0].message.content.length > 0, 'empty content');
    assert.equal(response.headers.get('x-drover-node'), 'a');
    assert.equal(response.headers.get('x-drover-attempts'), '1');
    // Exactly one retry: the node was back before it was due. The client waited our
    // Retry-After; its own back-off for a first retry is at most 0.5 s.
    assert.deepEqual(attempts.map((a) => a.status), [503, 200], JSON.stringify(attempts));
    const gap = attempts[1].at - attempts[0].at;
    assert.ok(gap >= ra * 1000 - 20, `retried after ${gap} ms, Retry-After ${ra} s`);
    assert.ok(gap < ra * 1000 + 2000, `retried only after ${gap} ms, Retry-After ${ra} s`);
  });
});
