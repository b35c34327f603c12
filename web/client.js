// switchboard client: the conference dialect (docs/protocol.md) plus a WebRTC mesh per room.
//
// It owns the WebSocket (reconnect with capped, jittered exponential backoff, rejoining the
// room afterwards), the room membership, chat, and one RTCPeerConnection per other member,
// negotiated with the "perfect negotiation" pattern. It leaves all UI to the page: everything
// it learns is dispatched as a typed event. Documented in docs/client.md.
//
// Resume (on by default, `resume: false` turns it off): the socket opts in with `?resume=1`,
// numbers its frames and acknowledges the server's. When the socket drops without a goodbye
// the client keeps its room, its peer connections and its pending requests, reconnects and
// sends `resume` first: the server replays what was missed and reports what it received, and
// the client resends the rest. Only when the server answers `resume_failed` (or the window is
// over) does it fall back to leaving and rejoining. A 4001 close (another socket resumed this
// session) stops it for good.
//
// With `mesh: false` it builds no peer connections: the page sends its media through the
// server's SFU instead (web/sfu.js), using `request()` for the SFU's requests and the
// `notification` event for what the SFU announces.
//
// Loaded as an ES module (`import { SwitchboardClient } from '/client.js'`); it also sets
// `globalThis.Switchboard`, so classic scripts can use it once the module has run
// (`<script type="module" src="/client.js">`, then `window.Switchboard` after DOMContentLoaded).
//
// Events (all CustomEvents; the payload is in `event.detail`):
//   state         {state, attempt?, delayMs?, code?, reason?, resuming?}  connection/room state
//                                                              changes; `resuming`: the room, the
//                                                              peer links and the SFU are kept
//   resumed       {resent}                                     a dropped socket came back (resent:
//                                                              own frames the server had not got)
//   joined        {room, users, iceServers, routerRtpCapabilities}  the server accepted a join
//   user-joined   {user}                                       a member joined the room
//   user-left     {user}                                       a member left the room
//   peer-joined   {peer}                                       a peer link was created
//   peer-left     {peer, reason}                               a peer link was closed
//   peer-state    {peer, connectionState, iceConnectionState, signalingState}
//   chat          {from, text, timestamp, self}
//   track         {peer, track, stream}                        remote media arrived
//   datachannel   {peer, channel}                              the peer's data channel opened
//   message       {peer, data}                                 a data-channel message
//   notification  {type, data}                                 any other server frame that is
//                                                              not a reply (new-producer, ...)
//   error         {code, message}                              a server error or a local failure

/** The data channel every peer link carries: negotiated out of band, same id on both sides. */
export const DATA_CHANNEL = Object.freeze({ label: 'switchboard', id: 0 });

/** Connection states, in the order a session normally walks through them. */
export const STATES = Object.freeze(['idle', 'connecting', 'open', 'joined', 'reconnecting', 'closed']);

/** How long a polite peer waits for the impolite one's first offer before offering itself. */
const FIRST_OFFER_WAIT_MS = 2500;
/** How long a polite peer leaves a failed ICE connection to the impolite one's restart. */
const POLITE_RESTART_DELAY_MS = 2000;
/**
 * How long request() waits for its reply. The server answers every request at once (the SFU
 * work behind it is in memory), so a silent server is a bug or a dead link: fail, and say so.
 */
const REQUEST_TIMEOUT_MS = 15000;

const DEFAULT_BACKOFF = Object.freeze({ initialMs: 500, maxMs: 15000, factor: 2 });

/** Acknowledge the server's frames after this many, or after ACK_AFTER_MS, whichever first. */
const ACK_EVERY = 32;
const ACK_AFTER_MS = 1000;
/**
 * Own frames kept for a resend after a resume (the server reports the last one it got). More
 * than a burst of ICE candidates; older ones are forgotten (the server got them long ago).
 */
const MAX_UNCONFIRMED = 512;
/** Close codes after which the server has ended the session: no resume is tried. */
const ENDING_CLOSE_CODES = new Set([1000, 1001, 1007, 1008, 1009, 4001]);

/**
 * A conference-dialect client with a WebRTC mesh.
 *
 * @example
 *   const client = new SwitchboardClient({ url: 'ws://localhost:8080/conference' });
 *   client.addEventListener('chat', (e) => console.log(e.detail.from, e.detail.text));
 *   await client.join('demo', 'alice');
 */
