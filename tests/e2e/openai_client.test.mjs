// The official `openai` npm client (v6) against `drover serve` in front of two simulated
// nodes (`drover sim`): what a user's program sees — models, chat (plain, streamed, with
// usage), embeddings, the error classes the client raises for our 400 / 404, and the
// client's own retry honouring our 503 + Retry-After when every node is down.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { APIError, BadRequestError, NotFoundError } from 'openai';
import { DROVER, Proc, gatewayModels, getJson, parseKv, poll, startServe, stopAll } from './lib.mjs';

const CHAT_MODEL = 'llama3.2:1b';
const EMBED_MODEL = 'nomic-embed-text';

describe('openai client through drover serve over drover sim', { timeout: 120000 }, () => {
  const procs = [];
  let sim;
  let gw;
  let client;

  before(async () => {
    // Paced at 200 tokens/s so that a long stream lasts long enough to be cut by the client;
    // the other tests ask for at most 16 tokens.
    sim = new Proc('sim', DROVER, [
      'sim', '--port', '0', '--nodes', '2',
      '--model', CHAT_MODEL, '--model', `${EMBED_MODEL}:embedding`, '--tokens-per-second', '200',
    ]);
    procs.push(sim);
    const kv = parseKv(await sim.waitLine('drover-sim ready'));
    const port = Number(kv.port);
    assert.ok(port > 0 && Number(kv.nodes) === 2, `sim readiness line: ${JSON.stringify(kv)}`);
    gw = await startServe([`a=http://127.0.0.1:${port}`, `b=http://127.0.0.1:${port + 1}`]);
    procs.push(gw.proc);
    // Both nodes healthy and both models listed before any test runs (bounded polling).
    await poll(`${CHAT_MODEL} and ${EMBED_MODEL} on nodes a and b`, async () => {
      const m = await gatewayModels(gw.base);
      return (m[CHAT_MODEL] || []).length === 2 && (m[EMBED_MODEL] || []).length === 2;
    });
    client = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: 'unused', timeout: 15000, maxRetries: 0 });
  });

  after(async () => {
    const reports = await stopAll(procs);
    assert.deepEqual(reports, [], 'sanitizer reports in the processes\' logs');
  });

  test('models.list lists both models', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.ok(ids.includes(CHAT_MODEL), `models: ${ids}`);
    assert.ok(ids.includes(EMBED_MODEL), `models: ${ids}`);
  });

  test('chat.completions.create, not streamed', async () => {
    const { data, response } = await client.chat.completions
      .create({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16 })
      .withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.choices.length, 1);
    assert.equal(data.choices[0].message.role, 'assistant');
    assert.equal(typeof data.choices[0].message.content, 'string');
    assert.ok(data.choices[0].message.content.length > 0, 'empty content');
    assert.ok(['stop', 'length'].includes(data.choices[0].finish_reason), data.choices[0].finish_reason);
    assert.ok(['a', 'b'].includes(response.headers.get('x-drover-node')), 'X-Drover-Node');
    assert.equal(response.headers.get('x-drover-attempts'), '1');
  });

  test('chat.completions.create, stream: true', async () => {
    const stream = await client.chat.completions.create({
      model: CHAT_MODEL,
      messages: [{ role: 'user', content: 'Count to five.' }],
      max_tokens: 16,
      stream: true,
    });
    let content = '';
    let chunks = 0;
    let finish = null;
    for await (const chunk of stream) {
      chunks++;
      assert.equal(chunk.object, 'chat.completion.chunk');
      const c = chunk.choices[0];
      if (c?.delta?.content) content += c.delta.content;
      if (c?.finish_reason) finish = c.finish_reason;
    }
    // The iterator ended without throwing: the stream closed cleanly after [DONE].
    assert.ok(chunks >= 2, `only ${chunks} chunks`);
    assert.ok(content.length > 0, 'no content in the stream');
    assert.ok(['stop', 'length'].includes(finish), `finish_reason ${finish}`);
  });

  test('stream_options.include_usage gives a usage chunk', async () => {
    const stream = await client.chat.completions.create({
      model: CHAT_MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 8,
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage = null;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    assert.ok(usage, 'no chunk carried usage');
    assert.ok(usage.prompt_tokens > 0, JSON.stringify(usage));
    assert.ok(usage.completion_tokens > 0, JSON.stringify(usage));
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  });

  // The client asks for encoding_format "base64" unless told otherwise and decodes the
  // little-endian float32 vectors itself: that is what most users' programs send.
  for (const encoding_format of [undefined, 'float']) {
    test(`embeddings.create returns one vector per input (encoding_format ${encoding_format ?? 'default: base64'})`, async () => {
      const res = await client.embeddings.create({ model: EMBED_MODEL, input: ['one', 'two'], encoding_format });
      assert.equal(res.data.length, 2);
      for (const [i, d] of res.data.entries()) {
        assert.equal(d.index, i);
        assert.ok(Array.isArray(d.embedding) && d.embedding.length > 0, `vector ${i}: ${JSON.stringify(d.embedding)}`);
        assert.ok(d.embedding.every((x) => typeof x === 'number' && Number.isFinite(x)), `vector ${i} not finite numbers`);
        assert.ok(d.embedding.some((x) => x !== 0), `vector ${i} all zero`);
      }
      assert.equal(res.data[0].embedding.length, res.data[1].embedding.length);
    });
  }

  test('messages: [] raises BadRequestError (400)', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: CHAT_MODEL, messages: [] }),
      (e) => {
        assert.ok(e instanceof BadRequestError, `${e?.constructor?.name}: ${e?.message}`);
        assert.equal(e.status, 400);
        assert.equal(e.param, 'messages');
        return true;
      },
    );
  });

  test('an unknown model raises NotFoundError (404)', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
      (e) => {
        assert.ok(e instanceof NotFoundError, `${e?.constructor?.name}: ${e?.message}`);
        assert.equal(e.status, 404);
        assert.equal(e.code, 'model_not_found');
        return true;
      },
    );
  });

  test('a client that stops reading mid-stream frees the node and costs it nothing', async () => {
    // 4000 tokens at 200 tokens/s would take 20 s; the client leaves after 3 content chunks.
    const stream = await client.chat.completions.create({
      model: CHAT_MODEL, messages: [{ role: 'user', content: 'Tell a long story.' }], max_tokens: 4000, stream: true,
    });
    let chunks = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content && ++chunks >= 3) break; // the SDK aborts the request
    }
    assert.equal(chunks, 3);
    const nodes = await poll('no request in flight on any node', async () => {
      const { body } = await getJson(`${gw.admin}/admin/v1/nodes`);
      return body.nodes.every((n) => n.in_flight === 0 && n.streams === 0) && body.nodes;
    }, { timeoutMs: 5000 });
    for (const n of nodes) {
      assert.equal(n.faults_total, 0, `node ${n.name}: ${JSON.stringify(n)}`);
      assert.equal(n.routable, true, `node ${n.name}: ${JSON.stringify(n)}`);
    }
    const after = await client.chat.completions.create({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
    assert.ok(after.choices[0].message.content.length > 0);
  });

  // Last: takes the fleet down.
  test('with every node down the client retries after our Retry-After, then raises 503', async () => {
    await sim.stop('SIGKILL');
    await poll('the gateway to stop listing the chat model', async () => !(await gatewayModels(gw.base))[CHAT_MODEL]);

    const calls = [];
    const counting = async (url, init) => {
      calls.push(Date.now());
      return fetch(url, init);
    };
    const retrying = new OpenAI({
      baseURL: `${gw.base}/v1`, apiKey: 'unused', timeout: 15000, maxRetries: 1, fetch: counting,
    });
    await assert.rejects(
      retrying.chat.completions.create({ model: CHAT_MODEL, messages: [{ role: 'user', content: 'x' }] }),
      (e) => {
        assert.ok(e instanceof APIError, `${e?.constructor?.name}: ${e?.message}`);
        assert.equal(e.status, 503);
        assert.ok(['no_healthy_nodes', 'feasible_node_unhealthy'].includes(e.code), `code ${e.code}`);
        const ra = Number(e.headers.get('retry-after'));
        assert.ok(ra >= 1, `Retry-After ${e.headers.get('retry-after')}`);
        // One retry, and the client waited what we asked (its own default is at most 0.5 s).
        assert.equal(calls.length, 2, `${calls.length} requests`);
        assert.ok(calls[1] - calls[0] >= ra * 1000 - 100, `retried after ${calls[1] - calls[0]} ms, Retry-After ${ra}`);
        return true;
      },
    );
  });
});
