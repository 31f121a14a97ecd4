// The mailpipe console page: reads the JSON API (crates/mailpipe-console/API.md) and fills
// the panels of index.html, refreshing every few seconds.
//
// Invariant: text from the API only ever reaches the page through textContent or attribute
// values (the `el` helper below); nothing here assigns innerHTML, so a rejected request's
// body cannot become markup.
// Invariant: every range panel of one refresh shows the same explicit `from`/`to`, and the
// range element carries that range as data-from/data-to, so the browser test can ask
// ClickHouse about exactly what the page shows.
'use strict';

const RANGE_SECONDS = { hour: 3600, day: 86400 };
const REQUEST_TIMEOUT_MS = 10000;
const RATE_FIELDS = ['delivery_rate', 'bounce_rate', 'complaint_rate', 'open_rate', 'click_rate'];
const COUNT_FIELDS = ['events', 'delivered', 'bounced', 'failed', 'rejected', 'complained',
  'opened', 'clicked', 'unsubscribed'];
// Fixed colours for the types one expects, so a type keeps its colour between refreshes;
// others get one from a hash of their name. All are dark enough on white.
const TYPE_COLOURS = {
  delivered: '#2e7d32', sent: '#6d8f3a', queued: '#8d9a6c', deferred: '#b28704',
  bounced: '#c62828', failed: '#8e24aa', rejected: '#ad1457', complained: '#e65100',
  opened: '#1565c0', clicked: '#00838f', unsubscribed: '#5d4037', subscribed: '#4e6a85',
  autoresponded: '#757575', unknown: '#9e9e9e',
};

const params = new URLSearchParams(location.search);
const state = {
  range: params.get('range') === 'day' ? 'day' : 'hour',
  refreshSeconds: refreshFromQuery(params.get('refresh')),
  generation: 0, // bumped on a range change, so answers to an older request are dropped
  timer: null,
  refreshes: 0,
  lastSuccessAt: null,
  chart: null,
  openExamples: null, // {kind, reason, stage} of the drill-down shown, refreshed with the rest
  examplesShown: null, // what it shows, so an unchanged refresh leaves it alone
  rangeUsed: null, // {from, to} of the latest refresh
};

function refreshFromQuery(value) {
  if (value === null || value === '') return 5;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : 5;
}

// ---- small DOM and formatting helpers ----

/** Builds an element. props: className, testid, data (dataset), attrs, text, on (events). */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  if (props.className) node.className = props.className;
  if (props.testid !== undefined) node.dataset.testid = props.testid;
  for (const [k, v] of Object.entries(props.data || {})) node.dataset[k] = String(v);
  for (const [k, v] of Object.entries(props.attrs || {})) node.setAttribute(k, String(v));
  for (const [k, v] of Object.entries(props.on || {})) node.addEventListener(k, v);
  if (props.text !== undefined) node.textContent = String(props.text);
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(id, ...children) {
  const nodes = children.flat().filter((c) => c !== null && c !== undefined && c !== false);
  document.getElementById(id).replaceChildren(...nodes);
}

function setText(testid, text) {
  const node = document.querySelector(`[data-testid="${testid}"]`);
  if (node) node.textContent = text;
}

/** Counts as shown: thousands separated by commas ("1,200"); missing → "—". */
function fmtCount(n) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US');
}

/** Rates as shown: percent with one decimal ("90.0%"); null (no denominator) → "—". */
function fmtRate(r) {
  return r === null || r === undefined ? '—' : `${(r * 100).toFixed(1)}%`;
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return '—';
  return s < 10 ? `${s.toFixed(2)} s` : `${s.toFixed(1)} s`;
}

