// The live dashboard at /dashboard: polls GET /api/stats?limit=1000 and GET /metrics once a
// second and shows connections and rooms by dialect, message rates (from the frame counters),
// errors by code, evictions, two minutes of small SVG charts, and a bounded, searchable table of
// rooms and members. In a cluster (/api/stats has `nodes`) it also shows the nodes with a live
// lease and how many listed connections each holds, and marks a `partial` answer (a node did
// not answer in time, so its connections are missing). `?server=http://HOST:PORT` reads
// another server (development aid).
//
// Stable hooks for tests:
//   #total-connections, #total-rooms (from /api/stats: connectedUsers, rooms), #rate-in,
//   #rate-out, #total-errors, #total-evictions: each has data-value with the raw number
//   #refresh-status[data-state]   ok | error | paused; data-updates counts successful refreshes
//   #dialect-table tr[data-dialect] > td[data-col=connections|members|in|out|errors|evictions]
//   #error-table tr[data-code] > td[data-col=count]
//   #room-table tr[data-kind=room|channel|pairing|lobby][data-room=NAME] > td[data-col=count]
//   #room-search, #room-table-note, #pause-button, #charts > figure[data-chart]
//   In a cluster only (hidden on a single node, where /api/stats has no `nodes`):
//   #nodes-card, #total-nodes[data-value] (nodes with a live lease), #nodes-panel[data-partial]
//   true | false, #nodes-partial (shown when partial; #total-connections' card gets
//   data-partial=true too), #node-table tr[data-node=ID][data-live=true|false] >
//   td[data-col=connections] (listed connections on that node), #node-table-note

const REFRESH_MS = 1000;
const HISTORY = 120; // samples kept for the charts: two minutes at one per second
const STATS_LIMIT = 1000; // the most /api/stats lists
const MAX_ROWS = 100; // rooms shown at once; the search narrows the rest
const DIALECTS = ['conference', 'query-rooms', 'room-relay', 'pairing', 'broadcast'];
const SVG = 'http://www.w3.org/2000/svg';

const $ = (id) => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`missing #${id}`);
  return element;
};

const ui = {
  status: $('refresh-status'),
  pause: $('pause-button'),
  error: $('fetch-error'),
  connections: $('total-connections'),
  rooms: $('total-rooms'),
  rateIn: $('rate-in'),
  rateOut: $('rate-out'),
  errors: $('total-errors'),
  evictions: $('total-evictions'),
  nodesCard: $('nodes-card'),
  nodes: $('total-nodes'),
  nodesPanel: $('nodes-panel'),
  nodesPartial: $('nodes-partial'),
  nodeBody: $('node-table').tBodies[0],
  nodeNote: $('node-table-note'),
  charts: $('charts'),
  dialectBody: $('dialect-table').tBodies[0],
  errorBody: $('error-table').tBodies[0],
  noErrors: $('no-errors'),
  roomBody: $('room-table').tBodies[0],
  roomSearch: $('room-search'),
  roomNote: $('room-table-note'),
};

const pageParams = new URLSearchParams(location.search);
const base = httpOrigin(pageParams.get('server'));
/** With `--auth required` the stats need an admin token: the one the page was opened with. */
const token = pageParams.get('access_token');
const history = [];
let previous = null; // the last sample's counters, for rates
let latestStats = null;
let paused = false;
let updates = 0;
let timer = null;

const charts = [
  chart('connections', 'Connections by dialect', DIALECTS.map((d) => ({ key: `conn:${d}`, label: d }))),
  chart('messages', 'Messages per second', [{ key: 'in', label: 'in' }, { key: 'out', label: 'out' }]),
  chart('rooms', 'Rooms and channels', [{ key: 'rooms', label: 'rooms' }, { key: 'channels', label: 'channels' }]),
  chart('errors', 'Errors and evictions per second', [{ key: 'errors', label: 'errors' }, { key: 'evictions', label: 'evictions' }]),
];

// --- polling -------------------------------------------------------------------------------

