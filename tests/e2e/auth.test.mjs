// Access tokens in the browser (--auth required): the demo, the protocol tester and the
// dashboard each take a token from their page URL (?access_token=), minted by
// `switchboard token`; the server's admin routes refuse the same requests without one.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  BINARY, joinDemo, launchBrowser, openPage, realProblems, startServer, uniqueRoom, waitFor,
  waitForFrames,
} from './lib.mjs';

describe('tokens in the browser', () => {
  let server;
  let browser;
  let dir;
  const room = uniqueRoom('auth');
  const mint = (...args) => execFileSync(BINARY, [
    'token', '--secret-file', path.join(dir, 'secret'), '--kid', 'k1', ...args,
  ]).toString().trim();

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'switchboard-auth-'));
    writeFileSync(path.join(dir, 'secret'), 'a secret the app server shares\n');
    server = await startServer([
      '--auth', 'required', '--auth-secret-file', `k1=${path.join(dir, 'secret')}`,
    ]);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('two demo pages with their own tokens have a call', async () => {
    const grant = (name) => mint('--room', room, '--name', name, '--publish', '--subscribe');
    const alice = await openPage(browser, server.page('/', { access_token: grant('alice') }));
    const bob = await openPage(browser, server.page('/', { access_token: grant('bob') }));
    await joinDemo(alice, { room, name: 'alice' });
    await joinDemo(bob, { room, name: 'bob' });
    await waitForFrames(alice, 'bob');
    await waitForFrames(bob, 'alice');
    assert.deepEqual(realProblems(alice), []);
  });

  test('the tester connects with the token it is given', async () => {
    const token = mint('--room', 'tester-room', '--name', 'tess', '--dialect', 'conference');
    const tester = await openPage(browser, server.page('/test.html', { access_token: token }));
    await tester.fill('#room-input', 'tester-room');
    await tester.fill('#name-input', 'tess');
    assert.match(await tester.inputValue('#url-input'), /access_token=/);
    await tester.click('#connect-button');
    await tester.waitForSelector('#socket-status[data-state="open"]');
    await tester.selectOption('#template-select', 'join-room');
    await tester.click('#send-button');
    await waitFor(async () => {
      const frames = await tester.$$eval('#frame-log li[data-direction="in"] .frame-text',
        (els) => els.map((el) => JSON.parse(el.dataset.raw)));
      return frames.some((f) => f.type === 'joined' && f.data.users.includes('tess'));
    }, { what: 'joined in the tester' });
  });

  test('the dashboard needs an admin token, and shows the stats with one', async () => {
    for (const route of ['/dashboard', '/api/stats', '/metrics']) {
      assert.equal((await fetch(`${server.origin}${route}`)).status, 401, route);
    }
    const user = mint('--room', room, '--name', 'alice');
    assert.equal((await fetch(server.page('/dashboard', { access_token: user }))).status, 403);

    const admin = mint('--sub', 'ops', '--admin');
    const dashboard = await openPage(browser, server.page('/dashboard', { access_token: admin }));
    await dashboard.waitForFunction(() => Number(document.getElementById('refresh-status').dataset.updates ?? 0) >= 2);
    const shown = await dashboard.evaluate(() => Number(document.getElementById('total-connections').dataset.value));
    assert.ok(shown >= 2, `the dashboard shows the call's connections (${shown})`);
    assert.deepEqual(realProblems(dashboard), []);
  });
});
