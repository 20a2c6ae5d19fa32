// The official `ollama` npm client against `drover serve` (docs/translate.md): list, show, ps,
// version, chat (plain and streamed), generate, embed, and errors, over two gateways on the
// same `drover sim`: one whose only node is an OpenAI-compatible node (every /api/* call is
// translated to chat completions or embeddings), one whose only node is an Ollama node (passed
// through). The sim is deterministic, so the translated chat answers with the text the OpenAI
// SDK gets for the same messages, and both gateways give the same chat text.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { DROVER, Proc, gatewayModels, parseKv, poll, startServe, stopAll } from './lib.mjs';

const CHAT_MODEL = 'llama3.2:1b';
const EMBED_MODEL = 'nomic-embed-text';
const MESSAGES = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name three colours.' },
];

describe('ollama client through drover serve over drover sim', { timeout: 120000 }, () => {
  const procs = [];
  const gws = {}; // kind of the gateway's node → {base, ollama}

  before(async () => {
    const sim = new Proc('sim', DROVER, [
      'sim', '--port', '0', '--nodes', '2', '--model', CHAT_MODEL, '--model', `${EMBED_MODEL}:embedding`,
    ]);
    procs.push(sim);
    const port = Number(parseKv(await sim.waitLine('drover-sim ready')).port);
    for (const [kind, node] of [['openai', `a=http://127.0.0.1:${port}`], ['ollama', `o=http://127.0.0.1:${port + 1},ollama`]]) {
      const gw = await startServe([node]);
      procs.push(gw.proc);
      await poll(`${CHAT_MODEL} on the ${kind} node`, async () => {
        const m = await gatewayModels(gw.base);
        return (m[CHAT_MODEL] || []).length === 1 && (m[EMBED_MODEL] || []).length === 1;
      });
      gws[kind] = { base: gw.base, ollama: new Ollama({ host: gw.base }) };
    }
  });

  after(async () => {
    const reports = await stopAll(procs);
    assert.deepEqual(reports, [], "sanitizer reports in the processes' logs");
  });

  for (const kind of ['openai', 'ollama']) {
    describe(`over an ${kind} node`, () => {
      test('list, show, ps, version', async () => {
        const { ollama } = gws[kind];
        const names = (await ollama.list()).models.map((m) => m.name);
        assert.ok(names.includes(CHAT_MODEL) && names.includes(EMBED_MODEL), `tags: ${names}`);
        const show = await ollama.show({ model: CHAT_MODEL });
        assert.deepEqual(show.capabilities, ['completion']);
        assert.equal(show.details.format, 'gguf');
        const emb = await ollama.show({ model: EMBED_MODEL });
        assert.deepEqual(emb.capabilities, ['embedding']);
        await assert.rejects(ollama.show({ model: 'no-such-model' }), (e) => e.status_code === 404 && /not found/.test(e.error));
        const ps = (await ollama.ps()).models.map((m) => m.name);
        assert.ok(ps.includes(CHAT_MODEL), `ps: ${ps}`);
        assert.match((await ollama.version()).version, /^\d+\.\d+\.\d+$/);
      });

      test('chat, not streamed and streamed, same text', async () => {
        const { ollama } = gws[kind];
        const r = await ollama.chat({ model: CHAT_MODEL, messages: MESSAGES, stream: false, options: { num_predict: 8, temperature: 0 } });
        assert.equal(r.message.role, 'assistant');
        assert.equal(r.message.content.split(' ').length, 8, r.message.content);
        assert.equal(r.done, true);
        assert.equal(r.done_reason, 'length');
        assert.equal(r.eval_count, 8);
        assert.ok(r.prompt_eval_count > 0, `prompt_eval_count ${r.prompt_eval_count}`);
        assert.ok(r.total_duration > 0, `total_duration ${r.total_duration}`);
        let content = '';
        let last;
        for await (const part of await ollama.chat({ model: CHAT_MODEL, messages: MESSAGES, stream: true, options: { num_predict: 8 } })) {
          content += part.message.content;
          last = part;
        }
        assert.equal(content, r.message.content);
        assert.equal(last.done, true);
        assert.equal(last.eval_count, 8);
        gws[kind].chatText = r.message.content;
      });

      test('generate, not streamed and streamed', async () => {
        const { ollama } = gws[kind];
        const r = await ollama.generate({ model: CHAT_MODEL, prompt: 'Why is the sky blue?', stream: false, options: { num_predict: 5 } });
        assert.equal(r.response.split(' ').length, 5, r.response);
        assert.equal(r.done, true);
        let text = '';
        for await (const part of await ollama.generate({ model: CHAT_MODEL, prompt: 'Why is the sky blue?', stream: true, options: { num_predict: 5 } })) text += part.response;
        assert.equal(text, r.response);
      });

      test('embed', async () => {
        const { ollama } = gws[kind];
        const r = await ollama.embed({ model: EMBED_MODEL, input: ['alpha', 'beta'] });
        assert.equal(r.embeddings.length, 2);
        assert.equal(r.embeddings[0].length, 16);
        assert.notDeepEqual(r.embeddings[0], r.embeddings[1]);
        gws[kind].embedding = r.embeddings[0];
      });

      test('errors in Ollama\'s shape', async () => {
        const { ollama } = gws[kind];
        await assert.rejects(ollama.chat({ model: 'no-such-model', messages: MESSAGES, stream: false }),
          (e) => e.name === 'ResponseError' && e.status_code === 404 && /does not exist/.test(e.error));
        await assert.rejects(ollama.chat({ model: CHAT_MODEL, messages: [{ role: 'wizard', content: 'x' }], stream: false }),
          (e) => e.status_code === 400 && /role/.test(e.error));
      });

      test('a stream cut by the node ends with an error the client raises', async () => {
        const cut = new Ollama({ host: gws[kind].base, headers: { 'X-Sim-Fault': 'cut_after=3' } });
        const it = await cut.chat({ model: CHAT_MODEL, messages: MESSAGES, stream: true, options: { num_predict: 12 } });
        await assert.rejects(async () => {
          for await (const part of it) assert.equal(part.done, false);
        }, /node failed/);
      });
    });
  }

  test('translated and native chat give the same text; the OpenAI SDK too', async () => {
    assert.ok(gws.openai.chatText && gws.ollama.chatText);
    assert.equal(gws.openai.chatText, gws.ollama.chatText);
    const openai = new OpenAI({ baseURL: `${gws.openai.base}/v1`, apiKey: 'unused', maxRetries: 0 });
    const c = await openai.chat.completions.create({ model: CHAT_MODEL, messages: MESSAGES, max_tokens: 8 });
    assert.equal(c.choices[0].message.content, gws.openai.chatText);
    const e = await openai.embeddings.create({ model: EMBED_MODEL, input: 'alpha' });
    assert.deepEqual(e.data[0].embedding.map((v) => v.toFixed(5)), gws.openai.embedding.map((v) => v.toFixed(5)));
  });
});
