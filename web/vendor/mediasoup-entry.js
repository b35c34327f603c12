// The entry point web/vendor/build.sh bundles into mediasoup-client.js: the unmodified
// mediasoup-client package, exposed as `window.mediasoupClient` for the demo's SFU mode
// (web/sfu.js loads the bundle only when that mode is chosen).
import * as mediasoupClient from 'mediasoup-client';

window.mediasoupClient = mediasoupClient;
