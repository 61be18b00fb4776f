// browser.mjs — the reviewer's path through the UI in Debian's chromium
// (headless, software WebGL2 through SwiftShader), driven by playwright-core:
// sign in, read the queue, claim a case, check the pixels the viewer drew,
// toggle the uncertainty heatmap, approve with the `a` key, see the queue
// shrink. Every check throws with what it saw.

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** How far (per channel, 0–255) a drawn pixel may be from a label colour and still count as it. */
const COLOR_TOLERANCE = 6;
/** A label colour with less spread between channels than this is grey: the scan can draw it too. */
const MIN_CHROMA = 40;

/**
 * Counts, in the viewer's WebGL canvas as drawn: pixels within tolerance of
 * each colour, non-black pixels, grey pixels (r = g = b ± 2, not black), and
 * distinct grey levels. Runs in the page. The canvas is copied into a 2D
 * canvas: the viewer asks for preserveDrawingBuffer, so the last frame stays.
 */
function canvasStats({ colors, tolerance }) {
  const gl = document.querySelector('#gl');
  const copy = document.createElement('canvas');
  copy.width = gl.width;
  copy.height = gl.height;
  const ctx = copy.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(gl, 0, 0);
  const data = ctx.getImageData(0, 0, copy.width, copy.height).data;
  const counts = colors.map(() => 0);
  let nonBlack = 0;
  let grey = 0;
  const levels = new Set();
  let hash = 0;
  for (let i = 0; i < data.length; i += 4) {
    const r = data[i];
    const g = data[i + 1];
    const b = data[i + 2];
    hash = (hash * 31 + r * 65536 + g * 256 + b) | 0;
    if (r + g + b > 30) nonBlack++;
    if (Math.abs(r - g) <= 2 && Math.abs(g - b) <= 2 && r > 10) {
      grey++;
      levels.add(r);
    }
    colors.forEach(([cr, cg, cb], k) => {
      if (Math.abs(r - cr) <= tolerance && Math.abs(g - cg) <= tolerance && Math.abs(b - cb) <= tolerance) counts[k]++;
    });
  }
  return { width: copy.width, height: copy.height, counts, nonBlack, grey, greyLevels: levels.size, hash };
}

/** Waits two animation frames, so a change of a control has been drawn. */
const drawn = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

/**
 * The whole path. `api(pathname)` is a fetch with the same token, used to
 * confirm what the UI did. Returns what it measured, for the log.
 */