async function refresh() {
  timer = null;
  if (paused) return;
  const started = performance.now();
  try {
    const [stats, metricsText] = await Promise.all([
      fetchOk(`${base}/api/stats?limit=${STATS_LIMIT}`).then((r) => r.json()),
      fetchOk(`${base}/metrics`).then((r) => r.text()),
    ]);
    const sample = summarize(stats, parseMetrics(metricsText), performance.now());
    render(stats, sample);
    ui.error.hidden = true;
    updates += 1;
    ui.status.dataset.state = 'ok';
    ui.status.dataset.updates = String(updates);
    ui.status.textContent = `Live: updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    ui.status.dataset.state = 'error';
    ui.status.textContent = 'Not updating';
    ui.error.textContent = `Cannot read the server's stats (${err.message}). Retrying every second.`;
    ui.error.hidden = false;
  }
  if (!paused) timer = setTimeout(refresh, Math.max(0, REFRESH_MS - (performance.now() - started)));
}

async function fetchOk(url) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(url, { cache: 'no-store', headers });
  if (!response.ok) throw new Error(`${url.replace(base, '')}: HTTP ${response.status}`);
  return response;
}

ui.pause.addEventListener('click', () => {
  paused = !paused;
  ui.pause.textContent = paused ? 'Resume' : 'Pause';
  ui.pause.setAttribute('aria-pressed', String(paused));
  if (paused) {
    clearTimeout(timer);
    ui.status.dataset.state = 'paused';
    ui.status.textContent = 'Paused';
  } else {
    previous = null; // a rate across the pause would be meaningless
    refresh();
  }
});

ui.roomSearch.addEventListener('input', () => {
  if (latestStats) renderRooms(latestStats);
});

// --- metrics -------------------------------------------------------------------------------

/** Parses Prometheus text into [{name, labels, value}] (comments and bad lines skipped). */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** Turns one scrape into the numbers the page shows, with rates against the previous one. */
function summarize(stats, samples, now) {
  const byDialect = (name) => {
    const totals = Object.fromEntries(DIALECTS.map((d) => [d, 0]));
    for (const s of samples) if (s.name === name && s.labels.dialect in totals) totals[s.labels.dialect] += s.value;
    return totals;
  };
  const single = (name) => samples.find((s) => s.name === name)?.value ?? 0;
  const errorsByCode = new Map();
  const errorsByDialect = Object.fromEntries(DIALECTS.map((d) => [d, 0]));
  for (const s of samples) {
    if (s.name !== 'switchboard_errors_total') continue;
    const entry = errorsByCode.get(s.labels.code) ?? { count: 0, dialects: {} };
    entry.count += s.value;
    entry.dialects[s.labels.dialect] = (entry.dialects[s.labels.dialect] ?? 0) + s.value;
    errorsByCode.set(s.labels.code, entry);
    if (s.labels.dialect in errorsByDialect) errorsByDialect[s.labels.dialect] += s.value;
  }
  const counters = {
    in: byDialect('switchboard_frames_in_total'),
    out: byDialect('switchboard_frames_out_total'),
    evictions: byDialect('switchboard_evictions_total'),
    errors: sum(Object.values(errorsByDialect)),
    t: now,
  };
  const rates = { in: null, out: null, inByDialect: {}, outByDialect: {}, errors: null, evictions: null };
  if (previous) {
    const seconds = (now - previous.t) / 1000;
    // A counter that went down means the server restarted: count from zero.
    const rate = (cur, prev) => (seconds > 0 ? Math.max(0, cur >= prev ? cur - prev : cur) / seconds : 0);
    for (const d of DIALECTS) {
      rates.inByDialect[d] = rate(counters.in[d], previous.in[d]);
      rates.outByDialect[d] = rate(counters.out[d], previous.out[d]);
    }
    rates.in = sum(Object.values(rates.inByDialect));
    rates.out = sum(Object.values(rates.outByDialect));
    rates.errors = rate(counters.errors, previous.errors);
    rates.evictions = rate(sum(Object.values(counters.evictions)), sum(Object.values(previous.evictions)));
  }
  previous = counters;
  return {
    connections: byDialect('switchboard_connections'),
    members: byDialect('switchboard_room_members'),
    rooms: single('switchboard_rooms'),
    channels: single('switchboard_broadcast_channels'),
    evictions: counters.evictions,
    errorsByCode,
    errorsByDialect,
    errorsTotal: counters.errors,
    rates,
  };
}

