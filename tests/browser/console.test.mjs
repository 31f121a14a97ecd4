// The console's browser test: Debian's headless Chromium, driven by playwright-core, loads the
// mailpipe console page and checks what a person would see against ClickHouse, the chart, a
// forced alert that fires and resolves, and the phone layout. Screenshots go to ARTIFACTS_DIR.
//
// Environment (see run.sh, which installs the one npm dependency and runs this file):
//   CONSOLE_URL          the console, default http://127.0.0.1:8090
//   CLICKHOUSE_URL       ClickHouse's HTTP interface, default http://127.0.0.1:8123
//   CLICKHOUSE_DATABASE  default mailpipe
//   SKIP_CLICKHOUSE=1    only for a run against the dev server (web/dev-server.mjs), whose
//                        numbers are made up: the figures are then checked for shape only
//   ARTIFACTS_DIR        where screenshots go, default <repo>/.run/test/browser
//   STOP_STAGE_CMD, START_STAGE_CMD  shell commands that stop / start one consumer stage
//   SEND_TRAFFIC_CMD     shell command that sends sample webhooks (run while the stage is
//                        stopped, every SEND_TRAFFIC_EVERY seconds, default 15; 0 = once)
//   EXPECT_ALERT         the alert that must fire, default consumer_lag_growing;
//                        EXPECT_ALERT_SUBJECT narrows it to one subject (e.g. mailpipe-dedupe)
//   ALERT_TIMEOUT_SECONDS  how long each of "fires" and "resolves" may take, default 180
//   CHROMIUM             the browser, default /usr/bin/chromium
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import { COUNT_FIELDS, RATE_FIELDS, expectedFigures } from './clickhouse.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const CONSOLE_URL = (process.env.CONSOLE_URL || 'http://127.0.0.1:8090').replace(/\/$/, '');
const SKIP_CLICKHOUSE = process.env.SKIP_CLICKHOUSE === '1';
const ARTIFACTS_DIR = process.env.ARTIFACTS_DIR || join(here, '..', '..', '.run', 'test', 'browser');
const EXPECT_ALERT = process.env.EXPECT_ALERT || 'consumer_lag_growing';
const EXPECT_ALERT_SUBJECT = process.env.EXPECT_ALERT_SUBJECT || '';
const ALERT_TIMEOUT_MS = Number(process.env.ALERT_TIMEOUT_SECONDS || 180) * 1000;
const SEND_TRAFFIC_EVERY_MS = Number(process.env.SEND_TRAFFIC_EVERY ?? 15) * 1000;
// How long the figures may take to settle (events still being loaded when the test starts).
const SETTLE_MS = 90_000;


let browser;

before(async () => {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // CI runs as root, where Chromium's sandbox cannot start.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
});

after(async () => {
  await browser?.close();
});

// ---- the page ----

/** Opens the console in a fresh context and waits for its first complete refresh. */
async function openConsole(viewport, query = '') {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const problems = { pageErrors: [], foreignRequests: [] };
  page.on('pageerror', (err) => problems.pageErrors.push(err.message));
  // "Works offline": every request the page makes goes to the console itself.
  page.on('request', (req) => {
    const url = req.url();
    if (!url.startsWith(`${CONSOLE_URL}/`) && !url.startsWith('data:')) problems.foreignRequests.push(url);
  });
  await page.goto(`${CONSOLE_URL}/${query}`);
  await waitForGoodRefresh(page, 0);
  return { context, page, problems };
}

/** Waits until the page has finished a refresh after the `after`-th one, with no API error. */
async function waitForGoodRefresh(page, after, timeout = 30_000) {
  await page.waitForFunction((n) => {
    const u = document.querySelector('[data-testid="updated-at"]');
    return u && Number(u.dataset.refreshes) > n && u.dataset.ok === 'true';
  }, after, { timeout });
  return refreshCount(page);
}

async function refreshCount(page) {
  return Number(await page.getAttribute('[data-testid="updated-at"]', 'data-refreshes'));
}

