// The demo app at `/`: join a room, see who is there, chat, send camera and microphone,
// one video tile per peer with its connection state, and a data-channel text box.
// Two modes, chosen on the join form: mesh (one peer connection per member, client.js) or
// SFU (one upload to the server, which forwards it to the others, sfu.js). All signaling and
// WebRTC work is in those two files; this one only turns their events into DOM.
//
// Query parameters:
//   ?server=ws://127.0.0.1:8080   switchboard to talk to (ws:, wss:, http: or https:); default:
//                                 this page's origin. Development aid: serve web/ elsewhere.
//   ?room=R&name=N                pre-fill the join form.
//   ?mode=sfu                     pre-select the SFU mode (default: mesh).
//   ?codec=h264                   SFU mode sends video in H.264 (default: VP8).
//   ?simulcast=1                  pre-check Simulcast: SFU mode sends the camera in three sizes,
//                                 and asks it for 1280×720 (Chrome sends three from 960×540 up).
//   ?relay=1                      mesh peer connections use TURN relay candidates only
//                                 (iceTransportPolicy "relay"): with --turn-secret, proves
//                                 calls work through the TURN server. Without a TURN server
//                                 in `iceServers`, no call connects.
// A tab that joined rejoins its room by itself after a reload (sessionStorage), in the same
// mode, restarting the camera if it was on.
//
// Stable hooks for tests (ids and data attributes; keep them when restyling):
//   #connection-status[data-state]  idle | connecting | open | joined | reconnecting | closed
//     data-resuming="true" while a dropped socket is being resumed (tiles and call stay)
//   #join-form, #room-input, #name-input, #join-button, #leave-button, #join-error
//   #mode-mesh, #mode-sfu (radios), body[data-mode]   mesh | sfu: the mode of the page
//   #simulcast-input (checkbox)   SFU mode publishes simulcast; like the mode, fixed in a room
//   #sfu-status[data-sfu]   idle | loading | ready | failed;  #sfu-error[data-code] (shown on errors)
//   #media-button[aria-pressed], #media-status[data-media]  off | starting | on | audio-only |
//                                                          video-only | denied | none | error
//   #room-label, #member-count, #member-list > li[data-member=NAME][data-self?]
//   #tiles > li.tile[data-peer=NAME]   one per remote peer; the local preview has data-local.
//     In SFU mode one per member whose media we receive; it goes when their producers close.
//     data-connection-state, data-ice-state     RTCPeerConnection states (SFU: the receive transport's)
//     data-candidate="host/host"               selected pair: local/remote candidate types
//     data-rtt-ms, data-frames-decoded         from getStats(), refreshed every second
//     data-dc-state                            the peer's data channel readyState
//     data-has-video                           "true" once a remote video track arrived
//     data-frame-width, data-frame-height      the last decoded video frame's size
//     SFU mode, when the member's video is simulcast (its consumer has more than one layer):
//     data-layers                              how many layers the publisher sends
//     data-preferred-layer                     the layer asked for (0 is the lowest)
//     data-spatial-layer                       the layer the server forwards (consumer-layers-changed)
//     select.layer-select                      the picker, one option per layer (value: the layer);
//                                              choosing one sends set-preferred-layers
//   #chat-log > li[data-chat-from=NAME] (.chat-text holds the text), #chat-input, #chat-send
//   #dc-log > li[data-dc-from=NAME] (.dc-text holds the text; NAME is "me" for what we sent),
//   #dc-input, #dc-send, #dc-status
//   globalThis.switchboardDemo.client   the SwitchboardClient (for debugging and tests)
//   globalThis.switchboardDemo.sfu      the SfuMedia: device, sendTransport, recvTransport,
//                                       producers, consumers, producerClosedSeen, stats(),
//                                       setPreferredLayers()

import { SwitchboardClient } from './client.js';
import { SfuMedia } from './sfu.js';

const SESSION_KEY = 'switchboard.demo.session';
const STATS_INTERVAL_MS = 1000;
const MAX_LOG_ITEMS = 200;
const MAX_ID_BYTES = 128;
const MODES = ['mesh', 'sfu'];
/** The camera we ask for: enough for a tile. */
const CAMERA = { width: { ideal: 640 }, height: { ideal: 360 } };
/** The camera for simulcast: Chrome sends all three layers only from 960×540 up. */
const SIMULCAST_CAMERA = { width: { ideal: 1280 }, height: { ideal: 720 } };
/** What the layer picker calls each simulcast layer, lowest first, by how many there are. */
const LAYER_NAMES = { 2: ['Low', 'High'], 3: ['Low', 'Medium', 'High'], 4: ['Low', 'Medium', 'Medium-high', 'High'] };