/** Unix seconds → "2026-12-02 16:00:00 UTC" (or only the time with short=true). */
function fmtTime(unix, short = false) {
  if (unix === null || unix === undefined || !Number.isFinite(unix)) return '—';
  const iso = new Date(unix * 1000).toISOString();
  return short ? iso.slice(11, 16) : `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

function table(caption, columns, rows) {
  // columns: [{label, numeric}]; rows: <tr> elements. Wrapped so it scrolls sideways on a phone.
  const head = el('tr', {}, columns.map((c) =>
    el('th', { attrs: { scope: 'col' }, className: c.numeric ? 'num' : '', text: c.label })));
  return el('div', { className: 'table-wrap' },
    el('table', {},
      el('caption', { className: 'visually-hidden', text: caption }),
      el('thead', {}, head),
      el('tbody', {}, rows)));
}

function empty(text) {
  return el('p', { className: 'muted empty', text });
}

// ---- fetching ----

async function fetchJSON(path) {
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  try {
    const response = await fetch(path, { signal: controller.signal, headers: { Accept: 'application/json' } });
    let body = null;
    try { body = await response.json(); } catch { /* a non-JSON error page: reported below */ }
    if (!response.ok) {
      const reason = body && typeof body.error === 'string' ? body.error : response.statusText;
      throw new Error(`HTTP ${response.status}: ${reason}`);
    }
    if (body === null) throw new Error('the answer is not JSON');
    return body;
  } catch (err) {
    if (err.name === 'AbortError') throw new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`);
    throw err;
  } finally {
    clearTimeout(timeout);
  }
}

async function refresh() {
  clearTimeout(state.timer);
  const generation = state.generation;
  const to = Math.floor(Date.now() / 1000);
  const from = to - RANGE_SECONDS[state.range];
  const range = `from=${from}&to=${to}`;
  state.rangeUsed = { from, to }; // the drill-down asks for examples of the same range
  const jobs = [
    ['overview', `/api/overview?${range}`, renderOverview],
    ['providers', `/api/providers?${range}&limit=100`, (d) => renderBreakdown('provider', d)],
    ['sources', `/api/sources?${range}&limit=100`, (d) => renderBreakdown('source', d)],
    ['campaigns', `/api/campaigns?${range}&limit=20`, (d) => renderBreakdown('campaign', d)],
    ['rejections', `/api/rejections?${range}`, renderRejections],
    ['rules', `/api/rules?${range}`, renderRules],
    ['lag', '/api/lag', renderLag],
    ['alerts', '/api/alerts', renderAlerts],
    ['stages', '/api/stages', renderStages],
  ];
  if (state.openExamples) jobs.push(['examples', examplesPath(state.openExamples), renderExamples]);

  const answers = await Promise.allSettled(jobs.map(([, path]) => fetchJSON(path)));
  if (generation !== state.generation) return; // the range changed meanwhile; that refresh runs

  const focused = focusKey();
  const failures = [];
  answers.forEach((answer, i) => {
    const [name, , render] = jobs[i];
    if (answer.status === 'rejected') {
      failures.push(`${name}: ${answer.reason.message}`);
      return;
    }
    try {
      render(answer.value);
    } catch (err) {
      failures.push(`${name}: cannot show the answer (${err.message})`);
      console.error(err);
    }
  });
  restoreFocus(focused);
  state.refreshes += 1;
  showStatus(failures);
  if (state.refreshSeconds > 0) state.timer = setTimeout(refresh, state.refreshSeconds * 1000);
}

function showStatus(failures) {
  const now = Date.now() / 1000;
  const updated = document.querySelector('[data-testid="updated-at"]');
  updated.dataset.refreshes = String(state.refreshes);
  updated.dataset.ok = String(failures.length === 0);
  const banner = document.getElementById('error-banner');
  if (failures.length === 0) {
    state.lastSuccessAt = now;
    banner.hidden = true;
    banner.replaceChildren();
  } else {
    banner.hidden = false;
    const kept = state.lastSuccessAt === null
      ? 'No data loaded yet.'
      : `Showing the data of the last good refresh (${fmtTime(state.lastSuccessAt)}).`;
    banner.replaceChildren(
      el('strong', { text: 'The console API is failing. ' }), kept,
      el('ul', {}, groupFailures(failures).map((f) => el('li', { text: f }))));
  }
  const every = state.refreshSeconds > 0 ? ` · every ${state.refreshSeconds} s` : ' · auto refresh off';
  // While the API fails, the time shown stays that of the data on the page.
  updated.textContent = failures.length === 0 ? `updated ${fmtTime(now)}${every}`
    : `last complete update ${fmtTime(state.lastSuccessAt)} · failing${every}`;
}

