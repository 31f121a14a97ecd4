// What the console page should show for a range, computed from ClickHouse over HTTP and
// formatted the way app.js formats it (fmtCount / fmtRate), for console.test.mjs.
// email_events for the event figures (by occurred_at); rejected_requests and dead_letters
// (schemas/clickhouse/006) for the problems panel (by the time they were written).
//
//   node tests/browser/clickhouse.mjs FROM TO    # prints the expected figures (a debugging aid)
const CLICKHOUSE_URL = (process.env.CLICKHOUSE_URL || 'http://127.0.0.1:8123').replace(/\/$/, '');
const CLICKHOUSE_DATABASE = process.env.CLICKHOUSE_DATABASE || 'mailpipe';

export const RATE_FIELDS = ['delivery_rate', 'bounce_rate', 'complaint_rate', 'open_rate', 'click_rate'];
export const COUNT_FIELDS = ['events', 'delivered', 'bounced', 'failed', 'rejected', 'complained',
  'opened', 'clicked', 'unsubscribed'];

// The page's formats (app.js fmtCount / fmtRate), applied to ClickHouse's numbers.
const fmtCount = (n) => Number(n).toLocaleString('en-US');
const fmtRate = (r) => (r === null ? '—' : `${(r * 100).toFixed(1)}%`);
function ratesOf(c) {
  const div = (a, b) => (b === 0 ? null : a / b);
  return {
    delivery_rate: div(c.delivered, c.delivered + c.bounced + c.failed + c.rejected),
    bounce_rate: div(c.bounced, c.delivered + c.bounced),
    complaint_rate: div(c.complained, c.delivered),
    open_rate: div(c.opened, c.delivered),
    click_rate: div(c.clicked, c.delivered),
  };
}
function shownRow(c) {
  const row = {};
  for (const f of COUNT_FIELDS) row[f] = fmtCount(c[f]);
  const r = ratesOf(c);
  for (const f of RATE_FIELDS) row[f] = fmtRate(r[f]);
  return row;
}

async function clickhouse(sql) {
  const response = await fetch(`${CLICKHOUSE_URL}/`, { method: 'POST', body: `${sql} FORMAT JSON` });
  const body = await response.text();
  if (!response.ok) throw new Error(`clickhouse ${response.status}: ${body.slice(0, 500)}\n${sql}`);
  // 64-bit counts arrive as strings; every column used here is a count or a key.
  return JSON.parse(body).data.map((row) => Object.fromEntries(Object.entries(row)
    .map(([k, v]) => [k, k === 'key' ? v : Number(v)])));
}

/** What the page should show for [from, to), computed from email_events FINAL. */
export async function expectedFigures(from, to) {
  const table = `${CLICKHOUSE_DATABASE}.email_events FINAL`;
  const where = `occurred_at >= toDateTime(${from}) AND occurred_at < toDateTime(${to})`;
  const counts = ['delivered', 'bounced', 'failed', 'rejected', 'complained', 'opened', 'clicked', 'unsubscribed']
    .map((t) => `countIf(event_type = '${t}') AS ${t}`).join(', ');
  const grouped = async (column) => {
    const rows = await clickhouse(`SELECT ${column} AS key, count() AS events, ${counts} FROM ${table} WHERE ${where} GROUP BY key`);
    return Object.fromEntries(rows.map((r) => [r.key, shownRow(r)]));
  };
  const types = await clickhouse(`SELECT event_type AS key, count() AS n FROM ${table} WHERE ${where} GROUP BY key`);
  const [all] = await clickhouse(`SELECT count() AS events, ${counts} FROM ${table} WHERE ${where}`);
  const [recipients] = await clickhouse(`SELECT uniqExact(recipient) AS n FROM ${table} WHERE ${where} AND recipient != ''`);
  const domains = await clickhouse(`SELECT recipient_domain AS key, countIf(event_type = 'bounced') AS bounced, count() AS events,
    countIf(event_type = 'delivered') AS delivered FROM ${table} WHERE ${where} AND recipient_domain != ''
    GROUP BY key HAVING bounced > 0 ORDER BY bounced DESC, key ASC LIMIT 10`);
  const rejections = await clickhouse(`SELECT reason AS key, count() AS n FROM ${CLICKHOUSE_DATABASE}.rejected_requests FINAL
    WHERE rejected_at >= toDateTime(${from}) AND rejected_at < toDateTime(${to}) GROUP BY key`);
  const deadLetters = await clickhouse(`SELECT concat(stage, '-', reason) AS key, count() AS n
    FROM ${CLICKHOUSE_DATABASE}.dead_letters FINAL
    WHERE failed_at >= toDateTime(${from}) AND failed_at < toDateTime(${to}) GROUP BY key`);
  const overall = ratesOf(all);
  return {
    total: fmtCount(all.events),
    recipients: fmtCount(recipients.n),
    byType: Object.fromEntries(types.map((t) => [t.key, fmtCount(t.n)])),
    rates: Object.fromEntries(RATE_FIELDS.map((f) => [f, fmtRate(overall[f])])),
    providers: await grouped('provider'),
    sources: await grouped('source'),
    campaigns: await grouped('campaign_id'),
    domains: Object.fromEntries(domains.map((d) => [d.key, {
      bounced: fmtCount(d.bounced), events: fmtCount(d.events), bounce_rate: fmtRate(ratesOf(d).bounce_rate),
    }])),
    rejections: Object.fromEntries(rejections.map((r) => [r.key, fmtCount(r.n)])),
    deadLetters: Object.fromEntries(deadLetters.map((r) => [r.key, fmtCount(r.n)])),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [from, to] = process.argv.slice(2).map(Number);
  console.log(JSON.stringify(await expectedFigures(from, to), null, 2));
}