const $ = (id) => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`missing #${id}`);
  return element;
};

const ui = {
  status: $('connection-status'),
  joinForm: $('join-form'),
  roomInput: $('room-input'),
  nameInput: $('name-input'),
  joinButton: $('join-button'),
  leaveButton: $('leave-button'),
  joinError: $('join-error'),
  modeMesh: $('mode-mesh'),
  modeSfu: $('mode-sfu'),
  simulcastInput: $('simulcast-input'),
  sfuStatus: $('sfu-status'),
  sfuError: $('sfu-error'),
  mediaButton: $('media-button'),
  mediaStatus: $('media-status'),
  roomLabel: $('room-label'),
  callEmpty: $('call-empty'),
  tiles: $('tiles'),
  tileTemplate: $('tile-template'),
  memberCount: $('member-count'),
  memberList: $('member-list'),
  chatLog: $('chat-log'),
  chatForm: $('chat-form'),
  chatInput: $('chat-input'),
  chatSend: $('chat-send'),
  dcLog: $('dc-log'),
  dcForm: $('dc-form'),
  dcInput: $('dc-input'),
  dcSend: $('dc-send'),
  dcStatus: $('dc-status'),
};

const params = new URLSearchParams(location.search);
const client = new SwitchboardClient({
  url: conferenceUrl(params.get('server')),
  iceTransportPolicy: params.get('relay') === '1' ? 'relay' : 'all',
  token: params.get('access_token'),
});
const sfu = new SfuMedia(client);
// ?codec=h264 publishes video in H.264 instead of VP8 (SFU mode).
sfu.videoCodec = params.get('codec');
const tiles = new Map(); // peer name -> tile <li>
const sfuStreams = new Map(); // SFU mode: member name -> the MediaStream its tile plays
let localTile = null;
let localStream = null;

globalThis.switchboardDemo = { client, sfu };

// --- connection and room -------------------------------------------------------------------

client.addEventListener('state', ({ detail }) => {
  ui.status.dataset.state = detail.state;
  if (detail.resuming) ui.status.dataset.resuming = 'true';
  else delete ui.status.dataset.resuming;
  ui.status.textContent = describeState(detail);
  const inRoom = detail.state === 'joined';
  ui.leaveButton.disabled = !inRoom && !client.room;
  // While a dropped socket is resumed the call goes on, and chat waits for the socket.
  for (const control of [ui.chatInput, ui.chatSend]) control.disabled = !inRoom && !detail.resuming;
  // Data channels are peer to peer: there are none in SFU mode.
  for (const control of [ui.dcInput, ui.dcSend]) control.disabled = !inRoom || !client.mesh;
  // The mode and simulcast are the room's way of calling: change them between rooms, not
  // during one (what we send is produced once, at the join).
  for (const control of [ui.modeMesh, ui.modeSfu, ui.simulcastInput]) control.disabled = inRoom || detail.state === 'reconnecting';
  if (!inRoom) renderMembers();
});

client.addEventListener('joined', ({ detail }) => {
  ui.joinError.hidden = true;
  ui.roomLabel.textContent = `in ${detail.room}`;
  ui.callEmpty.hidden = true;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({
    room: detail.room, name: client.name, media: Boolean(localStream), mode: currentMode(),
    simulcast: sfu.simulcast,
  }));
  if (localTile) setTileName(localTile, `${client.name} (you)`);
  renderMembers();
});

client.addEventListener('peer-joined', ({ detail }) => {
  addTile(detail.peer);
  renderMembers();
});

client.addEventListener('peer-left', ({ detail }) => {
  removeTile(detail.peer);
  renderMembers();
});

// Members come and go in both modes; in mesh mode peer-joined/peer-left say it too.
client.addEventListener('user-joined', () => renderMembers());
client.addEventListener('user-left', () => renderMembers());

client.addEventListener('peer-state', ({ detail }) => {
  const tile = tiles.get(detail.peer);
  if (!tile) return;
  tile.dataset.connectionState = detail.connectionState;
  tile.dataset.iceState = detail.iceConnectionState;
  tile.dataset.dcState = detail.dataChannelState;
  setStat(tile, 'connection', detail.connectionState);
  setStat(tile, 'ice', detail.iceConnectionState);
});

