// lib — shared helpers of the end-to-end tests: start real processes (drover, llama-server),
// wait for their readiness line (never sleep), poll with a bound, and stop every process by
// its pid. Every wait has a deadline; every process ends in the test file's `after` hook.
// Isolation: every process runs in its own fresh temporary directory (its working directory,
// so a relative default such as `drover.db` or `drover-agent.state` lands there, never in the
// repo), every `drover serve` gets its own store file in that directory, and every listener
// is on port 0 or a port just found free. A test never reads state it did not make.
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DROVER = resolve(REPO, process.env.DROVER_BIN || 'build/asan/drover');

// The processes' logs: deleted when this test file passes, kept (and named) when it fails
// or when DROVER_E2E_KEEP_LOGS=1.
const logDir = mkdtempSync(join(tmpdir(), 'drover-e2e-'));
let nProcs = 0;
process.on('exit', (code) => {
  if (code === 0 && !process.exitCode && process.env.DROVER_E2E_KEEP_LOGS !== '1') {
    rmSync(logDir, { recursive: true, force: true });
  } else {
    process.stderr.write(`drover e2e: process logs kept in ${logDir}\n`);
  }
});

// A fresh directory for one process's state (store, agent state file), under the log dir: it
// goes when the logs go and is kept beside them when a test fails.
export function stateDir(name) {
  return mkdtempSync(join(logDir, `${name}-state-`));
}

// A started process: stdout is read line by line (readiness), stderr goes to a log file that
// a failing test prints. `exited` resolves with {code, signal} once it is gone. It runs in
// `cwd` (default: a fresh stateDir of its own), never in the caller's working directory.
export class Proc {
  constructor(name, cmd, args, { env, cwd } = {}) {
    this.name = name;
    this.cwd = cwd || stateDir(name);
    this.logPath = join(logDir, `${String(nProcs++).padStart(2, '0')}-${name}.log`);
    const logFd = openSync(this.logPath, 'w');
    this.child = spawn(cmd, args, {
      cwd: this.cwd,
      stdio: ['ignore', 'pipe', logFd],
      env: {
        ...process.env,
        ASAN_OPTIONS: process.env.ASAN_OPTIONS || 'detect_leaks=1:abort_on_error=0',
        UBSAN_OPTIONS: process.env.UBSAN_OPTIONS || 'print_stacktrace=1:halt_on_error=1',
        ...env,
      },
    });
    closeSync(logFd);
    this.pid = this.child.pid;
    this.lines = [];
    this.waiters = [];
    this.exitInfo = null;
    let partial = '';
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk) => {
      partial += chunk;
      let i;
      while ((i = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, i);
        partial = partial.slice(i + 1);
        this.lines.push(line);
        for (const w of this.waiters) w.check();
      }
    });
    this.exited = new Promise((res) => {
      this.child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        for (const w of this.waiters) w.check();
        res(this.exitInfo);
      });
    });
    this.child.on('error', (e) => {
      this.spawnError = e;
      for (const w of this.waiters) w.check();
    });
  }

  log() {
    try {
      return readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  tail(n = 40) {
    return this.log().split('\n').slice(-n).join('\n');
  }

  // Resolves with the first stdout line starting with `prefix`; rejects (with the log's tail)
  // when the process exits first or `timeoutMs` passes.
  waitLine(prefix, timeoutMs = 20000) {
    return new Promise((res, rej) => {
      let timer;
      const w = {
        check: () => {
          const line = this.lines.find((l) => l.startsWith(prefix));
          let err = null;
          if (line !== undefined) {
            done();
            res(line);
            return;
          }
          if (this.spawnError) err = `${this.name}: ${this.spawnError.message}`;
          else if (this.exitInfo)
            err = `${this.name} exited (${JSON.stringify(this.exitInfo)}) before "${prefix}"`;
          if (err) {
            done();
            rej(new Error(`${err}\n--- ${this.logPath}\n${this.tail()}`));
          }
        },
      };
      const done = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((x) => x !== w);
      };
      timer = setTimeout(() => {
        done();
        rej(new Error(`${this.name}: no "${prefix}" within ${timeoutMs} ms\n--- ${this.logPath}\n${this.tail()}`));
      }, timeoutMs);
      this.waiters.push(w);
      w.check();
    });
  }

  // Resolves once stderr (the log file) has a line matching `re`; bounded.
  async waitLog(re, timeoutMs = 30000) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (re.test(this.log())) return;
      if (this.exitInfo) break;
      await delay(50);
    }
    throw new Error(`${this.name}: no log line matching ${re} within ${timeoutMs} ms (exit ${JSON.stringify(this.exitInfo)})\n--- ${this.logPath}\n${this.tail()}`);
  }

  // Stops the process by its pid: `signal` first, SIGKILL after `graceMs`. Returns its exit.
  async stop(signal = 'SIGTERM', graceMs = 5000) {
    if (this.exitInfo || this.spawnError) return this.exitInfo;
    try {
      process.kill(this.pid, signal);
    } catch {
      /* already gone */
    }
    // Unref'd timers: a pending grace timer must not keep the test process alive after it.
    const t = delay(graceMs, 'timeout', { ref: false });
    if ((await Promise.race([this.exited, t])) === 'timeout') {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      await Promise.race([this.exited, delay(graceMs, undefined, { ref: false })]);
    }
    return this.exitInfo;
  }

  // Sanitizer reports (ASan, UBSan, LeakSanitizer) in the log, if any.
  sanitizerReports() {
    return this.log()
      .split('\n')
      .filter((l) => /ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: \w+Sanitizer/.test(l));
  }
}

