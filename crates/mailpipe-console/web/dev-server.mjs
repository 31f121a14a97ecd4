// A development aid, not part of the product: serves the console page from ../assets/ and
// answers the JSON API of ../API.md with made-up data, so the page can be worked on (and its
// browser test tried) without Kafka or ClickHouse. The real test runs against the real
// mailpipe-console binary.
//
//   node crates/mailpipe-console/web/dev-server.mjs          # http://127.0.0.1:8091
//   DEV_PORT=9000 node crates/mailpipe-console/web/dev-server.mjs
//
// The made-up data is a list of events kept in memory (a day of them at start, a few more
// every 5 s), so every answer is an honest aggregate of the same list. Switches, for trying
// the page's states:
//   POST/GET /dev/stop    the dedupe stage "stops": its lag grows, the lag alert fires
//   POST/GET /dev/start   it "starts" again: the lag drains, the alert resolves
//   POST/GET /dev/fail    every /api answer becomes a 503 until called again
//   POST/GET /dev/rules   the rules stage flips between running and not running
//   GET /dev/events       the made-up events, as JSON lines
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const assetsDir = join(here, '..', 'assets');
const openapiPath = join(here, '..', 'openapi.json');
const port = Number(process.env.DEV_PORT || 8091);

const TYPES = ['delivered', 'delivered', 'delivered', 'delivered', 'opened', 'opened', 'clicked',
  'bounced', 'sent', 'deferred', 'complained', 'unsubscribed', 'failed', 'rejected'];
const PROVIDERS = ['sendgrid', 'mailgun', 'postmark', 'ses', 'mandrill', 'sparkpost', 'resend',
  'brevo', 'mailjet', 'mailersend', 'postal', 'generic'];
const DOMAINS = ['example.com', 'example.org', 'mail.test', 'corp.example', 'shop.example',
  'news.example', 'invalid.example'];
const CAMPAIGNS = ['', 'welcome', 'november-news', 'black-friday', 'receipts'];