client.addEventListener('track', ({ detail }) => {
  const tile = tiles.get(detail.peer) ?? addTile(detail.peer);
  const video = tile.querySelector('video');
  if (video.srcObject !== detail.stream) video.srcObject = detail.stream;
  if (detail.track.kind === 'video') {
    tile.dataset.hasVideo = 'true';
    detail.track.addEventListener('ended', () => { delete tile.dataset.hasVideo; });
  }
  playWithSound(video, tile);
});

client.addEventListener('error', ({ detail }) => {
  if (detail.join || detail.request) return; // shown by the join form, or by sfu.js's error event
  console.warn('switchboard:', detail.code, detail.message);
});

ui.joinForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const room = ui.roomInput.value.trim();
  const name = ui.nameInput.value.trim();
  const problem = checkIdentifier('Room', room) ?? checkIdentifier('Name', name);
  if (problem) return showJoinError(problem);
  await join(room, name, currentMode());
});

ui.leaveButton.addEventListener('click', () => {
  sessionStorage.removeItem(SESSION_KEY);
  client.leave();
  ui.roomLabel.textContent = '';
  ui.callEmpty.hidden = false;
  renderMembers();
});

for (const radio of [ui.modeMesh, ui.modeSfu]) {
  radio.addEventListener('change', () => { if (radio.checked) setMode(radio.value); });
}

ui.simulcastInput.addEventListener('change', () => setSimulcast(ui.simulcastInput.checked));

async function join(room, name, mode) {
  ui.joinButton.disabled = true;
  ui.joinError.hidden = true;
  try {
    setMode(mode);
    await client.join(room, name);
  } catch (err) {
    showJoinError(joinErrorText(err, room, name));
  } finally {
    ui.joinButton.disabled = false;
  }
}

function showJoinError(text) {
  ui.joinError.textContent = text;
  ui.joinError.hidden = false;
}

function joinErrorText(err, room, name) {
  switch (err.code) {
    case 'name_taken': return `The name "${name}" is already taken in room "${room}". Pick another name.`;
    case 'bad_id': return `The server refused that room or name: ${err.message}.`;
    case 'disconnected':
    case 'not_connected': return 'Could not reach the server. It keeps trying: press Join again once it is back.';
    case 'invalid_state': return 'Leave this room before switching between mesh and SFU.';
    default: return `Could not join: ${err.message}`;
  }
}

/** Mesh or SFU, for the next join: the client builds peer connections, or sfu.js takes over. */
function setMode(mode) {
  const chosen = MODES.includes(mode) ? mode : 'mesh';
  client.mesh = chosen === 'mesh'; // throws invalid_state inside a room joined in the other mode
  sfu.enabled = chosen === 'sfu';
  document.body.dataset.mode = chosen;
  ui.modeMesh.checked = chosen === 'mesh';
  ui.modeSfu.checked = chosen === 'sfu';
  ui.sfuStatus.hidden = chosen !== 'sfu';
  if (chosen !== 'sfu') ui.sfuError.hidden = true;
  ui.dcStatus.textContent = chosen === 'sfu' ? 'Not available in SFU mode: data channels go peer to peer.' : '';
}

/** Simulcast or not, for the next join's video; a camera already on is resized to suit. */
function setSimulcast(on) {
  sfu.simulcast = on;
  ui.simulcastInput.checked = sfu.simulcast;
  // Keeps its size if it cannot: simulcast still works, with fewer layers.
  localStream?.getVideoTracks()[0]?.applyConstraints(cameraConstraints()).catch(() => {});
}

function cameraConstraints() {
  return sfu.simulcast ? SIMULCAST_CAMERA : CAMERA;
}

function currentMode() {
  return ui.modeSfu.checked ? 'sfu' : 'mesh';
}

function checkIdentifier(label, value) {
  if (!value) return `${label} is required.`;
  if (new TextEncoder().encode(value).length > MAX_ID_BYTES) return `${label} must be at most ${MAX_ID_BYTES} bytes.`;
  if (/\p{Cc}/u.test(value)) return `${label} must not contain control characters.`;
  return null;
}

