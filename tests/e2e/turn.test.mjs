// TURN through a real TURN server: Debian's coturn with `use-auth-secret`, and switchboard
// started with the same secret (from --turn-secret-file) and --turn-url. Two demo pages with
// ?relay=1 (iceTransportPolicy "relay": TURN relay candidates only) must connect, exchange data
// and decode video with a relay/relay candidate pair, on the credentials `joined` handed them.
// Then the negative: a credential that expired (the same secret, an expiry in the past) gathers
// no relay candidate, where a fresh one from GET /turn/credentials does.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  artifact, joinDemo, launchBrowser, openPage, realProblems, startCoturn, startServer,
  tileSelector, uniqueRoom, waitForFrames, withTimeout,
} from './lib.mjs';

const SECRET = 'e2e secret shared by switchboard and coturn';

describe('TURN credentials with coturn', () => {
  let coturn;
  let server;
  let browser;
  let secretDir;

  before(async () => {
    coturn = await startCoturn({ secret: SECRET });
    secretDir = mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-turn-'));
    const secretFile = path.join(secretDir, 'turn-secret');
    writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 }); // the newline is trimmed
    server = await startServer(['--turn-secret-file', secretFile, '--turn-url', coturn.url, '--turn-ttl', '10m']);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    await coturn?.stop();
    if (secretDir) rmSync(secretDir, { recursive: true, force: true });
  });

  test('a call forced to relay connects through coturn on the credentials from joined', async () => {
    const room = uniqueRoom('turn');
    const alice = await openPage(browser, server.page('/', { relay: '1' }));
    const bob = await openPage(browser, server.page('/', { relay: '1' }));
    await joinDemo(alice, { room, name: 'alice' });
    await joinDemo(bob, { room, name: 'bob' });

    // joined carried a credential minted for each of them.
    for (const [page, name] of [[alice, 'alice'], [bob, 'bob']]) {
      const { iceServers, policy } = await page.evaluate(() => ({
        iceServers: globalThis.switchboardDemo.client.iceServers,
        policy: globalThis.switchboardDemo.client.iceTransportPolicy,
      }));
      assert.equal(policy, 'relay');
      assert.equal(iceServers.length, 1, JSON.stringify(iceServers));
      assert.deepEqual(iceServers[0].urls, [coturn.url]);
      assert.match(iceServers[0].username, new RegExp(`^\\d+:${name}$`));
      assert.equal(iceServers[0].credential, password(iceServers[0].username));
    }

    await alice.waitForSelector(`${tileSelector('bob')}[data-dc-state="open"]`, { timeout: 45000 });
    await bob.waitForSelector(`${tileSelector('alice')}[data-dc-state="open"]`, { timeout: 45000 });
    assert.ok(await waitForFrames(alice, 'bob') > 0);
    assert.ok(await waitForFrames(bob, 'alice') > 0);
    for (const [page, peer] of [[alice, 'bob'], [bob, 'alice']]) {
      const stats = await page.evaluate((p) => globalThis.switchboardDemo.client.getPeerStats(p), peer);
      assert.equal(stats.connectionState, 'connected');
      assert.equal(stats.localCandidateType, 'relay', JSON.stringify(stats));
      assert.equal(stats.remoteCandidateType, 'relay', JSON.stringify(stats));
      const policy = await page.evaluate((p) => globalThis.switchboardDemo.client.peerConnection(p).getConfiguration().iceTransportPolicy, peer);
      assert.equal(policy, 'relay');
    }
    // coturn saw both allocations, under the names switchboard minted for.
    for (const name of ['alice', 'bob']) {
      assert.match(coturn.log(), new RegExp(`user <\\d+:${name}>: incoming packet ALLOCATE processed, success`));
    }

    await alice.screenshot({ path: artifact('turn-alice.png'), fullPage: true });
    assert.deepEqual(realProblems(alice), []);
    assert.deepEqual(realProblems(bob), []);
    await alice.context().close();
    await bob.context().close();
  });

  test('an expired credential gathers no relay candidate; a fresh one from /turn/credentials does', async () => {
    const page = await openPage(browser, server.page('/'));

    const fresh = await page.evaluate(async () => (await fetch('/turn/credentials?name=probe')).json());
    assert.match(fresh.username, /^\d+:probe$/);
    assert.equal(fresh.password, password(fresh.username));
    assert.equal(fresh.ttl, 600);
    assert.deepEqual(fresh.uris, [coturn.url]);
    const freshTypes = await withTimeout(page.evaluate(gatherRelay, fresh.iceServers), 45000, 'gathering with a fresh credential');
    assert.ok(freshTypes.includes('relay'), `fresh credential gathered ${JSON.stringify(freshTypes)}`);

    // Minted as switchboard and coturn compute it, one minute past its expiry.
    const username = `${Math.floor(Date.now() / 1000) - 60}:probe`;
    const expired = [{ urls: [coturn.url], username, credential: password(username) }];
    const expiredTypes = await withTimeout(page.evaluate(gatherRelay, expired), 45000, 'gathering with an expired credential');
    assert.deepEqual(expiredTypes, [], 'no candidate with an expired credential');
    assert.match(coturn.log(), new RegExp(`Cannot find credentials of user <${username}>`));

    assert.deepEqual(realProblems(page), []);
    await page.context().close();
  });
});

/** base64(HMAC-SHA1(secret, username)): the TURN REST password, computed apart from switchboard. */
function password(username) {
  return createHmac('sha1', SECRET).update(username).digest('base64');
}

/**
 * Runs in the page: a relay-only peer connection with `iceServers` gathers its candidates to the
 * end; returns their types.
 */
async function gatherRelay(iceServers) {
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: 'relay' });
  const types = [];
  const complete = new Promise((resolve) => {
    pc.addEventListener('icecandidate', (event) => {
      if (event.candidate?.candidate) types.push(event.candidate.type);
      else if (!event.candidate) resolve();
    });
  });
  pc.createDataChannel('probe');
  await pc.setLocalDescription(await pc.createOffer());
  await complete;
  pc.close();
  return types;
}
