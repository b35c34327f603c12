// The demo's SFU mode: the camera and microphone go to switchboard's SFU once, and every other
// member's media comes back from it, instead of one peer connection per member (the mesh in
// client.js). The WebRTC side is mediasoup-client, unmodified (web/vendor/, loaded on first
// use); this file speaks the conference dialect's SFU requests through the SwitchboardClient's
// socket (`client.request()`, replies matched by `rid`) and turns what happens into events.
// It never touches the DOM; app.js draws the tiles.
//
// One session per room joined (a rejoin after a reconnect starts a new one):
//   joined {routerRtpCapabilities}    device.load, then create-transport {direction: "recv"}
//   a local stream                    create-transport {direction: "send"} (once), then one
//                                     produce per track (video with three encodings, r0..r2,
//                                     when `simulcast` is on); the transport's first `connect`
//                                     event sends connect-transport {transportId, dtlsParameters}
//   new-producer {producerId, user}   consume → recvTransport.consume() → resume-consumer
//   producer-closed {consumerId}      that consumer closes and its track goes
//   setProducerPaused(kind, paused)   producer.pause()/resume(), then pause-producer /
//                                     resume-producer: the server stops/starts forwarding it
//   setConsumerPaused(id, paused)     consumer.pause()/resume(), then pause-consumer /
//                                     resume-consumer
//   consumer-paused / consumer-resumed {consumerId}   the publisher paused/resumed: the
//                                     consumer is paused/resumed here too
//   setPreferredLayers(id, layer)     set-preferred-layers {consumerId, spatialLayer}: the
//                                     highest simulcast layer we want of that consumer
//   consumer-layers-changed {consumerId, spatialLayer}   the server now forwards that layer
//                                     to the consumer: a `layers` event
//   leaving, a dropped socket         the session ends; the server closes what we owned
// Requests are made one at a time, in the order the events that cause them arrived, so a
// producer-closed never overtakes the consume it undoes.
//
// Events (CustomEvents; the payload is in `event.detail`):
//   state        {state, code?, message?}   idle | loading | ready | failed (the session)
//   transport    {direction, connectionState}  a transport's connection state changed
//   producing    {kinds}                    what we send now: [], ['video', 'audio'], ...
//   track        {user, kind, track, consumerId, producerId, layers, preferredLayer}   a
//                                           remote track to show; `layers` > 1 for simulcast
//   track-ended  {user, kind, track, consumerId, producerId, reason}   it went away
//   paused       {user, kind, consumerId, producerId, paused, by}   a consumer was paused or
//                                           resumed, `by` 'us' or 'publisher'
//   layers       {user, kind, consumerId, producerId, spatialLayer, preferredLayer}   the
//                                           server switched the layer it forwards to a consumer
//   error        {code, message, request?}  the server's error code, or one of ours
//                                           (library_failed, media_disabled, bad_reply,
//                                           cannot_produce, transport_failed, ...)

import { summarizeStats } from './client.js';

/** The vendored bundle; it sets `globalThis.mediasoupClient` (web/vendor/build.sh). */
const LIBRARY_URL = new URL('vendor/mediasoup-client.js', import.meta.url);
/** How many producer-closed notifications `producerClosedSeen` keeps (for tests and debugging). */
const MAX_CLOSED_SEEN = 100;
/**
 * Our video's simulcast layers, lowest first (layer 0): a quarter, a half and the whole
 * camera picture. The caps keep the top layer from starving the others on a thin uplink.
 * Chrome sends all three only from a 960×540 camera up (fewer below, by its own table).
 * mediasoup-client names them r0, r1, r2 and writes that into what it is given: copy first.
 */
