// The official `ollama` and `@anthropic-ai/sdk` clients through `drover serve` in front of a real
// llama.cpp llama-server (the cached chroot of scripts/llama-chroot.sh, the tiny random-weight
// model of tests/e2e/llama_server.test.mjs): every call is translated to chat completions, and
// greedy decoding gives the same text through the three SDKs; count_tokens uses the node's own
// /tokenize (an exact count, not an estimate). Skipped, with the reason, like llama_server.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { Proc, REPO, freePort, gatewayModels, poll, startServe, stopAll } from './lib.mjs';

const MODEL = 'tiny-llama';
const SERVER_SH = join(REPO, 'scripts', 'llama-server.sh');

function chrootUnavailable() {
  if (process.platform !== 'linux') return `needs Linux (chroot), this is ${process.platform}`;
  if (process.getuid() !== 0) return 'needs root to chroot into the llama.cpp chroot';
  const status = spawnSync(join(REPO, 'scripts', 'llama-chroot.sh'), ['status'], { encoding: 'utf8', timeout: 10000 });
  return status.status === 0 ? null : `llama.cpp chroot not built (${status.stderr.trim()})`;
}
const unavailable = chrootUnavailable();
const required = process.env.DROVER_E2E_LLAMA === '1';
const opts = { skip: required ? false : (unavailable ?? false) };

describe('ollama and anthropic clients over a real llama-server', { timeout: 120000 }, () => {
  const procs = [];
  let llama;
  let gw;

  before(async () => {
    if (opts.skip) return;
    if (unavailable) throw new Error(`llama.cpp chroot required (DROVER_E2E_LLAMA=1): ${unavailable}`);
    const port = await freePort();
    llama = new Proc('llama-server', SERVER_SH, [String(port)]);
    procs.push(llama);
    await llama.waitLog(/listening on http:\/\/127\.0\.0\.1:\d+/, 60000);
    gw = await startServe([`l1=http://127.0.0.1:${port},llamacpp`]);
    procs.push(gw.proc);
    await poll(`${MODEL} listed`, async () => (await gatewayModels(gw.base))[MODEL]?.length === 1);
  });

  after(async () => {
    const reports = await stopAll(procs);
    if (llama) assert.ok(llama.exitInfo, 'llama-server still running');
    assert.deepEqual(reports, [], "sanitizer reports in the processes' logs");
  });

  test('the same greedy text through the OpenAI, Ollama and Anthropic SDKs', opts, async () => {
    const messages = [{ role: 'user', content: 'hello' }];
    const openai = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30000 });
    const c = await openai.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0, seed: 42 });
    const want = c.choices[0].message.content;
    assert.ok(want.length > 0);

    const ollama = new Ollama({ host: gw.base });
    const o = await ollama.chat({ model: MODEL, messages, stream: false, options: { num_predict: 8, temperature: 0, seed: 42 } });
    assert.equal(o.message.content, want);
    assert.equal(o.eval_count, c.usage.completion_tokens);
    assert.equal(o.prompt_eval_count, c.usage.prompt_tokens);
    assert.ok(o.eval_duration > 0, 'eval_duration from llama-server timings');
    let streamed = '';
    for await (const part of await ollama.chat({ model: MODEL, messages, stream: true, options: { num_predict: 8, temperature: 0, seed: 42 } })) streamed += part.message.content;
    assert.equal(streamed, want);

    const anthropic = new Anthropic({ baseURL: gw.base, apiKey: 'unused', maxRetries: 0, timeout: 30000 });
    const a = await anthropic.messages.create({ model: MODEL, max_tokens: 8, temperature: 0, messages });
    assert.equal(a.content.map((b) => b.text || '').join(''), want);
    let atext = '';
    const s = anthropic.messages.stream({ model: MODEL, max_tokens: 8, temperature: 0, messages });
    s.on('text', (t) => { atext += t; });
    await s.finalMessage();
    assert.equal(atext, want);
  });

  test("count_tokens asks the node's /tokenize", opts, async () => {
    const anthropic = new Anthropic({ baseURL: gw.base, apiKey: 'unused', maxRetries: 0, timeout: 30000 });
    const n = await anthropic.messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: 'hello there, hello again' }] });
    assert.ok(Number.isInteger(n.input_tokens) && n.input_tokens > 0, JSON.stringify(n));
    assert.equal(n.estimated, undefined, 'an exact count, not an estimate');
  });
});
