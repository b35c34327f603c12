// Shared helpers for the end-to-end tests: start the real switchboard binary on a free loopback
// port, launch Debian's Chromium through playwright-core, open the pages, and wait with bounds.
//
// Environment:
//   SWITCHBOARD_BIN   the server binary (default: target/release/switchboard in the repo)
//   CHROMIUM          the browser (default: /usr/bin/chromium)
//   E2E_WEB_DIR       development aid: serve the pages from this folder (with the same CSP) on
//                     a second port and point them at the server with ?server=, so page edits
//                     show without rebuilding the binary. Unset in CI: the binary serves them.

import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect as connectNet, createServer as createNetServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ARTIFACTS = path.join(REPO, 'test-artifacts');
export const BINARY = process.env.SWITCHBOARD_BIN ?? path.join(REPO, 'target/release/switchboard');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server';
const TURNSERVER = process.env.TURNSERVER ?? 'turnserver';

/** The flags that make WebRTC work headless on a loopback-only machine (docs/client.md). */
export const CHROMIUM_FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

/** The CSP the binary sends with every page; the dev server copies it. */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
  + "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss: CONNECT; object-src 'none'; "
  + "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** A free TCP port on 127.0.0.1 (the OS picks it; the server binds it right after). */
export async function freePort() {
  const server = createNetServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * Starts switchboard on 127.0.0.1 (on `port`, or a free one) and waits for /healthz. `stop()`
 * kills it by PID.
 * @returns {Promise<{port: number, origin: string, ws: string, pid: number, log: () => string,
 *   stop: () => Promise<void>, page: (p: string, query?: object) => string}>}
 */
export async function startServer(extraArgs = [], { port: fixedPort } = {}) {
  if (!existsSync(BINARY)) throw new Error(`${BINARY} is missing: run cargo build --release -p switchboard`);
  let lastError;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const port = fixedPort ?? await freePort();
    const child = spawn(BINARY, ['--listen', `127.0.0.1:${port}`, ...extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
    });
    let output = '';
    child.stdout.on('data', (chunk) => { output += chunk; });
    child.stderr.on('data', (chunk) => { output += chunk; });
    const origin = `http://127.0.0.1:${port}`;
    try {
      await waitFor(async () => {
        if (child.exitCode !== null) throw new Error(`switchboard exited with ${child.exitCode}: ${output}`);
        try {
          return (await fetch(`${origin}/healthz`)).ok;
        } catch {
          return false;
        }
      }, { timeout: 15000, what: 'switchboard /healthz' });
    } catch (err) {
      lastError = err;
      child.kill('SIGKILL');
      continue; // the port may have been taken between freePort() and the bind
    }
    const server = {
      port,
      origin,
      ws: `ws://127.0.0.1:${port}`,
      pid: child.pid,
      log: () => output,
      async stop() {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        process.kill(child.pid, 'SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 12000);
        await exited;
        clearTimeout(timer);
      },
      page: (p, query = {}) => pageUrl(server, p, query),
    };
    if (process.env.E2E_WEB_DIR) server.web = await startWebDir(process.env.E2E_WEB_DIR, origin);
    return server;
  }
  throw lastError;
}

/**
 * Starts a redis-server of this test's own: no TCP port, a unix socket in a fresh temp folder,
 * nothing saved. Waits until it answers PING. `stop()` kills it by PID and removes the folder.
 * @returns {Promise<{url: string, socket: string, pid: number, log: () => string,
 *   stop: () => Promise<void>}>}
 */
export async function startRedis() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-redis-'));
  const socket = path.join(dir, 'r.sock');
  const child = spawn(REDIS_SERVER, [
    '--port', '0', '--unixsocket', socket, '--save', '', '--appendonly', 'no', '--dir', dir,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let spawnError = null;
  child.on('error', (err) => { spawnError = err; });
  child.stdout.on('data', (chunk) => { output += chunk; });
  child.stderr.on('data', (chunk) => { output += chunk; });
  const redis = {
    url: `redis+unix://${socket}`,
    socket,
    pid: child.pid,
    log: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        const exited = once(child, 'exit');
        process.kill(child.pid, 'SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor(async () => {
      if (spawnError) throw new Error(`cannot start ${REDIS_SERVER}: ${spawnError.message}`);
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}: ${output}`);
      return existsSync(socket) && await redisPing(socket);
    }, { timeout: 10000, what: 'redis-server PING' });
  } catch (err) {
    await redis.stop();
    throw err;
  }
  return redis;
}

/** Whether the Redis on `socket` answers an inline PING with +PONG. */
async function redisPing(socket) {
  return new Promise((resolve) => {
    const conn = connectNet(socket);
    let reply = '';
    const done = (ok) => { conn.destroy(); resolve(ok); };
    conn.setTimeout(1000, () => done(false));
    conn.on('error', () => done(false));
    conn.on('connect', () => conn.write('PING\r\n'));
    conn.on('data', (chunk) => {
      reply += chunk;
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

/**
 * Starts a coturn of this test's own (Debian's `turnserver`) on a free loopback port, UDP and
 * TCP, relaying on loopback: TURN REST credentials only (`use-auth-secret` with `secret`), no
 * config file, no TLS, no admin CLI, loopback peers allowed (both browsers are on 127.0.0.1,
 * which coturn refuses to relay to by default). Waits until it answers a STUN Binding request.
 * `stop()` kills it by PID and removes its folder.
 * @returns {Promise<{port: number, url: string, pid: number, log: () => string,
 *   stop: () => Promise<void>}>}
 */
export async function startCoturn({ secret, realm = 'switchboard.test' }) {
  let lastError;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-coturn-'));
    const port = await freePort();
    const child = spawn(TURNSERVER, [
      '-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${port}`,
      '--use-auth-secret', `--static-auth-secret=${secret}`, `--realm=${realm}`,
      '--allow-loopback-peers', '--no-cli', '--no-tls', '--no-dtls', '--verbose',
      '--log-file=stdout', '--simple-log',
      `--pidfile=${path.join(dir, 'turnserver.pid')}`, `--db=${path.join(dir, 'turndb')}`,
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let spawnError = null;
    child.on('error', (err) => { spawnError = err; });
    child.stdout.on('data', (chunk) => { output += chunk; });
    child.stderr.on('data', (chunk) => { output += chunk; });
    const coturn = {
      port,
      url: `turn:127.0.0.1:${port}?transport=udp`,
      pid: child.pid,
      log: () => output,
      async stop() {
        if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
          const exited = once(child, 'exit');
          child.kill('SIGKILL'); // coturn may linger on SIGTERM; it keeps no state worth a clean exit
          await exited;
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
    try {
      await waitFor(async () => {
        if (spawnError) throw new Error(`cannot start ${TURNSERVER}: ${spawnError.message}`);
        if (child.exitCode !== null) throw new Error(`turnserver exited with ${child.exitCode}: ${output}`);
        return stunAnswers(port);
      }, { timeout: 10000, what: 'turnserver STUN Binding' });
      return coturn;
    } catch (err) {
      lastError = err;
      await coturn.stop(); // the port may have been taken between freePort() and the bind
    }
  }
  throw lastError;
}

/** Whether a STUN server answers a Binding request on 127.0.0.1:`port` (UDP) within 500 ms. */
async function stunAnswers(port) {
  const socket = createSocket('udp4');
  // Binding request: type 0x0001, no attributes, the magic cookie, a 12-byte transaction id.
  const request = Buffer.concat([Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]), Buffer.from('switchboard!')]);
  try {
    const reply = new Promise((resolve) => {
      socket.on('message', (msg) => {
        resolve(msg.length >= 20 && msg.readUInt16BE(0) === 0x0101 && msg.subarray(8, 20).equals(request.subarray(8, 20)));
      });
      socket.on('error', () => resolve(false));
    });
    socket.send(request, port, '127.0.0.1');
    return await Promise.race([reply, new Promise((resolve) => { setTimeout(() => resolve(false), 500); })]);
  } finally {
    socket.close();
  }
}

/**
 * Starts one cluster node: switchboard with `--redis` (a `startRedis()` result), `--node-id`,
 * `--cluster-lease` and `extraArgs`, and waits until its /readyz says it is registered in
 * Redis (before that its joins would answer `unavailable`). Same object as `startServer`.
 */
export async function startNode(redis, { nodeId, lease = '3s', extraArgs = [] }) {
  const node = await startServer([
    '--redis', redis.url, '--node-id', nodeId, '--cluster-lease', lease, ...extraArgs,
  ]);
  try {
    await waitFor(async () => {
      try {
        return (await fetch(`${node.origin}/readyz`)).ok;
      } catch {
        return false;
      }
    }, { timeout: 20000, what: `node ${nodeId} /readyz` });
  } catch (err) {
    process.kill(node.pid, 'SIGKILL');
    await node.stop();
    throw new Error(`${err.message}: ${node.log()}`);
  }
  return node;
}

function pageUrl(server, pagePath, query) {
  const params = new URLSearchParams(query);
  if (server.web) {
    params.set('server', server.origin);
    const file = pagePath === '/' ? '/index.html' : pagePath === '/dashboard' ? '/dashboard.html' : pagePath;
    return `${server.web.origin}${file}?${params}`;
  }
  const search = params.toString();
  return `${server.origin}${pagePath}${search ? `?${search}` : ''}`;
}

/** The development static server for E2E_WEB_DIR (stopped with the switchboard it points at). */
async function startWebDir(dir, switchboardOrigin) {
  const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };
  const csp = CSP.replace('CONNECT', switchboardOrigin);
  const root = path.resolve(dir);
  const server = createServer((req, res) => {
    // Paths below the folder only (vendor/mediasoup-client.js is in a subfolder).
    const name = new URL(req.url, 'http://x').pathname.replace(/^\/+/, '') || 'index.html';
    const file = path.resolve(root, name);
    if (!file.startsWith(`${root}${path.sep}`) || !existsSync(file) || !types[path.extname(file)]) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': types[path.extname(file)], 'content-security-policy': csp, 'cache-control': 'no-cache' });
    res.end(readFileSync(file));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  server.unref();
  return { origin: `http://127.0.0.1:${server.address().port}` };
}

/**
 * A TCP proxy to `port` on 127.0.0.1 (`state.port` changes it for new connections), as a
 * network between a page and the server: `cut()` resets every connection through it (no
 * close frame, as when a phone changes networks), and `down` makes it reset new ones at once.
 * (The resume tests.)
 */
export async function startProxy(port) {
  const connections = new Set();
  const state = { down: false, accepted: 0, port };
  const listener = createNetServer((client) => {
    if (state.down) {
      client.resetAndDestroy();
      return;
    }
    state.accepted += 1;
    const upstream = connectNet(state.port, '127.0.0.1');
    const pair = { client, upstream };
    connections.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const drop = () => {
      connections.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
  });
  await new Promise((resolve) => { listener.listen(0, '127.0.0.1', resolve); });
  return {
    state,
    origin: `http://127.0.0.1:${listener.address().port}`,
    cut() {
      for (const { client, upstream } of connections) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
      connections.clear();
    },
    close: () => new Promise((resolve) => { listener.close(resolve); }),
  };
}

/** Debian's Chromium, headless, with the WebRTC flags. Playwright gives it a fresh profile dir. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    timeout: 60000,
  });
}

/**
 * Opens a page in its own browser context and records console errors, page errors and CSP
 * violations (`page.problems`), so every test can assert the pages ran clean.
 */
export async function openPage(browser, url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 } });
  await context.grantPermissions(['camera', 'microphone']);
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') page.problems.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => page.problems.push(`pageerror: ${err.message}`));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.setDefaultTimeout(30000);
  await page.goto(url);
  return page;
}

/**
 * Console errors that are not the page's fault: Chromium logs a failed WebSocket handshake, or
 * an aborted one while a page reloads, as a console error.
 */
export function realProblems(page) {
  return page.problems.filter((p) => !/WebSocket connection to .* failed/.test(p));
}

/** The demo at `/`: starts the fake camera, joins `room` as `name`, waits for the room. */
export async function joinDemo(page, { room, name, media = true }) {
  if (media) {
    await page.click('#media-button');
    await page.waitForSelector('#media-status[data-media="on"]');
  }
  await page.fill('#room-input', room);
  await page.fill('#name-input', name);
  await page.click('#join-button');
  await page.waitForSelector('#connection-status[data-state="joined"]');
}

/** Polls `check` until it returns a truthy value; throws after `timeout` ms. */
export async function waitFor(check, { timeout = 30000, interval = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => { setTimeout(resolve, interval); });
  }
}

