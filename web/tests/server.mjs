// server.mjs — the real daemon for the browser test: `neurobatch serve` in a
// fresh temporary folder with the two samples in its inbox, embedded backends
// (SQLite, in-process queue, file objects), the UI from web/dist, and tokens
// made with `neurobatch token create` against the same database.

import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A port nobody listens on right now (the OS picks it). */
async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The ONNX Runtime library the worker loads, as scripts/env.sh finds it, unless the caller set one. */
async function ortDylib(repo) {
  if (process.env.ORT_DYLIB_PATH) return process.env.ORT_DYLIB_PATH;
  try {
    const { stdout } = await run('bash', [path.join(repo, 'scripts/ort-dylib.sh')]);
    return stdout.trim();
  } catch {
    return undefined; // the worker then says what is missing, in the server log
  }
}

/**
 * Starts the daemon (not waiting for it: see `waitHealthy`). `samples`: files
 * copied into the inbox. The caller must `stop()` it, also on failure.
 */
export async function startServer({ repo, bin, uiDir, samples }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'neurobatch-review-'));
  fs.mkdirSync(path.join(dir, 'inbox'));
  for (const sample of samples) fs.copyFileSync(sample, path.join(dir, 'inbox', path.basename(sample)));
  const port = await freePort();
  const env = {
    ...process.env,
    NEUROBATCH__SCHEDULER__QUIET_PERIOD_SECS: '1',
    NEUROBATCH__SCHEDULER__POLL_INTERVAL_SECS: '1',
    NEUROBATCH__SCHEDULER__NIGHTLY_WINDOW: '',
    NEUROBATCH__PIPELINE__MEMBERS: '1',
    NEUROBATCH__PIPELINE__PROFILE: 'cpu',
    NEUROBATCH__SCHEDULER__LISTEN: `127.0.0.1:${port}`,
    NEUROBATCH__SCHEDULER__UI_DIR: uiDir,
    NO_COLOR: '1', // a plain log to print on failure
  };
  const ort = await ortDylib(repo);
  if (ort) env.ORT_DYLIB_PATH = ort;

  const logPath = path.join(dir, 'serve.log');
  const logFd = fs.openSync(logPath, 'a');
  const child = spawn(bin, ['--log-level', 'info,ort=warn', 'serve'], { cwd: dir, env, stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  let exited = null;
  const exit = new Promise((resolve) => child.once('exit', (code, signal) => resolve((exited = { code, signal }))));
  child.once('error', (e) => {
    exited = { code: null, signal: null, error: e.message };
  });

  const server = {
    dir,
    url: `http://127.0.0.1:${port}`,
    exited: () => exited,
    log: () => (fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : ''),

    /** `neurobatch token create`: the token is stdout's last line. */
    async token(role, name) {
      const { stdout } = await run(bin, ['token', 'create', '--role', role, '--name', name], { cwd: dir, env });
      const token = stdout.trim().split('\n').pop()?.trim();
      if (!token) throw new Error(`neurobatch token create --role ${role} printed no token`);
      return token;
    },

    /** `fetch` against the server with a bearer token. */
    async api(pathname, token, init = {}) {
      const res = await fetch(`${server.url}${pathname}`, {
        ...init,
        headers: { ...(init.headers ?? {}), Authorization: `Bearer ${token}` },
      });
      const text = await res.text();
      let body = text;
      try {
        body = text ? JSON.parse(text) : null;
      } catch {
        // not JSON: the text
      }
      return { status: res.status, body };
    },

    /** SIGTERM, then SIGKILL after 15 s; waits for the exit. */
    async stop() {
      if (exited) return exited;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15000);
      const result = await exit;
      clearTimeout(killer);
      return result;
    },

    /** Removes the temporary folder (database, objects, log). */
    remove() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };

  return server;
}

/** Resolves once `/healthz` answers; fails when the process exits first or after `timeoutMs`. */
export async function waitHealthy(server, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exited = server.exited();
    if (exited) throw new Error(`neurobatch serve exited at start (${JSON.stringify(exited)})`);
    try {
      const res = await fetch(`${server.url}/healthz`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`neurobatch serve did not answer on ${server.url}/healthz within ${timeoutMs / 1000} s`);
    await sleep(200);
  }
}