function renderMembers() {
  const users = client.state === 'joined' ? client.users : [];
  ui.memberCount.textContent = String(users.length);
  ui.memberList.replaceChildren(...users.map((user) => {
    const li = document.createElement('li');
    li.dataset.member = user;
    li.textContent = user;
    if (user === client.name) {
      li.dataset.self = 'true';
      const you = document.createElement('span');
      you.className = 'muted';
      you.textContent = ' (you)';
      li.append(you);
    }
    return li;
  }));
}

// --- tiles ---------------------------------------------------------------------------------

function addTile(peer) {
  const existing = tiles.get(peer);
  if (existing) return existing;
  const tile = newTile(peer);
  tiles.set(peer, tile);
  ui.tiles.append(tile);
  return tile;
}

function removeTile(peer) {
  const tile = tiles.get(peer);
  if (!tile) return;
  tiles.delete(peer);
  sfuStreams.delete(peer);
  const video = tile.querySelector('video');
  video.srcObject = null;
  tile.remove();
}

// --- SFU mode: tracks come from consumers, one stream per member ---------------------------

sfu.addEventListener('track', ({ detail }) => {
  const tile = tiles.get(detail.user) ?? addTile(detail.user);
  let stream = sfuStreams.get(detail.user);
  if (!stream) {
    stream = new MediaStream();
    sfuStreams.set(detail.user, stream);
  }
  stream.addTrack(detail.track);
  const video = tile.querySelector('video');
  if (video.srcObject !== stream) video.srcObject = stream;
  if (detail.kind === 'video') {
    tile.dataset.hasVideo = 'true';
    showLayerPicker(tile, detail);
  }
  playWithSound(video, tile);
});

sfu.addEventListener('layers', ({ detail }) => {
  const tile = tiles.get(detail.user);
  if (!tile || tile.querySelector('.layer-select').dataset.consumerId !== detail.consumerId) return;
  tile.dataset.spatialLayer = String(detail.spatialLayer);
  setStat(tile, 'layer', describeLayer(detail.spatialLayer, Number(tile.dataset.layers)));
});

sfu.addEventListener('track-ended', ({ detail }) => {
  const stream = sfuStreams.get(detail.user);
  const tile = tiles.get(detail.user);
  if (!stream || !tile) return;
  stream.removeTrack(detail.track);
  if (tile.querySelector('.layer-select').dataset.consumerId === detail.consumerId) hideLayerPicker(tile);
  if (detail.kind === 'video' && stream.getVideoTracks().length === 0) delete tile.dataset.hasVideo;
  if (stream.getTracks().length === 0) removeTile(detail.user); // nothing left of theirs to show
});

sfu.addEventListener('state', ({ detail }) => {
  ui.sfuStatus.dataset.sfu = detail.state;
  ui.sfuStatus.textContent = {
    idle: 'SFU mode: media goes through the server once you join.',
    loading: 'SFU: loading mediasoup-client and connecting…',
    ready: 'SFU: ready. Others\' media arrives through the server.',
    failed: 'SFU: media could not be set up (see the error above).',
  }[detail.state] ?? detail.state;
  if (detail.state === 'loading') ui.sfuError.hidden = true;
});

sfu.addEventListener('producing', ({ detail }) => {
  if (sfu.state !== 'ready') return;
  ui.sfuStatus.textContent = detail.kinds.length
    ? `SFU: ready, sending your ${detail.kinds.map((k) => (k === 'video' ? 'camera' : 'microphone')).join(' and ')} through the server.`
    : 'SFU: ready, sending nothing. Others\' media arrives through the server.';
});

sfu.addEventListener('error', ({ detail }) => showSfuError(detail));

function showSfuError({ code, message, request }) {
  ui.sfuError.dataset.code = code;
  ui.sfuError.textContent = `SFU error${request ? ` (${request})` : ''}: ${message} [${code}]`;
  ui.sfuError.hidden = false;
}

/** A simulcast video gets a picker of its layers; any other hides it (a publisher may change). */
function showLayerPicker(tile, { consumerId, layers, preferredLayer }) {
  if (!(layers > 1)) {
    hideLayerPicker(tile);
    return;
  }
  const select = tile.querySelector('.layer-select');
  select.dataset.consumerId = consumerId;
  select.replaceChildren(...Array.from({ length: layers }, (_, layer) => new Option(layerName(layer, layers), String(layer))));
  select.value = String(preferredLayer);
  tile.dataset.layers = String(layers);
  tile.dataset.preferredLayer = String(preferredLayer);
  delete tile.dataset.spatialLayer;
  setStat(tile, 'layer', '-');
  tile.querySelector('.layer-choice').hidden = false;
  tile.querySelector('.layer-stat').hidden = false;
}

