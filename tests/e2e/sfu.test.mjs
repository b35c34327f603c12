// Media through switchboard's SFU, with an unmodified mediasoup-client in the demo's SFU mode
// (`/?mode=sfu`). Two Chromium pages with fake camera and microphone publish and consume each
// other through the server; a third page that joins later, without a camera, decodes them too;
// when the first publisher leaves, the others get producer-closed for its producers and its
// tile goes, while the rest of the call goes on; then the remaining publisher pauses and
// resumes its video (pause-producer), and the viewer its consumer (pause-consumer), each seen
// in the decoded frame count holding still, then growing. A publisher asked for H.264
// (`?codec=h264`) is decoded as H.264 by a viewer. Also, over a raw WebSocket: consume of an
// unknown producer is answered by error producer_not_found, with the request's rid.
//
// Decoding is read from getStats() on the pages' mediasoup transports (sfu.js `stats()`),
// polled once a second for at most 30 s. Screenshots (sfu-*.png) and the server's log
// (sfu-server.log) go to test-artifacts/.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import {
  artifact, joinDemo, launchBrowser, openPage, realProblems, startServer, tileSelector, uniqueRoom,
  waitForFrames,
  pollSfu, pollUser, sfuStats, sleep,
} from './lib.mjs';

/** More than a second of fake-camera video (30 fps) decoded: a steady stream, not one frame. */
const MIN_FRAMES = 30;
/** More than a second of 48 kHz audio received. */
const MIN_SAMPLES = 48000;