let seed = 42;
function random() { // small deterministic PRNG (mulberry32), so screenshots repeat
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (list) => list[Math.floor(random() * list.length)];
const nowS = () => Math.floor(Date.now() / 1000);

const events = [];
function addEvents(count, from, to) {
  for (let i = 0; i < count; i += 1) {
    const provider = pick(PROVIDERS);
    events.push({
      at: from + Math.floor(random() * (to - from)),
      type: pick(TYPES), provider, source: provider === 'generic' ? pick(['generic', 'shop']) : provider,
      campaign: pick(CAMPAIGNS), domain: pick(DOMAINS), recipient: Math.floor(random() * 400),
    });
  }
}
addEvents(4000, nowS() - 86400, nowS() - 600);
addEvents(900, nowS() - 3600, nowS());
// DEV_FROZEN=1 keeps the list as it is (for comparing the page with a copy of /dev/events).
if (process.env.DEV_FROZEN !== '1') setInterval(() => addEvents(6, nowS() - 5, nowS()), 5000).unref();

const sw = { stopped: false, stoppedAt: 0, failing: false, rulesRunning: true, lagAtStart: 0 };
const alertLog = [{ name: 'dead_letters_rising', subject: 'normalize', state: 'resolved',
  since: nowS() - 5400, value: 3, threshold: 10, summary: 'dead letters of normalize rose above 10 per 5 min' }];

function rangeOf(query) {
  const parse = (v) => (v === null ? null : /^\d+$/.test(v) ? Number(v) : Math.floor(Date.parse(v) / 1000));
  const to = parse(query.get('to')) ?? nowS();
  const from = parse(query.get('from')) ?? to - 3600;
  if (!Number.isFinite(from) || !Number.isFinite(to) || from >= to) throw new BadRequest('bad from/to');
  if (to - from > 31 * 86400) throw new BadRequest('range longer than 31 days');
  return { from, to, list: events.filter((e) => e.at >= from && e.at < to) };
}
class BadRequest extends Error {}

function rates(c) {
  const div = (a, b) => (b === 0 ? null : a / b);
  return {
    delivery_rate: div(c.delivered, c.delivered + c.bounced + c.failed + c.rejected),
    bounce_rate: div(c.bounced, c.delivered + c.bounced),
    complaint_rate: div(c.complained, c.delivered),
    open_rate: div(c.opened, c.delivered),
    click_rate: div(c.clicked, c.delivered),
  };
}
function countTypes(list) {
  const c = { delivered: 0, bounced: 0, failed: 0, rejected: 0, complained: 0, opened: 0, clicked: 0, unsubscribed: 0 };
  for (const e of list) c[e.type] = (c[e.type] || 0) + 1;
  return c;
}

function overview(q) {
  const { from, to, list } = rangeOf(q);
  const span = to - from;
  const step = span <= 3 * 3600 ? 60 : span <= 86400 ? 300 : 3600;
  const first = Math.floor(from / step) * step;
  const buckets = [];
  for (let b = first; b < to; b += step) buckets.push(b);
  const byType = {};
  const series = {};
  for (const e of list) {
    byType[e.type] = (byType[e.type] || 0) + 1;
    series[e.type] ||= buckets.map(() => 0);
    series[e.type][Math.floor((e.at - first) / step)] += 1;
  }
  const domains = new Map();
  for (const e of list) {
    const d = domains.get(e.domain) || { domain: e.domain, bounced: 0, delivered: 0, events: 0 };
    d.events += 1;
    if (e.type === 'bounced') d.bounced += 1;
    if (e.type === 'delivered') d.delivered += 1;
    domains.set(e.domain, d);
  }
  const top = [...domains.values()].filter((d) => d.bounced > 0)
    .map((d) => {
      const c = countTypes(list.filter((e) => e.domain === d.domain));
      return { ...d, bounce_rate: rates(c).bounce_rate };
    })
    .sort((a, b) => b.bounced - a.bounced || a.domain.localeCompare(b.domain)).slice(0, 10);
  return {
    from, to, generated_at: new Date().toISOString(),
    totals: { events: list.length, recipients: new Set(list.map((e) => `r${e.recipient}@${e.domain}`)).size, by_type: byType },
    rates: rates(countTypes(list)),
    series: { step_seconds: step, buckets, by_type: series },
    top_bounce_domains: top,
  };
}

function breakdown(by, field) {
  return (q) => {
    const { from, to, list } = rangeOf(q);
    const limit = Math.min(Number(q.get('limit') || 100), 1000);
    const groups = new Map();
    for (const e of list) {
      if (!groups.has(e[field])) groups.set(e[field], []);
      groups.get(e[field]).push(e);
    }
    const rows = [...groups.entries()].map(([key, l]) => {
      const c = countTypes(l);
      return { key, events: l.length, delivered: c.delivered, bounced: c.bounced, failed: c.failed,
        rejected: c.rejected, complained: c.complained, opened: c.opened, clicked: c.clicked,
        unsubscribed: c.unsubscribed, ...rates(c) };
    }).sort((a, b) => b.events - a.events || a.key.localeCompare(b.key)).slice(0, limit);
    return { from, to, by, rows };
  };
}

function rejections(q) {
  const { from, to } = rangeOf(q);
  const scale = Math.max(1, Math.round((to - from) / 3600));
  return {
    from, to,
    rejections: [
      { reason: 'bad_signature', provider: 'mailgun', source: 'mailgun', count: 7 * scale },
      { reason: 'bad_signature', provider: 'generic', source: 'shop', count: 2 * scale },
      { reason: 'stale_timestamp', provider: 'sendgrid', source: 'sendgrid', count: 3 * scale },
      { reason: 'replayed', provider: 'postmark', source: 'postmark', count: 1 * scale },
    ],
    dead_letters: [{ stage: 'normalize', reason: 'unparseable_payload', count: 2 * scale }],
  };
}

function examples(q) {
  const kind = q.get('kind');
  const reason = q.get('reason');
  if (!['rejection', 'dead_letter'].includes(kind) || !reason) throw new BadRequest('kind and reason are required');
  const limit = Math.min(Number(q.get('limit') || 20), 1000);
  const list = [];
  for (let i = 0; i < Math.min(limit, 3); i += 1) {
    list.push({
      at: nowS() - 60 * (i + 1), stage: kind === 'rejection' ? 'verify' : q.get('stage') || 'normalize',
      reason, provider: 'mailgun', source: 'mailgun', request_id: `0193-dev-${i}`,
      detail: kind === 'rejection' ? 'signature does not match' : 'expected a JSON array',
      // Markup on purpose: the page must show it as text.
      body: `{"event":"delivered","note":"<img src=x onerror=alert(1)>","i":${i}}`.padEnd(i === 0 ? 2048 : 80, ' '),
      truncated: i === 0,
    });
  }
  return { kind, reason, examples: list };
}

const GROUPS = [
  ['verify', 'mail.raw'], ['normalize', 'mail.verified'], ['dedupe', 'mail.events'],
  ['aggregate', 'mail.events-unique'], ['rules', 'mail.events-unique'], ['deliver', 'mail.actions'],
];
function lag() {
  const base = 2000 + Math.floor(events.length / 3);
  const groups = GROUPS.map(([stage, topic]) => {
    const partitions = [0, 1, 2].map((partition) => {
      const high = base + partition * 17;
      let behind = 0;
      if (stage === 'dedupe' && sw.stopped) behind = Math.floor((Date.now() / 1000 - sw.stoppedAt) * 40) + partition;
      if (stage === 'rules' && !sw.rulesRunning) behind = 120 + partition;
      return { partition, committed: stage === 'deliver' && partition === 2 ? null : high - behind,
        high_watermark: high, lag: stage === 'deliver' && partition === 2 ? high : behind };
    });
    return { stage, group: `mailpipe-${stage}`, topic, total_lag: partitions.reduce((s, p) => s + p.lag, 0), partitions };
  });
  return { generated_at: new Date().toISOString(), groups,
    latency: { window_seconds: 900, events: 812, p50_seconds: 1.24, p99_seconds: 3.57 } };
}

function alerts() {
  const firing = [];
  if (sw.stopped && nowS() - sw.stoppedAt >= 10) {
    const value = Math.floor((nowS() - sw.stoppedAt) * 120);
    firing.push({ name: 'consumer_lag_growing', subject: 'mailpipe-dedupe', state: 'firing',
      since: sw.stoppedAt + 10, value, threshold: 1000,
      summary: 'consumer lag of mailpipe-dedupe grew for 10 s' });
  }
  const resolved = alertLog.filter((a) => a.since > nowS() - 86400).sort((a, b) => b.since - a.since);
  return { evaluated_at: new Date().toISOString(), interval_seconds: 15, alerts: [...firing, ...resolved] };
}

function rules(q) {
  const { from, to, list } = rangeOf(q);
  const bounces = list.filter((e) => e.type === 'bounced').length;
  return {
    from, to, running: sw.rulesRunning,
    executions: sw.rulesRunning ? [
      { rule_id: 'hard-bounce', decision: 'executed', count: bounces },
      { rule_id: 'complaint', decision: 'executed', count: list.filter((e) => e.type === 'complained').length },
      { rule_id: 'hard-bounce', decision: 'skipped_suppressed', count: 3 },
    ] : [],
    suppressions: { total: 40 + bounces, in_range: bounces,
      recent: [{ at: nowS() - 90, recipient: 'ann@example.com', reason: 'hard_bounce', rule_id: 'hard-bounce' },
        { at: nowS() - 400, recipient: 'bob@example.org', reason: 'complaint', rule_id: 'complaint' }] },
  };
}

function stages() {
  return { stages: GROUPS.map(([stage], i) => ({
    stage, url: `http://127.0.0.1:${9101 + i}`,
    ready: !(stage === 'dedupe' && sw.stopped) && !(stage === 'rules' && !sw.rulesRunning),
    detail: stage === 'dedupe' && sw.stopped ? 'connection refused' : 'ready',
  })) };
}

const api = {
  '/api/overview': overview,
  '/api/providers': breakdown('provider', 'provider'),
  '/api/sources': breakdown('source', 'source'),
  '/api/campaigns': breakdown('campaign', 'campaign'),
  '/api/rejections': rejections,
  '/api/examples': examples,
  '/api/lag': lag,
  '/api/rules': rules,
  '/api/alerts': alerts,
  '/api/stages': stages,
};
const devSwitches = {
  '/dev/stop': () => { if (!sw.stopped) Object.assign(sw, { stopped: true, stoppedAt: nowS() }); },
  '/dev/start': () => {
    if (sw.stopped && nowS() - sw.stoppedAt >= 10) {
      alertLog.push({ name: 'consumer_lag_growing', subject: 'mailpipe-dedupe', state: 'resolved', since: nowS(),
        value: 0, threshold: 1000, summary: 'consumer lag of mailpipe-dedupe is back under 1000' });
    }
    sw.stopped = false;
  },
  '/dev/fail': () => { sw.failing = !sw.failing; },
  '/dev/rules': () => { sw.rulesRunning = !sw.rulesRunning; },
};
const TYPES_BY_EXT = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.md': 'text/markdown; charset=utf-8', '.png': 'image/png' };

function send(res, status, type, body) {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
  res.end(body);
}
const json = (res, status, value) => send(res, status, 'application/json', JSON.stringify(value));

createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  try {
    if (url.pathname === '/dev/events') {
      return send(res, 200, 'application/x-ndjson', events.map((e) => JSON.stringify(e)).join('\n'));
    }
    if (devSwitches[url.pathname]) {
      devSwitches[url.pathname]();
      return json(res, 200, sw);
    }
    if (url.pathname === '/api/openapi.json') {
      return send(res, 200, 'application/json', await readFile(openapiPath));
    }
    if (api[url.pathname]) {
      if (sw.failing) return json(res, 503, { error: 'clickhouse unavailable (dev server switch)' });
      return json(res, 200, api[url.pathname](url.searchParams));
    }
    if (url.pathname === '/healthz' || url.pathname === '/readyz') return send(res, 200, 'text/plain', 'ok\n');
    const file = url.pathname === '/' ? 'index.html' : url.pathname.startsWith('/assets/')
      ? normalize(url.pathname.slice('/assets/'.length)) : null;
    if (file === null || file.startsWith('..')) return json(res, 404, { error: 'not found' });
    const body = await readFile(join(assetsDir, file));
    return send(res, 200, TYPES_BY_EXT[extname(file)] || 'application/octet-stream', body);
  } catch (err) {
    if (err instanceof BadRequest) return json(res, 400, { error: err.message });
    if (err.code === 'ENOENT') return json(res, 404, { error: 'not found' });
    console.error(err);
    return json(res, 500, { error: 'dev server error' });
  }
}).listen(port, '127.0.0.1', () => console.log(`console dev server on http://127.0.0.1:${port}`));