function hideLayerPicker(tile) {
  const select = tile.querySelector('.layer-select');
  delete select.dataset.consumerId;
  select.replaceChildren();
  for (const key of ['layers', 'preferredLayer', 'spatialLayer']) delete tile.dataset[key];
  tile.querySelector('.layer-choice').hidden = true;
  tile.querySelector('.layer-stat').hidden = true;
}

/** The picker's choice becomes the consumer's preferred layer; the server's answer is shown. */
async function pickLayer(tile, select) {
  const { consumerId } = select.dataset;
  if (!consumerId) return;
  select.disabled = true; // one request at a time, so the last answer is the last choice
  try {
    const taken = await sfu.setPreferredLayers(consumerId, Number(select.value));
    if (taken !== null && select.dataset.consumerId === consumerId) {
      select.value = String(taken);
      tile.dataset.preferredLayer = String(taken);
    }
  } catch (err) {
    if (select.dataset.consumerId === consumerId) select.value = tile.dataset.preferredLayer;
    showSfuError({ code: err.code ?? 'error', message: err.message, request: 'set-preferred-layers' });
  } finally {
    select.disabled = false;
  }
}

function layerName(layer, layers) {
  return LAYER_NAMES[layers]?.[layer] ?? `Layer ${layer}`;
}

function describeLayer(layer, layers) {
  return Number.isInteger(layer) ? `${layerName(layer, layers)} (${layer + 1} of ${layers})` : '-';
}

function newTile(peer) {
  const tile = ui.tileTemplate.content.firstElementChild.cloneNode(true);
  tile.dataset.peer = peer;
  tile.dataset.iceState = 'new';
  tile.dataset.connectionState = 'new';
  tile.dataset.framesDecoded = '0';
  setTileName(tile, peer);
  const video = tile.querySelector('video');
  video.setAttribute('aria-label', `Video from ${peer}`);
  const select = tile.querySelector('.layer-select');
  select.setAttribute('aria-label', `Video quality from ${peer}`);
  select.addEventListener('change', () => pickLayer(tile, select));
  const unmute = tile.querySelector('.unmute');
  unmute.addEventListener('click', () => {
    video.muted = false;
    unmute.hidden = true;
    video.play().catch(() => {});
  });
  return tile;
}

function setTileName(tile, text) {
  tile.querySelector('.tile-name').textContent = text;
}

function setStat(tile, stat, text) {
  const dd = tile.querySelector(`[data-stat="${stat}"]`);
  if (dd && dd.textContent !== text) dd.textContent = text;
}

/** Plays with sound if the browser allows it (it does after a click), else muted plus a button. */
function playWithSound(video, tile) {
  if (!video.paused) return;
  video.play().catch(() => {
    video.muted = true;
    tile.querySelector('.unmute').hidden = false;
    video.play().catch(() => {});
  });
}

async function refreshStats() {
  for (const [peer, tile] of tiles) {
    let stats;
    try {
      stats = client.mesh ? await client.getPeerStats(peer) : await sfu.userStats(peer);
    } catch {
      continue;
    }
    if (!stats || tiles.get(peer) !== tile) continue;
    const candidate = stats.localCandidateType ? `${stats.localCandidateType}/${stats.remoteCandidateType}` : '';
    tile.dataset.connectionState = stats.connectionState;
    tile.dataset.iceState = stats.iceConnectionState;
    if (stats.dataChannelState) tile.dataset.dcState = stats.dataChannelState;
    tile.dataset.candidate = candidate;
    tile.dataset.framesDecoded = String(stats.framesDecoded);
    if (stats.frameWidth) {
      tile.dataset.frameWidth = String(stats.frameWidth);
      tile.dataset.frameHeight = String(stats.frameHeight);
    } else {
      delete tile.dataset.frameWidth;
      delete tile.dataset.frameHeight;
    }
    if (stats.rttMs === null) delete tile.dataset.rttMs;
    else tile.dataset.rttMs = String(stats.rttMs);
    setStat(tile, 'connection', stats.connectionState);
    setStat(tile, 'ice', stats.iceConnectionState);
    setStat(tile, 'candidate', candidate ? `${candidate}${stats.protocol ? ` (${stats.protocol})` : ''}` : '-');
    setStat(tile, 'rtt', stats.rttMs === null ? '-' : `${stats.rttMs} ms`);
    setStat(tile, 'frames', String(stats.framesDecoded));
    setStat(tile, 'size', stats.frameWidth ? `${stats.frameWidth}×${stats.frameHeight}` : '-');
  }
}

