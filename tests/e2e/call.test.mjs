// A real call through the demo app: two Chromium pages with fake camera and microphone join one
// room, see each other, chat, use the data channel both ways and decode each other's video.
// Then a third page leaves (its tile goes exactly once), and a page reloads and the call
// recovers. Screenshots go to test-artifacts/.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  artifact, joinDemo, launchBrowser, openPage, realProblems, startServer, tileSelector, uniqueRoom,
  waitForFrames,
} from './lib.mjs';

describe('a call in the demo app', () => {
  let server;
  let browser;
  let alice;
  let bob;
  const room = uniqueRoom('call');

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('two pages see each other, chat, exchange data and decode video', async () => {
    alice = await openPage(browser, server.page('/'));
    bob = await openPage(browser, server.page('/'));
    await joinDemo(alice, { room, name: 'alice' });
    await joinDemo(bob, { room, name: 'bob' });

    // Both see each other: a tile and a member entry each.
    await alice.waitForSelector(tileSelector('bob'));
    await bob.waitForSelector(tileSelector('alice'));
    await alice.waitForSelector('#member-list li[data-member="bob"]');
    await bob.waitForSelector('#member-list li[data-member="alice"]');

    // Chat both ways, through the server.
    await sendChat(alice, 'hello from alice');
    await sendChat(bob, 'hello from bob');
    for (const page of [alice, bob]) {
      await waitForLogText(page, '#chat-log li[data-chat-from="alice"] .chat-text', 'hello from alice');
      await waitForLogText(page, '#chat-log li[data-chat-from="bob"] .chat-text', 'hello from bob');
    }

    // The data channel opens and carries a message both ways, peer to peer.
    await alice.waitForSelector(`${tileSelector('bob')}[data-dc-state="open"]`);
    await bob.waitForSelector(`${tileSelector('alice')}[data-dc-state="open"]`);
    await sendData(alice, 'data from alice');
    await sendData(bob, 'data from bob');
    await waitForLogText(bob, '#dc-log li[data-dc-from="alice"] .dc-text', 'data from alice');
    await waitForLogText(alice, '#dc-log li[data-dc-from="bob"] .dc-text', 'data from bob');

    // Each decodes the other's video (framesDecoded from getStats, shown on the tile).
    assert.ok(await waitForFrames(alice, 'bob') > 0);
    assert.ok(await waitForFrames(bob, 'alice') > 0);

    // The connection state the tiles show comes from getStats, and it stays on loopback.
    for (const [page, peer] of [[alice, 'bob'], [bob, 'alice']]) {
      await page.waitForSelector(`${tileSelector(peer)}[data-ice-state="connected"], ${tileSelector(peer)}[data-ice-state="completed"]`);
      await page.waitForSelector(`${tileSelector(peer)}[data-candidate]:not([data-candidate=""])`);
      const stats = await page.evaluate((p) => globalThis.switchboardDemo.client.getPeerStats(p), peer);
      assert.equal(stats.connectionState, 'connected');
      assert.match(stats.localAddress, /^127\./, `local candidate ${stats.localAddress}`);
      assert.match(stats.remoteAddress, /^127\./, `remote candidate ${stats.remoteAddress}`);
      assert.ok(stats.localCandidateType, 'a selected candidate pair');
    }

    await alice.screenshot({ path: artifact('call-alice.png'), fullPage: true });
    await bob.screenshot({ path: artifact('call-bob.png'), fullPage: true });
    assert.deepEqual(realProblems(alice), []);
    assert.deepEqual(realProblems(bob), []);
  });

  test('a third page leaves: the others remove its tile exactly once', async () => {
    const carol = await openPage(browser, server.page('/'));
    await joinDemo(carol, { room, name: 'carol' });
    for (const page of [alice, bob]) {
      await page.waitForSelector(tileSelector('carol'));
      // Count every removal of carol's tile from now on.
      await page.evaluate(() => {
        globalThis.carolTileRemovals = 0;
        new MutationObserver((records) => {
          for (const record of records) {
            for (const node of record.removedNodes) {
              if (node.dataset?.peer === 'carol') globalThis.carolTileRemovals += 1;
            }
          }
        }).observe(document.getElementById('tiles'), { childList: true });
      });
    }
    await carol.waitForSelector(tileSelector('alice'));
    await carol.waitForSelector(tileSelector('bob'));

    await carol.click('#leave-button');
    await carol.waitForSelector('#connection-status[data-state="open"]');
    assert.equal(await carol.locator('#tiles li.tile:not([data-local])').count(), 0, 'the leaver drops its own tiles');

    // Sentinel, not sleep: alice chats after she saw carol go; when bob sees that chat, the
    // server has already told him that carol left (one room, one order).
    await alice.waitForSelector(tileSelector('carol'), { state: 'detached' });
    await sendChat(alice, 'carol has left');
    await waitForLogText(bob, '#chat-log li[data-chat-from="alice"] .chat-text', 'carol has left');
    await sendChat(bob, 'seen it');
    await waitForLogText(alice, '#chat-log li[data-chat-from="bob"] .chat-text', 'seen it');

    for (const page of [alice, bob]) {
      assert.equal(await page.evaluate(() => globalThis.carolTileRemovals), 1);
      assert.equal(await page.locator(tileSelector('carol')).count(), 0);
      assert.equal(await page.locator('#member-list li[data-member="carol"]').count(), 0);
    }
    assert.deepEqual(realProblems(carol), []);
    await carol.context().close();
  });

  test('a page reloads: it rejoins by itself and the call recovers', async () => {
    // Mark the tiles of the old call, so the waits below can only match new ones.
    await alice.evaluate(() => document.querySelectorAll('#tiles li.tile').forEach((t) => { t.dataset.old = 'true'; }));
    await bob.reload();
    await bob.waitForSelector('#connection-status[data-state="joined"]');
    await bob.waitForSelector('#media-status[data-media="on"]');
    await alice.waitForSelector(`${tileSelector('bob')}[data-old]`, { state: 'detached' });
    await alice.waitForSelector(`${tileSelector('bob')}:not([data-old])`);

    assert.ok(await waitForFrames(alice, 'bob', { selectorSuffix: ':not([data-old])' }) > 0);
    assert.ok(await waitForFrames(bob, 'alice') > 0);
    await bob.waitForSelector(`${tileSelector('alice')}[data-dc-state="open"]`);
    await sendData(bob, 'back again');
    await waitForLogText(alice, '#dc-log li[data-dc-from="bob"] .dc-text', 'back again');
    assert.equal(await alice.locator(tileSelector('bob')).count(), 1, 'one tile for bob after his reload');

    await alice.screenshot({ path: artifact('reload-alice.png'), fullPage: true });
    await bob.screenshot({ path: artifact('reload-bob.png'), fullPage: true });
    assert.deepEqual(realProblems(alice), []);
    assert.deepEqual(realProblems(bob), []);
  });
});

async function sendChat(page, text) {
  await page.fill('#chat-input', text);
  await page.press('#chat-input', 'Enter');
}

async function sendData(page, text) {
  await page.fill('#dc-input', text);
  await page.click('#dc-send');
}

/** Waits until one element matching `selector` has exactly `text`. */
async function waitForLogText(page, selector, text) {
  await page.waitForFunction(
    ({ sel, want }) => [...document.querySelectorAll(sel)].some((el) => el.textContent === want),
    { sel: selector, want: text },
    { timeout: 20000 },
  );
}
