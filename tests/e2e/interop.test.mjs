// Interop with an independent WebRTC stack: a Python aiortc peer joins through the query-rooms
// dialect (/ws?peer_id=py&room=R) and a Chromium page through the conference dialect (the
// demo app). The server maps the signals between the two dialects; the data channel then
// carries a message each way, peer to peer.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  artifact, joinDemo, withTimeout, launchBrowser, openPage, realProblems, startServer, tileSelector, uniqueRoom,
} from './lib.mjs';

const PEER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'aiortc_peer.py');
const PYTHON = process.env.PYTHON ?? 'python3';

let server;
let browser;
let python;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  if (python && python.exitCode === null && python.signalCode === null) process.kill(python.pid, 'SIGKILL');
  await browser?.close();
  await server?.stop();
});

test('a Chromium page and an aiortc peer exchange data-channel messages across dialects', async () => {
  const room = uniqueRoom('interop');
  // "web" sorts after "py", so the page is the polite peer: it waits for an offer, then, as
  // aiortc only answers, makes the offer itself (the client's answer-only fallback).
  const page = await openPage(browser, server.page('/'));
  await joinDemo(page, { room, name: 'web', media: false });

  const events = [];
  let stderr = '';
  const url = `${server.ws}/ws?${new URLSearchParams({ peer_id: 'py', room })}`;
  python = spawn(PYTHON, [PEER_SCRIPT, '--url', url, '--send', 'hello from aiortc',
    '--expect', 'hello from chromium', '--chat', 'hi from python', '--timeout', '60'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let buffered = '';
  python.stdout.on('data', (chunk) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop();
    for (const line of lines) if (line.trim()) events.push(JSON.parse(line));
  });
  python.stderr.on('data', (chunk) => { stderr += chunk; });
  const exited = once(python, 'exit');
  const diagnostics = () => `aiortc events: ${JSON.stringify(events)}\nstderr: ${stderr.slice(-2000)}`;

  try {
    // The conference page sees the query-rooms peer join, and its chat (cross-dialect).
    await page.waitForSelector(tileSelector('py'));
    await page.waitForSelector('#member-list li[data-member="py"]');
    await page.waitForFunction(() => [...document.querySelectorAll('#chat-log li[data-chat-from="py"] .chat-text')]
      .some((el) => el.textContent === 'hi from python'));

    // The data channel opens and carries aiortc's message to the page ...
    await page.waitForSelector(`${tileSelector('py')}[data-dc-state="open"]`, { timeout: 45000 });
    await page.waitForFunction(() => [...document.querySelectorAll('#dc-log li[data-dc-from="py"] .dc-text')]
      .some((el) => el.textContent === 'hello from aiortc'), null, { timeout: 30000 });

    // The selected candidate pair is on loopback (read while both ends are still there).
    const stats = await page.evaluate(() => globalThis.switchboardDemo.client.getPeerStats('py'));
    assert.equal(stats.dataChannelState, 'open');
    assert.match(stats.localAddress ?? '', /^127\./, `local candidate ${stats.localAddress}`);
    assert.match(stats.remoteAddress ?? '', /^127\./, `remote candidate ${stats.remoteAddress}`);
    await page.screenshot({ path: artifact('interop-web.png'), fullPage: true });

    // ... and the page's message to aiortc, which then exits 0.
    await page.fill('#dc-input', 'hello from chromium');
    await page.click('#dc-send');
    const [code] = await withTimeout(exited, 30000, 'the aiortc peer to finish');
    assert.equal(code, 0, diagnostics());
    if (process.env.E2E_VERBOSE) console.log(diagnostics());
  } catch (err) {
    err.message += `\n${diagnostics()}`;
    throw err;
  }

  assert.ok(events.some((e) => e.event === 'offer' && e.sender === 'web'), 'the conference offer reached query-rooms');
  assert.ok(events.some((e) => e.event === 'message' && e.data === 'hello from chromium'));
  const added = events.filter((e) => e.event === 'candidate-added');
  assert.ok(added.length > 0, 'trickled candidates crossed the dialects');
  for (const e of added) assert.match(e.address, /^127\./);

  // When the aiortc peer leaves, its tile goes.
  await page.waitForSelector(tileSelector('py'), { state: 'detached' });
  assert.deepEqual(realProblems(page), []);
});
