// drover dashboard — one page, no framework, no build step, nothing fetched from elsewhere.
// It reads the admin API with the dashboard session (a cookie plus the X-Drover-CSRF header;
// none in dev mode), polls the fleet every 2 s, reads the live request log as server-sent
// events over fetch (EventSource cannot send the CSRF header), and draws charts as SVG.
'use strict';

const S = { auth: null, role: 'operator', csrf: null, page: null, timer: null, stream: null,
  live: new Map(), log: [], logPaused: false, window: 'hour' };
const $ = (id) => document.getElementById(id);
const POLL_MS = 2000, STRIP = 60, LOG_MAX = 300;

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined && k !== false)
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined) e.setAttribute(k, v);
  for (const k of kids.flat()) if (k) e.append(k);
  return e;
}

function status(msg, bad) {
  const s = $('status');
  s.textContent = msg || '';
  s.className = bad ? 'status bad' : 'status';
}

async function api(method, path, body) {
  const headers = {};
  if (S.csrf) headers['X-Drover-CSRF'] = S.csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await r.json(); } catch { data = null; }
  if (r.status === 401 && S.auth && S.auth.auth_required) { showLogin('Your session ended; log in again.'); }
  if (!r.ok) {
    const msg = data && data.error ? (data.error.message || data.error.code) : r.statusText;
    const err = new Error(`${r.status} ${msg}`);
    err.status = r.status;
    throw err;
  }
  return data;
}

const canWrite = () => S.role === 'operator';
const ago = (ms) => ms < 1000 ? `${ms} ms` : ms < 60000 ? `${(ms / 1000).toFixed(0)} s`
  : ms < 3600000 ? `${(ms / 60000).toFixed(0)} min` : `${(ms / 3600000).toFixed(1)} h`;
const fmt = (v, d = 1) => v === null || v === undefined ? '–' : Number(v).toFixed(d);

// ---- confirmation dialog ----------------------------------------------------------------
function confirmAction(text, fields) {
  return new Promise((resolve) => {
    const d = $('confirm');
    $('confirm-text').textContent = text;
    const extra = $('confirm-extra');
    extra.replaceChildren();
    const inputs = {};
    for (const f of fields || []) {
      const id = `confirm-${f.name}`;
      inputs[f.name] = h('input', { id, name: f.name, required: f.required, value: f.value || '' });
      extra.append(h('div', {}, h('label', { for: id, text: f.label }), inputs[f.name]));
    }
    d.returnValue = '';
    const done = () => {
      d.removeEventListener('close', done);
      const ok = d.returnValue === 'ok';
      const vals = {};
      for (const [k, i] of Object.entries(inputs)) vals[k] = i.value;
      resolve(ok ? vals : null);
    };
    d.addEventListener('close', done);
    d.showModal();
    (fields && fields.length ? inputs[fields[0].name] : $('confirm-cancel')).focus();
  });
}

async function act(label, method, path, body, fields) {
  const vals = await confirmAction(label, fields);
  if (!vals) { status('Cancelled.'); return; }
  try {
    const b = typeof body === 'function' ? body(vals) : body;
    await api(method, typeof path === 'function' ? path(vals) : path, b);
    status(`Done: ${label}`);
  } catch (e) {
    status(`${label}: ${e.message}`, true);
  }
  await refresh();
}

// ---- pages ------------------------------------------------------------------------------
function liveness(n) {
  const cls = n.liveness === 'healthy' ? 'ok' : n.liveness === 'unhealthy' ? 'bad' : 'muted';
  return h('span', { class: `pill ${cls}`, 'data-liveness': n.liveness, text: n.liveness });
}

function stripFor(name) {
  const hist = S.live.get(name) || [];
  const w = 4, s = svg('svg', { class: 'strip', width: STRIP * w, height: 12, role: 'img',
    'aria-label': `liveness of ${name}, last ${hist.length} samples` });
  hist.forEach((v, i) => s.append(svg('rect', { x: i * w, y: 0, width: w - 1, height: 12,
    fill: v === 'healthy' ? '#38a169' : v === 'unhealthy' ? '#e53e3e' : '#a0aec0' },
    svg('title', {}, document.createTextNode(v)))));
  return s;
}