// --- rendering -----------------------------------------------------------------------------

function render(stats, sample) {
  latestStats = stats;
  setCard(ui.connections, stats.connectedUsers);
  setCard(ui.rooms, stats.rooms);
  setCard(ui.rateIn, sample.rates.in, rateText);
  setCard(ui.rateOut, sample.rates.out, rateText);
  setCard(ui.errors, sample.errorsTotal);
  setCard(ui.evictions, sum(Object.values(sample.evictions)));

  renderDialects(sample);
  renderErrors(sample);
  renderRooms(stats);
  renderNodes(stats);

  const point = {
    in: sample.rates.in ?? 0,
    out: sample.rates.out ?? 0,
    rooms: sample.rooms,
    channels: sample.channels,
    errors: sample.rates.errors ?? 0,
    evictions: sample.rates.evictions ?? 0,
  };
  for (const d of DIALECTS) point[`conn:${d}`] = sample.connections[d];
  history.push(point);
  if (history.length > HISTORY) history.shift();
  for (const c of charts) c.draw(history);
}

function setCard(element, value, format = String) {
  element.dataset.value = value == null ? '' : String(value);
  element.textContent = value == null ? '-' : format(value);
}

function renderDialects(sample) {
  const rows = DIALECTS.map((d) => {
    const tr = document.createElement('tr');
    tr.dataset.dialect = d;
    const name = document.createElement('th');
    name.scope = 'row';
    name.textContent = d;
    tr.append(name,
      cell('connections', sample.connections[d]),
      cell('members', sample.members[d]),
      cell('in', sample.rates.inByDialect[d], rateText),
      cell('out', sample.rates.outByDialect[d], rateText),
      cell('errors', sample.errorsByDialect[d]),
      cell('evictions', sample.evictions[d]));
    return tr;
  });
  ui.dialectBody.replaceChildren(...rows);
}

function renderErrors(sample) {
  const entries = [...sample.errorsByCode].sort((a, b) => b[1].count - a[1].count);
  ui.noErrors.hidden = entries.length > 0;
  ui.errorBody.closest('table').hidden = entries.length === 0;
  ui.errorBody.replaceChildren(...entries.map(([code, entry]) => {
    const tr = document.createElement('tr');
    tr.dataset.code = code;
    const name = document.createElement('th');
    name.scope = 'row';
    const codeText = document.createElement('code');
    codeText.textContent = code;
    name.append(codeText);
    const detail = Object.entries(entry.dialects).map(([d, n]) => `${d} ${n}`).join(', ');
    tr.append(name, cell('count', entry.count), cell('dialects', detail));
    return tr;
  }));
}

/**
 * The cluster's nodes: those with a live lease (`stats.nodes`), plus any node a listed
 * connection names that has none (its lease ran out between the two reads), each with the
 * connections listed on it. Hidden when the server is a single node (no `nodes` field).
 */
