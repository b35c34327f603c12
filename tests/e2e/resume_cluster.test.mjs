// Resume across nodes: two nodes on one Redis (docs/scaling.md, "Resume across nodes").
// Alice's page signals through a small TCP proxy in this test to node A, bob's page straight
// to node B. The proxy resets alice's socket (no close frame) and from then on sends new
// connections to node B, which does not have her session: node B carries her socket to
// node A through Redis. Her page keeps the call (the same RTCPeerConnection, no renegotiation, video decoding),
// chat sent during the gap arrives once each way, and bob hears no leave. Then the node that
// holds a session is killed (SIGKILL): the page takes its session over on the other node
// (docs/scaling.md, "Durable sessions"), and the call and the chat go on all the same.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  chatTexts, joinDemo, launchBrowser, markCall, markedCall, moreFrames, openPage, realProblems,
  sendChat, startNode, startProxy, startRedis, tileSelector, uniqueRoom, waitFor, waitForFrames,
} from './lib.mjs';

let redis;
let nodeA;
let nodeB;
let browser;
let proxy;
let proxyKill;

before(async () => {
  redis = await startRedis();
  nodeA = await startNode(redis, { nodeId: 'a1', lease: '3s', extraArgs: ['--no-media', '--resume-window', '30s'] });
  nodeB = await startNode(redis, { nodeId: 'b2', lease: '3s', extraArgs: ['--no-media', '--resume-window', '30s'] });
  proxy = await startProxy(nodeA.port);
  browser = await launchBrowser();
});

after(async () => {
  for (const stop of [() => browser?.close(), () => proxy?.close(), () => proxyKill?.close(), () => nodeB?.stop(),
    () => nodeA?.stop(), () => redis?.stop()]) {
    try {
      await stop();
    } catch {
      // keep stopping the rest
    }
  }
});

test('a cut signaling socket resumes through another node: the call and the chat go on', async () => {
  const room = uniqueRoom('resume-cluster');
  const alice = await openPage(browser, nodeA.page('/', { server: proxy.origin }));
  const bob = await openPage(browser, nodeB.page('/'));
  await joinDemo(alice, { room, name: 'alice' });
  await joinDemo(bob, { room, name: 'bob' });
  await alice.waitForSelector(`${tileSelector('bob')}[data-dc-state="open"]`);
  await bob.waitForSelector(`${tileSelector('alice')}[data-dc-state="open"]`);
  assert.ok(await waitForFrames(alice, 'bob') > 0);

  // Mark what must survive: alice's link to bob and her tile for him; count bob's leaves.
  const before = await markCall(alice, 'bob', bob);

  // The cut; from now on the "load balancer" sends alice to node B.
  proxy.state.down = true;
  proxy.cut();
  proxy.state.port = nodeB.port;
  await alice.waitForSelector('#connection-status[data-state="reconnecting"][data-resuming="true"]');
  await sendChat(bob, 'said during the gap');
  await sendChat(alice, 'typed during the gap');
  proxy.state.down = false;

  await alice.waitForSelector('#connection-status[data-state="joined"]', { timeout: 60000 });
  // Live, both ways, through the tunnel.
  await chatCarriedOn(alice, bob, { bob: 'said during the gap', alice: 'typed during the gap' },
    { bob: 'after the resume', alice: 'back through B' });
  await callSurvived(alice, bob, before);

  const metricsB = await (await fetch(`${nodeB.origin}/metrics`)).text();
  assert.match(metricsB, /switchboard_resumes_total\{result="carried"\} 1/);
  const metricsA = await (await fetch(`${nodeA.origin}/metrics`)).text();
  assert.match(metricsA, /switchboard_resumes_total\{result="resumed"\} 1/);
  assert.deepEqual(realProblems(alice), []);
  assert.deepEqual(realProblems(bob), []);
  // Their sessions live on node A, which the next test kills: closed here, they are not
  // taken over there.
  await alice.close();
  await bob.close();
});

test('the node that holds a session is killed: the page takes it over on another node', async () => {
  const room = uniqueRoom('resume-kill');
  proxyKill = await startProxy(nodeA.port);
  const alice = await openPage(browser, nodeB.page('/', { server: proxyKill.origin }));
  const bob = await openPage(browser, nodeB.page('/'));
  await joinDemo(alice, { room, name: 'alice' });
  await joinDemo(bob, { room, name: 'bob' });
  await alice.waitForSelector(`${tileSelector('bob')}[data-dc-state="open"]`);
  await bob.waitForSelector(`${tileSelector('alice')}[data-dc-state="open"]`);
  assert.ok(await waitForFrames(alice, 'bob') > 0);
  const before = await markCall(alice, 'bob', bob);

  // Node A, which holds alice's session, dies without a word; the "load balancer" sends her
  // to node B. Bob's chat meanwhile is kept for her in Redis, hers waits in her page.
  process.kill(nodeA.pid, 'SIGKILL');
  proxyKill.state.port = nodeB.port;
  await alice.waitForSelector('#connection-status[data-state="reconnecting"][data-resuming="true"]');
  await sendChat(bob, 'said while A was dead');
  await sendChat(alice, 'typed while A was dead');

  await alice.waitForSelector('#connection-status[data-state="joined"]', { timeout: 60000 });
  await chatCarriedOn(alice, bob, { bob: 'said while A was dead', alice: 'typed while A was dead' },
    { bob: 'after the takeover', alice: 'on B now' });
  await callSurvived(alice, bob, before);
  const metricsB = await (await fetch(`${nodeB.origin}/metrics`)).text();
  assert.match(metricsB, /switchboard_resumes_total\{result="taken_over"\} 1/);
  assert.deepEqual(realProblems(alice), []);
  assert.deepEqual(realProblems(bob), []);
});

/**
 * After alice's resume: what each side chatted during the gap (`gap.bob`, `gap.alice`)
 * arrives, chat goes on live both ways (`live`), and every line arrives exactly once.
 */
async function chatCarriedOn(alice, bob, gap, live) {
  const lines = (texts) => [[alice, 'bob', texts.bob], [bob, 'alice', texts.alice]];
  const arrive = async (texts) => {
    for (const [page, from, text] of lines(texts)) {
      await waitFor(async () => (await chatTexts(page, from)).includes(text), { what: `${from}'s chat "${text}"` });
    }
  };
  await arrive(gap);
  await sendChat(bob, live.bob);
  await sendChat(alice, live.alice);
  await arrive(live);
  for (const [page, from, text] of [...lines(gap), ...lines(live)]) {
    assert.deepEqual((await chatTexts(page, from)).filter((t) => t === text), [text], `${text}: once`);
  }
}

/**
 * Alice's call with bob survived the resume: the same RTCPeerConnection and tile, the SDP it
 * had `before`, frames still arriving, and bob heard no leave and no join.
 */
async function callSurvived(alice, bob, before) {
  const after = await markedCall(alice, 'bob');
  assert.equal(after.pc, 'same', 'the RTCPeerConnection survived');
  assert.equal(after.tile, 'same', 'the tile was never rebuilt');
  assert.equal(after.sdp, before, 'no renegotiation');
  await moreFrames(alice, 'bob');
  assert.deepEqual(await bob.evaluate(() => globalThis.leaves), [], 'bob heard no leave and no join');
}
