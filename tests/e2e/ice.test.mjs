// ICE servers: with --ice-server, `joined` carries them and the client's peer connections use
// them. The STUN/TURN addresses point at a closed loopback port, so only host candidates can
// work, and the call must connect all the same.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  joinDemo, launchBrowser, openPage, realProblems, startServer, tileSelector, uniqueRoom,
} from './lib.mjs';

const STUN = 'stun:127.0.0.1:3478';
const TURN = 'turn:127.0.0.1:3478?transport=udp';

let server;
let browser;

before(async () => {
  server = await startServer(['--ice-server', STUN, '--ice-server', `${TURN}|user|secret`]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('joined carries --ice-server and peer connections use it', async () => {
  const room = uniqueRoom('ice');
  const alice = await openPage(browser, server.page('/'));
  const bob = await openPage(browser, server.page('/'));
  await joinDemo(alice, { room, name: 'alice', media: false });
  await joinDemo(bob, { room, name: 'bob', media: false });

  const expected = [{ urls: [STUN] }, { urls: [TURN], username: 'user', credential: 'secret' }];
  const seen = await alice.evaluate(() => {
    const { client } = globalThis.switchboardDemo;
    return { announced: client.iceServers, used: client.peerConnection('bob')?.getConfiguration().iceServers };
  });
  assert.deepEqual(seen.announced, expected);
  // getConfiguration() fills in empty usernames and credentials: compare without them.
  const normalized = seen.used.map((s) => Object.fromEntries(Object.entries({ ...s, urls: [s.urls].flat() })
    .filter(([, value]) => value !== '')));
  assert.deepEqual(normalized, expected);

  await alice.waitForSelector(`${tileSelector('bob')}[data-dc-state="open"]`, { timeout: 45000 });
  await bob.waitForSelector(`${tileSelector('alice')}[data-dc-state="open"]`, { timeout: 45000 });
  assert.deepEqual(realProblems(alice), []);
  assert.deepEqual(realProblems(bob), []);
});