setInterval(refreshStats, STATS_INTERVAL_MS);

// --- camera and microphone -----------------------------------------------------------------

ui.mediaButton.addEventListener('click', () => {
  if (localStream) stopMedia();
  else startMedia();
});

async function startMedia() {
  if (!navigator.mediaDevices?.getUserMedia) {
    setMediaStatus('error', 'This page cannot use a camera here: browsers allow it only on https:// or http://localhost.');
    return;
  }
  setMediaStatus('starting', 'Asking for the camera and microphone…');
  ui.mediaButton.disabled = true;
  try {
    const { stream, kinds } = await openMedia();
    localStream = stream;
    sendMedia(stream);
    showLocalPreview(stream);
    ui.mediaButton.textContent = 'Stop camera and microphone';
    ui.mediaButton.setAttribute('aria-pressed', 'true');
    if (kinds === 'both') setMediaStatus('on', 'Sending your camera and microphone.');
    else if (kinds === 'audio') setMediaStatus('audio-only', 'No camera found: sending your microphone only.');
    else setMediaStatus('video-only', 'No microphone found: sending your camera only.');
    rememberMedia(true);
  } catch (err) {
    if (err.name === 'NotAllowedError' || err.name === 'SecurityError') {
      setMediaStatus('denied', 'Camera and microphone access was denied. Allow it in your browser\'s site settings, then press the button again.');
    } else if (err.name === 'NotFoundError' || err.name === 'OverconstrainedError') {
      setMediaStatus('none', 'No camera or microphone was found. You can still join, chat and watch others.');
    } else if (err.name === 'NotReadableError') {
      setMediaStatus('error', 'The camera or microphone is in use by another application.');
    } else {
      setMediaStatus('error', `Could not start the camera: ${err.message || err.name}`);
    }
  } finally {
    ui.mediaButton.disabled = false;
  }
}

/** Camera and microphone if both exist; otherwise whichever one does. */
async function openMedia() {
  const video = cameraConstraints();
  try {
    return { stream: await navigator.mediaDevices.getUserMedia({ video, audio: true }), kinds: 'both' };
  } catch (err) {
    if (err.name !== 'NotFoundError' && err.name !== 'OverconstrainedError') throw err;
  }
  try {
    return { stream: await navigator.mediaDevices.getUserMedia({ audio: true }), kinds: 'audio' };
  } catch (err) {
    if (err.name !== 'NotFoundError') throw err;
  }
  return { stream: await navigator.mediaDevices.getUserMedia({ video }), kinds: 'video' };
}

function stopMedia() {
  for (const track of localStream?.getTracks() ?? []) track.stop();
  localStream = null;
  sendMedia(null);
  localTile?.remove();
  localTile = null;
  ui.mediaButton.textContent = 'Start camera and microphone';
  ui.mediaButton.setAttribute('aria-pressed', 'false');
  setMediaStatus('off', 'Camera and microphone are off.');
  rememberMedia(false);
}

/** The stream to send, in whichever mode is on (the other one ignores it). */
function sendMedia(stream) {
  client.setLocalStream(stream);
  sfu.setLocalStream(stream);
}

function showLocalPreview(stream) {
  if (!localTile) {
    localTile = ui.tileTemplate.content.firstElementChild.cloneNode(true);
    localTile.dataset.local = 'true';
    localTile.classList.add('local');
    localTile.querySelector('.peer-stats').remove();
    ui.tiles.prepend(localTile);
  }
  setTileName(localTile, client.name ? `${client.name} (you)` : 'You');
  const video = localTile.querySelector('video');
  video.muted = true; // never play our own microphone back
  video.setAttribute('aria-label', 'Your camera');
  video.srcObject = stream;
  localTile.dataset.hasVideo = String(stream.getVideoTracks().length > 0);
  video.play().catch(() => {});
}

function setMediaStatus(state, text) {
  ui.mediaStatus.dataset.media = state;
  ui.mediaStatus.textContent = text;
  ui.mediaStatus.classList.toggle('error', ['denied', 'none', 'error'].includes(state));
}