function nodeActions(n) {
  if (!canWrite()) return [];
  const base = `/admin/v1/nodes/${encodeURIComponent(n.name)}`;
  const b = (what, label, path, body, fields) => h('button', { type: 'button',
    'aria-label': `${label} node ${n.name}`, 'data-action': what, 'data-node': n.name,
    onclick: () => act(`${label} node ${n.name}?`, 'POST', path, body, fields) }, label);
  const out = [];
  if (n.admin === 'pending') out.push(b('approve', 'Approve', `${base}/approve`));
  if (n.admin === 'approved') out.push(b('drain', 'Drain', `${base}/drain`));
  if (n.admin === 'draining') out.push(b('resume', 'Resume', `${base}/resume`));
  if (n.admin !== 'removed') out.push(b('recover', 'Recover', `${base}/recover`));
  if (n.source !== 'config' && n.admin !== 'removed') {
    out.push(h('button', { type: 'button', 'aria-label': `Label node ${n.name}`, 'data-action': 'label',
      'data-node': n.name, onclick: () => act(`Set a label on node ${n.name}`, 'PUT',
        (v) => `${base}/labels/${encodeURIComponent(v.key)}`, (v) => ({ value: v.value }),
        [{ name: 'key', label: 'Label key', required: true }, { name: 'value', label: 'Value', required: true }]) }, 'Label'));
    out.push(b('remove', 'Remove', `${base}/remove`));
  }
  return out;
}

function marksOf(n) {
  const items = [];
  for (const m of n.models || []) for (const k of m.marks || [])
    items.push(h('li', {}, `${m.id}: ${k.kind}${k.capability ? ' ' + k.capability : ''} — ${k.cause} (${ago(k.age_ms)} ago)`));
  return items.length ? h('ul', { class: 'marks' }, items) : h('span', { class: 'muted', text: 'none' });
}

