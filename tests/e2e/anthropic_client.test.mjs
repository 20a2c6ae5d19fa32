// The official `@anthropic-ai/sdk` against `drover serve` (docs/translate.md): Messages, not
// streamed and streamed (the SDK's own event accumulation), a tool use round trip, token
// counting, and errors in Anthropic's shape, over a gateway whose only node is an
// OpenAI-compatible `drover sim` node and one whose only node is an Ollama-kind node (its own
// /v1/chat/completions). The sim is deterministic: the text equals what the OpenAI SDK gets for
// the same conversation.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { DROVER, Proc, gatewayModels, parseKv, poll, startServe, stopAll } from './lib.mjs';

const MODEL = 'llama3.2:1b';
const SYSTEM = 'You are terse.';
const USER = 'Name three colours.';

describe('anthropic client through drover serve over drover sim', { timeout: 120000 }, () => {
  const procs = [];
  const gws = {};

  before(async () => {
    const sim = new Proc('sim', DROVER, ['sim', '--port', '0', '--nodes', '2', '--model', MODEL]);
    procs.push(sim);
    const port = Number(parseKv(await sim.waitLine('drover-sim ready')).port);
    for (const [kind, node] of [['openai', `a=http://127.0.0.1:${port}`], ['ollama', `o=http://127.0.0.1:${port + 1},ollama`]]) {
      const gw = await startServe([node], ['--set', 'api_key=sekrit']);
      procs.push(gw.proc);
      await poll(`${MODEL} on the ${kind} node`, async () => {
        const r = await fetch(`${gw.base}/v1/models`, { headers: { authorization: 'Bearer sekrit' } });
        const b = await r.json();
        return (b.data || []).some((m) => m.id === MODEL && (m.nodes || []).length === 1);
      });
      gws[kind] = {
        base: gw.base,
        // apiKey: the SDK sends x-api-key, which the gateway's client keys accept (keys.c)
        client: new Anthropic({ baseURL: gw.base, apiKey: 'sekrit', maxRetries: 0, timeout: 15000 }),
      };
    }
  });

  after(async () => {
    const reports = await stopAll(procs);
    assert.deepEqual(reports, [], "sanitizer reports in the processes' logs");
  });

  for (const kind of ['openai', 'ollama']) {
    describe(`over an ${kind} node`, () => {
      test('messages.create', async () => {
        const { client } = gws[kind];
        const m = await client.messages.create({ model: MODEL, max_tokens: 8, system: SYSTEM, messages: [{ role: 'user', content: USER }] });
        assert.equal(m.type, 'message');
        assert.equal(m.role, 'assistant');
        assert.equal(m.model, MODEL);
        assert.match(m.id, /^msg_/);
        assert.equal(m.content.length, 1);
        assert.equal(m.content[0].type, 'text');
        assert.equal(m.content[0].text.split(' ').length, 8, m.content[0].text);
        assert.equal(m.stop_reason, 'max_tokens');
        assert.equal(m.usage.output_tokens, 8);
        assert.ok(m.usage.input_tokens > 0);
        gws[kind].text = m.content[0].text;
      });

      test('messages.stream: events and the same text', async () => {
        const { client } = gws[kind];
        const stream = client.messages.stream({ model: MODEL, max_tokens: 8, system: SYSTEM, messages: [{ role: 'user', content: USER }] });
        const types = [];
        stream.on('streamEvent', (ev) => types.push(ev.type));
        let text = '';
        stream.on('text', (t) => { text += t; });
        const final = await stream.finalMessage();
        assert.equal(text, gws[kind].text);
        assert.equal(final.content[0].text, gws[kind].text);
        assert.equal(final.stop_reason, 'max_tokens');
        assert.equal(final.usage.output_tokens, 8);
        assert.equal(types[0], 'message_start');
        assert.equal(types.at(-1), 'message_stop');
        assert.equal(types.at(-2), 'message_delta');
        assert.ok(types.includes('content_block_start') && types.includes('content_block_delta') && types.includes('content_block_stop'), types.join(','));
      });

      test('tool use round trip: tools, tool_use and tool_result go through', async () => {
        const { client } = gws[kind];
        const tools = [{ name: 'get_weather', description: 'The weather in a city', input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }];
        const m = await client.messages.create({
          model: MODEL,
          max_tokens: 6,
          tools,
          tool_choice: { type: 'auto' },
          messages: [
            { role: 'user', content: 'Weather in Paris?' },
            { role: 'assistant', content: [{ type: 'text', text: 'Checking.' }, { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris' } }] },
            { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_01', content: '18 C, sunny' }] },
          ],
        });
        assert.equal(m.type, 'message');
        assert.equal(m.content[0].type, 'text');
        assert.equal(m.content[0].text.split(' ').length, 6);
      });

      test('count_tokens: an estimate, marked, where the node cannot tokenize', async () => {
        const { base } = gws[kind];
        const r = await fetch(`${base}/v1/messages/count_tokens`, {
          method: 'POST',
          headers: { authorization: 'Bearer sekrit', 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
          body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'abcdefgh abcdefgh' }] }),
        });
        assert.equal(r.status, 200);
        assert.deepEqual(await r.json(), { input_tokens: 5, estimated: true });
      });

      test("errors in Anthropic's shape", async () => {
        const { client, base } = gws[kind];
        await assert.rejects(client.messages.create({ model: 'no-such-model', max_tokens: 4, messages: [{ role: 'user', content: 'x' }] }),
          (e) => e instanceof Anthropic.NotFoundError && e.error?.type === 'error' && e.error?.error?.type === 'not_found_error');
        await assert.rejects(client.messages.create({ model: MODEL, max_tokens: 0, messages: [{ role: 'user', content: 'x' }] }),
          (e) => e instanceof Anthropic.BadRequestError && e.error?.error?.type === 'invalid_request_error' && /max_tokens/.test(e.error.error.message));
        const bad = new Anthropic({ baseURL: base, apiKey: 'wrong', maxRetries: 0 });
        await assert.rejects(bad.messages.create({ model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: 'x' }] }),
          (e) => e instanceof Anthropic.AuthenticationError && e.error?.error?.type === 'authentication_error');
        // Authorization: Bearer works too (authToken)
        const bearer = new Anthropic({ baseURL: base, apiKey: null, authToken: 'sekrit', maxRetries: 0 });
        const ok = await bearer.messages.create({ model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: 'x' }] });
        assert.equal(ok.type, 'message');
      });

      test('a stream cut by the node ends with an error event the SDK raises', async () => {
        const cut = new Anthropic({ baseURL: gws[kind].base, apiKey: null, authToken: 'sekrit', maxRetries: 0, defaultHeaders: { 'X-Sim-Fault': 'cut_after=3' } });
        const stream = cut.messages.stream({ model: MODEL, max_tokens: 12, messages: [{ role: 'user', content: USER }] });
        await assert.rejects(stream.finalMessage(), /node failed/);
      });
    });
  }

  test('the same conversation through the OpenAI SDK gives the same text', async () => {
    assert.equal(gws.openai.text, gws.ollama.text);
    const openai = new OpenAI({ baseURL: `${gws.openai.base}/v1`, apiKey: 'sekrit', maxRetries: 0 });
    const c = await openai.chat.completions.create({ model: MODEL, max_tokens: 8, messages: [{ role: 'system', content: SYSTEM }, { role: 'user', content: USER }] });
    assert.equal(c.choices[0].message.content, gws.openai.text);
  });
});