export class SwitchboardClient extends EventTarget {
  #url;
  #token;
  #iceServersOption;
  #iceTransportPolicy;
  #iceServersFromServer = [];
  #routerRtpCapabilities = null;
  #mesh;
  #backoff;
  #WebSocket;
  #socket = null;
  #state = 'idle';
  #attempt = 0;
  #reconnectTimer = null;
  #rejoinTimer = null;
  #closedByUser = false;
  #wanted = null; // {room, name}: the room this client means to be in, kept across reconnects
  #room = null; // the room the server has confirmed
  #name = null;
  #users = [];
  #links = new Map(); // peer name -> PeerLink
  #localStream = null;
  #nextRid = 1;
  #pending = new Map(); // rid -> a join {resolve, reject, automatic, wanted} or a request {type, resolve, reject}
  // Resume (docs/protocol.md "Resume"). The token is the session's secret: never logged.
  #resume;
  #sessionToken = null; // the session's current token, once the server has said `session`
  #windowMs = 0; // how long the server keeps a dropped session
  #droppedAt = 0; // when the socket of a resumable session dropped (0: it did not)
  #resuming = false; // a `resume` is on its way: frames wait until the answer
  #lastSeq = 0; // the last server frame processed
  #ackedSeq = 0;
  #ackTimer = null;
  #windowTimer = null;
  #outSeq = 0; // the last number given to one of our frames
  #unconfirmed = []; // [{seq, text}]: our frames the server may not have got

  /**
   * @param {object} [options]
   * @param {string} [options.url] WebSocket URL; default: `/conference` on the page's origin.
   * @param {RTCIceServer[]} [options.iceServers] overrides the servers `joined` announces.
   * @param {RTCIceTransportPolicy} [options.iceTransportPolicy] 'all' (the default) or 'relay':
   *   peer connections then use TURN relay candidates only (tests, or to hide peers' addresses).
   * @param {{initialMs?: number, maxMs?: number, factor?: number}} [options.backoff]
   * @param {typeof WebSocket} [options.WebSocket] a WebSocket implementation (tests, Node).
   * @param {boolean} [options.mesh] false: no peer connections (media goes through the SFU).
   * @param {string | (() => string)} [options.token] an access token for `--auth` (sent as
   *   `?access_token=`, since browsers cannot set headers on a WebSocket); a function is asked
   *   again at every reconnect, so it can hand out a fresh token.
   * @param {boolean} [options.resume] false: no session resume (a drop leaves the room).
   */
  constructor(options = {}) {
    super();
    this.#mesh = options.mesh ?? true;
    this.#url = options.url ?? defaultUrl();
    this.#token = options.token ?? null;
    this.#iceServersOption = options.iceServers ?? null;
    this.#iceTransportPolicy = options.iceTransportPolicy ?? 'all';
    this.#backoff = { ...DEFAULT_BACKOFF, ...(options.backoff ?? {}) };
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.#resume = options.resume ?? true;
  }