async function pageFleet(root) {
  const { nodes } = await api('GET', '/admin/v1/nodes');
  for (const n of nodes) {
    const hist = S.live.get(n.name) || [];
    hist.push(n.liveness);
    while (hist.length > STRIP) hist.shift();
    S.live.set(n.name, hist);
  }
  const rows = nodes.map((n) => h('tr', { 'data-node': n.name },
    h('th', { scope: 'row' }, n.name, h('div', { class: 'muted', text: `${n.kind} · ${n.source}` })),
    h('td', {}, h('span', { 'data-admin': n.admin, text: n.admin })),
    h('td', {}, liveness(n), h('div', {}, stripFor(n.name))),
    h('td', { 'data-excluded': String(n.excluded) }, n.excluded ? h('span', { class: 'pill bad', text: `excluded ${ago(n.eject_remaining_ms)}` }) : h('span', { class: 'muted', text: 'not excluded' }),
      h('div', { class: 'muted', text: `faults ${n.consecutive_faults} in a row, ${n.faults_total} total` })),
    h('td', { class: 'num' }, String(n.ejections)),
    h('td', {}, marksOf(n)),
    h('td', { class: 'num' }, `${n.in_flight} / ${n.concurrency_limit || '–'}`),
    h('td', {}, (n.models || []).map((m) => (m.context_length ? `${m.id} (${m.context_length} ctx)` : m.id))
      .join(', ') || h('span', { class: 'muted', text: 'none' }),
      Object.keys(n.labels || {}).length ? h('div', { class: 'muted', 'data-labels': n.name,
        text: Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(' ') }) : null),
    h('td', {}, nodeActions(n))));
  root.replaceChildren(
    h('h1', {}, 'Fleet'),
    h('p', { class: 'muted' }, `${nodes.length} nodes; ${nodes.filter((n) => n.routable).length} routable. Refreshed every 2 s.`),
    h('table', { 'aria-label': 'Nodes' },
      h('thead', {}, h('tr', {}, ['Node', 'Admin', 'Liveness (history)', 'Fault record', 'Ejections',
        'Marks (cause, age)', 'In flight / limit', 'Models, labels', 'Actions'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, rows)));
}

async function pageModels(root) {
  const [{ models }, { nodes }] = await Promise.all([api('GET', '/admin/v1/models'), api('GET', '/admin/v1/nodes')]);
  const served = new Map();
  for (const n of nodes) for (const m of n.models || []) {
    if (!served.has(m.id)) served.set(m.id, []);
    served.get(m.id).push(n.name + (n.routable ? '' : ' (not routable)'));
  }
  const cat = models.map((m) => {
    const rs = m.replicas_status || {};
    return h('tr', { 'data-model': m.id },
      h('th', { scope: 'row' }, m.id, m.aliases && m.aliases.length ? h('div', { class: 'muted', text: `aliases: ${m.aliases.join(', ')}` }) : null),
      h('td', { class: 'num' }, `${rs.present ?? m.replicas_routable ?? 0} / ${rs.wanted ?? '–'}`),
      h('td', { class: 'num' }, String(rs.loading ?? m.loading ?? 0)),
      h('td', {}, (m.loaded_on || []).join(', ') || '–'),
      h('td', {}, rs.unmet_reason || m.reconciler || h('span', { class: 'muted', text: 'met' })),
      h('td', {}, h('ul', { class: 'marks' }, Object.entries(m.placement || {}).map(([n, why]) => h('li', {}, `${n}: ${why}`)))));
  });
  root.replaceChildren(
    h('h1', {}, 'Models and catalogue'),
    h('h2', {}, 'Catalogue'),
    models.length ? h('table', { 'aria-label': 'Catalogue' },
      h('thead', {}, h('tr', {}, ['Model', 'Replicas present / wanted', 'Cold loads running', 'Loaded on', 'Unmet because', 'Placement per node'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, cat)) : h('p', { class: 'muted', text: 'No catalogued models (the fleet serves what its nodes list).' }),
    h('h2', {}, 'Served by the fleet'),
    h('table', { 'aria-label': 'Models served' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Model' }), h('th', { scope: 'col', text: 'Nodes' }))),
      h('tbody', {}, [...served.entries()].sort().map(([id, ns]) => h('tr', {}, h('th', { scope: 'row', text: id }), h('td', { text: ns.join(', ') }))))));
}

async function pageOps(root) {
  const [{ ops }, { dead }] = await Promise.all([api('GET', '/admin/v1/ops'), api('GET', '/admin/v1/ops/dead')]);
  const cols = ['ID', 'Node', 'Operation', 'Target', 'Attempts', 'Last error'];
  const row = (o, actions) => h('tr', { 'data-op': o.id },
    h('td', { class: 'num', text: o.id }), h('td', { text: o.node }), h('td', { text: o.op }),
    h('td', { text: o.target }), h('td', { class: 'num', text: o.attempts ?? '' }),
    h('td', { text: o.last_error || o.error || '' }), actions ? h('td', {}, actions) : null);
  root.replaceChildren(
    h('h1', {}, 'Operations'),
    h('h2', {}, `Queue (${ops.length})`),
    ops.length ? h('table', { 'aria-label': 'Operations queue' }, h('thead', {}, h('tr', {}, cols.map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, ops.map((o) => row(o)))) : h('p', { class: 'muted', text: 'Nothing queued.' }),
    h('h2', {}, `Dead letters (${dead.length})`),
    dead.length ? h('table', { 'aria-label': 'Dead letters' }, h('thead', {}, h('tr', {}, [...cols, 'Actions'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, dead.map((o) => row(o, canWrite() ? [h('button', { type: 'button', 'aria-label': `Retry operation ${o.id}`, 'data-action': 'retry',
        onclick: () => act(`Retry dead operation ${o.id} (${o.op} ${o.target} on ${o.node})?`, 'POST', `/admin/v1/ops/dead/${o.id}/retry`) }, 'Retry'),
        h('button', { type: 'button', 'aria-label': `Cancel operation ${o.id}`, 'data-action': 'cancel',
          onclick: () => act(`Cancel dead operation ${o.id} (${o.op} ${o.target} on ${o.node}) for good?`, 'DELETE', `/admin/v1/ops/dead/${o.id}`) }, 'Cancel')] : []))))
      : h('p', { class: 'muted', text: 'No dead letters.' }));
}

function logRow(e) {
  const cls = e.status < 400 ? 'ok' : e.status === 499 || e.status < 500 ? 'warn' : 'bad';
  return h('tr', { 'data-seq': e.seq },
    h('td', { text: new Date(e.ts).toLocaleTimeString() }), h('td', { class: 'num', text: e.id }),
    h('td', { text: e.model }), h('td', { text: e.node || '–' }),
    h('td', { class: 'num', text: e.attempts }), h('td', { text: (e.tried || []).join(' → ') || '–' }),
    h('td', { class: `num ${cls}`, text: e.status }), h('td', { text: e.outcome }),
    h('td', { text: e.class || '–' }), h('td', { class: 'num', text: fmt(e.dur_ms) }),
    h('td', { class: 'num', text: e.tokens || '' }));
}

function renderLog() {
  const body = $('log-body');
  if (!body) return;
  const f = ($('log-filter') || {}).value || '';
  const rows = S.log.filter((e) => !f || JSON.stringify(e).includes(f)).slice(-LOG_MAX).reverse();
  body.replaceChildren(...rows.map(logRow));
  $('log-count').textContent = `${rows.length} shown, ${S.log.length} received`;
}

async function openStream() {
  if (S.stream) return;
  const ctl = new AbortController();
  S.stream = ctl;
  try {
    const headers = S.csrf ? { 'X-Drover-CSRF': S.csrf } : {};
    const r = await fetch('/admin/v1/events?backlog=100', { headers, signal: ctl.signal, credentials: 'same-origin' });
    if (!r.ok) throw new Error(`events: ${r.status}`);
    $('log-state') && ($('log-state').textContent = 'live');
    const rd = r.body.getReader(), dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await rd.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i); buf = buf.slice(i + 2);
        const data = ev.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
        if (!data) continue;
        S.log.push(JSON.parse(data));
        if (S.log.length > 2000) S.log.splice(0, S.log.length - 2000);
        if (!S.logPaused) renderLog();
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') status(`Request log: ${e.message}`, true);
  } finally {
    if (S.stream === ctl) S.stream = null;
    $('log-state') && ($('log-state').textContent = 'disconnected');
  }
}

async function pageLog(root) {
  if ($('log-body')) return; // built once; the stream keeps it current
  const pause = h('button', { type: 'button', id: 'log-pause', 'aria-pressed': 'false',
    onclick: () => { S.logPaused = !S.logPaused; pause.setAttribute('aria-pressed', String(S.logPaused)); pause.textContent = S.logPaused ? 'Resume' : 'Pause'; if (!S.logPaused) renderLog(); } }, 'Pause');
  root.replaceChildren(
    h('h1', {}, 'Live request log'),
    h('div', { class: 'toolbar' },
      h('label', { for: 'log-filter', text: 'Filter' }), h('input', { id: 'log-filter', type: 'search', oninput: renderLog }),
      pause, h('span', { id: 'log-state', class: 'muted', text: 'connecting' }), h('span', { id: 'log-count', class: 'muted' })),
    h('table', { 'aria-label': 'Recent requests' },
      h('thead', {}, h('tr', {}, ['Time', 'Request', 'Model', 'Node', 'Attempts', 'Nodes tried', 'Status', 'Outcome', 'Last attempt class', 'ms', 'Tokens'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', { id: 'log-body' })));
  renderLog();
  openStream();
}

const COLORS = ['#2b6cb0', '#c05621', '#2f855a', '#9b2c2c', '#6b46c1', '#b7791f', '#2c7a7b', '#97266d'];

function lineChart(title, points, series, unit) {
  const W = 420, H = 140, L = 40, B = 18;
  const all = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  const max = Math.max(1e-9, ...all) * 1.1;
  const x = (i) => L + (i * (W - L - 4)) / Math.max(1, points.length - 1);
  const y = (v) => H - B - (v / max) * (H - B - 6);
  const g = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img',
    'aria-label': `${title}: ${series.map((s) => `${s.name} latest ${fmt(s.values.at(-1), 2)}`).join(', ')} ${unit}` });
  g.append(svg('line', { x1: L, y1: H - B, x2: W, y2: H - B, stroke: '#cbd5e0' }));
  g.append(svg('text', { x: 2, y: 12 }, document.createTextNode(`${fmt(max, max < 10 ? 2 : 0)} ${unit}`)));
  g.append(svg('text', { x: 2, y: H - B }, document.createTextNode('0')));
  if (points.length) {
    const t0 = new Date(points[0].t), t1 = new Date(points.at(-1).t);
    g.append(svg('text', { x: L, y: H - 4 }, document.createTextNode(t0.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }))));
    g.append(svg('text', { x: W - 40, y: H - 4 }, document.createTextNode(t1.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }))));
  }
  series.forEach((s, k) => {
    let d = '';
    s.values.forEach((v, i) => { if (v === null || v === undefined) return; d += `${d ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`; });
    if (d) g.append(svg('path', { d, fill: 'none', stroke: COLORS[k % COLORS.length], 'stroke-width': 1.5 }));
    const i = s.values.length - 1; // the latest value as a dot: a lone point is visible too
    if (i >= 0 && s.values[i] !== null && s.values[i] !== undefined)
      g.append(svg('circle', { cx: x(i).toFixed(1), cy: y(s.values[i]).toFixed(1), r: 2.5, fill: COLORS[k % COLORS.length] }));
  });
  return h('div', { class: 'card' }, h('h2', {}, title),
    h('div', { class: 'legend' }, series.map((s, k) => h('span', {}, h('span', { class: 'sw', 'data-c': k }), `${s.name} (now ${fmt(s.values.at(-1), 2)})`))), g);
}

async function pageCharts(root) {
  const d = await api('GET', `/admin/v1/history?window=${S.window}`);
  const p = d.points;
  const sel = h('select', { id: 'chart-window', onchange: (e) => { S.window = e.target.value; refresh(); } },
    h('option', { value: 'hour', selected: S.window === 'hour' }, 'last hour (per minute)'),
    h('option', { value: 'day', selected: S.window === 'day' }, 'last day (per 10 minutes)'));
  const outcomes = Object.keys((p[0] || {}).outcomes || {});
  const classes = Object.keys((p[0] || {}).classes || {});
  const perSeries = (d.series || []).map((s) => ({ name: `${s.node} · ${s.model}`, values: s.tokens_per_s }));
  root.replaceChildren(
    h('h1', {}, 'Charts'),
    h('div', { class: 'toolbar' }, h('label', { for: 'chart-window', text: 'Window' }), sel),
    h('div', { class: 'cards' },
      lineChart('Requests per second', p, [{ name: 'requests/s', values: p.map((x) => x.rps) }], 'req/s'),
      lineChart('Latency', p, [{ name: 'p50', values: p.map((x) => x.latency_p50_ms) }, { name: 'p99', values: p.map((x) => x.latency_p99_ms) }], 'ms'),
      lineChart('Time to first byte', p, [{ name: 'p50', values: p.map((x) => x.ttft_p50_ms) }, { name: 'p99', values: p.map((x) => x.ttft_p99_ms) }], 'ms'),
      lineChart('Tokens per second', p, [{ name: 'all', values: p.map((x) => x.tokens_per_s) }], 'tok/s'),
      lineChart('Request outcomes', p, outcomes.map((o) => ({ name: o, values: p.map((x) => x.outcomes[o]) })), 'req'),
      lineChart('Attempt outcome classes', p, classes.map((c) => ({ name: c, values: p.map((x) => x.classes[c]) })), 'attempts'),
      perSeries.length ? lineChart('Tokens per second by node and model', p, perSeries, 'tok/s') : null),
    h('h2', {}, 'By node and model'),
    h('table', { 'aria-label': 'Traffic by node and model' },
      h('thead', {}, h('tr', {}, ['Node', 'Model', 'Requests/s now', 'Tokens/s now', 'Errors in window'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, (d.series || []).map((s) => h('tr', {}, h('td', { text: s.node }), h('td', { text: s.model }),
        h('td', { class: 'num', text: fmt(s.rps.at(-1), 3) }), h('td', { class: 'num', text: fmt(s.tokens_per_s.at(-1), 2) }),
        h('td', { class: 'num', text: s.errors.reduce((a, b) => a + b, 0) }))))));
  document.querySelectorAll('.sw').forEach((e) => { e.style.background = COLORS[Number(e.dataset.c) % COLORS.length]; });
}

async function pageKeys(root) {
  let body;
  try {
    const d = await api('GET', '/admin/v1/keys');
    const keys = d.keys || [];
    const cell = (k, f) => (k[f] === undefined || k[f] === null ? '–' : typeof k[f] === 'object' ? JSON.stringify(k[f]) : String(k[f]));
    body = keys.length ? h('table', { 'aria-label': 'Client keys' },
      h('thead', {}, h('tr', {}, ['Key', 'Name', 'Prefix', 'Status', 'In flight', 'Details'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, keys.map((k) => {
        const rest = Object.fromEntries(Object.entries(k).filter(([f]) => !['id', 'name', 'prefix', 'status', 'in_flight'].includes(f)));
        return h('tr', { 'data-key': k.id }, h('th', { scope: 'row', text: cell(k, 'id') }), h('td', { text: cell(k, 'name') }),
          h('td', { text: cell(k, 'prefix') }), h('td', { text: cell(k, 'status') }), h('td', { class: 'num', text: cell(k, 'in_flight') }),
          h('td', { class: 'muted', text: JSON.stringify(rest) }));
      })))
      : h('p', { class: 'muted', text: 'No client keys (drover keys create NAME makes one).' });
  } catch (e) {
    body = h('p', { class: 'muted', text: `Client keys are not available on this gateway (${e.message}).` });
  }
  const usage = [];
  for (const by of ['key', 'model']) {
    try {
      const u = await api('GET', `/admin/v1/usage?group_by=${by}`);
      const rows = u.rows || [];
      usage.push(h('h2', { text: `Usage by ${by}` }), rows.length ? h('table', { 'aria-label': `Usage by ${by}` },
        h('thead', {}, h('tr', {}, [by === 'key' ? 'Key' : 'Model', 'Requests', 'Errors', 'Prompt tokens', 'Completion tokens'].map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', {}, rows.map((r) => h('tr', { [`data-usage-${by}`]: String(r[by]) }, h('th', { scope: 'row', text: String(r[by]) }),
          ...['requests', 'errors', 'prompt_tokens', 'completion_tokens'].map((f) => h('td', { class: 'num', text: String(r[f] ?? 0) }))))))
        : h('p', { class: 'muted', text: 'No usage recorded yet.' }));
    } catch (e) {
      usage.push(h('p', { class: 'muted', text: `Usage is not available on this gateway (${e.message}).` }));
      break;
    }
  }
  root.replaceChildren(h('h1', {}, 'Keys'), h('p', { class: 'muted', text: 'Read only here for now: create, rotate and revoke with drover keys.' }), body, ...usage);
}

const PAGES = { fleet: pageFleet, models: pageModels, ops: pageOps, log: pageLog, charts: pageCharts, keys: pageKeys };

async function refresh() {
  const root = $('page');
  const fn = PAGES[S.page];
  if (!fn || root.hidden) return;
  try {
    // keep focus on the same control across a redraw (keyboard users keep their place)
    const a = document.activeElement;
    const key = a && root.contains(a) ? (a.id ? `#${a.id}` : a.dataset.action ? `[data-action="${a.dataset.action}"][data-node="${a.dataset.node}"]` : null) : null;
    await fn(root);
    if (key) { const again = root.querySelector(key); if (again) again.focus(); }
    if (!$('status').classList.contains('bad')) status('');
  } catch (e) {
    if (e.status !== 401) status(`Cannot read the admin API: ${e.message}`, true);
  }
}

function route() {
  const page = (location.hash.match(/^#\/(\w+)/) || [])[1] || 'fleet';
  S.page = PAGES[page] ? page : 'fleet';
  document.querySelectorAll('#nav a').forEach((a) => {
    if (a.dataset.page === S.page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  });
  document.title = `drover · ${S.page}`;
  if (S.page !== 'log' && S.stream) { S.stream.abort(); S.stream = null; }
  $('page').replaceChildren();
  clearInterval(S.timer);
  refresh();
  S.timer = setInterval(refresh, S.page === 'charts' ? 10000 : POLL_MS);
}

function showLogin(msg) {
  clearInterval(S.timer);
  if (S.stream) { S.stream.abort(); S.stream = null; }
  $('page').hidden = true;
  $('login').hidden = false;
  $('logout').hidden = true;
  $('who').textContent = '';
  $('login-error').textContent = msg || '';
  $('login-token').focus();
}

function showApp() {
  $('login').hidden = true;
  $('page').hidden = false;
  $('who').textContent = S.auth.auth_required ? `role: ${S.role}` : `role: ${S.role} (no admin token: dev mode)`;
  $('logout').hidden = !S.auth.auth_required;
  route();
}

async function boot() {
  const r = await fetch('/ui/session', { credentials: 'same-origin' });
  S.auth = await r.json();
  S.role = S.auth.role || 'viewer';
  S.csrf = S.auth.csrf || null;
  if (S.auth.auth_required && !S.auth.authenticated) showLogin(); else showApp();
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  // the token goes as a Bearer header, checked as any admin request's; the body may ask for less
  const body = $('login-viewer').checked ? { role: 'viewer' } : {};
  const r = await fetch('/ui/login', { method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${$('login-token').value}` },
    body: JSON.stringify(body) });
  const d = await r.json().catch(() => ({}));
  if (!r.ok) { $('login-error').textContent = d.error ? d.error.message : `login failed (${r.status})`; return; }
  $('login-token').value = '';
  S.auth = d; S.role = d.role; S.csrf = d.csrf;
  showApp();
});
$('logout').addEventListener('click', async () => {
  await fetch('/ui/logout', { method: 'POST', credentials: 'same-origin', headers: S.csrf ? { 'X-Drover-CSRF': S.csrf } : {} });
  S.csrf = null; S.auth.authenticated = false;
  showLogin('Logged out.');
});
window.addEventListener('hashchange', () => { route(); $('main').focus(); });
boot().catch((e) => status(`Cannot reach the gateway: ${e.message}`, true));
