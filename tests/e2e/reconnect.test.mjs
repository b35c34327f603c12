// Reconnection: the server stops while two pages are in a call; both show that they are
// reconnecting, drop the call, and when a server is back on the same port they rejoin the room
// by themselves and the call (here: its data channel) works again.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  joinDemo, launchBrowser, openPage, realProblems, startServer, tileSelector, uniqueRoom,
} from './lib.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('after a server restart the pages rejoin and the call works again', async () => {
  const room = uniqueRoom('reconnect');
  const alice = await openPage(browser, server.page('/'));
  const bob = await openPage(browser, server.page('/'));
  await joinDemo(alice, { room, name: 'alice', media: false });
  await joinDemo(bob, { room, name: 'bob', media: false });
  await alice.waitForSelector(`${tileSelector('bob')}[data-dc-state="open"]`);

  const { port } = server;
  await server.stop();
  for (const page of [alice, bob]) {
    await page.waitForSelector('#connection-status[data-state="reconnecting"]');
    await page.waitForSelector('#tiles li.tile', { state: 'detached' });
  }
  const status = await alice.textContent('#connection-status');
  assert.match(status, /retrying in \d+ s \(attempt \d+\)/);

  server = await startServer([], { port });
  for (const page of [alice, bob]) {
    await page.waitForSelector('#connection-status[data-state="joined"]', { timeout: 30000 });
  }
  await alice.waitForSelector(`${tileSelector('bob')}[data-dc-state="open"]`, { timeout: 30000 });
  await bob.waitForSelector(`${tileSelector('alice')}[data-dc-state="open"]`, { timeout: 30000 });
  await alice.fill('#dc-input', 'still here');
  await alice.click('#dc-send');
  await bob.waitForFunction(() => [...document.querySelectorAll('#dc-log li[data-dc-from="alice"] .dc-text')]
    .some((el) => el.textContent === 'still here'));
  assert.equal(await alice.locator(tileSelector('bob')).count(), 1);
  assert.deepEqual(realProblems(alice), []);
  assert.deepEqual(realProblems(bob), []);
});
