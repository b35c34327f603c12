// Media through the SFU across two cluster nodes (docs/scaling.md, "Pairing, stats and media
// across nodes"): two switchboard nodes WITH media on one redis-server of this file's own. Alice
// opens the demo's SFU mode (`/?mode=sfu`, an unmodified mediasoup-client) on node A and joins
// the room first, so the room's media is pinned to A; bob opens it on node B and joins the same
// room. B forwards bob's media requests to A, and bob's transports' candidates are A's UDP port
// (each node's SFU binds UDP on its own listen port number, and a port per further media
// worker; no --media-listen here). Both
// publish a fake camera and microphone; each decodes the other's video and receives its audio;
// chat from bob reaches alice. Then each node's /metrics shows where the media went: A's SFU
// holds both users' transports, producers and consumers, B's holds none.
//
// Decoding is read from getStats() on the pages' mediasoup transports (sfu.js `stats()`), polled
// once a second for at most 30 s, as in sfu.test.mjs. Screenshots (cluster-sfu-*.png) and both
// nodes' logs (cluster-sfu-node-*.log) go to test-artifacts/.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import {
  artifact, joinDemo, launchBrowser, openPage, realProblems, startNode, startRedis, tileSelector,
  uniqueRoom, waitFor, waitForFrames,
  pollSfu, pollUser,
} from './lib.mjs';

/** More than a second of fake-camera video (30 fps) decoded: a steady stream, not one frame. */
const MIN_FRAMES = 30;
/** More than a second of 48 kHz audio received. */
const MIN_SAMPLES = 48000;
/** How long the nodes' media gauges may take to settle: a bound, not a measurement. */
const METRICS_WAIT_MS = 30000;
// The nodes log where their media workers listen (`media (SFU) listening udp=…`, at info),
// which the test reads; everything else at warn, as in the other files.
process.env.RUST_LOG ??= 'warn,switchboard_server::media=info';

describe('SFU media across two nodes on one Redis', () => {
  let redis;
  let nodeA;
  let nodeB;
  let browser;
  let alice; // on node A, first in the room: the room's media lives on A
  let bob; // on node B: his media requests are forwarded to A
  const room = uniqueRoom('cluster-sfu');

  before(async () => {
    redis = await startRedis();
    nodeA = await startNode(redis, { nodeId: 'a1', lease: '3s' });
    nodeB = await startNode(redis, { nodeId: 'b2', lease: '3s' });
    browser = await launchBrowser();
  });

  after(async () => {
    // Every process this file started, by its pid, whatever failed before.
    const stops = [
      () => browser?.close(),
      () => nodeB?.stop(),
      () => nodeA?.stop(),
      () => redis?.stop(),
    ];
    for (const stop of stops) {
      try {
        await stop();
      } catch (err) {
        console.error(`cleanup: ${err.message}`);
      }
    }
    if (nodeA) writeFileSync(artifact('cluster-sfu-node-a.log'), nodeA.log());
    if (nodeB) writeFileSync(artifact('cluster-sfu-node-b.log'), nodeB.log());
  });

  test('a publisher on each node: each decodes the other through node A\'s SFU', async (t) => {
    alice = await openPage(browser, nodeA.page('/', { mode: 'sfu' }));
    await joinDemo(alice, { room, name: 'alice' });
    assert.equal(await alice.getAttribute('body', 'data-mode'), 'sfu');
    await pollSfu(alice, (s) => s.producers.video && s.producers.audio, 'alice producing video and audio');

    bob = await openPage(browser, nodeB.page('/', { mode: 'sfu' }));
    await joinDemo(bob, { room, name: 'bob' });
    assert.equal(await bob.getAttribute('body', 'data-mode'), 'sfu');

    // Each decodes the other's video and receives its audio, on connected transports.
    for (const [page, at, from] of [[bob, 'bob', 'alice'], [alice, 'alice', 'bob']]) {
      const stats = await pollSfu(page, (s) => s.recv === 'connected' && s.send === 'connected'
        && s.framesDecoded > MIN_FRAMES && s.totalSamplesReceived > MIN_SAMPLES,
      `${from}'s media decoded at ${at} (video frames > ${MIN_FRAMES}, audio samples > ${MIN_SAMPLES}) on connected transports`);
      assert.ok(stats.keyFramesDecoded >= 1, 'a keyframe reached the decoder');
      assert.equal(stats.consumers, 2, 'one consumer per kind of the other publisher');
      t.diagnostic(`at ${at}, from ${from}: ${summary(stats)}`);
      await page.waitForSelector(`${tileSelector(from)}[data-has-video="true"]`);
      assert.ok(await waitForFrames(page, from) > 0, 'the tile shows decoded frames');
    }

    // Both pages' receive transports reach one of node A's UDP ports (a port per media worker,
    // the first A's listen port number, as each node logs at startup), none of B's: bob's
    // page talks media to A directly, signaling to B.
    const [portsA, portsB] = [mediaAddresses(nodeA), mediaAddresses(nodeB)];
    assert.ok(portsA.includes(`127.0.0.1:${nodeA.port}`), `A's first media port is its listen port: ${portsA}`);
    for (const [page, from] of [[bob, 'alice'], [alice, 'bob']]) {
      const user = await pollUser(page, from, (s) => s.remoteAddress !== null, `${from}'s selected candidate pair`);
      assert.ok(portsA.includes(user.remoteAddress) && !portsB.includes(user.remoteAddress),
        `the media of ${from} comes from node A's SFU: ${user.remoteAddress} (A ${portsA}, B ${portsB})`);
    }

    // Chat goes through the conference dialect, from node B to node A through Redis.
    await sendChat(bob, 'hello from node b through the sfu');
    await waitForLogText(alice, '#chat-log li[data-chat-from="bob"] .chat-text', 'hello from node b through the sfu');

    assert.equal(await alice.isHidden('#sfu-error'), true, await alice.textContent('#sfu-error'));
    assert.equal(await bob.isHidden('#sfu-error'), true, await bob.textContent('#sfu-error'));
    await alice.screenshot({ path: artifact('cluster-sfu-alice.png'), fullPage: true });
    await bob.screenshot({ path: artifact('cluster-sfu-bob.png'), fullPage: true });
    assert.deepEqual(realProblems(alice), []);
    assert.deepEqual(realProblems(bob), []);
  });

  test("node A's /metrics holds both users' media, node B's none", async (t) => {
    // Each page: a send and a receive transport, two producers (video, audio), and two
    // consumers (the other's video and audio). All on A, the room's media node.
    const want = {
      a: { transports: 4, producers: 4, consumers: 4 },
      b: { transports: 0, producers: 0, consumers: 0 },
    };
    let seen;
    try {
      await waitFor(async () => {
        seen = { a: await mediaGauges(nodeA), b: await mediaGauges(nodeB) };
        return JSON.stringify(seen) === JSON.stringify(want);
      }, { timeout: METRICS_WAIT_MS, interval: 500, what: 'the nodes\' media gauges' });
    } catch (err) {
      assert.fail(`${err.message}: want ${JSON.stringify(want)}, last seen ${JSON.stringify(seen)}`);
    }
    assert.deepEqual(seen, want);

    // A forwarded RTP to consumers; B's SFU, whose socket is bound, received no media.
    const forwardedA = await metric(nodeA, 'switchboard_media_rtp_forwarded_total');
    const packetsInB = await metric(nodeB, 'switchboard_media_packets_in_total');
    assert.ok(forwardedA > 0, `node A forwarded RTP (${forwardedA})`);
    assert.equal(packetsInB, 0, 'no datagram reached node B\'s SFU');
    t.diagnostic(`node A: ${JSON.stringify(seen.a)}, ${forwardedA} RTP packets forwarded; node B: ${JSON.stringify(seen.b)}`);
  });
});

