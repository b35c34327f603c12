// The protocol tester and the dashboard, while a call runs. The tester walks all five dialects
// and stays in the call's room on query-rooms; the dashboard must then show the same numbers
// as /api/stats (and the per-dialect counts of /metrics).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  artifact, joinDemo, launchBrowser, openPage, realProblems, startServer, uniqueRoom, waitFor,
  waitForFrames,
} from './lib.mjs';

describe('tester and dashboard during a call', () => {
  let server;
  let browser;
  let alice;
  let bob;
  let tester;
  const room = uniqueRoom('dash');

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    alice = await openPage(browser, server.page('/'));
    bob = await openPage(browser, server.page('/'));
    await joinDemo(alice, { room, name: 'alice' });
    await joinDemo(bob, { room, name: 'bob' });
    await waitForFrames(alice, 'bob');
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('the protocol tester speaks all five dialects and logs every frame', async () => {
    tester = await openPage(browser, server.page('/test.html'));

    // conference: join-room earns joined (with the call's members).
    await connect(tester, 'conference', { room: 'tester-room', name: 'tess' });
    await send(tester, 'join-room');
    await waitForFrame(tester, 'in', (f) => f.type === 'joined' && f.data.users.includes('tess'));

    // pairing: the server names the connection first.
    await connect(tester, 'pairing');
    await waitForFrame(tester, 'in', (f) => f.type === 'connected' && typeof f.data.userId === 'string');

    // room-relay: join-room earns join-success.
    await connect(tester, 'room-relay', { room: 'relay-room', name: 'rita' });
    await send(tester, 'join-room');
    await waitForFrame(tester, 'in', (f) => f.type === 'join-success' && f.userId === 'rita');

    // broadcast: frames go out, nothing comes back (not even errors).
    await connect(tester, 'broadcast', { channel: 'tester-channel' });
    await send(tester, 'any JSON');
    await waitForFrame(tester, 'out', (f) => f.hello === 'everyone');

    // query-rooms, in the call's room: its chat reaches the conference pages.
    await connect(tester, 'query-rooms', { 'peer-id': 'tester', room });
    await send(tester, 'chat to the room');
    for (const page of [alice, bob]) {
      await page.waitForFunction(() => [...document.querySelectorAll('#chat-log li[data-chat-from="tester"] .chat-text')]
        .some((el) => el.textContent === 'hello'));
      await page.waitForSelector('#member-list li[data-member="tester"]');
    }
    // A frame that is not JSON, sent on purpose, earns bad_json.
    await tester.check('#raw-checkbox');
    await tester.fill('#frame-input', 'not json');
    await tester.click('#send-button');
    await waitForFrame(tester, 'in', (f) => f.type === 'error' && f.payload.code === 'bad_json');

    // Every logged frame has a millisecond timestamp.
    const times = await tester.$$eval('#frame-log li .frame-time', (els) => els.map((el) => el.textContent));
    assert.ok(times.length > 10);
    for (const time of times) assert.match(time, /^\d\d:\d\d:\d\d\.\d{3}$/);
    await tester.screenshot({ path: artifact('tester.png'), fullPage: true });
    assert.deepEqual(realProblems(tester), []);
  });

  test('the dashboard shows the live counts of /api/stats and /metrics', async () => {
    const dashboard = await openPage(browser, server.page('/dashboard'));
    await dashboard.waitForFunction(() => Number(document.getElementById('refresh-status').dataset.updates ?? 0) >= 3);

    // Compare against /api/stats read at the same moment; retry while the two samples straddle
    // a change (they should not: nothing joins or leaves now).
    const stats = await waitFor(async () => {
      const fresh = await (await fetch(`${server.origin}/api/stats?limit=1000`)).json();
      const shown = await dashboard.evaluate(() => ({
        connections: Number(document.getElementById('total-connections').dataset.value),
        rooms: Number(document.getElementById('total-rooms').dataset.value),
      }));
      return shown.connections === fresh.connectedUsers && shown.rooms === fresh.rooms ? fresh : null;
    }, { timeout: 15000, interval: 250, what: 'the dashboard to match /api/stats' });

    // alice, bob (conference) and the tester (query-rooms) in one room.
    assert.equal(stats.connectedUsers, 3);
    assert.equal(stats.rooms, 1);
    const byDialect = (d) => stats.users.filter((u) => u.dialect === d).length;
    await dashboard.waitForFunction((expect) => {
      const cell = (d) => Number(document.querySelector(`#dialect-table tr[data-dialect="${d}"] td[data-col="connections"]`)?.textContent);
      return cell('conference') === expect.conference && cell('query-rooms') === expect.queryRooms;
    }, { conference: byDialect('conference'), queryRooms: byDialect('query-rooms') });

    // The room table lists the call's room with its three members.
    const row = dashboard.locator(`#room-table tr[data-kind="room"][data-room="${room}"]`);
    await row.waitFor();
    assert.equal(await row.locator('td[data-col="count"]').textContent(), '3');
    const members = await row.locator('td[data-col="members"]').textContent();
    for (const name of ['alice (conference)', 'bob (conference)', 'tester (query-rooms)']) assert.ok(members.includes(name), members);

    // The search narrows the table.
    await dashboard.fill('#room-search', 'no-such-room');
    await dashboard.waitForSelector('#room-table tbody tr', { state: 'detached' });
    await dashboard.fill('#room-search', 'tester');
    await row.waitFor();

    // The tester's bad_json shows up among the errors, and charts are drawn.
    await dashboard.waitForSelector('#error-table tr[data-code="bad_json"]');
    assert.equal(await dashboard.locator('#charts figure[data-chart]').count(), 4);
    const points = await dashboard.$eval('#charts figure[data-chart="connections"] polyline', (el) => el.getAttribute('points'));
    assert.ok(points.split(' ').length >= 3, 'the connections chart has a line');

    await dashboard.fill('#room-search', '');
    await dashboard.screenshot({ path: artifact('dashboard.png'), fullPage: true });
    assert.deepEqual(realProblems(dashboard), []);
    assert.deepEqual(realProblems(alice), []);
  });
});

/** Chooses a dialect in the tester, fills its fields, connects, and waits for the socket. */
async function connect(page, dialect, fields = {}) {
  await page.selectOption('#dialect-select', dialect);
  for (const [field, value] of Object.entries(fields)) await page.fill(`#${field}-input`, value);
  await page.click('#connect-button');
  await page.waitForSelector('#socket-status[data-state="open"]');
}

/** Sends one of the tester's templates as it is. */
async function send(page, template) {
  await page.selectOption('#template-select', template);
  await page.click('#send-button');
}

/** Waits until the tester's log has a JSON frame in `direction` for which `match` holds. */
async function waitForFrame(page, direction, match) {
  await waitFor(async () => {
    const frames = await page.$$eval(`#frame-log li[data-direction="${direction}"] .frame-text`,
      (els) => els.map((el) => el.dataset.raw));
    return frames.some((text) => {
      try {
        return match(JSON.parse(text));
      } catch {
        return false;
      }
    });
  }, { timeout: 15000, what: `a ${direction} frame in the tester` });
}