export async function reviewInBrowser({ baseUrl, token, reviewer, api, artifacts, executablePath, log }) {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--use-gl=swiftshader', '--enable-unsafe-swiftshader'],
  });
  const pageErrors = [];
  // Console errors count once signed in: before, the refused token's 401 is expected.
  let watchConsole = false;
  try {
    const page = await browser.newPage({ viewport: { width: 1500, height: 950 } });
    page.setDefaultTimeout(30000);
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (watchConsole && m.type() === 'error') pageErrors.push(`console: ${m.text()}`);
    });

    // --- sign in ---------------------------------------------------------------
    await page.goto(`${baseUrl}/review/`);
    await page.fill('#token', 'not-a-token');
    await page.click('#sign-in');
    await page.waitForSelector('#login-status:not(:empty)');
    log(`a wrong token is refused: "${await page.textContent('#login-status')}"`);
    await page.fill('#token', token);
    await page.click('#sign-in');
    const me = page.locator('#me');
    await me.waitFor();
    watchConsole = true;
    check((await me.getAttribute('data-name')) === reviewer, `signed in as ${await me.getAttribute('data-name')}, expected ${reviewer}`);
    check((await me.getAttribute('data-role')) === 'reviewer', `role ${await me.getAttribute('data-role')}, expected reviewer`);

    // --- queue -------------------------------------------------------------------
    const count = async () => {
      await page.waitForSelector('#queue-count:not([data-count=""])');
      return Number(await page.getAttribute('#queue-count', 'data-count'));
    };
    const before = await count();
    const rowsBefore = await page.locator('#queue-table tbody tr[data-id]').evaluateAll((rows) => rows.map((r) => r.dataset.id));
    check(before >= 1 && rowsBefore.length === before, `queue shows ${before} pending, ${rowsBefore.length} rows`);
    log(`queue: ${before} pending (items ${rowsBefore.join(', ')})`);

    // --- claim and view -------------------------------------------------------------
    await page.click('#claim-next');
    await page.waitForSelector('#viewer[data-state="ready"], #viewer[data-state="error"]', { timeout: 120000 });
    check((await page.getAttribute('#viewer', 'data-state')) === 'ready', `the viewer failed: ${await page.textContent('#viewer')}`);
    const caseId = Number(await page.getAttribute('section.case', 'data-id'));
    check(rowsBefore.includes(String(caseId)), `claimed case ${caseId} was not in the queue (${rowsBefore.join(', ')})`);
    const claimed = await api(`/v1/review/items/${caseId}`);
    check(claimed.status === 200, `GET /v1/review/items/${caseId}: ${claimed.status}`);
    check(claimed.body.state === 'claimed' && claimed.body.claimed_by === reviewer,
      `case ${caseId} is ${claimed.body.state} by ${claimed.body.claimed_by}, expected claimed by ${reviewer}`);
    log(`claimed case ${caseId} (study ${claimed.body.study_key}); the viewer loaded it`);

    // The label colours come from the case, as the viewer gets them.
    const labels = claimed.body.labels.filter((l) => l.value !== 0);
    check(labels.length > 0, `case ${caseId} has no foreground labels`);
    const colors = labels.map((l) => l.color);
    const chromatic = labels.map((l) => Math.max(...l.color) - Math.min(...l.color) >= MIN_CHROMA);
    check(chromatic.some(Boolean), `no label colour of case ${caseId} differs from grey: ${JSON.stringify(colors)}`);
    const stats = async (opacity) => {
      await page.locator('#mask-opacity').fill(String(opacity));
      await drawn(page);
      return page.evaluate(canvasStats, { colors, tolerance: COLOR_TOLERANCE });
    };
    const opaque = await stats(1);
    const clear = await stats(0);
    log(`canvas ${opaque.width}x${opaque.height}; mask opacity 1: ${labels.map((l, k) => `${l.name} ${opaque.counts[k]}`).join(', ')} px; ` +
      `opacity 0: ${labels.map((l, k) => `${l.name} ${clear.counts[k]}`).join(', ')} px, ${clear.grey} grey px in ${clear.greyLevels} levels`);
    // The scan alone: drawn (not blank), in many grey levels, and none of the overlay's colours.
    check(clear.nonBlack > 0.05 * clear.width * clear.height, `the scan is blank: ${clear.nonBlack} non-black pixels`);
    check(clear.greyLevels >= 32, `the scan has only ${clear.greyLevels} grey levels`);
    labels.forEach((l, k) => {
      // Every label shows when the mask is opaque: its colour covers at least 200 more pixels than
      // without the mask (a grey label's colour is also the scan's, e.g. white matter on a T1).
      check(opaque.counts[k] - clear.counts[k] >= 200,
        `label ${l.name} ${JSON.stringify(l.color)}: ${opaque.counts[k]} px with the mask opaque, ${clear.counts[k]} px without`);
      // A coloured label's colour comes from the mask alone.
      if (chromatic[k]) check(clear.counts[k] <= 0.01 * opaque.counts[k], `label colour ${l.name} drawn without the mask: ${clear.counts[k]} px`);
    });

    // --- heatmap -----------------------------------------------------------------------
    const half = await stats(0.5);
    await page.selectOption('#heatmap', 'entropy');
    await page.waitForSelector('#viewer[data-heatmap="entropy"]');
    await drawn(page);
    const heat = await page.evaluate(canvasStats, { colors, tolerance: COLOR_TOLERANCE });
    check(heat.hash !== half.hash, 'the entropy heatmap changed nothing on the canvas');
    fs.mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: path.join(artifacts, 'review-case-entropy.png') });
    await page.selectOption('#heatmap', '');
    await page.waitForSelector('#viewer[data-heatmap=""]');
    await drawn(page);
    const screenshot = path.join(artifacts, 'review-case.png');
    await page.screenshot({ path: screenshot });
    log(`entropy heatmap drawn; screenshots ${screenshot}, review-case-entropy.png`);

    // --- approve with the keyboard, back on a shorter queue ---------------------------
    await page.locator('#gl').focus();
    await page.keyboard.press('a');
    await page.waitForURL(/#\/queue$/);
    const after = await count();
    const rowsAfter = await page.locator('#queue-table tbody tr[data-id]').evaluateAll((rows) => rows.map((r) => r.dataset.id));
    check(after === before - 1, `queue shows ${after} pending after the approval, expected ${before - 1}`);
    check(!rowsAfter.includes(String(caseId)), `case ${caseId} is still in the queue`);
    const decided = await api(`/v1/review/items/${caseId}`);
    check(decided.body.state === 'decided' && decided.body.decision === 'approve',
      `case ${caseId} is ${decided.body.state} / ${decided.body.decision}, expected decided / approve`);
    await page.screenshot({ path: path.join(artifacts, 'review-queue.png') });
    log(`approved case ${caseId} with "a"; queue ${before} -> ${after} (review-queue.png)`);

    check(pageErrors.length === 0, `errors in the page: ${pageErrors.join(' | ')}`);
    return { caseId, before, after, screenshot };
  } finally {
    await browser.close();
  }
}