const SIMULCAST_ENCODINGS = [
  { scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

/** The SFU side of a SwitchboardClient whose `mesh` is off. Inactive until `enabled`. */
export class SfuMedia extends EventTarget {
  #client;
  #enabled = false;
  #session = null;
  #localStream = null;
  #state = 'idle';
  #producerClosedSeen = [];
  #videoCodec = null;
  #simulcast = false;

  /** @param {import('./client.js').SwitchboardClient} client */
  constructor(client) {
    super();
    this.#client = client;
    client.addEventListener('joined', ({ detail }) => {
      if (this.#enabled) this.#start(detail);
    });
    client.addEventListener('state', ({ detail }) => {
      // A resuming client is still in its room on the server: the transports stay up.
      if (detail.state !== 'joined' && !detail.resuming) this.#stop('left the room');
    });
    client.addEventListener('notification', ({ detail }) => this.#onNotification(detail));
  }

  /** Whether joins set up SFU media. Turning it off ends the current session. */
  get enabled() { return this.#enabled; }
  set enabled(value) {
    this.#enabled = Boolean(value);
    if (!this.#enabled) this.#stop('SFU mode off');
  }

  /**
   * The codec our video producer sends: 'vp8', 'h264', or null for the first the router and
   * this browser share (VP8). Takes effect at the next produce.
   */
  get videoCodec() { return this.#videoCodec; }
  set videoCodec(value) {
    this.#videoCodec = value ? String(value).toLowerCase() : null;
  }

  /**
   * Whether our video producer sends simulcast: SIMULCAST_ENCODINGS, three resolutions of the
   * camera, of which the server forwards each viewer the one it prefers and can take. Takes
   * effect at the next produce.
   */
  get simulcast() { return this.#simulcast; }
  set simulcast(value) {
    this.#simulcast = Boolean(value);
  }

  /** idle | loading | ready | failed. */
  get state() { return this.#state; }
  /** The mediasoup-client Device of the current session, or null. */
  get device() { return this.#session?.device ?? null; }
  /** The transport our producers send on, or null (made when there is something to send). */
  get sendTransport() { return this.#session?.sendTransport ?? null; }
  /** The transport every consumer receives on, or null. */
  get recvTransport() { return this.#session?.recvTransport ?? null; }
  /** Our producers by kind ('audio', 'video'). */
  get producers() { return new Map(this.#session?.producers ?? []); }
  /**
   * The consumers by id: `{consumer, user, producerId, layers, preferredLayer, spatialLayer}`;
   * `layers` is the producer's number of simulcast layers (1 when it sends one), and
   * `spatialLayer` the one the server last said it forwards (null until it says).
   */
  get consumers() { return new Map(this.#session?.consumers ?? []); }
  /** The last producer-closed notifications, `{producerId, consumerId}`, oldest first. */
  get producerClosedSeen() { return this.#producerClosedSeen.map((seen) => ({ ...seen })); }

  /**
   * Sets what we send: one producer per live track kind. Tracks of a kind already sent are
   * replaced in place; kinds no longer present are closed (close-producer). `null` stops all.
   * The tracks stay the caller's: closing a producer never stops them.
   * @param {MediaStream|null} stream
   */
  setLocalStream(stream) {
    this.#localStream = stream ?? null;
    const session = this.#session;
    if (session) this.#enqueue(session, 'produce', () => this.#publish(session));
  }

  /**
   * Pauses (or resumes) what we send of `kind` ('audio', 'video'): mediasoup-client stops
   * sending it, and the server stops forwarding it (pause-producer); every consumer of it is
   * told (consumer-paused). Resuming asks the publisher's browser for a keyframe, so the
   * pictures start again at once. Resolves to whether there was such a producer.
   */
  async setProducerPaused(kind, paused) {
    const producer = this.#session?.producers.get(kind);
    if (!producer) return false;
    if (paused) producer.pause(); else producer.resume();
    const [request, reply] = paused ? ['pause-producer', 'producerPaused'] : ['resume-producer', 'producerResumed'];
    expectReply(await this.#client.request(request, { producerId: producer.id }), reply);
    return true;
  }

  /**
   * Pauses (or resumes) one consumer: mediasoup-client stops rendering it, and the server
   * stops forwarding to it (pause-consumer), which saves the bandwidth of a hidden tile.
   * Resolves to whether there was such a consumer.
   */
  async setConsumerPaused(consumerId, paused) {
    const entry = this.#session?.consumers.get(consumerId);
    if (!entry) return false;
    if (paused) entry.consumer.pause(); else entry.consumer.resume();
    const [request, reply] = paused ? ['pause-consumer', 'consumerPaused'] : ['resume-consumer', 'consumerResumed'];
    expectReply(await this.#client.request(request, { consumerId }), reply);
    this.#emitPaused(entry, paused, 'us');
    return true;
  }

  /**
   * Asks the server to forward one simulcast consumer's `spatialLayer` (0 is the lowest) or,
   * while that one is not sent, the highest one below it (set-preferred-layers). The switch
   * happens on the new layer's next keyframe, and is announced by a `layers` event. Resolves
   * to the layer the server took (it clamps to the publisher's top one), or null when there is
   * no such consumer.
   */
  async setPreferredLayers(consumerId, spatialLayer) {
    const entry = this.#session?.consumers.get(consumerId);
    if (!entry) return null;
    const { data } = expectReply(await this.#client.request('set-preferred-layers', { consumerId, spatialLayer }), 'preferredLayersSet');
    if (!Number.isInteger(data.spatialLayer)) throw codedError('bad_reply', 'preferredLayersSet has no spatialLayer');
    entry.preferredLayer = data.spatialLayer;
    return data.spatialLayer;
  }

  /**
   * Totals over the receive transport (inbound video frames decoded, audio samples received,
   * the widest frame) and the send transport (video frames encoded and their width, bytes
   * sent, the bandwidth estimate), with both connection states. Per remote user, what its
   * video consumer decodes and which simulcast layer it gets (`remoteVideo`); per encoding of
   * our own video, what Chrome sends (`sentVideoLayers`, three with simulcast).
   */
  async stats() {
    const session = this.#session;
    const totals = {
      state: this.#state,
      send: session?.sendTransport?.connectionState ?? null,
      recv: session?.recvTransport?.connectionState ?? null,
      framesDecoded: 0,
      keyFramesDecoded: 0,
      receivedVideoCodecs: [],
      sentVideoCodecs: [],
      frameWidth: 0,
      totalSamplesReceived: 0,
      framesEncoded: 0,
      sentFrameWidth: 0,
      bytesSent: 0,
      availableOutgoingBitrate: null,
      consumers: session?.consumers.size ?? 0,
      producers: Object.fromEntries([...(session?.producers ?? [])].map(([kind, p]) => [kind, p.id])),
      producerClosed: this.producerClosedSeen,
      pausedConsumers: [...(session?.consumers.values() ?? [])].filter((e) => e.consumer.paused).map((e) => e.consumer.id),
      remoteVideo: {},
      sentVideoLayers: [],
    };
    const videoEntries = [...(session?.consumers.values() ?? [])].filter((e) => e.consumer.kind === 'video');
    const [received, sent, ...consumed] = await Promise.all([
      session?.recvTransport?.getStats(),
      session?.sendTransport?.getStats(),
      // One report per consumer, so each inbound stream is known to be that consumer's.
      ...videoEntries.map((e) => e.consumer.getStats().catch(() => null)), // closed meanwhile
    ]);
    videoEntries.forEach((entry, i) => {
      const inbound = inboundVideo(consumed[i]);
      totals.remoteVideo[entry.user] = {
        consumerId: entry.consumer.id,
        frameWidth: inbound?.frameWidth ?? 0,
        frameHeight: inbound?.frameHeight ?? 0,
        framesDecoded: inbound?.framesDecoded ?? 0,
        layers: entry.layers,
        preferredLayer: entry.preferredLayer,
        spatialLayer: entry.spatialLayer,
      };
    });
    const codecOf = (report, s, list) => {
      const mimeType = report.get(s.codecId)?.mimeType;
      if (mimeType && !list.includes(mimeType)) list.push(mimeType);
    };
    received?.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'video') {
        codecOf(received, s, totals.receivedVideoCodecs);
        totals.framesDecoded += s.framesDecoded ?? 0;
        totals.keyFramesDecoded += s.keyFramesDecoded ?? 0;
        totals.frameWidth = Math.max(totals.frameWidth, s.frameWidth ?? 0);
      } else if (s.kind === 'audio') {
        totals.totalSamplesReceived += s.totalSamplesReceived ?? 0;
      }
    });
    sent?.forEach((s) => {
      // Chrome's estimate of what it may send: it collapses when the SFU's transport-wide
      // congestion feedback is missing or wrong.
      if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate != null) {
        totals.availableOutgoingBitrate = s.availableOutgoingBitrate;
      }
      if (s.type !== 'outbound-rtp') return;
      if (s.kind === 'video') {
        codecOf(sent, s, totals.sentVideoCodecs);
        totals.framesEncoded += s.framesEncoded ?? 0;
        totals.sentFrameWidth = Math.max(totals.sentFrameWidth, s.frameWidth ?? 0);
        totals.sentVideoLayers.push({
          rid: s.rid ?? null,
          frameWidth: s.frameWidth ?? 0,
          frameHeight: s.frameHeight ?? 0,
          framesEncoded: s.framesEncoded ?? 0,
          qualityLimitationReason: s.qualityLimitationReason ?? null,
        });
      }
      totals.bytesSent += s.bytesSent ?? 0;
    });
    totals.sentVideoLayers.sort((a, b) => String(a.rid).localeCompare(String(b.rid)));
    return totals;
  }

  /**
   * What a tile shows for one remote user, in the shape of client.getPeerStats(): the receive
   * transport's states, its selected candidate pair, and the frames decoded from that user's
   * consumers, with the video's decoded size and, for simulcast, its layers. Null when we
   * consume nothing of theirs.
   */
  async userStats(user) {
    const session = this.#session;
    const entries = [...(session?.consumers.values() ?? [])].filter((entry) => entry.user === user);
    if (!entries.length) return null;
    const reports = await Promise.all(entries.map((entry) => entry.consumer.getStats()));
    const summaries = reports.map((report) => summarizeStats(report));
    let iceState = null;
    reports[0].forEach((s) => { if (s.type === 'transport' && s.iceState) iceState = s.iceState; });
    const video = entries.find((entry) => entry.consumer.kind === 'video');
    const widest = summaries.reduce((a, b) => (b.frameWidth > a.frameWidth ? b : a));
    return {
      user,
      ...summaries[0],
      connectionState: session.recvTransport.connectionState,
      iceConnectionState: iceState ?? session.recvTransport.connectionState,
      framesDecoded: summaries.reduce((sum, s) => sum + s.framesDecoded, 0),
      framesReceived: summaries.reduce((sum, s) => sum + s.framesReceived, 0),
      frameWidth: widest.frameWidth,
      frameHeight: widest.frameHeight,
      layers: video?.layers ?? null,
      spatialLayer: video?.spatialLayer ?? null,
    };
  }

  // --- the session ---------------------------------------------------------------------------

  #start(joined) {
    this.#stop('joined again');
    const session = new Session();
    this.#session = session;
    this.#setState('loading');
    this.#enqueue(session, 'setup', async () => {
      try {
        await this.#setUp(session, joined);
      } catch (err) {
        if (!session.closed) this.#setState('failed', err);
        throw err;
      }
    });
    this.#enqueue(session, 'produce', () => this.#publish(session));
  }

  async #setUp(session, joined) {
    if (!joined.routerRtpCapabilities) {
      throw codedError('media_disabled', 'the server offers no SFU here (joined has no routerRtpCapabilities)');
    }
    const mediasoupClient = await loadLibrary();
    session.device = await createDevice(mediasoupClient);
    await session.device.load({ routerRtpCapabilities: joined.routerRtpCapabilities });
    if (session.closed) return;
    session.recvTransport = await this.#createTransport(session, 'recv');
    session.ready = true;
    this.#setState('ready');
  }

  /** Ends the session locally: consumers, producers and transports close, tracks go. */
  #stop(reason) {
    const session = this.#session;
    if (!session) return;
    this.#session = null;
    session.closed = true;
    for (const entry of session.consumers.values()) this.#dropConsumer(entry, reason);
    session.consumers.clear();
    for (const producer of session.producers.values()) producer.close();
    session.producers.clear();
    session.sendTransport?.close();
    session.recvTransport?.close();
    this.#setState('idle');
  }

  /** Runs `task` after every earlier one of this session; a failure is reported, not thrown. */
  #enqueue(session, request, task) {
    session.queue = session.queue.then(async () => {
      if (session.closed) return;
      try {
        await task();
      } catch (err) {
        if (!session.closed) this.#emit('error', { code: err?.code ?? err?.name ?? 'error', message: err?.message ?? String(err), request });
      }
    });
  }

  async #createTransport(session, direction) {
    const reply = expectReply(await this.#client.request('create-transport', { direction }), 'webRtcTransportCreated');
    if (session.closed) throw codedError('closed', 'the session ended');
    const { id, iceParameters, iceCandidates, dtlsParameters } = reply.data;
    const options = { id, iceParameters, iceCandidates, dtlsParameters, iceServers: this.#client.iceServers };
    const transport = direction === 'send'
      ? session.device.createSendTransport(options)
      : session.device.createRecvTransport(options);
    // mediasoup-client asks for these when it needs them: `connect` before the first produce
    // or consume on this transport, `produce` for every new producer (callback({id}) is how it
    // learns the server's producer id).
    transport.on('connect', ({ dtlsParameters: local }, callback, errback) => {
      this.#client.request('connect-transport', { transportId: transport.id, dtlsParameters: local })
        .then((r) => { expectReply(r, 'transportConnected'); callback(); })
        .catch(errback);
    });
    if (direction === 'send') {
      transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
        this.#client.request('produce', { transportId: transport.id, kind, rtpParameters, appData })
          .then((r) => {
            const { data } = expectReply(r, 'produced');
            if (typeof data.id !== 'string') throw codedError('bad_reply', 'produced has no id');
            callback({ id: data.id });
          })
          .catch(errback);
      });
    }
    transport.on('connectionstatechange', (connectionState) => {
      if (session.closed) return;
      this.#emit('transport', { direction, connectionState });
      if (connectionState === 'failed') {
        this.#emit('error', { code: 'transport_failed', message: `the ${direction} transport to the SFU failed` });
      }
    });
    return transport;
  }

  // --- sending ---------------------------------------------------------------------------------

  /**
   * The device codec `videoCodec` names: undefined when none was asked for (mediasoup-client
   * picks), null when the router and this browser do not share it.
   */
  #chosenCodec(session) {
    if (!this.#videoCodec) return undefined;
    const wanted = `video/${this.#videoCodec}`;
    return session.device.rtpCapabilities.codecs
      .find((c) => c.kind === 'video' && c.mimeType.toLowerCase() === wanted) ?? null;
  }

  async #publish(session) {
    if (!session.ready) return;
    const tracks = (this.#localStream?.getTracks() ?? []).filter((t) => t.readyState === 'live');
    for (const [kind, producer] of [...session.producers]) {
      if (tracks.some((t) => t.kind === kind)) continue;
      session.producers.delete(kind);
      try {
        expectReply(await this.#client.request('close-producer', { producerId: producer.id }), 'producerClosed');
      } finally {
        producer.close();
      }
    }
    for (const track of tracks) {
      const producer = session.producers.get(track.kind);
      if (producer) {
        if (producer.track !== track) await producer.replaceTrack({ track });
        continue;
      }
      if (!session.device.canProduce(track.kind)) {
        this.#emit('error', { code: 'cannot_produce', message: `the SFU cannot take ${track.kind} from this browser` });
        continue;
      }
      session.sendTransport ??= await this.#createTransport(session, 'send');
      if (session.closed) return;
      const codec = track.kind === 'video' ? this.#chosenCodec(session) : undefined;
      if (codec === null) {
        this.#emit('error', { code: 'cannot_produce', message: `the SFU and this browser share no ${this.#videoCodec} encoder` });
        continue;
      }
      const encodings = track.kind === 'video' && this.#simulcast
        ? SIMULCAST_ENCODINGS.map((encoding) => ({ ...encoding }))
        : undefined;
      // stopTracks: false, because the tracks belong to the page (its preview, the mesh mode).
      const produced = await session.sendTransport.produce({ track, codec, encodings, stopTracks: false, appData: { kind: track.kind } });
      if (session.closed) {
        produced.close();
        return;
      }
      session.producers.set(track.kind, produced);
      produced.on('trackended', () => this.#enqueue(session, 'produce', () => this.#publish(session)));
    }
    this.#emit('producing', { kinds: [...session.producers.keys()] });
  }

  // --- receiving -------------------------------------------------------------------------------

  #onNotification({ type, data }) {
    const session = this.#session;
    if (!session || !data || typeof data !== 'object') return;
    if (type === 'new-producer') {
      if (typeof data.producerId !== 'string') return;
      const ours = [...session.producers.values()].some((p) => p.id === data.producerId);
      if (ours || data.user === this.#client.name) return; // the server sends it to the others
      this.#enqueue(session, 'consume', () => this.#consume(session, data));
    } else if (type === 'consumer-paused' || type === 'consumer-resumed') {
      const paused = type === 'consumer-paused';
      this.#enqueue(session, type, async () => {
        const entry = session.consumers.get(data.consumerId);
        if (!entry) return;
        if (paused) entry.consumer.pause(); else entry.consumer.resume();
        this.#emitPaused(entry, paused, 'publisher');
      });
    } else if (type === 'consumer-layers-changed') {
      this.#enqueue(session, type, async () => {
        const entry = session.consumers.get(data.consumerId);
        if (!entry || !Number.isInteger(data.spatialLayer)) return;
        entry.spatialLayer = data.spatialLayer;
        this.#emitLayers(entry);
      });
    } else if (type === 'producer-closed') {
      this.#producerClosedSeen.push({ producerId: data.producerId, consumerId: data.consumerId });
      if (this.#producerClosedSeen.length > MAX_CLOSED_SEEN) this.#producerClosedSeen.shift();
      this.#enqueue(session, 'producer-closed', async () => {
        const entry = session.consumers.get(data.consumerId)
          ?? [...session.consumers.values()].find((e) => e.producerId === data.producerId);
        if (!entry) return;
        session.consumers.delete(entry.consumer.id);
        this.#dropConsumer(entry, 'producer closed');
      });
    }
  }

  async #consume(session, { producerId, user }) {
    if (!session.ready) return;
    let reply;
    try {
      reply = expectReply(await this.#client.request('consume', {
        transportId: session.recvTransport.id,
        producerId,
        rtpCapabilities: session.device.recvRtpCapabilities,
      }), 'consumed');
    } catch (err) {
      if (err.code === 'producer_not_found') return; // it closed before we asked: nothing to show
      throw err;
    }
    if (session.closed) return;
    const { id, kind, rtpParameters, layers, preferredLayers } = reply.data;
    const owner = typeof user === 'string' ? user : '?';
    const consumer = await session.recvTransport.consume({ id, producerId, kind, rtpParameters, appData: { user: owner } });
    if (session.closed) {
      consumer.close();
      return;
    }
    // A server without simulcast says nothing of layers: one, which is also the preferred one.
    const layerCount = Number.isInteger(layers) && layers > 0 ? layers : 1;
    const preferred = preferredLayers?.spatialLayer;
    const entry = {
      consumer,
      user: owner,
      producerId,
      layers: layerCount,
      preferredLayer: Number.isInteger(preferred) ? preferred : layerCount - 1,
      spatialLayer: null, // until consumer-layers-changed says which one is forwarded
    };
    session.consumers.set(consumer.id, entry);
    // A producer paused before we consumed it: nothing comes until its consumer-resumed.
    if (reply.data.producerPaused === true) consumer.pause();
    this.#emit('track', {
      user: owner, kind: consumer.kind, track: consumer.track, consumerId: consumer.id, producerId,
      layers: entry.layers, preferredLayer: entry.preferredLayer,
    });
    expectReply(await this.#client.request('resume-consumer', { consumerId: consumer.id }), 'consumerResumed');
  }

  #emitPaused({ consumer, user, producerId }, paused, by) {
    this.#emit('paused', { user, kind: consumer.kind, consumerId: consumer.id, producerId, paused, by });
  }

  #emitLayers({ consumer, user, producerId, spatialLayer, preferredLayer }) {
    this.#emit('layers', { user, kind: consumer.kind, consumerId: consumer.id, producerId, spatialLayer, preferredLayer });
  }

  #dropConsumer({ consumer, user, producerId }, reason) {
    consumer.close();
    this.#emit('track-ended', { user, kind: consumer.kind, track: consumer.track, consumerId: consumer.id, producerId, reason });
  }

  // --- helpers ---------------------------------------------------------------------------------

  #setState(state, err) {
    if (this.#state === state && !err) return;
    this.#state = state;
    this.#emit('state', err ? { state, code: err.code ?? err.name, message: err.message } : { state });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** What one room's media needs; `closed` tells late async work that it lost the race. */
class Session {
  constructor() {
    this.closed = false;
    this.ready = false; // the device is loaded and the receive transport exists
    this.device = null;
    this.sendTransport = null;
    this.recvTransport = null;
    this.producers = new Map(); // kind -> Producer
    this.consumers = new Map(); // consumer id -> {consumer, user, producerId, layers, ...}
    this.queue = Promise.resolve();
  }
}

let library = null; // the promise of globalThis.mediasoupClient, once asked for

/** Loads the vendored mediasoup-client once (a same-origin script, as the CSP requires). */
function loadLibrary() {
  library ??= new Promise((resolve, reject) => {
    if (globalThis.mediasoupClient) {
      resolve(globalThis.mediasoupClient);
      return;
    }
    const script = document.createElement('script');
    script.src = LIBRARY_URL.href;
    script.addEventListener('load', () => {
      if (globalThis.mediasoupClient) resolve(globalThis.mediasoupClient);
      else reject(codedError('library_failed', `${LIBRARY_URL.pathname} did not define mediasoupClient`));
    });
    script.addEventListener('error', () => {
      library = null; // let a later join try again
      reject(codedError('library_failed', `could not load ${LIBRARY_URL.pathname}`));
    });
    document.head.append(script);
  });
  return library;
}

/**
 * A Device for this browser. mediasoup-client detects it from `navigator.userAgentData`; where
 * that fails (a Chromium that hides it: the UA regex misses "HeadlessChrome"), assume a
 * current Chromium, which is what the handler named Chrome111 drives.
 */
async function createDevice(mediasoupClient) {
  const handlerName = await mediasoupClient.detectDeviceAsync();
  return new mediasoupClient.Device(handlerName ? { handlerName } : { handlerName: 'Chrome111' });
}

/** The inbound video stream in one consumer's stats report, or null (none yet, or no report). */
function inboundVideo(report) {
  let inbound = null;
  report?.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s;
  });
  return inbound;
}

/** The reply, if the server named it as the contract says; a `bad_reply` error otherwise. */
function expectReply(reply, type) {
  if (reply?.type !== type) throw codedError('bad_reply', `expected ${type}, got ${reply?.type}`);
  if (!reply.data || typeof reply.data !== 'object') throw codedError('bad_reply', `${type} has no data`);
  return reply;
}

function codedError(code, message) {
  const err = new Error(message);
  err.code = code;
  return err;
}