describe('media through the SFU', () => {
  let server;
  let browser;
  let alice;
  let bob;
  let carol;
  const room = uniqueRoom('sfu');

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    if (server) writeFileSync(artifact('sfu-server.log'), server.log());
  });

  test('two publishers receive each other\'s camera and microphone through the server', async (t) => {
    alice = await openPage(browser, server.page('/', { mode: 'sfu' }));
    await joinDemo(alice, { room, name: 'alice' });
    assert.equal(await alice.getAttribute('body', 'data-mode'), 'sfu');
    assert.ok(await alice.isChecked('#mode-sfu'), 'the form shows the mode ?mode=sfu chose');
    await pollSfu(alice, (s) => s.producers.video && s.producers.audio, 'alice producing video and audio');

    bob = await openPage(browser, server.page('/', { mode: 'sfu' }));
    await joinDemo(bob, { room, name: 'bob' });

    // Each decodes the other's video and plays its audio, on connected transports.
    for (const [page, from] of [[bob, 'alice'], [alice, 'bob']]) {
      const stats = await pollSfu(page, (s) => s.recv === 'connected' && s.send === 'connected'
        && s.framesDecoded > MIN_FRAMES && s.totalSamplesReceived > MIN_SAMPLES,
      `${from}'s media decoded (video frames > ${MIN_FRAMES}, audio samples > ${MIN_SAMPLES}) on connected transports`);
      assert.ok(stats.keyFramesDecoded >= 1, 'a keyframe reached the decoder');
      t.diagnostic(`at ${from === 'alice' ? 'bob' : 'alice'}, from ${from}: ${summary(stats)}`);
      assert.equal(stats.consumers, 2, 'one consumer per kind of the other publisher');
      await page.waitForSelector(`${tileSelector(from)}[data-has-video="true"]`);
      assert.ok(await waitForFrames(page, from) > 0, 'the tile shows decoded frames');
    }

    // Chat still goes through the conference dialect.
    await sendChat(bob, 'hello through the sfu');
    await waitForLogText(alice, '#chat-log li[data-chat-from="bob"] .chat-text', 'hello through the sfu');

    assert.equal(await alice.isHidden('#sfu-error'), true, await alice.textContent('#sfu-error'));
    assert.equal(await bob.isHidden('#sfu-error'), true, await bob.textContent('#sfu-error'));
    await alice.screenshot({ path: artifact('sfu-alice.png'), fullPage: true });
    await bob.screenshot({ path: artifact('sfu-bob.png'), fullPage: true });
    assert.deepEqual(realProblems(alice), []);
    assert.deepEqual(realProblems(bob), []);
  });

  test('a page that joins later, without a camera, decodes both publishers', async (t) => {
    carol = await openPage(browser, server.page('/', { mode: 'sfu' }));
    await joinDemo(carol, { room, name: 'carol', media: false });
    const stats = await pollSfu(carol, (s) => s.recv === 'connected' && s.consumers === 4
      && s.framesDecoded > 2 * MIN_FRAMES && s.totalSamplesReceived > MIN_SAMPLES,
    `alice's and bob's media decoded by the late joiner (video frames > ${2 * MIN_FRAMES})`);
    assert.equal(stats.send, null, 'nothing to send, so no send transport');
    t.diagnostic(`at carol, from alice and bob: ${summary(stats)}`);
    for (const from of ['alice', 'bob']) {
      const frames = await pollUser(carol, from, (s) => s.framesDecoded > MIN_FRAMES, `${from}'s video at carol`);
      assert.ok(frames.framesDecoded > MIN_FRAMES);
      await carol.waitForSelector(`${tileSelector(from)}[data-has-video="true"]`);
    }
    await carol.screenshot({ path: artifact('sfu-carol.png'), fullPage: true });
    assert.deepEqual(realProblems(carol), []);
  });

  test('the publisher leaves: the others get producer-closed and drop its tile', async (t) => {
    const aliceProducers = Object.values((await sfuStats(alice)).producers).sort();
    assert.equal(aliceProducers.length, 2);
    const consumersOf = async (page) => page.evaluate(() => [...globalThis.switchboardDemo.sfu.consumers]
      .map(([id, entry]) => ({ id, producerId: entry.producerId, user: entry.user })));
    const before = { bob: await consumersOf(bob), carol: await consumersOf(carol) };

    await alice.click('#leave-button');
    await alice.waitForSelector('#connection-status[data-state="open"]');
    const left = await sfuStats(alice);
    assert.equal(left.state, 'idle');
    assert.equal(left.send, null);

    for (const [name, page] of [['bob', bob], ['carol', carol]]) {
      const stats = await pollSfu(page, (s) => aliceProducers.every((id) => s.producerClosed.some((c) => c.producerId === id)),
        `producer-closed for both of alice's producers at ${name}`);
      // Each notification names the consumer this page had for that producer.
      for (const producerId of aliceProducers) {
        const consumer = before[name].find((c) => c.producerId === producerId);
        assert.ok(consumer, `${name} consumed ${producerId}`);
        const seen = stats.producerClosed.find((c) => c.producerId === producerId);
        assert.equal(seen.consumerId, consumer.id, `producer-closed at ${name} names its consumer`);
      }
      t.diagnostic(`${name} saw producer-closed ${JSON.stringify(stats.producerClosed)}`);
      await page.waitForSelector(tileSelector('alice'), { state: 'detached' });
      const remaining = await consumersOf(page);
      assert.ok(remaining.every((c) => c.user !== 'alice'), `${name} keeps no consumer of alice`);
    }

    // The rest of the call goes on: carol still decodes bob, bob still sends.
    const bobAtCarol = (await pollUser(carol, 'bob', () => true, 'bob at carol')).framesDecoded;
    await pollUser(carol, 'bob', (s) => s.framesDecoded > bobAtCarol + MIN_FRAMES, 'bob\'s video still arriving at carol');
    assert.equal(await carol.locator(tileSelector('bob')).count(), 1);

    await bob.screenshot({ path: artifact('sfu-bob-after-leave.png'), fullPage: true });
    await carol.screenshot({ path: artifact('sfu-carol-after-leave.png'), fullPage: true });
    for (const page of [alice, bob, carol]) assert.deepEqual(realProblems(page), []);
  });

  test('pausing and resuming, the publisher\'s producer and the viewer\'s consumer', async (t) => {
    const videoAtCarol = async () => (await pollUser(carol, 'bob', () => true, 'bob at carol')).framesDecoded;
    // Frames in flight when a pause is answered are decoded within a second; after that the
    // count holds still for as long as the pause lasts.
    const assertHolds = async (what) => {
      await sleep(1000);
      const held = await videoAtCarol();
      await sleep(2000);
      assert.equal(await videoAtCarol(), held, `no video decoded while ${what}`);
      return held;
    };
    const assertFlows = async (from, what) => {
      const stats = await pollUser(carol, 'bob', (s) => s.framesDecoded > from + MIN_FRAMES, what);
      t.diagnostic(`${what}: ${stats.framesDecoded - from} frames`);
    };
    await assertFlows(await videoAtCarol(), 'bob\'s video flowing at carol');

    // The publisher pauses: the server stops forwarding, and carol's consumer is told.
    assert.equal(await bob.evaluate(() => globalThis.switchboardDemo.sfu.setProducerPaused('video', true)), true);
    const told = await pollSfu(carol, (s) => s.pausedConsumers.length === 1, 'carol\'s consumer of bob\'s video paused');
    const videoConsumer = told.pausedConsumers[0];
    let held = await assertHolds('bob\'s video producer is paused');
    assert.equal(await bob.evaluate(() => globalThis.switchboardDemo.sfu.setProducerPaused('video', false)), true);
    await pollSfu(carol, (s) => s.pausedConsumers.length === 0, 'carol\'s consumer resumed');
    await assertFlows(held, 'bob\'s video decoded again after resume-producer');

    // The viewer pauses its own consumer (a hidden tile), then resumes it.
    const paused = await carol.evaluate((id) => globalThis.switchboardDemo.sfu.setConsumerPaused(id, true), videoConsumer);
    assert.equal(paused, true);
    held = await assertHolds('carol\'s consumer is paused');
    await carol.evaluate((id) => globalThis.switchboardDemo.sfu.setConsumerPaused(id, false), videoConsumer);
    await assertFlows(held, 'bob\'s video decoded again after resume-consumer');

    for (const page of [bob, carol]) {
      assert.equal(await page.isHidden('#sfu-error'), true, await page.textContent('#sfu-error'));
      assert.deepEqual(realProblems(page), []);
    }
  });

  test('a publisher sending H.264 (?codec=h264) is decoded as H.264 by a viewer', async (t) => {
    const h264Room = uniqueRoom('sfu-h264');
    const dave = await openPage(browser, server.page('/', { mode: 'sfu', codec: 'h264' }));
    await joinDemo(dave, { room: h264Room, name: 'dave' });
    const sent = await pollSfu(dave, (s) => s.producers.video && s.sentVideoCodecs.length > 0,
      'dave producing video');
    assert.deepEqual(sent.sentVideoCodecs, ['video/H264']);
    const erin = await openPage(browser, server.page('/', { mode: 'sfu' }));
    await joinDemo(erin, { room: h264Room, name: 'erin', media: false });
    const stats = await pollSfu(erin, (s) => s.recv === 'connected' && s.framesDecoded > MIN_FRAMES,
      `dave's H.264 video decoded by erin (frames > ${MIN_FRAMES})`);
    t.diagnostic(`at erin, from dave: ${summary(stats)}`);
    assert.deepEqual(stats.receivedVideoCodecs, ['video/H264']);
    assert.equal(await erin.isHidden('#sfu-error'), true, await erin.textContent('#sfu-error'));
    assert.deepEqual(realProblems(dave), []);
    assert.deepEqual(realProblems(erin), []);
    await dave.context().close();
    await erin.context().close();
  });

  test('consume of an unknown producer is answered by producer_not_found, with the rid', async () => {
    // A raw conference socket, opened by a page of the server's origin (Node 20 has no
    // WebSocket of its own). Every wait inside is bounded.
    const page = await openPage(browser, server.page('/test.html'));
    const frames = await page.evaluate(async ({ url, roomId }) => {
      const socket = new WebSocket(url);
      const inbox = [];
      let wake = () => {};
      socket.addEventListener('message', (event) => {
        inbox.push(JSON.parse(event.data));
        wake();
      });
      await new Promise((resolve, reject) => {
        socket.addEventListener('open', resolve);
        socket.addEventListener('error', () => reject(new Error('the socket did not open')));
      });
      const reply = async (rid) => {
        const deadline = Date.now() + 10000;
        for (;;) {
          const found = inbox.find((frame) => frame.rid === rid);
          if (found) return found;
          if (Date.now() > deadline) throw new Error(`no frame with rid ${JSON.stringify(rid)}: ${JSON.stringify(inbox)}`);
          await new Promise((resolve) => { wake = resolve; setTimeout(resolve, 200); });
        }
      };
      const ask = (type, data, rid) => {
        socket.send(JSON.stringify({ type, data, rid }));
        return reply(rid);
      };
      const joined = await ask('join-room', { roomId, username: 'probe' }, 1);
      const created = await ask('create-transport', { direction: 'recv' }, 2);
      const error = await ask('consume', {
        transportId: created.data?.id,
        producerId: 'no-such-producer',
        rtpCapabilities: joined.data?.routerRtpCapabilities,
      }, 'consume-3');
      // The connection stays usable after the refusal.
      const capabilities = await ask('get-router-rtp-capabilities', {}, 4);
      socket.close();
      return { joined, created, error, capabilities };
    }, { url: `${server.ws}/conference`, roomId: uniqueRoom('sfu-probe') });

    assert.equal(frames.joined.type, 'joined', JSON.stringify(frames.joined));
    assert.equal(typeof frames.joined.data.routerRtpCapabilities, 'object');
    assert.equal(frames.created.type, 'webRtcTransportCreated', JSON.stringify(frames.created));
    assert.equal(frames.error.type, 'error', JSON.stringify(frames.error));
    assert.equal(frames.error.rid, 'consume-3');
    assert.equal(frames.error.data.code, 'producer_not_found', JSON.stringify(frames.error));
    assert.equal(typeof frames.error.data.message, 'string');
    assert.equal(frames.capabilities.type, 'routerRtpCapabilities', JSON.stringify(frames.capabilities));
    assert.ok(Array.isArray(frames.capabilities.data.rtpCapabilities?.codecs));
    assert.deepEqual(realProblems(page), []);
    await page.context().close();
  });
});

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
