// Resume: two demo pages in a mesh call; alice's signaling socket runs through a small TCP
// proxy in this test, which resets it (no close frame, as when a phone changes networks) and
// refuses new connections for a few seconds. Alice's page shows that it is reconnecting and
// keeps the call: her RTCPeerConnection to bob is the same object, with the same local
// description (no renegotiation), and bob's video keeps decoding. Bob hears no leave. Chat
// bob sends during the gap reaches alice, and chat alice types during the gap reaches bob.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  chatTexts, joinDemo, launchBrowser, markCall, markedCall, moreFrames, openPage, realProblems,
  sendChat, startProxy, startServer, tileSelector, uniqueRoom, waitFor, waitForFrames,
} from './lib.mjs';

let server;
let browser;
let proxy;

before(async () => {
  server = await startServer(['--resume-window', '30s']);
  proxy = await startProxy(server.port);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await proxy?.close();
  await server?.stop();
});

test('a cut signaling socket resumes: the call, its video and the chat go on', async () => {
  const room = uniqueRoom('resume');
  const alice = await openPage(browser, server.page('/', { server: proxy.origin }));
  const bob = await openPage(browser, server.page('/'));
  await joinDemo(alice, { room, name: 'alice' });
  await joinDemo(bob, { room, name: 'bob' });
  await alice.waitForSelector(`${tileSelector('bob')}[data-dc-state="open"]`);
  await bob.waitForSelector(`${tileSelector('alice')}[data-dc-state="open"]`);
  assert.ok(await waitForFrames(alice, 'bob') > 0);
  assert.equal(await alice.evaluate(() => globalThis.switchboardDemo.client.resume), true);

  // Mark what must survive: alice's link to bob and her tile for him; count bob's leaves.
  const before = await markCall(alice, 'bob', bob);
  const acceptedBefore = proxy.state.accepted;

  // The cut: a TCP reset, and nothing gets through for a few seconds.
  proxy.state.down = true;
  proxy.cut();
  await alice.waitForSelector('#connection-status[data-state="reconnecting"][data-resuming="true"]');
  await sendChat(bob, 'said during the gap');
  await sendChat(alice, 'typed during the gap');
  await new Promise((resolve) => { setTimeout(resolve, 3000); });
  assert.equal(await alice.locator(tileSelector('bob')).count(), 1, 'the tile stays while reconnecting');
  proxy.state.down = false;

  await alice.waitForSelector('#connection-status[data-state="joined"]', { timeout: 60000 });
  assert.ok(proxy.state.accepted > acceptedBefore, 'alice came back on a new socket');
  await waitFor(async () => (await chatTexts(alice, 'bob')).includes('said during the gap'), { what: 'bob\'s chat at alice' });
  await waitFor(async () => (await chatTexts(bob, 'alice')).includes('typed during the gap'), { what: 'alice\'s chat at bob' });
  assert.deepEqual((await chatTexts(alice, 'bob')).filter((t) => t === 'said during the gap'), ['said during the gap']);
  assert.deepEqual((await chatTexts(bob, 'alice')).filter((t) => t === 'typed during the gap'), ['typed during the gap']);

  // Same peer connection, same tile, no new offer; video still decoding.
  const after = await markedCall(alice, 'bob');
  assert.equal(after.pc, 'same', 'the RTCPeerConnection survived');
  assert.equal(after.tile, 'same', 'the tile was never rebuilt');
  assert.equal(after.sdp, before, 'no renegotiation');
  assert.equal(after.state, 'connected');
  await moreFrames(alice, 'bob');
  assert.deepEqual(await bob.evaluate(() => globalThis.leaves), [], 'bob heard no leave and no join');

  // The data channel, peer to peer, never depended on the socket.
  await alice.fill('#dc-input', 'after the resume');
  await alice.click('#dc-send');
  await bob.waitForFunction(() => [...document.querySelectorAll('#dc-log li[data-dc-from="alice"] .dc-text')]
    .some((el) => el.textContent === 'after the resume'));

  const metrics = await (await fetch(`${server.origin}/metrics`)).text();
  assert.match(metrics, /switchboard_resumes_total\{result="resumed"\} 1/);
  assert.deepEqual(realProblems(alice), []);
  assert.deepEqual(realProblems(bob), []);
});
