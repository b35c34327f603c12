// Simulcast through switchboard's SFU, in the demo's SFU mode. A publisher with `?simulcast=1`
// sends its fake camera at 1280×720 in three layers (r0..r2: a quarter, a half, the whole);
// two viewers without cameras each choose a layer with the tile's picker, as a user would:
// one the lowest, one the highest. Each decodes the layer it chose (the low viewer's frames
// narrower than the high viewer's) and keeps decoding; then the low viewer picks the highest
// layer, hears consumer-layers-changed for it, and its decoded frames grow to that width.
//
// Sizes and layers are read from getStats() on the pages' mediasoup consumers and from the
// server's notices (sfu.js `stats().remoteVideo`), polled once a second for at most 30 s.
// Screenshots (simulcast-*.png) and the server's log (simulcast-server.log) go to
// test-artifacts/.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import {
  artifact, joinDemo, launchBrowser, openPage, realProblems, startServer, tileSelector, uniqueRoom,
  pollSfu,
} from './lib.mjs';

/** More than a second of fake-camera video (30 fps) decoded: a steady stream, not one frame. */
const MIN_FRAMES = 30;
/** The publisher's layers, lowest first, as mediasoup-client names them. */
const RIDS = ['r0', 'r1', 'r2'];
const LOWEST = 0;
const HIGHEST = RIDS.length - 1;