/** `promise`, or a rejection after `ms` (the timer is cleared either way). */
export async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until the tile for `peer` on `page` has decoded video frames; returns the count. */
export async function waitForFrames(page, peer, { timeout = 45000, selectorSuffix = '' } = {}) {
  const handle = await page.waitForFunction(({ peerName, suffix }) => {
    const tile = [...document.querySelectorAll(`#tiles li.tile${suffix}`)].find((t) => t.dataset.peer === peerName);
    const frames = Number(tile?.dataset.framesDecoded ?? 0);
    return frames > 0 ? frames : null;
  }, { peerName: peer, suffix: selectorSuffix }, { timeout, polling: 250 });
  return handle.jsonValue();
}

/** `tile` selector for a peer (names are quoted for CSS). */
export function tileSelector(peer) {
  return `#tiles li.tile[data-peer=${JSON.stringify(peer)}]`;
}

/** The chat texts `page` shows from `from`, in order. */
export function chatTexts(page, from) {
  return page.evaluate((who) => [...document.querySelectorAll(
    `#chat-log li[data-chat-from="${who}"] .chat-text`,
  )].map((el) => el.textContent), from);
}

/** Types `text` into the demo's chat and sends it. */
export async function sendChat(page, text) {
  await page.fill('#chat-input', text);
  await page.press('#chat-input', 'Enter');
}