function renderNodes(stats) {
  const isCluster = Array.isArray(stats.nodes);
  ui.nodesCard.hidden = !isCluster;
  ui.nodesPanel.hidden = !isCluster;
  const isPartial = isCluster && stats.partial === true;
  ui.connections.parentElement.dataset.partial = String(isPartial);
  ui.nodesCard.dataset.partial = String(isPartial);
  if (!isCluster) {
    setCard(ui.nodes, null);
    ui.nodeBody.replaceChildren();
    return;
  }
  setCard(ui.nodes, stats.nodes.length);
  ui.nodesPanel.dataset.partial = String(isPartial);
  ui.nodesPartial.hidden = !isPartial;
  ui.nodesPartial.textContent = isPartial
    ? 'Partial answer: a node with a live lease did not answer in time, so its connections are missing from the counts and tables.'
    : '';

  const listed = new Map(stats.nodes.map((node) => [String(node), 0]));
  const live = new Set(listed.keys());
  const users = Array.isArray(stats.users) ? stats.users : [];
  for (const user of users) {
    if (user.node == null) continue;
    const node = String(user.node);
    listed.set(node, (listed.get(node) ?? 0) + 1);
  }
  const rows = [...listed].sort((a, b) => a[0].localeCompare(b[0])).map(([node, count]) => {
    const tr = document.createElement('tr');
    tr.dataset.node = node;
    tr.dataset.live = String(live.has(node));
    const name = document.createElement('th');
    name.scope = 'row';
    const id = document.createElement('code');
    id.textContent = node;
    name.append(id);
    if (!live.has(node)) name.append(' (lease gone)');
    tr.append(name, cell('connections', count));
    return tr;
  });
  ui.nodeBody.replaceChildren(...rows);
  const cut = users.length < stats.connectedUsers
    ? ` The counts cover the ${users.length} listed of ${stats.connectedUsers} connections (the oldest ${stats.limit}).`
    : '';
  ui.nodeNote.textContent = `${stats.nodes.length} ${stats.nodes.length === 1 ? 'node has' : 'nodes have'} a live lease.${cut}`;
}

/** Groups the listed connections into rooms, channels and pairings, filtered by the search. */
function renderRooms(stats) {
  const groups = new Map();
  const users = Array.isArray(stats.users) ? stats.users : [];
  for (const user of users) {
    const [kind, name] = groupOf(user);
    const key = `${kind}\u0000${name}`;
    const group = groups.get(key) ?? { kind, name, members: [] };
    group.members.push(user);
    groups.set(key, group);
  }
  const query = ui.roomSearch.value.trim().toLowerCase();
  const matches = [...groups.values()]
    .filter((g) => !query || g.name.toLowerCase().includes(query)
      || g.members.some((m) => memberLabel(m).toLowerCase().includes(query)))
    .sort((a, b) => b.members.length - a.members.length || a.name.localeCompare(b.name));
  const shown = matches.slice(0, MAX_ROWS);
  ui.roomBody.replaceChildren(...shown.map((g) => {
    const tr = document.createElement('tr');
    tr.dataset.kind = g.kind;
    tr.dataset.room = g.name;
    const name = document.createElement('th');
    name.scope = 'row';
    name.textContent = g.name;
    const who = cell('members', '');
    who.classList.add('members');
    who.textContent = g.members.map(memberLabel).join(', ');
    tr.append(cell('kind', g.kind), name, cell('count', g.members.length), who);
    return tr;
  }));
  const listed = users.length;
  const coverage = listed < stats.connectedUsers
    ? ` The server listed ${listed} of ${stats.connectedUsers} connections (the oldest ${stats.limit}).`
    : '';
  ui.roomNote.textContent = `Showing ${shown.length} of ${matches.length}${query ? ' matching' : ''} rooms, channels and pairings.${coverage}`;
}

function groupOf(user) {
  if (user.dialect === 'broadcast') return ['channel', user.channel ?? 'default'];
  if (user.dialect === 'pairing') {
    if (user.state === 'idle' || !user.targetUser) return ['pairing', '(idle)'];
    return ['pairing', [user.id, user.targetUser].sort().join(' ↔ ')];
  }
  if (user.room == null) return ['lobby', '(not in a room)'];
  return ['room', user.room];
}

function memberLabel(user) {
  return `${user.id ?? `#${user.conn}`} (${user.dialect})`;
}

function cell(col, value, format = String) {
  const td = document.createElement('td');
  td.dataset.col = col;
  td.textContent = value == null || value === '' ? (value === '' ? '' : '-') : format(value);
  return td;
}