function rememberMedia(on) {
  const session = readSession();
  if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify({ ...session, media: on }));
}

// --- chat and data channel -----------------------------------------------------------------

ui.chatForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.chatInput.value;
  if (!text.trim()) return;
  try {
    client.sendChat(text);
    ui.chatInput.value = '';
  } catch (err) {
    console.warn('chat not sent:', err.message);
  }
});

client.addEventListener('chat', ({ detail }) => {
  const li = logItem(ui.chatLog, detail.from, 'chat-text', detail.text, detail.timestamp);
  li.dataset.chatFrom = detail.from;
  if (detail.self) li.classList.add('self');
});

ui.dcForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.dcInput.value;
  if (!text.trim()) return;
  const count = client.broadcastData(text);
  if (count === 0) {
    ui.dcStatus.textContent = 'No data channel is open yet: nothing was sent.';
    return;
  }
  const li = logItem(ui.dcLog, `me → ${count} peer${count === 1 ? '' : 's'}`, 'dc-text', text);
  li.dataset.dcFrom = 'me';
  li.classList.add('self');
  ui.dcInput.value = '';
  ui.dcStatus.textContent = '';
});

client.addEventListener('datachannel', ({ detail }) => {
  const tile = tiles.get(detail.peer);
  if (tile) tile.dataset.dcState = 'open';
  ui.dcStatus.textContent = `Data channel open with ${detail.peer}.`;
});

client.addEventListener('message', ({ detail }) => {
  const text = typeof detail.data === 'string' ? detail.data : `(${detail.data.byteLength ?? detail.data.size} bytes)`;
  const li = logItem(ui.dcLog, detail.peer, 'dc-text', text);
  li.dataset.dcFrom = detail.peer;
});

/** Appends "time from: text" to a log, keeping at most MAX_LOG_ITEMS entries. */
function logItem(list, from, textClass, text, timestamp) {
  const li = document.createElement('li');
  const time = document.createElement('time');
  const when = timestamp ? new Date(timestamp) : new Date();
  const valid = !Number.isNaN(when.getTime());
  if (valid) time.dateTime = when.toISOString();
  time.textContent = valid ? when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }) : '';
  const who = document.createElement('strong');
  who.textContent = from;
  const body = document.createElement('span');
  body.className = textClass;
  body.textContent = text;
  li.append(time, ' ', who, ' ', body);
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.append(li);
  while (list.children.length > MAX_LOG_ITEMS) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
  return li;
}

// --- helpers -------------------------------------------------------------------------------

function describeState(detail) {
  switch (detail.state) {
    case 'idle': return 'Not connected';
    case 'connecting': return 'Connecting…';
    case 'open': return 'Connected, not in a room';
    case 'joined': return `In room "${client.room}" as "${client.name}"${client.mesh ? '' : ' (SFU)'}`;
    case 'reconnecting':
      if (detail.resuming) return `Reconnecting… the call continues (attempt ${detail.attempt})`;
      return detail.delayMs != null
        ? `Connection lost: retrying in ${Math.ceil(detail.delayMs / 1000)} s (attempt ${detail.attempt})`
        : `Reconnecting (attempt ${detail.attempt})…`;
    case 'closed': return 'Disconnected';
    default: return detail.state;
  }
}

/** The conference URL for `?server=`: ws(s) or http(s) origin, or this page's origin. */
function conferenceUrl(server) {
  if (!server) return undefined;
  try {
    const url = new URL(server);
    if (url.protocol === 'http:') url.protocol = 'ws:';
    if (url.protocol === 'https:') url.protocol = 'wss:';
    url.pathname = '/conference';
    url.search = '';
    return url.href;
  } catch {
    return undefined;
  }
}

function readSession() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? 'null');
  } catch {
    return null;
  }
}

// --- start ---------------------------------------------------------------------------------

const session = readSession();
ui.roomInput.value = session?.room ?? params.get('room') ?? '';
ui.nameInput.value = session?.name ?? params.get('name') ?? '';
setMode(session?.mode ?? params.get('mode') ?? 'mesh');
setSimulcast(session?.simulcast ?? params.get('simulcast') === '1');
renderMembers();
if (session?.room && session?.name) {
  // A reload: come back to the same room, in the same mode, with the camera if it was on.
  (async () => {
    if (session.media) await startMedia();
    await join(session.room, session.name, currentMode());
  })();
} else {
  client.connect();
}