// Panels are rebuilt on every refresh; a keyboard user's focus (a drill-down button, say)
// moves to the same control of the rebuilt row instead of falling back to the page.
function focusKey() {
  const active = document.activeElement;
  const row = active && active !== document.body ? active.closest('[data-testid]') : null;
  return row ? { testid: row.dataset.testid, tag: active.tagName.toLowerCase() } : null;
}

function restoreFocus(key) {
  if (!key || (document.activeElement && document.activeElement !== document.body)) return;
  const row = document.querySelector(`[data-testid="${CSS.escape(key.testid)}"]`);
  const target = row && (row.matches(key.tag) ? row : row.querySelector(key.tag));
  if (target) target.focus({ preventScroll: true });
}

/** "a: m", "b: m", "c: n" → "a, b: m", "c: n" (a dead ClickHouse fails every panel alike). */
function groupFailures(failures) {
  const byMessage = new Map();
  for (const f of failures) {
    const at = f.indexOf(': ');
    const [name, message] = [f.slice(0, at), f.slice(at + 2)];
    byMessage.set(message, [...(byMessage.get(message) || []), name]);
  }
  return [...byMessage.entries()].map(([message, names]) => `${names.join(', ')}: ${message}`);
}

function scheduleNow() {
  state.generation += 1;
  refresh();
}

// ---- panels ----

function renderOverview(d) {
  const range = document.querySelector('[data-testid="range"]');
  range.dataset.from = String(d.from);
  range.dataset.to = String(d.to);
  range.textContent = `${fmtTime(d.from)} → ${fmtTime(d.to)}`;
  document.getElementById('panel-overview').dataset.from = String(d.from);

  setText('total-events', fmtCount(d.totals.events));
  setText('total-recipients', fmtCount(d.totals.recipients));
  for (const f of RATE_FIELDS) setText(`rate-${f}`, fmtRate(d.rates[f]));

  const types = Object.entries(d.totals.by_type).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  fill('by-type', types.length === 0
    ? [el('li', { className: 'muted', text: 'no events in this range' })]
    : types.map(([type, n]) => el('li', {},
      el('span', { className: 'swatch', attrs: { style: `background:${colourOf(type)}`, 'aria-hidden': 'true' } }),
      el('span', { text: type }), ' ',
      el('strong', { testid: `count-${type}`, text: fmtCount(n) }))));

  renderChart(d.series);

  const rows = d.top_bounce_domains.map((r) => el('tr', { testid: `domain-${r.domain}` },
    el('th', { attrs: { scope: 'row' }, text: r.domain }),
    el('td', { className: 'num', data: { field: 'bounced' }, text: fmtCount(r.bounced) }),
    el('td', { className: 'num', data: { field: 'events' }, text: fmtCount(r.events) }),
    el('td', { className: 'num', data: { field: 'bounce_rate' }, text: fmtRate(r.bounce_rate) })));
  fill('domains', rows.length === 0 ? empty('No bounces in this range.')
    : table('Top bouncing recipient domains', [
      { label: 'Domain' }, { label: 'Bounced', numeric: true }, { label: 'Events', numeric: true },
      { label: 'Bounce rate', numeric: true }], rows));
}

function colourOf(type) {
  if (TYPE_COLOURS[type]) return TYPE_COLOURS[type];
  let h = 0;
  for (const ch of type) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return `hsl(${h} 55% 38%)`;
}

function renderChart(series) {
  const step = series.step_seconds;
  document.getElementById('chart-step').textContent =
    step === 60 ? 'minute' : step === 3600 ? 'hour' : `${step / 60} minutes`;
  const labels = series.buckets.map((b) => fmtTime(b, true));
  const datasets = Object.keys(series.by_type).sort().map((type) => ({
    label: type,
    data: series.by_type[type],
    backgroundColor: colourOf(type),
    borderWidth: 0,
    stack: 'events',
  }));
  if (typeof window.Chart !== 'function') {
    throw new Error('the chart library did not load');
  }
  if (state.chart) {
    state.chart.data.labels = labels;
    state.chart.data.datasets = datasets;
    state.chart.update('none');
    return;
  }
  state.chart = new window.Chart(document.getElementById('events-chart'), {
    type: 'bar',
    data: { labels, datasets },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: 'index', intersect: false },
      scales: {
        x: { stacked: true, ticks: { maxRotation: 0, autoSkipPadding: 12 }, grid: { display: false } },
        y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
      },
      plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
    },
  });
}