/**
 * Marks what a resume must keep (the resume tests): `page`'s RTCPeerConnection to `peer` and
 * its tile for `peer`; and makes `witness` record every `user-left` and `user-joined` it
 * hears in `globalThis.leaves`. Returns the connection's local SDP.
 */
export async function markCall(page, peer, witness) {
  const sdp = await page.evaluate(([who, selector]) => {
    const { client } = globalThis.switchboardDemo;
    const pc = client.peerConnection(who);
    pc.resumeMarker = 'same';
    document.querySelector(selector).dataset.resumeMarker = 'same';
    return pc.localDescription.sdp;
  }, [peer, tileSelector(peer)]);
  await witness.evaluate(() => {
    globalThis.leaves = [];
    globalThis.switchboardDemo.client.addEventListener('user-left', (e) => globalThis.leaves.push(e.detail.user));
    globalThis.switchboardDemo.client.addEventListener('user-joined', (e) => globalThis.leaves.push(`joined:${e.detail.user}`));
  });
  return sdp;
}

/** What `markCall` marked, as it is now: the markers, the local SDP and the state. */
export function markedCall(page, peer) {
  return page.evaluate(([who, selector]) => {
    const pc = globalThis.switchboardDemo.client.peerConnection(who);
    return {
      pc: pc?.resumeMarker,
      tile: document.querySelector(selector)?.dataset.resumeMarker,
      sdp: pc?.localDescription.sdp,
      state: pc?.connectionState,
    };
  }, [peer, tileSelector(peer)]);
}

