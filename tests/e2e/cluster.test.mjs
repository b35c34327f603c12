// Two switchboard nodes on one Redis behave as one server (docs/scaling.md): a page on each
// node joins the same room, they chat and call peer to peer (video and a data channel); the
// dashboard of node A lists both nodes and both connections; node B is killed with SIGKILL and
// the page on A sees its peer leave once, after the lease, and the name is free again. Last, a
// node that stops answering (SIGSTOP, long lease) makes the dashboard mark its answer partial.
// Real binaries, a redis-server of this file's own on a unix socket. Screenshots go to
// test-artifacts/.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  artifact, joinDemo, launchBrowser, openPage, realProblems, startNode, startRedis, tileSelector,
  uniqueRoom, waitFor, waitForFrames,
} from './lib.mjs';

/** How long the page on A may take to see the killed node's peer leave: the lease (3 s), the
 * reaper's one-second scan, and a wide margin for a busy machine. A bound, not a measurement. */
const LEAVE_WAIT_MS = 30000;
const A = '00000000000000a1';
const B = '00000000000000b2';
const C = '00000000000000c3';

describe('two nodes on one Redis', () => {
  let redis;
  let nodeA;
  let nodeB;
  let nodeC;
  let browser;
  let alice; // on node A
  let bob; // on node B
  let dashboard; // node A's
  const room = uniqueRoom('cluster');

  before(async () => {
    redis = await startRedis();
    // The demo's sessions are resumable, so durable: a killed node's members wait for the
    // resume window (short here) to be taken over on another node before the room hears
    // them leave (docs/scaling.md, "Durable sessions").
    const args = ['--no-media', '--resume-window', '2s'];
    nodeA = await startNode(redis, { nodeId: 'a1', lease: '3s', extraArgs: args });
    nodeB = await startNode(redis, { nodeId: 'b2', lease: '3s', extraArgs: args });
    browser = await launchBrowser();
  });

  after(async () => {
    // Every process this file started, by its pid, whatever failed before.
    const stops = [
      () => browser?.close(),
      () => {
        // Node C may still be stopped (SIGSTOP) if its test failed: let it see the SIGTERM.
        try {
          if (nodeC) process.kill(nodeC.pid, 'SIGCONT');
        } catch {
          // already gone (the test killed it)
        }
        return nodeC?.stop();
      },
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
  });

  test('a page on each node: they chat, exchange data and decode video', async () => {
    alice = await openPage(browser, nodeA.page('/'));
    bob = await openPage(browser, nodeB.page('/'));
    await joinDemo(alice, { room, name: 'alice' });
    await joinDemo(bob, { room, name: 'bob' });

    await alice.waitForSelector(tileSelector('bob'));
    await bob.waitForSelector(tileSelector('alice'));
    await alice.waitForSelector('#member-list li[data-member="bob"]');
    await bob.waitForSelector('#member-list li[data-member="alice"]');

    // Chat both ways, from node to node through Redis.
    await sendChat(alice, 'hello from node a');
    await sendChat(bob, 'hello from node b');
    for (const page of [alice, bob]) {
      await waitForLogText(page, '#chat-log li[data-chat-from="alice"] .chat-text', 'hello from node a');
      await waitForLogText(page, '#chat-log li[data-chat-from="bob"] .chat-text', 'hello from node b');
    }

    // The offer, answer and candidates crossed the nodes: the data channel opens and carries a
    // message both ways, and each page decodes the other's video.
    await alice.waitForSelector(`${tileSelector('bob')}[data-dc-state="open"]`);
    await bob.waitForSelector(`${tileSelector('alice')}[data-dc-state="open"]`);
    await sendData(alice, 'data from alice');
    await sendData(bob, 'data from bob');
    await waitForLogText(bob, '#dc-log li[data-dc-from="alice"] .dc-text', 'data from alice');
    await waitForLogText(alice, '#dc-log li[data-dc-from="bob"] .dc-text', 'data from bob');
    assert.ok(await waitForFrames(alice, 'bob') > 0);
    assert.ok(await waitForFrames(bob, 'alice') > 0);

    for (const [page, peer] of [[alice, 'bob'], [bob, 'alice']]) {
      const stats = await page.evaluate((p) => globalThis.switchboardDemo.client.getPeerStats(p), peer);
      assert.equal(stats.connectionState, 'connected');
      assert.match(stats.remoteAddress, /^127\./, `remote candidate ${stats.remoteAddress}`);
    }

    await alice.screenshot({ path: artifact('cluster-alice.png'), fullPage: true });
    await bob.screenshot({ path: artifact('cluster-bob.png'), fullPage: true });
    assert.deepEqual(realProblems(alice), []);
    assert.deepEqual(realProblems(bob), []);
  });

  test("node A's dashboard shows both nodes and both pages' connections", async () => {
    // /api/stats on A, asked directly: both nodes live, each holding one of the pages.
    const stats = await (await fetch(`${nodeA.origin}/api/stats?limit=1000`)).json();
    assert.deepEqual([...stats.nodes].sort(), [A, B]);
    assert.equal(stats.partial, false);
    const nodeOf = Object.fromEntries(stats.users.map((u) => [u.id, u.node]));
    assert.deepEqual(nodeOf, { alice: A, bob: B });

    dashboard = await openPage(browser, nodeA.page('/dashboard'));
    await dashboard.waitForFunction(() => document.getElementById('total-nodes').dataset.value === '2');
    assert.equal(await dashboard.locator('#nodes-panel').isVisible(), true);
    assert.equal(await dashboard.locator('#nodes-card').isVisible(), true);
    assert.equal(await dashboard.getAttribute('#nodes-panel', 'data-partial'), 'false');
    assert.equal(await dashboard.locator('#nodes-partial').isVisible(), false);
    await waitForNodeRows(dashboard, { [A]: 1, [B]: 1 });

    await waitFor(async () => Number(await dashboard.getAttribute('#total-connections', 'data-value')) === 2,
      { timeout: 15000, what: 'the dashboard to count two connections' });
    const row = dashboard.locator(`#room-table tr[data-kind="room"][data-room="${room}"]`);
    await row.waitFor();
    assert.equal(await row.locator('td[data-col="count"]').textContent(), '2');
    const members = await row.locator('td[data-col="members"]').textContent();
    for (const name of ['alice (conference)', 'bob (conference)']) assert.ok(members.includes(name), members);

    await dashboard.screenshot({ path: artifact('cluster-dashboard.png'), fullPage: true });
    assert.deepEqual(realProblems(dashboard), []);
  });

  test('node B is killed: the page on A sees bob leave once, and his name is free', async (t) => {
    // Count every removal of bob's tile from now on, and mark it: a new bob must be a new tile.
    await alice.evaluate(() => {
      globalThis.bobTileRemovals = 0;
      new MutationObserver((records) => {
        for (const record of records) {
          for (const node of record.removedNodes) {
            if (node.dataset?.peer === 'bob') globalThis.bobTileRemovals += 1;
          }
        }
      }).observe(document.getElementById('tiles'), { childList: true });
      document.querySelectorAll('#tiles li.tile').forEach((tile) => { tile.dataset.old = 'true'; });
    });

    const killedAt = Date.now();
    process.kill(nodeB.pid, 'SIGKILL');
    await alice.waitForSelector(tileSelector('bob'), { state: 'detached', timeout: LEAVE_WAIT_MS });
    await alice.waitForSelector('#member-list li[data-member="bob"]', { state: 'detached', timeout: LEAVE_WAIT_MS });
    t.diagnostic(`bob's tile left ${Date.now() - killedAt} ms after the SIGKILL (lease 3 s, then his session's window, 2 s)`);
    await bob.context().close();

    // Sentinel, not sleep: a new page on A joins the room as bob (the dead node's name is free
    // cluster-wide) and chats; when alice has that chat, the room's leave of the old bob came
    // before it (one room, one order), so a second removal would already have been counted.
    const bob2 = await openPage(browser, nodeA.page('/'));
    await joinDemo(bob2, { room, name: 'bob', media: false });
    await sendChat(bob2, 'bob is back');
    await waitForLogText(alice, '#chat-log li[data-chat-from="bob"] .chat-text', 'bob is back');
    await alice.waitForSelector(`${tileSelector('bob')}:not([data-old])`);

    assert.equal(await alice.evaluate(() => globalThis.bobTileRemovals), 1);
    assert.equal(await alice.locator(tileSelector('bob')).count(), 1, 'one tile for the new bob');
    assert.equal(await alice.locator('#member-list li[data-member="bob"]').count(), 1);

    // The dashboard on A: node B's lease is gone, one node left, its answer whole.
    await dashboard.waitForFunction(() => document.getElementById('total-nodes').dataset.value === '1',
      null, { timeout: LEAVE_WAIT_MS });
    await waitForNodeRows(dashboard, { [A]: 2 });
    assert.equal(await dashboard.getAttribute('#nodes-panel', 'data-partial'), 'false');

    await alice.screenshot({ path: artifact('cluster-alice-after-kill.png'), fullPage: true });
    assert.deepEqual(realProblems(alice), []);
    assert.deepEqual(realProblems(bob2), []);
    await bob2.context().close();
  });

  test('a node that stops answering makes the dashboard mark the answer partial', async () => {
    // A long lease, so node C stays "live" long after it stops answering (SIGSTOP): A's
    // /api/stats then waits for it in vain and says partial.
    nodeC = await startNode(redis, { nodeId: 'c3', lease: '60s', extraArgs: ['--no-media'] });
    await dashboard.waitForFunction(() => document.getElementById('total-nodes').dataset.value === '2');
    await waitForNodeRows(dashboard, { [A]: 1, [C]: 0 });
    assert.equal(await dashboard.getAttribute('#nodes-panel', 'data-partial'), 'false');

    process.kill(nodeC.pid, 'SIGSTOP');
    await dashboard.waitForSelector('#nodes-panel[data-partial="true"]', { timeout: 30000 });
    await dashboard.waitForSelector('#nodes-partial', { state: 'visible' });
    assert.match(await dashboard.textContent('#nodes-partial'), /did not answer/);
    assert.equal(await dashboard.getAttribute('#nodes-card', 'data-partial'), 'true');
    assert.equal(await dashboard.getAttribute('#total-nodes', 'data-value'), '2', 'C still has its lease');
    await dashboard.screenshot({ path: artifact('cluster-dashboard-partial.png'), fullPage: true });
    process.kill(nodeC.pid, 'SIGKILL'); // a stopped process would ignore SIGTERM until its SIGCONT
    assert.deepEqual(realProblems(dashboard), []);
  });
});

/** Waits until #node-table lists exactly these nodes with these listed-connection counts. */
async function waitForNodeRows(page, want) {
  await page.waitForFunction((expected) => {
    const rows = [...document.querySelectorAll('#node-table tbody tr[data-node]')];
    const shown = Object.fromEntries(rows.map((tr) => [
      tr.dataset.node, Number(tr.querySelector('td[data-col="connections"]')?.textContent),
    ]));
    return JSON.stringify(shown) === JSON.stringify(expected);
  }, Object.fromEntries(Object.entries(want).sort()), { timeout: 30000 });
}

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
