// Makes docs/demo.png (the demo during a three-way call) and docs/dashboard.png (the dashboard
// with some traffic). Not a test: run it by hand, in the loopback-only namespace like the tests:
//   cd tests/e2e && unshare --net bash -c 'ip link set lo up && node screenshots.mjs'

import path from 'node:path';
import { joinDemo, launchBrowser, openPage, REPO, startServer, tileSelector, waitForFrames } from './lib.mjs';

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });
const server = await startServer();
const browser = await launchBrowser();
try {
  const room = 'standup';
  const names = ['alice', 'bob', 'carol'];
  const pages = [];
  for (const name of names) {
    const page = await openPage(browser, server.page('/'));
    await joinDemo(page, { room, name });
    pages.push(page);
  }
  const [alice, bob, carol] = pages;
  await waitForFrames(alice, 'bob');
  await waitForFrames(alice, 'carol');
  for (const [page, text] of [[bob, 'Morning! Can you all see me?'], [alice, 'Loud and clear.'], [carol, 'Same here, video is smooth.']]) {
    await page.fill('#chat-input', text);
    await page.press('#chat-input', 'Enter');
    await sleep(300);
  }
  await alice.waitForSelector(`${tileSelector('carol')}[data-dc-state="open"]`);
  await carol.fill('#dc-input', 'this one went peer to peer');
  await carol.click('#dc-send');
  await bob.fill('#dc-input', 'so did this');
  await bob.click('#dc-send');
  await alice.waitForSelector('#dc-log li[data-dc-from="bob"]');
  await alice.setViewportSize({ width: 1280, height: 760 });
  await sleep(2500); // two rounds of getStats on the tiles
  await alice.screenshot({ path: path.join(REPO, 'docs/demo.png') });

  // Other dialects, for the dashboard: a query-rooms peer in the room, a pairing user and a
  // broadcast subscriber, through the protocol tester; and one refused frame.
  const tester = await openPage(browser, server.page('/test.html'));
  for (const [dialect, fill] of [['pairing', {}], ['broadcast', { channel: 'news' }], ['query-rooms', { 'peer-id': 'dave', room }]]) {
    const page = dialect === 'query-rooms' ? tester : await openPage(browser, server.page('/test.html'));
    await page.selectOption('#dialect-select', dialect);
    for (const [field, value] of Object.entries(fill)) await page.fill(`#${field}-input`, value);
    await page.click('#connect-button');
    await page.waitForSelector('#socket-status[data-state="open"]');
  }
  await tester.check('#raw-checkbox');
  await tester.fill('#frame-input', '{oops');
  await tester.click('#send-button');

  const dashboard = await openPage(browser, server.page('/dashboard'));
  // Some chat over 40 seconds, so the charts have a shape.
  for (let i = 0; i < 40; i += 1) {
    const page = pages[i % 3];
    for (let j = 0; j < (i % 7) + 1; j += 1) {
      await page.fill('#chat-input', `message ${i}.${j}`);
      await page.press('#chat-input', 'Enter');
    }
    await sleep(1000);
  }
  await dashboard.screenshot({ path: path.join(REPO, 'docs/dashboard.png'), fullPage: true });
  console.log('wrote docs/demo.png and docs/dashboard.png');
} finally {
  await browser.close();
  await server.stop();
}