  /** Whether the socket opts in to session resume. */
  get resume() { return this.#resume; }

  /** One of {@link STATES}. */
  get state() { return this.#state; }
  /** The room the server confirmed, or null. */
  get room() { return this.#room; }
  /** This client's name in the room, or null. */
  get name() { return this.#name; }
  /** Every member of the room, this client included, in join order. */
  get users() { return [...this.#users]; }
  /** Names of the peers this client has a link with. */
  get peers() { return [...this.#links.keys()]; }
  /** The ICE servers new peer connections use. */
  get iceServers() { return this.#iceServersOption ?? this.#iceServersFromServer; }
  /** The ICE transport policy of new peer connections: 'all' or 'relay'. */
  get iceTransportPolicy() { return this.#iceTransportPolicy; }
  /** The stream sent to every peer, or null. */
  get localStream() { return this.#localStream; }
  /** The SFU's RTP capabilities from the last `joined` (mediasoup's shape), or null. */
  get routerRtpCapabilities() { return this.#routerRtpCapabilities; }

  /** Whether joining a room builds a WebRTC mesh with its members. */
  get mesh() { return this.#mesh; }
  /** Changes the mode for the next join; a room joined in one mode cannot switch to the other. */
  set mesh(value) {
    if (this.#room && Boolean(value) !== this.#mesh) throw codedError('invalid_state', 'leave the room before changing the mode');
    this.#mesh = Boolean(value);
  }

  /** Opens the socket (joining does it for you). Reconnects by itself until {@link close}. */
  connect() {
    this.#closedByUser = false;
    if (this.#socket && this.#socket.readyState <= 1) return;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#setState(this.#attempt === 0 ? 'connecting' : 'reconnecting', { attempt: this.#attempt, ...this.#resumingDetail() });
    let socket;
    try {
      socket = new this.#WebSocket(withToken(this.#resume ? withResume(this.#url) : this.#url, typeof this.#token === 'function' ? this.#token() : this.#token));
    } catch (err) {
      this.#emit('error', { code: 'connect_failed', message: String(err?.message ?? err) });
      this.#scheduleReconnect();
      return;
    }
    this.#socket = socket;
    socket.addEventListener('open', () => {
      if (socket !== this.#socket) return;
      if (this.#canResume()) {
        // The first frame must be the resume; everything else waits for its answer.
        this.#resuming = true;
        socket.send(JSON.stringify({ type: 'resume', data: { token: this.#sessionToken, seq: this.#lastSeq } }));
        return;
      }
      this.#freshSession();
      this.#setState('open');
      if (this.#wanted) this.#sendJoin(this.#wanted, true).catch(() => {}); // outcome arrives as events
      else this.#attempt = 0; // with a room wanted, only a successful rejoin resets the backoff
    });
    socket.addEventListener('message', (event) => {
      if (socket === this.#socket) this.#onFrame(event.data);
    });
    socket.addEventListener('close', (event) => {
      if (socket !== this.#socket) return;
      this.#socket = null;
      this.#onSocketClosed(event.code, event.reason);
    });
  }

  /**
   * Joins a room (connecting first if needed). Resolves with the `joined` detail; rejects with
   * an Error whose `code` is the server's (`name_taken`, `bad_id`, ...).
   * @param {string} room
   * @param {string} name
   * @returns {Promise<{room: string, users: string[], iceServers: RTCIceServer[]}>}
   */
  join(room, name) {
    this.#wanted = { room, name };
    clearTimeout(this.#rejoinTimer);
    if (!this.#socket) this.connect();
    if (this.#socket?.readyState === 1) return this.#sendJoin(this.#wanted, false);
    return new Promise((resolve, reject) => {
      const onJoined = (e) => { cleanup(); resolve(e.detail); };
      const onError = (e) => {
        if (e.detail.join) { cleanup(); reject(codedError(e.detail.code, e.detail.message)); }
      };
      const onState = (e) => {
        if (e.detail.state === 'closed') { cleanup(); reject(codedError('closed', 'client closed')); }
      };
      const cleanup = () => {
        this.removeEventListener('joined', onJoined);
        this.removeEventListener('error', onError);
        this.removeEventListener('state', onState);
      };
      this.addEventListener('joined', onJoined);
      this.addEventListener('error', onError);
      this.addEventListener('state', onState);
    });
  }

  /** Leaves the room and closes every peer link. The socket stays open. */
  leave() {
    this.#wanted = null;
    clearTimeout(this.#rejoinTimer);
    if (this.#room && this.#socket?.readyState === 1) {
      this.#send({ type: 'leave-room', data: { roomId: this.#room } });
    }
    this.#leftRoom('left');
    if (this.#socket?.readyState === 1) this.#setState('open');
  }

  /** Leaves, closes the socket and stops reconnecting. */
  close() {
    this.leave();
    this.#closedByUser = true;
    clearTimeout(this.#reconnectTimer);
    this.#endSession();
    const socket = this.#socket;
    this.#socket = null;
    if (socket && socket.readyState <= 1) socket.close(1000, 'bye');
    this.#attempt = 0;
    this.#setState('closed');
  }

  /**
   * Sends one request (an SFU request such as `create-transport`) and resolves with the
   * server's reply `{type, data}`, the frame that echoes the request's `rid`. Rejects with an
   * Error whose `code` is the server's (`producer_not_found`, ...), `not_connected`,
   * `disconnected` when the socket closes first, or `timeout` after REQUEST_TIMEOUT_MS.
   * @param {string} type
   * @param {object} [data]
   * @returns {Promise<{type: string, data: object}>}
   */
  request(type, data = {}) {
    const rid = this.#nextRid++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#pending.delete(rid)) reject(codedError('timeout', `no reply to ${type} within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      const settle = (fn) => (value) => { clearTimeout(timer); fn(value); };
      this.#pending.set(rid, { type, resolve: settle(resolve), reject: settle(reject) });
      if (!this.#send({ type, data, rid })) {
        this.#pending.delete(rid);
        clearTimeout(timer);
        reject(codedError('not_connected', 'the socket is not open'));
      }
    });
  }

  /**
   * Sends a chat message to the room (the server echoes it back as a `chat` event). While a
   * dropped socket is being resumed the message waits and goes out after the resume.
   */
  sendChat(text) {
    if (!this.#room) throw codedError('not_in_room', 'join a room first');
    return this.#send({ type: 'chat-message', data: { text: String(text) } });
  }

  /**
   * Sets the media sent to every peer (and to peers that join later). `null` stops sending.
   * Tracks of a kind already sent are replaced in place; others are added or removed, which
   * renegotiates through perfect negotiation.
   * @param {MediaStream|null} stream
   */
  setLocalStream(stream) {
    this.#localStream = stream ?? null;
    for (const link of this.#links.values()) link.setStream(this.#localStream);
  }

  /** Sends on one peer's data channel. Returns false when that channel is not open. */
  sendData(peer, data) {
    const channel = this.#links.get(peer)?.channel;
    if (!channel || channel.readyState !== 'open') return false;
    channel.send(data);
    return true;
  }

  /** Sends on every open data channel. Returns how many peers it went to. */
  broadcastData(data) {
    let count = 0;
    for (const peer of this.#links.keys()) if (this.sendData(peer, data)) count += 1;
    return count;
  }

  /** The RTCPeerConnection for a peer, for advanced use; undefined if there is none. */
  peerConnection(peer) { return this.#links.get(peer)?.pc; }

  /** The data channel for a peer; undefined if there is none. */
  dataChannel(peer) { return this.#links.get(peer)?.channel; }

  /**
   * A summary of one peer connection's state and `getStats()`: see {@link summarizeStats}.
   * Resolves with null when there is no link to that peer.
   */
  async getPeerStats(peer) {
    const link = this.#links.get(peer);
    if (!link) return null;
    const report = await link.pc.getStats();
    return { peer, ...peerStates(link), ...summarizeStats(report) };
  }

  /** {@link getPeerStats} for every peer, as a Map from peer name. */
  async getStats() {
    const entries = await Promise.all(this.peers.map(async (peer) => [peer, await this.getPeerStats(peer)]));
    return new Map(entries.filter(([, stats]) => stats));
  }

  // --- signaling ----------------------------------------------------------------------------

  /**
   * Sends one frame; false when the socket is not open (signals are then simply lost). On a
   * resumable session the frame is numbered and kept until a resume says the server has it,
   * and while the socket is away (or a resume is on its way) it waits for the resume.
   */
  #send(frame) {
    const open = this.#socket?.readyState === 1;
    if (!this.#resume || (!open && !this.#droppedAt)) {
      if (!open) return false;
      this.#socket.send(JSON.stringify(frame));
      return true;
    }
    this.#outSeq += 1;
    const text = JSON.stringify({ ...frame, seq: this.#outSeq });
    this.#unconfirmed.push({ seq: this.#outSeq, text });
    if (this.#unconfirmed.length > MAX_UNCONFIRMED) this.#unconfirmed.shift();
    if (open && !this.#resuming) this.#socket.send(text);
    return true;
  }

  // --- resume -------------------------------------------------------------------------------

  /** Whether a new socket should try to resume: a session whose drop is within its window. */
  #canResume() {
    return this.#resume && this.#sessionToken !== null && this.#droppedAt !== 0
      && Date.now() - this.#droppedAt < this.#windowMs;
  }

  #resumingDetail() {
    return this.#droppedAt ? { resuming: true } : {};
  }

  /** A socket that starts a session of its own: numbering starts again. */
  #freshSession() {
    this.#endSession();
    this.#outSeq = 0;
    this.#unconfirmed = [];
  }

  /** Forgets the resumable session (its token, its numbers). */
  #endSession() {
    this.#sessionToken = null;
    this.#droppedAt = 0;
    this.#resuming = false;
    this.#lastSeq = 0;
    this.#ackedSeq = 0;
    clearTimeout(this.#ackTimer);
    this.#ackTimer = null;
    clearTimeout(this.#windowTimer);
    this.#windowTimer = null;
  }

  /** Counts one numbered server frame; false if it was seen already (a replayed duplicate). */
  #numbered(seq) {
    if (seq <= this.#lastSeq) return false;
    this.#lastSeq = seq;
    if (this.#lastSeq - this.#ackedSeq >= ACK_EVERY) this.#ack();
    else if (!this.#ackTimer) this.#ackTimer = setTimeout(() => this.#ack(), ACK_AFTER_MS);
    return true;
  }

  #ack() {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = null;
    if (this.#resuming || this.#socket?.readyState !== 1 || this.#lastSeq === this.#ackedSeq) return;
    this.#socket.send(JSON.stringify({ type: 'ack', data: { seq: this.#lastSeq } }));
    this.#ackedSeq = this.#lastSeq;
  }

  #onSession(data) {
    if (this.#resuming) return; // this socket's own fresh session, unless the resume fails
    this.#sessionToken = typeof data.token === 'string' ? data.token : null;
    this.#windowMs = Number(data.window) || 0;
  }

  #onResumed(data) {
    this.#resuming = false;
    this.#droppedAt = 0;
    clearTimeout(this.#windowTimer);
    this.#sessionToken = typeof data.token === 'string' ? data.token : null;
    const received = Number(data.received) || 0;
    this.#unconfirmed = this.#unconfirmed.filter((frame) => frame.seq > received);
    for (const frame of this.#unconfirmed) this.#socket?.send(frame.text);
    this.#attempt = 0;
    this.#setState(this.#room ? 'joined' : 'open', { resumed: true });
    this.#emit('resumed', { resent: this.#unconfirmed.length });
  }

  /** The session could not come back: leave as a drop always did, and join afresh. */
  #resumeFailed() {
    this.#resuming = false;
    this.#freshSession();
    this.#abandonRoom();
    this.#setState('open');
    if (this.#wanted) this.#sendJoin(this.#wanted, true).catch(() => {});
  }

  #abandonRoom() {
    for (const [, request] of this.#pending) request.reject(codedError('disconnected', 'the socket closed'));
    this.#pending.clear();
    this.#leftRoom('disconnected');
  }

  /** Sends a WebRTC signal to one peer (called by PeerLink). */
  signal(type, target, payload) {
    return this.#send({ type, data: { target, payload } });
  }

  #sendJoin(wanted, automatic) {
    const rid = this.#nextRid++;
    return new Promise((resolve, reject) => {
      this.#pending.set(rid, { resolve, reject, automatic, wanted });
      if (!this.#send({ type: 'join-room', data: { roomId: wanted.room, username: wanted.name }, rid })) {
        this.#pending.delete(rid);
        reject(codedError('not_connected', 'the socket is not open'));
      }
    });
  }

  #onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return; // the server only sends JSON; ignore anything else
    }
    const data = frame?.data ?? {};
    if (typeof frame?.seq === 'number' && !this.#numbered(frame.seq)) return undefined;
    switch (frame?.type) {
      case 'session': return this.#onSession(data);
      case 'resumed': return this.#onResumed(data);
      case 'error':
        if (this.#resuming && (data.code === 'resume_failed' || data.code === 'rate_limited')) {
          return this.#resumeFailed();
        }
        break;
      default:
    }
    // A reply to request(): whatever its type, it echoes that request's rid. Errors and
    // `joined` keep their own handling below (join requests are pending under their rid too).
    const request = frame?.rid != null ? this.#pending.get(frame.rid) : undefined;
    if (request?.type && frame.type !== 'error') {
      this.#pending.delete(frame.rid);
      request.resolve({ type: frame.type, data });
      return undefined;
    }
    switch (frame?.type) {
      case 'joined': return this.#onJoined(frame.rid, data);
      case 'user-joined': return this.#onUserJoined(data.user);
      case 'user-left': return this.#onUserLeft(data.user);
      case 'chat-message':
        return this.#emit('chat', {
          from: data.from, text: data.text, timestamp: data.timestamp, self: data.from === this.#name,
        });
      case 'webrtc-offer':
      case 'webrtc-answer':
      case 'webrtc-ice-candidate':
        return this.#onSignal(frame.type, data.from, data.payload);
      case 'error': return this.#onError(frame.rid, data);
      // The SFU's announcements (new-producer, producer-closed), and types later server
      // versions may add: the page decides what they mean.
      default:
        if (typeof frame?.type === 'string') this.#emit('notification', { type: frame.type, data });
        return undefined;
    }
  }

  #onJoined(rid, data) {
    const request = this.#pending.get(rid);
    this.#pending.delete(rid);
    const wanted = request?.wanted ?? this.#wanted;
    // A join under another room or name left the old membership: the others dropped our links.
    if (this.#room && (this.#room !== data.roomId || this.#name !== wanted?.name)) this.#leftRoom('switched room');
    this.#room = data.roomId;
    this.#name = wanted?.name ?? this.#name;
    this.#users = Array.isArray(data.users) ? [...data.users] : [];
    this.#iceServersFromServer = Array.isArray(data.iceServers) ? data.iceServers : [];
    this.#routerRtpCapabilities = data.routerRtpCapabilities ?? null;
    this.#attempt = 0;
    this.#setState('joined');
    for (const user of this.#users) if (user !== this.#name) this.#ensureLink(user);
    const detail = {
      room: this.#room, users: this.users, iceServers: this.iceServers,
      routerRtpCapabilities: this.#routerRtpCapabilities,
    };
    this.#emit('joined', detail);
    request?.resolve(detail);
  }

  #onUserJoined(user) {
    if (typeof user !== 'string' || user === this.#name) return;
    if (!this.#users.includes(user)) this.#users.push(user);
    this.#emit('user-joined', { user });
    this.#ensureLink(user);
  }

  #onUserLeft(user) {
    if (typeof user !== 'string') return;
    this.#users = this.#users.filter((u) => u !== user);
    this.#emit('user-left', { user });
    this.#dropLink(user, 'left');
  }

  #onSignal(type, from, payload) {
    if (typeof from !== 'string' || from === this.#name || !this.#room) return;
    this.#ensureLink(from)?.receive(type, payload); // no link without a mesh: ignored
  }

  #onError(rid, data) {
    const request = rid != null ? this.#pending.get(rid) : undefined;
    if (request) this.#pending.delete(rid);
    if (request?.type) {
      // A request() failed: its caller gets the error, the page hears of it as usual.
      request.reject(codedError(data.code, data.message));
      this.#emit('error', { code: data.code, message: data.message, request: request.type });
      return;
    }
    const detail = { code: data.code, message: data.message, join: Boolean(request) };
    if (request?.automatic && data.code === 'name_taken') {
      // Our previous socket may still hold the name until the server notices it is gone:
      // try again later instead of giving up on the room.
      const delayMs = this.#delay(this.#attempt++);
      this.#setState('reconnecting', { attempt: this.#attempt, delayMs, code: data.code });
      clearTimeout(this.#rejoinTimer);
      this.#rejoinTimer = setTimeout(() => {
        if (this.#wanted && this.#socket?.readyState === 1) this.#sendJoin(this.#wanted, true).catch(() => {});
      }, delayMs);
      request.reject(codedError(data.code, data.message));
      return;
    }
    if (request) {
      if (!request.automatic) this.#wanted = this.#room ? { room: this.#room, name: this.#name } : null;
      request.reject(codedError(data.code, data.message));
    }
    this.#emit('error', detail);
  }

  #onSocketClosed(code, reason) {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = null;
    this.#resuming = false;
    // A drop without a goodbye (1006) parks a resumable session on the server: keep the room,
    // the links and the pending requests for the resume; so does 1012 (a cluster node shutting
    // down hands its sessions to the others). A close the server sent otherwise (1001 going
    // away, 1008 too slow, ...) ended the session there, and 4001 moved it to another socket.
    const parked = this.#resume && this.#sessionToken !== null && !this.#closedByUser
      && !ENDING_CLOSE_CODES.has(code);
    if (parked && !this.#droppedAt) {
      this.#droppedAt = Date.now();
      clearTimeout(this.#windowTimer);
      // Past the window the server has ended the session: stop pretending to be in the room.
      this.#windowTimer = setTimeout(() => {
        this.#windowTimer = null;
        if (!this.#droppedAt || this.#resuming) return;
        this.#freshSession();
        this.#abandonRoom();
        this.#setState(this.#state, { attempt: this.#attempt });
      }, this.#windowMs);
    }
    if (!parked || !this.#canResume()) {
      this.#freshSession();
      // The server has told the room we left; our peer connections are dead for the others.
      this.#abandonRoom();
    }
    if (this.#closedByUser) {
      this.#setState('closed', { code, reason });
      return;
    }
    if (code === 4001) {
      // Another socket resumed this session (this one was half-open): it carries on there.
      this.#closedByUser = true;
      this.#setState('closed', { code, reason });
      return;
    }
    this.#scheduleReconnect(code, reason);
  }

  #scheduleReconnect(code, reason) {
    const delayMs = this.#delay(this.#attempt);
    this.#attempt += 1;
    this.#setState('reconnecting', { attempt: this.#attempt, delayMs, code, reason, ...this.#resumingDetail() });
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => this.connect(), delayMs);
  }

  /** Capped exponential backoff with "equal jitter": half fixed, half random. */
  #delay(attempt) {
    const { initialMs, maxMs, factor } = this.#backoff;
    const ceiling = Math.min(maxMs, initialMs * factor ** Math.min(attempt, 30));
    return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  }

  #leftRoom(reason) {
    for (const peer of [...this.#links.keys()]) this.#dropLink(peer, reason);
    this.#room = null;
    this.#users = [];
    this.#routerRtpCapabilities = null;
  }

  #ensureLink(peer) {
    let link = this.#links.get(peer);
    if (!link) {
      if (!this.#mesh) return undefined;
      if (!this.#users.includes(peer)) this.#users.push(peer);
      link = new PeerLink(this, peer, this.#name > peer);
      this.#links.set(peer, link);
      this.#emit('peer-joined', { peer });
      link.start(this.#localStream);
    }
    return link;
  }

  #dropLink(peer, reason) {
    const link = this.#links.get(peer);
    if (!link) return;
    this.#links.delete(peer);
    link.close();
    this.#emit('peer-left', { peer, reason });
  }

  #setState(state, extra = {}) {
    this.#state = state;
    this.#emit('state', { state, ...extra });
  }

  /** Dispatches a typed event (also used by PeerLink). */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** PeerLink's way to dispatch events on the client. */
  emitFromLink(type, detail) { this.#emit(type, detail); }
}

/**
 * One peer connection, negotiated with the perfect negotiation pattern
 * (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example). The polite peer is the
 * one whose name sorts higher (plain code-unit order): on an offer collision it rolls back
 * its own offer (implicitly, in setRemoteDescription) and answers; the impolite one ignores
 * the colliding offer. Signals from one peer are handled strictly in arrival order.
 */
class PeerLink {
  constructor(client, peer, polite) {
    this.client = client;
    this.peer = peer;
    this.polite = polite;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.isSettingRemoteAnswerPending = false;
    this.queue = Promise.resolve();
    this.closed = false;
    // The impolite peer makes the first offer; the polite one waits for it (FIRST_OFFER_WAIT_MS
    // at most, for peers that only ever answer). Without this both offer at once on every new
    // link, and Chromium sometimes stops gathering ICE candidates after the polite side's
    // rollback, leaving the call stuck in "new".
    this.awaitingFirstOffer = polite;
    this.negotiationPending = false;
    this.firstOfferTimer = polite ? setTimeout(() => this.#stopAwaitingFirstOffer(), FIRST_OFFER_WAIT_MS) : null;
    this.remoteStream = null;
    this.pc = new RTCPeerConnection({
      iceServers: client.iceServers, iceTransportPolicy: client.iceTransportPolicy,
    });
    // Negotiated with a fixed id: both sides create it, neither waits for the other's
    // "datachannel" event, and an independent stack (aiortc) can do the same.
    this.channel = this.pc.createDataChannel(DATA_CHANNEL.label, { negotiated: true, id: DATA_CHANNEL.id });
    this.#wire();
  }

  start(stream) {
    this.setStream(stream);
  }

  async #negotiate() {
    const { pc } = this;
    if (this.closed) return;
    try {
      this.makingOffer = true;
      await pc.setLocalDescription();
      if (!this.closed) this.client.signal('webrtc-offer', this.peer, pc.localDescription.toJSON());
    } catch (err) {
      this.#fail('negotiation_failed', err);
    } finally {
      this.makingOffer = false;
    }
  }

  #stopAwaitingFirstOffer() {
    clearTimeout(this.firstOfferTimer);
    if (!this.awaitingFirstOffer) return;
    this.awaitingFirstOffer = false;
    // No offer came: negotiate ourselves if something is waiting (and nothing is under way).
    if (this.negotiationPending && !this.closed && this.pc.signalingState === 'stable') this.#negotiate();
    this.negotiationPending = false;
  }

  /**
   * ICE restart on failure. The impolite peer restarts at once; the polite one only if the
   * failure persists, so that the two rarely offer at the same time (see awaitingFirstOffer).
   */
  #restartIceSoon() {
    if (this.closed) return;
    if (!this.polite) {
      this.pc.restartIce();
      return;
    }
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (!this.closed && this.pc.iceConnectionState === 'failed') this.pc.restartIce();
    }, POLITE_RESTART_DELAY_MS);
  }

  #wire() {
    const { pc, channel, client, peer } = this;
    pc.addEventListener('negotiationneeded', () => {
      if (this.awaitingFirstOffer) {
        this.negotiationPending = true; // made after the impolite peer's first offer, if still needed
        return;
      }
      this.#negotiate();
    });
    pc.addEventListener('icecandidate', ({ candidate }) => {
      // The end-of-candidates null is not sent: every peer copes without it.
      if (candidate && !this.closed) client.signal('webrtc-ice-candidate', peer, candidate.toJSON());
    });
    pc.addEventListener('iceconnectionstatechange', () => {
      if (pc.iceConnectionState === 'failed') this.#restartIceSoon();
      this.#emitState();
    });
    pc.addEventListener('connectionstatechange', () => this.#emitState());
    pc.addEventListener('signalingstatechange', () => this.#emitState());
    pc.addEventListener('track', ({ track, streams }) => {
      const stream = streams[0] ?? (this.remoteStream ??= new MediaStream());
      if (!streams[0]) stream.addTrack(track);
      client.emitFromLink('track', { peer, track, stream });
    });
    channel.addEventListener('open', () => client.emitFromLink('datachannel', { peer, channel }));
    channel.addEventListener('message', ({ data }) => client.emitFromLink('message', { peer, data }));
  }

  #emitState() {
    if (this.closed) return;
    this.client.emitFromLink('peer-state', { peer: this.peer, ...peerStates(this) });
  }

  /** Queues one incoming signal; signals are applied one at a time, in order. */
  receive(type, payload) {
    this.queue = this.queue.then(() => this.#apply(type, payload)).catch((err) => this.#fail('signal_failed', err));
  }

  async #apply(type, payload) {
    if (this.closed || payload == null || typeof payload !== 'object') return;
    const { pc } = this;
    if (type === 'webrtc-ice-candidate') {
      try {
        await pc.addIceCandidate(payload);
      } catch (err) {
        if (!this.ignoreOffer) throw err; // candidates of an offer we ignored are expected to fail
      }
      return;
    }
    const description = { type: payload.type, sdp: payload.sdp };
    const readyForOffer = !this.makingOffer && (pc.signalingState === 'stable' || this.isSettingRemoteAnswerPending);
    const offerCollision = description.type === 'offer' && !readyForOffer;
    this.ignoreOffer = !this.polite && offerCollision;
    if (this.ignoreOffer) return;
    this.isSettingRemoteAnswerPending = description.type === 'answer';
    try {
      await pc.setRemoteDescription(description); // rolls back our own offer when polite
    } finally {
      this.isSettingRemoteAnswerPending = false;
    }
    if (description.type === 'offer') {
      await pc.setLocalDescription();
      if (!this.closed) this.client.signal('webrtc-answer', this.peer, pc.localDescription.toJSON());
      // Back in "stable": Chromium fires negotiationneeded again if our side still needs it.
      if (this.awaitingFirstOffer) {
        this.awaitingFirstOffer = false;
        this.negotiationPending = false;
        clearTimeout(this.firstOfferTimer);
      }
    }
  }

  /** Sends `stream`'s tracks: replaces tracks of a kind already sent, adds or removes others. */
  setStream(stream) {
    if (this.closed) return;
    const tracks = stream ? stream.getTracks() : [];
    const senders = this.pc.getSenders();
    for (const sender of senders) {
      if (sender.track && !tracks.some((t) => t.kind === sender.track.kind)) this.pc.removeTrack(sender);
    }
    for (const track of tracks) {
      const sender = this.pc.getSenders().find((s) => s.track?.kind === track.kind);
      if (sender) {
        if (sender.track !== track) sender.replaceTrack(track).catch((err) => this.#fail('media_failed', err));
        continue;
      }
      // Reuse a transceiver of that kind that sends nothing (one we stopped sending on, or one
      // the peer's offer created), so that starting and stopping a camera does not add m-lines.
      const idle = this.pc.getTransceivers().find((t) => !t.stopped && t.currentDirection !== 'stopped'
        && !t.sender.track && t.receiver.track?.kind === track.kind);
      if (idle) {
        idle.sender.replaceTrack(track).catch((err) => this.#fail('media_failed', err));
        idle.sender.setStreams?.(stream);
        if (idle.direction === 'recvonly') idle.direction = 'sendrecv';
        else if (idle.direction === 'inactive') idle.direction = 'sendonly';
      } else {
        this.pc.addTrack(track, stream);
      }
    }
  }

  close() {
    this.closed = true;
    clearTimeout(this.firstOfferTimer);
    clearTimeout(this.restartTimer);
    try { this.channel.close(); } catch { /* already closed */ }
    this.pc.close();
  }

  #fail(code, err) {
    if (this.closed) return;
    this.client.emitFromLink('error', { code, message: `${this.peer}: ${err?.message ?? err}`, peer: this.peer });
  }
}

function peerStates(link) {
  return {
    connectionState: link.pc.connectionState,
    iceConnectionState: link.pc.iceConnectionState,
    signalingState: link.pc.signalingState,
    dataChannelState: link.channel.readyState,
  };
}

/**
 * Reduces an RTCStatsReport to what a call UI shows: the selected candidate pair (types and
 * protocol), its round-trip time, and media counters. `frameWidth` and `frameHeight` are the
 * size of the widest inbound video's last decoded frame (0 when none).
 * @param {RTCStatsReport} report
 * @returns {{localCandidateType: string|null, remoteCandidateType: string|null,
 *   protocol: string|null, rttMs: number|null, framesDecoded: number, framesReceived: number,
 *   frameWidth: number, frameHeight: number, bytesReceived: number, bytesSent: number}}
 */
export function summarizeStats(report) {
  let pair = null;
  let framesDecoded = 0;
  let framesReceived = 0;
  let frameWidth = 0;
  let frameHeight = 0;
  let bytesReceived = 0;
  let bytesSent = 0;
  report.forEach((s) => {
    if (s.type === 'transport') {
      if (s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) ?? pair;
      bytesReceived += s.bytesReceived ?? 0;
      bytesSent += s.bytesSent ?? 0;
    }
    if (s.type === 'inbound-rtp' && (s.kind ?? s.mediaType) === 'video') {
      framesDecoded += s.framesDecoded ?? 0;
      framesReceived += s.framesReceived ?? 0;
      if ((s.frameWidth ?? 0) > frameWidth) {
        frameWidth = s.frameWidth;
        frameHeight = s.frameHeight ?? 0;
      }
    }
  });
  if (!pair) {
    report.forEach((s) => {
      if (!pair && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
    });
  }
  const local = pair ? report.get(pair.localCandidateId) : null;
  const remote = pair ? report.get(pair.remoteCandidateId) : null;
  const rtt = pair?.currentRoundTripTime;
  return {
    localCandidateType: local?.candidateType ?? null,
    remoteCandidateType: remote?.candidateType ?? null,
    protocol: local?.protocol ?? null,
    localAddress: local ? `${local.address ?? local.ip ?? '?'}:${local.port}` : null,
    remoteAddress: remote ? `${remote.address ?? remote.ip ?? '?'}:${remote.port}` : null,
    rttMs: typeof rtt === 'number' ? Math.round(rtt * 10000) / 10 : null,
    framesDecoded,
    framesReceived,
    frameWidth,
    frameHeight,
    bytesReceived,
    bytesSent,
  };
}

/** `url` with `?access_token=` added, if there is a token. */
function withToken(url, token) {
  if (!token) return url;
  return `${url}${url.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(token)}`;
}

/** `url` with `resume=1` added to its query. */
function withResume(url) {
  try {
    const parsed = new URL(url, globalThis.location?.href);
    parsed.searchParams.set('resume', '1');
    return parsed.href;
  } catch {
    return url;
  }
}

/** `/conference` on the page's own origin (ws: for http:, wss: for https:). */
export function defaultUrl() {
  const loc = globalThis.location;
  if (!loc?.host) return 'ws://localhost:8080/conference';
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/conference`;
}

function codedError(code, message) {
  const err = new Error(message ?? code);
  err.code = code;
  return err;
}

const Switchboard = Object.freeze({ SwitchboardClient, summarizeStats, defaultUrl, DATA_CHANNEL, STATES });
globalThis.Switchboard = Switchboard;
export default Switchboard;