/** The three media gauges of one node's /metrics. */
async function mediaGauges(node) {
  return {
    transports: await metric(node, 'switchboard_media_transports'),
    producers: await metric(node, 'switchboard_media_producers'),
    consumers: await metric(node, 'switchboard_media_consumers'),
  };
}

/** One unlabelled series of a node's /metrics; fails if the node does not expose it. */
async function metric(node, series) {
  const text = await (await fetch(`${node.origin}/metrics`)).text();
  const line = text.split('\n').find((l) => !l.startsWith('#') && l.startsWith(`${series} `));
  assert.ok(line, `${series} in ${node.origin}/metrics`);
  return Number(line.slice(series.length + 1).trim());
}

/** The figures worth a line in the test log (never a pass/fail bound: they depend on load). */
function summary(stats) {
  const kbps = stats.availableOutgoingBitrate == null ? '-' : Math.round(stats.availableOutgoingBitrate / 1000);
  return `transports send=${stats.send} recv=${stats.recv}; received ${stats.framesDecoded} video frames `
    + `(${stats.keyFramesDecoded} key, up to ${stats.frameWidth} px wide), ${stats.totalSamplesReceived} audio samples; `
    + `its own camera: ${stats.framesEncoded} frames encoded, up to ${stats.sentFrameWidth} px wide, send estimate ${kbps} kbps`;
}

async function sendChat(page, text) {
  await page.fill('#chat-input', text);
  await page.press('#chat-input', 'Enter');
}

/** Waits until one element matching `selector` has exactly `text`. */
async function waitForLogText(page, selector, text) {
  await page.waitForFunction(
    ({ sel, want }) => [...document.querySelectorAll(sel)].some((el) => el.textContent === want),
    { sel: selector, want: text },
    { timeout: 20000 },
  );
}

/** The UDP addresses of a node's media workers, from its startup log line. */
function mediaAddresses(node) {
  const found = node.log().match(/media \(SFU\) listening udp=(\S+)/);
  assert.ok(found, `no media listening line in the node's log: ${node.log().slice(0, 2000)}`);
  return found[1].split(',');
}
