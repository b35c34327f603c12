// The protocol tester at /test.html: open a WebSocket on any of the five dialects, send frames
// by hand (from templates taken from docs/protocol.md and docs/dialects.md), and see every
// frame in and out with a timestamp. One socket per tab. `?server=ws://HOST:PORT` points it at
// another server (development aid); the default is this page's origin.
//
// Stable hooks for tests:
//   #dialect-select, #server-input, #peer-id-input, #room-input, #name-input, #target-input,
//   #channel-input, #url-input, #connect-button, #disconnect-button,
//   #socket-status[data-state]   closed | connecting | open
//   #template-select, #frame-input, #raw-checkbox, #send-button, #frame-error
//   #frame-log > li[data-direction=in|out|info] > .frame-time, .frame-text
//   #frame-count, #clear-button, #pretty-checkbox

const MAX_LOG_ITEMS = 1000;

const $ = (id) => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`missing #${id}`);
  return element;
};

const ui = {
  status: $('socket-status'),
  connectForm: $('connect-form'),
  dialect: $('dialect-select'),
  server: $('server-input'),
  peerId: $('peer-id-input'),
  room: $('room-input'),
  name: $('name-input'),
  target: $('target-input'),
  channel: $('channel-input'),
  token: $('token-input'),
  url: $('url-input'),
  connectButton: $('connect-button'),
  disconnectButton: $('disconnect-button'),
  sendForm: $('send-form'),
  template: $('template-select'),
  frame: $('frame-input'),
  raw: $('raw-checkbox'),
  frameError: $('frame-error'),
  sendButton: $('send-button'),
  log: $('frame-log'),
  count: $('frame-count'),
  clear: $('clear-button'),
  pretty: $('pretty-checkbox'),
};

/** Example frames per dialect; `v` holds the form's current values. */
const TEMPLATES = {
  conference: {
    'join-room': (v) => ({ type: 'join-room', data: { roomId: v.room, username: v.name }, rid: 1 }),
    'chat-message': () => ({ type: 'chat-message', data: { text: 'hello' } }),
    'webrtc-offer': (v) => ({ type: 'webrtc-offer', data: { target: v.target, payload: { type: 'offer', sdp: 'v=0\r\n' } } }),
    'webrtc-ice-candidate': (v) => ({
      type: 'webrtc-ice-candidate',
      data: { target: v.target, payload: { candidate: 'candidate:1 1 UDP 2113667326 127.0.0.1 54400 typ host', sdpMid: '0', sdpMLineIndex: 0 } },
    }),
    'leave-room': (v) => ({ type: 'leave-room', data: { roomId: v.room } }),
    'unknown type (error)': () => ({ type: 'teleport', data: {}, rid: 9 }),
  },
  'query-rooms': {
    'offer to a peer': (v) => ({ type: 'offer', to: v.target, payload: { type: 'offer', sdp: 'v=0\r\n' } }),
    'answer to a peer': (v) => ({ type: 'answer', to: v.target, payload: { type: 'answer', sdp: 'v=0\r\n' } }),
    'chat to the room': () => ({ type: 'chat', payload: { text: 'hello' } }),
    'app-defined, room-wide': () => ({ type: 'hello' }),
    'reserved type (error)': () => ({ type: 'peer_left' }),
  },
  pairing: {
    ping: (v) => ({ type: 'ping', to: v.target, data: { test: true } }),
    pong: (v) => ({ type: 'pong', to: v.target, data: { received: true } }),
    offer: (v) => ({ type: 'offer', to: v.target, data: { type: 'offer', sdp: 'v=0\r\n' } }),
    disconnect: (v) => ({ type: 'disconnect', to: v.target, data: { reason: 'user_disconnect' } }),
  },
  'room-relay': {
    'join-room': (v) => ({ type: 'join-room', roomId: v.room, sender: v.name }),
    chat: (v) => ({ type: 'chat', roomId: v.room, message: 'hello' }),
    'offer to a member': (v) => ({ type: 'offer', target: v.target, data: { sdp: 'v=0' } }),
    'offer to the room': (v) => ({ type: 'offer', roomId: v.room, data: { sdp: 'v=0' } }),
    'leave-room': (v) => ({ type: 'leave-room', roomId: v.room, sender: v.name }),
  },
  broadcast: {
    offer: () => ({ type: 'offer', sdp: { type: 'offer', sdp: 'v=0\r\n' } }),
    'any JSON': () => ({ hello: 'everyone' }),
  },
};

const params = new URLSearchParams(location.search);
let socket = null;
let urlEdited = false;
let frameCount = 0;

ui.server.value = serverOrigin(params.get('server'));
ui.dialect.value = TEMPLATES[params.get('dialect')] ? params.get('dialect') : 'conference';
ui.token.value = params.get('access_token') ?? '';

// --- the URL and the form ------------------------------------------------------------------

function buildUrl() {
  const token = ui.token.value.trim();
  const url = dialectUrl();
  if (!token) return url;
  return `${url}${url.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(token)}`;
}

function dialectUrl() {
  const base = ui.server.value.trim().replace(/\/+$/, '');
  switch (ui.dialect.value) {
    case 'query-rooms': {
      const query = new URLSearchParams({ peer_id: ui.peerId.value, room: ui.room.value });
      return `${base}/ws?${query}`;
    }
    case 'pairing': return `${base}/pairing`;
    case 'room-relay': return `${base}/room-relay`;
    case 'broadcast': {
      const channel = ui.channel.value.trim();
      return channel ? `${base}/broadcast/${encodeURIComponent(channel)}` : `${base}/broadcast`;
    }
    default: return `${base}/conference`;
  }
}