function assertNoProblems(problems) {
  assert.deepEqual(problems.pageErrors, [], 'the page threw');
  assert.deepEqual(problems.foreignRequests, [], 'the page asked another host (a CDN?)');
}

/** Everything the comparison needs, read in one go so it is one refresh's figures. */
function readFigures(page) {
  return page.evaluate(([countFields, rateFields]) => {
    const text = (sel) => document.querySelector(sel)?.textContent.trim() ?? null;
    const range = document.querySelector('[data-testid="range"]');
    const rows = (by) => {
      const out = {};
      for (const tr of document.querySelectorAll(`[data-testid^="row-${by}-"]`)) {
        const key = tr.dataset.testid.slice(`row-${by}-`.length);
        out[key] = {};
        for (const f of [...countFields, ...rateFields]) {
          out[key][f] = tr.querySelector(`[data-field="${f}"]`)?.textContent.trim() ?? null;
        }
      }
      return out;
    };
    const byType = {};
    for (const node of document.querySelectorAll('[data-testid^="count-"]')) {
      byType[node.dataset.testid.slice('count-'.length)] = node.textContent.trim();
    }
    const rates = {};
    for (const f of rateFields) rates[f] = text(`[data-testid="rate-${f}"]`);
    const domains = {};
    for (const tr of document.querySelectorAll('[data-testid^="domain-"]')) {
      domains[tr.dataset.testid.slice('domain-'.length)] = {
        bounced: tr.querySelector('[data-field="bounced"]').textContent.trim(),
        events: tr.querySelector('[data-field="events"]').textContent.trim(),
        bounce_rate: tr.querySelector('[data-field="bounce_rate"]').textContent.trim(),
      };
    }
    const problemCounts = (prefix) => Object.fromEntries([...document.querySelectorAll(`[data-testid^="${prefix}-"]`)]
      .map((tr) => [tr.dataset.testid.slice(prefix.length + 1), tr.querySelector('[data-field="count"]').textContent.trim()]));
    const ranges = [...document.querySelectorAll('[id^="breakdown-"]')].map((b) => `${b.dataset.from}-${b.dataset.to}`);
    return {
      from: Number(range.dataset.from), to: Number(range.dataset.to), breakdownRanges: ranges,
      total: text('[data-testid="total-events"]'), recipients: text('[data-testid="total-recipients"]'), byType, rates,
      providers: rows('provider'), sources: rows('source'), campaigns: rows('campaign'), domains,
      rejections: problemCounts('rejection'), deadLetters: problemCounts('deadletter'),
    };
  }, [COUNT_FIELDS, RATE_FIELDS]);
}

function compare(shown, expected) {
  // The page lists at most 20 campaigns and the 10 top bouncing domains: compare those it shows,
  // and that it shows every domain ClickHouse ranks in its top 10.
  const campaigns = Object.fromEntries(Object.keys(shown.campaigns).map((k) => [k, expected.campaigns[k]]));
  const domains = Object.fromEntries(Object.entries(shown.domains).filter(([, d]) => d.bounced !== '0'));
  return {
    shown: { total: shown.total, recipients: shown.recipients, byType: shown.byType, rates: shown.rates, providers: shown.providers,
      sources: shown.sources, campaigns: shown.campaigns, domains,
      rejections: shown.rejections, deadLetters: shown.deadLetters },
    expected: { total: expected.total, recipients: expected.recipients, byType: expected.byType, rates: expected.rates,
      providers: expected.providers, sources: expected.sources, campaigns, domains: expected.domains,
      rejections: expected.rejections, deadLetters: expected.deadLetters },
  };
}

// ---- shell hooks for the forced alert ----

function sh(name, command) {
  if (!command) throw new Error(`${name} is not set: the forced-alert test needs it (see the top of this file)`);
  console.log(`# ${name}: ${command}`);
  execSync(command, { stdio: ['ignore', 'inherit', 'inherit'], timeout: 300_000, shell: '/bin/bash' });
}

