// review.test.mjs — the reviewers' viewer end to end, in a real browser
// against the real daemon: builds web/dist, starts `neurobatch serve` on the
// two samples, waits until they are processed and one is in the review queue,
// then drives chromium through sign-in, claim, viewer, heatmap, approval
// (browser.mjs). Exit code 0 when every check passed, 1 otherwise; on failure
// the server's log is printed.
//
//   node web/tests/review.test.mjs
//   env: NEUROBATCH_BIN (default target/debug/neurobatch), CHROMIUM (default
//   /usr/bin/chromium), ARTIFACTS (default web/test-artifacts)

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { reviewInBrowser } from './browser.mjs';
import { startServer, waitHealthy } from './server.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.resolve(REPO, process.env.NEUROBATCH_BIN || 'target/debug/neurobatch');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.resolve(process.env.ARTIFACTS || path.join(REPO, 'web/test-artifacts'));
const SAMPLES = ['samples/phantom_2mm.nii.gz', 'samples/mni_t1_2mm.nii.gz'].map((s) => path.join(REPO, s));
const REVIEWER = 'browser-test';
/** Both samples segmented on the CPU with one member: well under a minute; generous for a loaded machine. */
const PROCESSING_TIMEOUT_MS = 10 * 60 * 1000;
const TERMINAL = new Set(['succeeded', 'failed', 'dead']);

const started = Date.now();
const log = (message) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${message}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until every sample has a finished job and at least one review item is
 * pending, so the queue the browser sees does not grow under it.
 */
async function waitForQueue(server, token) {
  const deadline = Date.now() + PROCESSING_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline) {
    const studies = await server.api('/v1/studies', token);
    if (studies.status !== 200) throw new Error(`GET /v1/studies: ${studies.status} ${JSON.stringify(studies.body)}`);
    const list = Array.isArray(studies.body) ? studies.body : studies.body.studies ?? [];
    const done = list.filter((s) => s.ineligible_reason || TERMINAL.has(s.latest_job_state));
    const pending = await server.api('/v1/review/items?state=pending', token);
    if (pending.status !== 200) throw new Error(`GET /v1/review/items: ${pending.status} ${JSON.stringify(pending.body)}`);
    const state = `${done.length}/${SAMPLES.length} studies processed, ${pending.body.items.length} pending review`;
    if (state !== last) log(state);
    last = state;
    if (done.length >= SAMPLES.length && pending.body.items.length >= 1) return pending.body.items;
    if (server.exited()) throw new Error(`neurobatch serve exited: ${JSON.stringify(server.exited())}`);
    await sleep(1000);
  }
  throw new Error(`after ${PROCESSING_TIMEOUT_MS / 1000} s: ${last}`);
}

async function main() {
  for (const [what, file] of [['neurobatch binary (NEUROBATCH_BIN)', BIN], ['chromium (CHROMIUM)', CHROMIUM], ...SAMPLES.map((s) => ['sample', s])]) {
    if (!fs.existsSync(file)) throw new Error(`${what} ${file} does not exist`);
  }
  log('building web/dist');
  execFileSync('bash', [path.join(REPO, 'scripts/build-web.sh')], { stdio: 'inherit' });
  const uiDir = path.join(REPO, 'web/dist');

  const server = await startServer({ repo: REPO, bin: BIN, uiDir, samples: SAMPLES });
  let ok = false;
  try {
    await waitHealthy(server);
    log(`neurobatch serve on ${server.url} in ${server.dir}`);
    // After start-up: `serve` has migrated the database the token commands write to.
    const reviewer = await server.token('reviewer', REVIEWER);

    const pending = await waitForQueue(server, reviewer);
    log(`review queue: ${pending.map((i) => `${i.id} (${i.reasons.map((r) => r.code).join(', ')})`).join('; ')}`);

    const ui = await fetch(`${server.url}/review/`);
    if (!ui.ok || !(await ui.text()).includes('app.js')) throw new Error(`GET /review/: ${ui.status}, not the UI's index.html`);

    const result = await reviewInBrowser({
      baseUrl: server.url,
      token: reviewer,
      reviewer: REVIEWER,
      api: (pathname) => server.api(pathname, reviewer),
      artifacts: ARTIFACTS,
      executablePath: CHROMIUM,
      log,
    });
    log(`ok: case ${result.caseId} reviewed in the browser; screenshot ${result.screenshot}`);
    ok = true;
  } finally {
    const exit = await server.stop();
    if (!ok) {
      console.error(`\n--- neurobatch serve log (${server.dir}/serve.log, exit ${JSON.stringify(exit)}) ---\n${server.log()}--- end of log ---`);
    } else {
      server.remove();
    }
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`FAIL: ${e.stack ?? e}`);
    process.exit(1);
  },
);