// --- charts --------------------------------------------------------------------------------

/** A small line chart: an SVG of fixed size, one polyline per series, scaled to the maximum. */
function chart(id, title, series) {
  const width = 320;
  const height = 110;
  const pad = { left: 30, right: 6, top: 8, bottom: 16 };
  const figure = document.createElement('figure');
  figure.className = 'chart';
  figure.dataset.chart = id;
  const caption = document.createElement('figcaption');
  const heading = document.createElement('span');
  heading.className = 'chart-title';
  heading.textContent = title;
  const legend = document.createElement('ul');
  legend.className = 'legend';
  const values = series.map((s, i) => {
    const li = document.createElement('li');
    li.className = `series-${i}`;
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    const text = document.createElement('span');
    li.append(swatch, text);
    legend.append(li);
    return { li, text };
  });
  caption.append(heading, legend);

  const svg = svgElement('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img' });
  const grid = svgElement('g', { class: 'grid' });
  const labels = svgElement('g', { class: 'axis' });
  const lines = series.map((_, i) => svgElement('polyline', { class: `line series-${i}`, points: '' }));
  const top = pad.top;
  const bottom = height - pad.bottom;
  for (const y of [top, (top + bottom) / 2, bottom]) {
    grid.append(svgElement('line', { x1: pad.left, x2: width - pad.right, y1: y, y2: y }));
  }
  const maxLabel = svgElement('text', { x: pad.left - 4, y: top + 4, 'text-anchor': 'end' });
  const zeroLabel = svgElement('text', { x: pad.left - 4, y: bottom + 4, 'text-anchor': 'end' });
  zeroLabel.textContent = '0';
  const startLabel = svgElement('text', { x: pad.left, y: height - 3 });
  startLabel.textContent = `−${HISTORY} s`;
  const nowLabel = svgElement('text', { x: width - pad.right, y: height - 3, 'text-anchor': 'end' });
  nowLabel.textContent = 'now';
  labels.append(maxLabel, zeroLabel, startLabel, nowLabel);
  svg.append(grid, labels, ...lines);
  figure.append(caption, svg);
  ui.charts.append(figure);

  return {
    draw(points) {
      const max = niceCeiling(Math.max(1, ...points.flatMap((p) => series.map((s) => p[s.key] ?? 0))));
      maxLabel.textContent = formatNumber(max);
      const step = (width - pad.left - pad.right) / (HISTORY - 1);
      const offset = HISTORY - points.length;
      series.forEach((s, i) => {
        const coords = points.map((p, j) => {
          const x = pad.left + (offset + j) * step;
          const y = bottom - ((p[s.key] ?? 0) / max) * (bottom - top);
          return `${x.toFixed(1)},${y.toFixed(1)}`;
        });
        lines[i].setAttribute('points', coords.join(' '));
        const last = points.at(-1)?.[s.key] ?? 0;
        values[i].text.textContent = `${s.label} ${formatNumber(last)}`;
      });
      const summary = series.map((s) => `${s.label} ${formatNumber(points.at(-1)?.[s.key] ?? 0)}`).join(', ');
      svg.setAttribute('aria-label', `${title}, now: ${summary}`);
    },
  };
}

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

/** 1, 2 or 5 times a power of ten, at least `value`. */
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((v) => v >= value) ?? value;
}

function formatNumber(value) {
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (value >= 1e4) return `${(value / 1e3).toFixed(0)}k`;
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

function rateText(value) {
  return value >= 100 ? String(Math.round(value)) : value.toFixed(1);
}

function sum(values) {
  return values.reduce((a, b) => a + b, 0);
}

/** http(s)://host for `?server=` (http, https, ws or wss), or '' for this page's origin. */
function httpOrigin(server) {
  if (!server) return '';
  try {
    const url = new URL(server);
    if (url.protocol === 'ws:') url.protocol = 'http:';
    if (url.protocol === 'wss:') url.protocol = 'https:';
    return url.origin;
  } catch {
    return '';
  }
}

refresh();