function alertSelector(state) {
  const id = EXPECT_ALERT_SUBJECT ? `="alert-${EXPECT_ALERT}-${EXPECT_ALERT_SUBJECT}"` : `^="alert-${EXPECT_ALERT}-"`;
  return `[data-testid${id}][data-state="${state}"]`;
}

// ---- the tests ----

test('the figures shown at 1280x800 equal ClickHouse\'s for the range the page used', async () => {
  const { context, page, problems } = await openConsole({ width: 1280, height: 800 });
  try {
    let seen = await refreshCount(page);
    let last = null;
    const deadline = Date.now() + SETTLE_MS;
    for (;;) {
      const shown = await readFigures(page);
      assert.ok(shown.from > 0 && shown.to - shown.from === 3600, `range element: ${shown.from}..${shown.to}`);
      assert.deepEqual(shown.breakdownRanges, Array(3).fill(`${shown.from}-${shown.to}`),
        'every breakdown shows the range of the overview');
      assert.match(shown.total, /^\d[\d,]*$/);
      assert.ok(Object.keys(shown.providers).length > 0, 'no provider rows: was sample traffic sent?');
      if (SKIP_CLICKHOUSE) break;
      last = compare(shown, await expectedFigures(shown.from, shown.to));
      if (isDeepStrictEqual(last.shown, last.expected)) break;
      if (Date.now() > deadline) break;
      // Events may still be arriving: compare again with the page's next refresh (and report
      // the last difference if no good refresh comes).
      try {
        seen = await waitForGoodRefresh(page, seen);
      } catch (err) {
        if (err.name !== 'TimeoutError') throw err;
        break;
      }
    }
    if (last) assert.deepEqual(last.shown, last.expected, 'the page and ClickHouse disagree');

    const rules = await page.locator('[data-testid="rules-status"]');
    assert.equal(await rules.textContent(), (await rules.getAttribute('data-running')) === 'true' ? 'running' : 'not running');
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'console-1280.png') });
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'console-1280-full.png'), fullPage: true });
    assertNoProblems(problems);
  } finally {
    await context.close();
  }
});

test('the events-per-minute chart has drawn bars on its canvas', async () => {
  const { context, page, problems } = await openConsole({ width: 1280, height: 800 });
  try {
    const pixels = await page.evaluate(() => {
      const canvas = document.querySelector('[data-testid="events-chart"]');
      const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
      let painted = 0;
      let coloured = 0; // saturated pixels: bars and legend boxes, not the grey axes and text
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] === 0) continue;
        painted += 1;
        const max = Math.max(data[i], data[i + 1], data[i + 2]);
        const min = Math.min(data[i], data[i + 1], data[i + 2]);
        if (data[i + 3] > 200 && max - min > 60) coloured += 1;
      }
      return { width: canvas.width, height: canvas.height, painted, coloured };
    });
    assert.ok(pixels.width > 200 && pixels.height > 100, `canvas size ${pixels.width}x${pixels.height}`);
    assert.ok(pixels.painted > 0, 'the canvas is blank');
    assert.ok(pixels.coloured > 500, `too few coloured pixels for bars: ${JSON.stringify(pixels)}`);
    await page.locator('.chart-box').screenshot({ path: join(ARTIFACTS_DIR, 'console-chart.png') });
    assertNoProblems(problems);
  } finally {
    await context.close();
  }
});