function renderBreakdown(by, d) {
  const title = { provider: 'By provider', source: 'By source', campaign: 'By campaign' }[by];
  const rows = d.rows.map((r) => el('tr', { testid: `row-${by}-${r.key}` },
    el('th', { attrs: { scope: 'row' }, data: { field: 'key' }, text: r.key === '' ? '(none)' : r.key }),
    COUNT_FIELDS.map((f) => el('td', { className: 'num', data: { field: f }, text: fmtCount(r[f]) })),
    RATE_FIELDS.map((f) => el('td', { className: 'num', data: { field: f }, text: fmtRate(r[f]) }))));
  const columns = [{ label: by[0].toUpperCase() + by.slice(1) },
    ...['Events', 'Delivered', 'Bounced', 'Failed', 'Rejected', 'Complained', 'Opened', 'Clicked',
      'Unsub.'].map((label) => ({ label, numeric: true })),
    ...['Delivery', 'Bounce', 'Complaint', 'Open', 'Click'].map((l) => ({ label: `${l} rate`, numeric: true }))];
  const box = document.getElementById(`breakdown-${by}`);
  box.dataset.from = String(d.from);
  box.dataset.to = String(d.to);
  box.replaceChildren(el('h3', { text: title }),
    rows.length === 0 ? empty('No events in this range.') : table(title, columns, rows));
}

function drillButton(label, selection) {
  return el('button', {
    className: 'link', text: label, attrs: { type: 'button', 'aria-controls': 'examples' },
    on: { click: () => openExamples(selection) },
  });
}

function renderRejections(d) {
  // One row per reason (the drill-down is per reason); the providers it came from in a cell.
  const byReason = new Map();
  for (const r of d.rejections) {
    const entry = byReason.get(r.reason) || { count: 0, from: [] };
    entry.count += r.count;
    entry.from.push(`${r.provider}${r.source !== r.provider ? `/${r.source}` : ''} ${fmtCount(r.count)}`);
    byReason.set(r.reason, entry);
  }
  const rows = [...byReason.entries()].sort((a, b) => b[1].count - a[1].count || a[0].localeCompare(b[0]))
    .map(([reason, e]) => el('tr', { testid: `rejection-${reason}` },
      el('th', { attrs: { scope: 'row' } }, drillButton(reason, { kind: 'rejection', reason })),
      el('td', { className: 'num', data: { field: 'count' }, text: fmtCount(e.count) }),
      el('td', { className: 'small', data: { field: 'providers' }, text: e.from.join(', ') })));
  fill('rejections', rows.length === 0 ? empty('No rejected requests in this range.')
    : table('Rejected requests by reason', [{ label: 'Reason' }, { label: 'Count', numeric: true },
      { label: 'Provider/source' }], rows));

  const dl = d.dead_letters.slice().sort((a, b) => b.count - a.count
    || a.stage.localeCompare(b.stage) || a.reason.localeCompare(b.reason))
    .map((r) => el('tr', { testid: `deadletter-${r.stage}-${r.reason}` },
      el('td', { data: { field: 'stage' }, text: r.stage }),
      el('th', { attrs: { scope: 'row' } },
        drillButton(r.reason, { kind: 'dead_letter', reason: r.reason, stage: r.stage })),
      el('td', { className: 'num', data: { field: 'count' }, text: fmtCount(r.count) })));
  fill('dead-letters', dl.length === 0 ? empty('No dead letters in this range.')
    : table('Dead letters by stage and reason', [{ label: 'Stage' }, { label: 'Reason' },
      { label: 'Count', numeric: true }], dl));
}

function examplesPath(sel) {
  const q = new URLSearchParams({ kind: sel.kind, reason: sel.reason, limit: '20' });
  if (sel.stage) q.set('stage', sel.stage);
  if (state.rangeUsed) {
    q.set('from', String(state.rangeUsed.from));
    q.set('to', String(state.rangeUsed.to));
  }
  return `/api/examples?${q}`;
}