/** Waits until `peer`'s tile on `page` has decoded more video frames than now. */
export async function moreFrames(page, peer) {
  const frames = Number(await page.getAttribute(tileSelector(peer), 'data-frames-decoded'));
  await waitFor(async () => Number(await page.getAttribute(tileSelector(peer), 'data-frames-decoded')) > frames,
    { what: `more video frames from ${peer}` });
}

export function artifact(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}

/** A room name no other test run shares. */
export function uniqueRoom(prefix) {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}`;
}

/** Polls of a page's SFU stats: once a second, at most this many times. */
export const POLLS = 30;

export function sleep(ms) {
  return new Promise((resolve) => { setTimeout(resolve, ms); });
}

/** sfu.js's stats() on a page. */
export function sfuStats(page) {
  return page.evaluate(() => globalThis.switchboardDemo.sfu.stats());
}

/**
 * Polls a page's SFU stats once a second until `check` passes, at most POLLS times; throws
 * with the last stats and the page's SFU error, if any.
 */
export async function pollSfu(page, check, what) {
  let last;
  for (let i = 0; i < POLLS; i += 1) {
    last = await sfuStats(page);
    if (check(last)) return last;
    await sleep(1000);
  }
  const error = await page.textContent('#sfu-error');
  throw new Error(`${what}: not within ${POLLS} × 1 s. Last stats: ${JSON.stringify(last)}. SFU error: ${error || 'none'}`);
}

/** The same, for what one page receives from one user (sfu.js userStats()). */
export async function pollUser(page, user, check, what) {
  let last;
  for (let i = 0; i < POLLS; i += 1) {
    last = await page.evaluate((u) => globalThis.switchboardDemo.sfu.userStats(u), user);
    if (last && check(last)) return last;
    await sleep(1000);
  }
  throw new Error(`${what}: not within ${POLLS} × 1 s. Last stats: ${JSON.stringify(last)}`);
}