function onDialectChange() {
  urlEdited = false;
  const dialect = ui.dialect.value;
  for (const field of ui.connectForm.querySelectorAll('[data-for]')) {
    field.hidden = !field.dataset.for.split(' ').includes(dialect);
  }
  ui.template.replaceChildren(...Object.keys(TEMPLATES[dialect]).map((name) => new Option(name, name)));
  refreshUrl();
  fillTemplate();
}

function refreshUrl() {
  if (!urlEdited) ui.url.value = buildUrl();
}

function fillTemplate() {
  const make = TEMPLATES[ui.dialect.value][ui.template.value];
  if (!make) return;
  const values = { room: ui.room.value, name: ui.name.value, target: ui.target.value };
  ui.frame.value = JSON.stringify(make(values));
  ui.frameError.hidden = true;
}

ui.dialect.addEventListener('change', onDialectChange);
for (const input of [ui.server, ui.peerId, ui.room, ui.channel, ui.token]) input.addEventListener('input', refreshUrl);
for (const input of [ui.room, ui.name, ui.target]) input.addEventListener('input', fillTemplate);
ui.url.addEventListener('input', () => { urlEdited = true; });
ui.template.addEventListener('change', fillTemplate);

// --- the socket ----------------------------------------------------------------------------

ui.connectForm.addEventListener('submit', (event) => {
  event.preventDefault();
  connect(ui.url.value.trim());
});

ui.disconnectButton.addEventListener('click', () => socket?.close(1000, 'closed by the tester'));

function connect(url) {
  if (socket) socket.close(1000, 'reconnecting');
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (err) {
    log('info', `cannot open ${url}: ${err.message}`);
    return;
  }
  socket = ws;
  setStatus('connecting', `Connecting to ${url}…`);
  log('info', `connecting to ${url}`);
  ws.addEventListener('open', () => {
    if (ws !== socket) return;
    setStatus('open', `Connected to ${url}`);
    log('info', 'open');
  });
  ws.addEventListener('message', async (event) => {
    const text = typeof event.data === 'string'
      ? event.data
      : `(binary, ${event.data.size ?? event.data.byteLength} bytes) ${await binaryText(event.data)}`;
    log('in', text);
  });
  ws.addEventListener('error', () => log('info', 'socket error (the close below says more)'));
  ws.addEventListener('close', (event) => {
    log('info', `closed: code ${event.code}${event.reason ? `, reason "${event.reason}"` : ''}${event.wasClean ? '' : ' (not clean)'}`);
    if (ws !== socket) return;
    socket = null;
    setStatus('closed', `Closed (code ${event.code})`);
  });
}

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
  ui.sendButton.disabled = state !== 'open';
  ui.disconnectButton.disabled = state === 'closed';
}

ui.sendForm.addEventListener('submit', (event) => {
  event.preventDefault();
  send();
});

ui.frame.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    send();
  }
});

function send() {
  if (socket?.readyState !== WebSocket.OPEN) return;
  const text = ui.frame.value;
  if (!ui.raw.checked) {
    try {
      JSON.parse(text);
    } catch (err) {
      ui.frameError.textContent = `Not valid JSON (${err.message}). Tick the box above to send it anyway.`;
      ui.frameError.hidden = false;
      return;
    }
  }
  ui.frameError.hidden = true;
  socket.send(text);
  log('out', text);
}

// --- the log -------------------------------------------------------------------------------

function log(direction, text) {
  const li = document.createElement('li');
  li.dataset.direction = direction;
  const time = document.createElement('time');
  const now = new Date();
  time.className = 'frame-time';
  time.dateTime = now.toISOString();
  time.textContent = clock(now);
  const arrow = document.createElement('span');
  arrow.className = 'frame-arrow';
  arrow.textContent = { in: '←', out: '→', info: '•' }[direction];
  arrow.setAttribute('aria-label', { in: 'received', out: 'sent', info: 'note' }[direction]);
  const body = document.createElement('pre');
  body.className = 'frame-text';
  body.dataset.raw = text;
  body.textContent = ui.pretty.checked ? pretty(text) : text;
  li.append(time, arrow, body);
  const atBottom = ui.log.scrollTop + ui.log.clientHeight >= ui.log.scrollHeight - 4;
  ui.log.append(li);
  while (ui.log.children.length > MAX_LOG_ITEMS) ui.log.firstElementChild.remove();
  if (atBottom) ui.log.scrollTop = ui.log.scrollHeight;
  if (direction !== 'info') ui.count.textContent = String(++frameCount);
}

ui.clear.addEventListener('click', () => {
  ui.log.replaceChildren();
  frameCount = 0;
  ui.count.textContent = '0';
});

ui.pretty.addEventListener('change', () => {
  for (const pre of ui.log.querySelectorAll('.frame-text')) {
    pre.textContent = ui.pretty.checked ? pretty(pre.dataset.raw) : pre.dataset.raw;
  }
});

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

/** HH:MM:SS.mmm in local time. */
function clock(date) {
  const pad = (n, width = 2) => String(n).padStart(width, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

async function binaryText(data) {
  try {
    const buffer = data instanceof Blob ? await data.arrayBuffer() : data;
    return new TextDecoder('utf-8', { fatal: false }).decode(buffer);
  } catch {
    return '';
  }
}

/** ws(s)://host for `?server=` (ws, wss, http or https), default this page's origin. */
function serverOrigin(server) {
  try {
    const url = new URL(server ?? location.href);
    if (url.protocol === 'http:') url.protocol = 'ws:';
    if (url.protocol === 'https:') url.protocol = 'wss:';
    return `${url.protocol}//${url.host}`;
  } catch {
    return `ws://${location.host}`;
  }
}

onDialectChange();