describe('simulcast through the SFU', () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    if (server) writeFileSync(artifact('simulcast-server.log'), server.log());
  });

  test('viewers pick a layer of a simulcast publisher, and switch up', async (t) => {
    const room = uniqueRoom('simulcast');
    const alice = await openPage(browser, server.page('/', { mode: 'sfu', simulcast: '1' }));
    assert.ok(await alice.isChecked('#simulcast-input'), 'the form shows the choice ?simulcast=1 made');
    await joinDemo(alice, { room, name: 'alice' });

    // Chrome encodes all three layers, each a different size (it would send fewer from a
    // smaller camera, or when short of bandwidth or CPU).
    const sending = await pollSfu(alice, (s) => s.producers.video
      && RIDS.every((rid) => s.sentVideoLayers.some((l) => l.rid === rid && l.framesEncoded > MIN_FRAMES)),
    `alice encoding the layers ${RIDS.join(', ')}`);
    t.diagnostic(`alice sends ${layersSent(sending)}`);
    const widths = RIDS.map((rid) => sending.sentVideoLayers.find((l) => l.rid === rid).frameWidth);
    assert.ok(widths[0] < widths[1] && widths[1] < widths[2], `the layers grow: ${widths.join(' < ')}`);

    const low = await openPage(browser, server.page('/', { mode: 'sfu' }));
    await joinDemo(low, { room, name: 'low', media: false });
    const high = await openPage(browser, server.page('/', { mode: 'sfu' }));
    await joinDemo(high, { room, name: 'high', media: false });

    // Each viewer's tile of alice offers her three layers; each picks one.
    for (const [page, layer] of [[low, LOWEST], [high, HIGHEST]]) {
      const tile = tileSelector('alice');
      await page.waitForSelector(`${tile}[data-layers="${RIDS.length}"] select.layer-select`);
      const options = await page.$$eval(`${tile} select.layer-select option`, (all) => all.map((o) => o.value));
      assert.deepEqual(options, RIDS.map((_, i) => String(i)), 'one option per layer');
      await page.selectOption(`${tile} select.layer-select`, String(layer));
      await page.waitForSelector(`${tile}[data-preferred-layer="${layer}"]`); // the server's reply
    }

    // Each decodes the layer it chose, and keeps decoding it.
    const atLow = await pollLayer(low, LOWEST, 'the lowest layer at low');
    const atHigh = await pollLayer(high, HIGHEST, 'the highest layer at high');
    t.diagnostic(`low decodes ${size(atLow)}, high decodes ${size(atHigh)}`);
    assert.ok(atLow.frameWidth < atHigh.frameWidth,
      `the lowest layer is narrower than the highest: ${atLow.frameWidth} < ${atHigh.frameWidth}`);
    const later = [];
    for (const [page, from, what] of [[low, atLow, 'low'], [high, atHigh, 'high']]) {
      const now = await pollAlice(page, (v) => v.framesDecoded > from.framesDecoded + MIN_FRAMES,
        `alice's video still decoded at ${what}`);
      assert.equal(now.spatialLayer, from.spatialLayer, `${what} stays on its layer`);
      later.push(now);
    }
    // Chrome may shrink every layer when short of CPU: the sizes are compared, never fixed.
    assert.ok(later[0].frameWidth < later[1].frameWidth,
      `still narrower at low than at high: ${later[0].frameWidth} < ${later[1].frameWidth}`);
    // The tiles say so too.
    for (const [page, layer] of [[low, LOWEST], [high, HIGHEST]]) {
      await page.waitForSelector(`${tileSelector('alice')}[data-spatial-layer="${layer}"][data-frame-width]`);
      const shown = await page.textContent(`${tileSelector('alice')} [data-stat="layer"]`);
      assert.match(shown, new RegExp(`\\(${layer + 1} of ${RIDS.length}\\)`), `the tile names layer ${layer}`);
    }
    await low.screenshot({ path: artifact('simulcast-low.png'), fullPage: true });
    await high.screenshot({ path: artifact('simulcast-high.png'), fullPage: true });

    // The low viewer switches up: the server says so, and the frames grow.
    await low.evaluate(() => {
      globalThis.layerChanges = [];
      globalThis.switchboardDemo.sfu.addEventListener('layers', ({ detail }) => {
        globalThis.layerChanges.push({ consumerId: detail.consumerId, spatialLayer: detail.spatialLayer });
      });
    });
    await low.selectOption(`${tileSelector('alice')} select.layer-select`, String(HIGHEST));
    await low.waitForSelector(`${tileSelector('alice')}[data-preferred-layer="${HIGHEST}"]`);
    const switched = await pollAlice(low, (v) => v.spatialLayer === HIGHEST && v.frameWidth > atLow.frameWidth,
      'the highest layer at low, after its switch');
    t.diagnostic(`after the switch, low decodes ${size(switched)}`);
    const changes = await low.evaluate(() => globalThis.layerChanges);
    assert.ok(changes.some((c) => c.consumerId === atLow.consumerId && c.spatialLayer === HIGHEST),
      `consumer-layers-changed to layer ${HIGHEST} for low's consumer: ${JSON.stringify(changes)}`);
    const flowing = await pollAlice(low, (v) => v.framesDecoded > switched.framesDecoded + MIN_FRAMES,
      'alice\'s video still decoded at low after its switch');
    assert.equal(flowing.spatialLayer, HIGHEST);
    await low.waitForSelector(`${tileSelector('alice')}[data-spatial-layer="${HIGHEST}"]`);
    await low.screenshot({ path: artifact('simulcast-low-switched.png'), fullPage: true });

    for (const page of [alice, low, high]) {
      assert.equal(await page.isHidden('#sfu-error'), true, await page.textContent('#sfu-error'));
      assert.deepEqual(realProblems(page), []);
    }
  });
});

/** What alice's encodings send, for the test log (never a bound: it depends on load). */
function layersSent(stats) {
  return stats.sentVideoLayers
    .map((l) => `${l.rid} ${l.frameWidth}×${l.frameHeight} (${l.framesEncoded} frames, limited by ${l.qualityLimitationReason})`)
    .join(', ');
}

function size(video) {
  return `layer ${video.spatialLayer}, ${video.frameWidth}×${video.frameHeight} (${video.framesDecoded} frames)`;
}

/** The same, for what a viewer decodes of alice's video (`stats().remoteVideo.alice`). */
/**
 * Alice's video at `page` once it is on `layer` and frames of that layer have been decoded:
 * the server's notice of a move can come before the decoder's first frame of the new layer,
 * so getStats' frame size trails it by the frames in flight.
 */
async function pollLayer(page, layer, what) {
  const moved = await pollAlice(page, (v) => v.spatialLayer === layer && v.frameWidth > 0, what);
  return pollAlice(page, (v) => v.spatialLayer === layer && v.framesDecoded > moved.framesDecoded + MIN_FRAMES,
    `${what}, decoded`);
}

async function pollAlice(page, check, what) {
  const stats = await pollSfu(page, (s) => s.remoteVideo.alice && check(s.remoteVideo.alice), what);
  return stats.remoteVideo.alice;
}