async function openExamples(selection) {
  state.openExamples = selection;
  state.examplesShown = null;
  const box = document.getElementById('examples');
  box.hidden = false;
  box.replaceChildren(el('p', { className: 'muted', text: `Loading examples of ${selection.reason}…` }));
  try {
    renderExamples(await fetchJSON(examplesPath(selection)));
  } catch (err) {
    box.replaceChildren(el('p', { className: 'error', text: `Cannot load examples: ${err.message}` }));
  }
  box.scrollIntoView({ block: 'nearest' });
}

function renderExamples(d) {
  const sel = state.openExamples;
  if (!sel || d.kind !== sel.kind || d.reason !== sel.reason) return; // an older drill-down
  const box = document.getElementById('examples');
  const shown = JSON.stringify([sel, d.examples]);
  if (state.examplesShown === shown) return; // unchanged: keep its scroll and focus
  state.examplesShown = shown;
  const what = sel.kind === 'rejection' ? 'rejected requests' : `dead letters of ${sel.stage}`;
  const close = el('button', {
    className: 'close', text: 'Close', attrs: { type: 'button' },
    on: { click: () => { state.openExamples = null; box.hidden = true; box.replaceChildren(); state.examplesShown = null; } },
  });
  // Bodies fold away (up to 2 KiB each, 20 of them); the newest one starts open.
  const items = d.examples.map((x, i) => el('li', { testid: 'example' },
    el('p', { className: 'meta' },
      el('time', { text: fmtTime(x.at) }), ' · ',
      [x.stage, x.provider, x.source].filter(Boolean).join(' · '),
      x.request_id ? ` · request ${x.request_id}` : ''),
    x.detail ? el('p', { text: x.detail }) : null,
    x.body !== null && x.body !== undefined && x.body !== ''
      ? el('details', { attrs: i === 0 ? { open: '' } : {} },
        el('summary', { text: `body${x.truncated ? ' (first 2 KiB)' : ''}` }),
        el('pre', { className: 'body', text: x.body + (x.truncated ? '\n… (truncated)' : '') }))
      : el('p', { className: 'small muted', text: 'no body kept' })));
  box.replaceChildren(
    el('div', { className: 'examples-head' },
      el('h3', { text: `Recent ${what}: ${sel.reason}` }), close),
    items.length === 0 ? empty('No examples kept for this reason.') : el('ol', { className: 'example-list' }, items));
}

function renderLag(d) {
  const lat = d.latency;
  fill('latency', lat.events === 0 || lat.p50_seconds === null
    ? `Received → queryable: no events made queryable in the last ${lat.window_seconds / 60} min.`
    : [`Received → queryable (last ${lat.window_seconds / 60} min, ${fmtCount(lat.events)} events): p50 `,
      el('strong', { testid: 'latency-p50', text: fmtSeconds(lat.p50_seconds) }), ', p99 ',
      el('strong', { testid: 'latency-p99', text: fmtSeconds(lat.p99_seconds) })]);
  const rows = [];
  for (const g of d.groups) {
    rows.push(el('tr', { className: 'group', testid: `lag-${g.group}-${g.topic}` },
      el('th', { attrs: { scope: 'row', colspan: 3 } }, g.stage, ' ',
        el('span', { className: 'small muted', text: `${g.group} ← ${g.topic}` })),
      el('td', { className: `num${g.total_lag > 0 ? ' warn' : ''}`, data: { field: 'lag' }, text: fmtCount(g.total_lag) })));
    for (const p of g.partitions) {
      rows.push(el('tr', { testid: `lag-${g.group}-${g.topic}-${p.partition}` },
        el('td', { className: 'num', data: { field: 'partition' }, text: p.partition }),
        el('td', { className: 'num', data: { field: 'committed' }, text: p.committed === null ? 'none' : fmtCount(p.committed) }),
        el('td', { className: 'num', data: { field: 'high_watermark' }, text: fmtCount(p.high_watermark) }),
        el('td', { className: `num${p.lag > 0 ? ' warn' : ''}`, data: { field: 'lag' }, text: fmtCount(p.lag) })));
    }
  }
  fill('lag', rows.length === 0 ? empty('No consumer groups found.')
    : table('Consumer lag per stage and partition', [{ label: 'Partition', numeric: true },
      { label: 'Committed', numeric: true }, { label: 'End offset', numeric: true },
      { label: 'Lag', numeric: true }], rows));
}