// "drover-serve ready listen=127.0.0.1:5 admin=127.0.0.1:6" → {listen: '127.0.0.1:5', …}
export function parseKv(line) {
  const out = {};
  for (const tok of line.split(/\s+/)) {
    const i = tok.indexOf('=');
    if (i > 0) out[tok.slice(0, i)] = tok.slice(i + 1);
  }
  return out;
}

// Calls `fn` until it returns a truthy value; every `intervalMs`, at most `timeoutMs`.
export async function poll(what, fn, { timeoutMs = 20000, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await delay(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

// A port that was free a moment ago on 127.0.0.1 (for servers that cannot listen on port 0
// and report it, such as llama-server).
export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

// GET a JSON document with a bounded time.
export async function getJson(url, timeoutMs = 3000) {
  const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: r.status, headers: r.headers, body: await r.json().catch(() => null) };
}

// Model ids the gateway lists now, with the nodes that serve each: {id: [nodes]}.
export async function gatewayModels(base) {
  const { status, body } = await getJson(`${base}/v1/models`);
  if (status !== 200 || !body || !Array.isArray(body.data)) return {};
  return Object.fromEntries(body.data.map((m) => [m.id, m.nodes || []]));
}

// Starts `drover serve` with the given nodes and extra args; resolves {proc, base, admin,
// store} once it printed its readiness line. Each call gets its own store file in a fresh
// directory (`store`), so two gateways, or two runs, never share registry state.
export async function startServe(nodes, extra = []) {
  const dir = stateDir('serve');
  const store = join(dir, 'drover.db');
  const args = ['serve', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0',
    '--set', `store.path=${store}`];
  for (const n of nodes) args.push('--node', n);
  args.push('--set', 'health.interval=200ms', '--set', 'health.rise=1', ...extra);
  const proc = new Proc('serve', DROVER, args, { cwd: dir });
  const kv = parseKv(await proc.waitLine('drover-serve ready'));
  return { proc, base: `http://${kv.listen}`, admin: `http://${kv.admin}`, store };
}

// Stops every process (reverse order) and returns the sanitizer reports found in their logs.
export async function stopAll(procs) {
  const reports = [];
  for (const p of [...procs].reverse()) {
    if (!p) continue;
    await p.stop();
    for (const r of p.sanitizerReports()) reports.push(`${p.name} (${p.logPath}): ${r}`);
  }
  return reports;
}