test('a rejection drill-down shows examples as text, and an API failure shows a banner over the last data', async (t) => {
  const { context, page, problems } = await openConsole({ width: 1280, height: 800 }, '?refresh=1');
  try {
    const reason = page.locator('[data-testid^="rejection-"] button, [data-testid^="deadletter-"] button').first();
    if (await reason.count() === 0) {
      t.diagnostic('no rejected request or dead letter in the range: drill-down not tried');
    } else {
      await reason.click();
      const examples = page.locator('[data-testid="examples"]');
      await examples.locator('h3').waitFor();
      assert.equal(await examples.locator('img, script, iframe').count(), 0, 'example data became markup');
      await examples.screenshot({ path: join(ARTIFACTS_DIR, 'console-drilldown.png') });
    }

    const total = await page.textContent('[data-testid="total-events"]');
    await page.route('**/api/**', (route) => route.fulfill({
      status: 503, contentType: 'application/json', body: '{"error":"clickhouse unavailable (test)"}',
    }));
    const banner = page.locator('[data-testid="error-banner"]');
    await banner.waitFor({ state: 'visible', timeout: 15_000 });
    assert.match(await banner.textContent(), /clickhouse unavailable \(test\)/);
    assert.equal(await page.textContent('[data-testid="total-events"]'), total, 'the last data was dropped');
    await page.unroute('**/api/**');
    await banner.waitFor({ state: 'hidden', timeout: 15_000 });
    assertNoProblems(problems);
  } finally {
    await context.close();
  }
});

test('a forced alert (a stopped stage) appears firing, then resolved', { timeout: 2 * ALERT_TIMEOUT_MS + 600_000 }, async () => {
  const { context, page, problems } = await openConsole({ width: 1280, height: 800 }, '?refresh=2');
  let stopped = false;
  try {
    assert.equal(await page.locator(alertSelector('firing')).count(), 0,
      `${EXPECT_ALERT} is already firing before the stage is stopped`);
    sh('STOP_STAGE_CMD', process.env.STOP_STAGE_CMD);
    stopped = true;

    const deadline = Date.now() + ALERT_TIMEOUT_MS;
    const firing = page.locator(alertSelector('firing')).first();
    for (;;) {
      sh('SEND_TRAFFIC_CMD', process.env.SEND_TRAFFIC_CMD);
      const wait = SEND_TRAFFIC_EVERY_MS > 0 ? SEND_TRAFFIC_EVERY_MS : ALERT_TIMEOUT_MS;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${EXPECT_ALERT} did not fire within ${ALERT_TIMEOUT_MS / 1000} s`);
      try {
        await firing.waitFor({ timeout: Math.min(wait, left) });
        break;
      } catch (err) {
        if (err.name !== 'TimeoutError') throw err;
      }
    }
    await firing.scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'console-alert-firing.png'), fullPage: true });

    const startedAt = Math.floor(Date.now() / 1000);
    sh('START_STAGE_CMD', process.env.START_STAGE_CMD);
    stopped = false;
    // Resolved after the start (not a resolved alert of an earlier run), and no longer firing.
    await page.waitForFunction(([firingSel, resolvedSel, since]) =>
      document.querySelectorAll(firingSel).length === 0
        && [...document.querySelectorAll(resolvedSel)].some((a) => Number(a.dataset.since) >= since),
    [alertSelector('firing'), alertSelector('resolved'), startedAt - 5], { timeout: ALERT_TIMEOUT_MS, polling: 500 });
    await page.locator(alertSelector('resolved')).first().scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'console-alert-resolved.png'), fullPage: true });
    assertNoProblems(problems);
  } finally {
    if (stopped) sh('START_STAGE_CMD', process.env.START_STAGE_CMD); // leave the stack as found
    await context.close();
  }
});

test('at phone width (390x844) the page fits: nothing scrolls sideways', async () => {
  const { context, page, problems } = await openConsole({ width: 390, height: 844 });
  try {
    const widths = await page.evaluate(() => ({
      viewport: window.innerWidth,
      document: document.documentElement.scrollWidth,
      body: document.body.scrollWidth,
    }));
    assert.ok(widths.document <= widths.viewport && widths.body <= widths.viewport,
      `the page is wider than the phone: ${JSON.stringify(widths)}`);
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'console-phone.png'), fullPage: true });
    assertNoProblems(problems);
  } finally {
    await context.close();
  }
});