function renderRules(d) {
  const status = document.getElementById('rules-status');
  status.textContent = d.running ? 'running' : 'not running';
  status.dataset.running = String(d.running);
  status.className = `badge ${d.running ? 'ok' : 'bad'}`;
  const execs = d.executions.map((x) => el('tr', { testid: `rule-${x.rule_id}-${x.decision}` },
    el('th', { attrs: { scope: 'row' }, text: x.rule_id }),
    el('td', { text: x.decision }),
    el('td', { className: 'num', data: { field: 'count' }, text: fmtCount(x.count) })));
  const s = d.suppressions;
  const recent = s.recent.map((x) => el('tr', {},
    el('td', { text: fmtTime(x.at) }), el('th', { attrs: { scope: 'row' }, text: x.recipient }),
    el('td', { text: x.reason }), el('td', { text: x.rule_id || '' })));
  fill('rules',
    d.running ? null : el('p', { className: 'warn-text', text: 'The rules stage is not running: no member in its consumer group and no executions in this range.' }),
    el('h3', { text: 'Executions in range' }),
    execs.length === 0 ? empty('No rule executions in this range.')
      : table('Rule executions', [{ label: 'Rule' }, { label: 'Decision' }, { label: 'Count', numeric: true }], execs),
    el('h3', { text: 'Suppressions' }),
    el('p', {}, 'Total ', el('strong', { testid: 'suppressions-total', text: fmtCount(s.total) }),
      ', added in range ', el('strong', { testid: 'suppressions-in-range', text: fmtCount(s.in_range) })),
    recent.length === 0 ? null
      : table('Recent suppressions', [{ label: 'At' }, { label: 'Recipient' }, { label: 'Reason' }, { label: 'Rule' }], recent));
}

function renderAlerts(d) {
  document.getElementById('alerts-evaluated').textContent =
    `Evaluated every ${d.interval_seconds} s, last at ${fmtTime(Date.parse(d.evaluated_at) / 1000)}.`;
  const card = (a) => el('li', {
    className: `alert ${a.state}`, testid: `alert-${a.name}-${a.subject}`,
    data: { state: a.state, name: a.name, subject: a.subject, since: a.since },
  },
  el('p', {}, el('span', { className: `badge ${a.state === 'firing' ? 'bad' : 'ok'}`, text: a.state }), ' ',
    el('strong', { text: a.name }), ' ', el('span', { className: 'small', text: a.subject })),
  el('p', { text: a.summary }),
  el('p', { className: 'small muted',
    text: `${a.state === 'firing' ? 'since' : 'resolved'} ${fmtTime(a.since)} · value ${a.value} · threshold ${a.threshold}` }));
  const firing = d.alerts.filter((a) => a.state === 'firing');
  const resolved = d.alerts.filter((a) => a.state !== 'firing');
  fill('alerts-active', firing.length === 0 ? empty('No alert is firing.') : el('ul', { className: 'alerts' }, firing.map(card)));
  fill('alerts-resolved', resolved.length === 0 ? empty('None.') : el('ul', { className: 'alerts' }, resolved.map(card)));
}

function renderStages(d) {
  fill('stages', el('ul', { className: 'stages' }, d.stages.map((s) => el('li', {
    testid: `stage-${s.stage}`, data: { ready: s.ready }, attrs: { title: s.url },
  }, el('span', { className: `badge ${s.ready ? 'ok' : 'bad'}`, text: s.ready ? 'ready' : 'not ready' }), ' ',
  el('strong', { text: s.stage }), ' ', el('span', { className: 'small muted', text: s.detail })))));
}

// ---- start ----

function start() {
  const select = document.getElementById('range-select');
  select.value = state.range;
  select.addEventListener('change', () => {
    state.range = select.value;
    const url = new URL(location.href);
    url.searchParams.set('range', state.range);
    history.replaceState(null, '', url);
    scheduleNow();
  });
  document.getElementById('controls').addEventListener('submit', (e) => e.preventDefault());
  scheduleNow();
}

start();
