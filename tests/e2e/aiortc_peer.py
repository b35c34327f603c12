"""An independent WebRTC peer (aiortc) for the interop test.

It joins a room through the query-rooms dialect (`/ws?peer_id=ID&room=ROOM`), answers the
offers a conference-dialect browser sends it, adds the browser's trickled ICE candidates, and
uses the data channel the switchboard client negotiates out of band (label "switchboard",
id 0): it sends `--send` as soon as the channel opens and exits 0 once it has received
`--expect`. It also sends one chat message (`--chat`) when it first hears from the browser.

Every step is printed as one JSON line on stdout, for the test to read. Exit status: 0 on
success, 2 on timeout, 1 on any other failure.

Usage:
    python3 aiortc_peer.py --url 'ws://127.0.0.1:PORT/ws?peer_id=py&room=R' \
        --send 'hello from aiortc' --expect 'hello from chromium' [--chat TEXT] [--timeout 60]
"""

import argparse
import asyncio
import json
import sys
import time

import aioice.ice
import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

# The test runs in a loopback-only network namespace, and all WebRTC traffic must stay on
# 127.0.0.0/8: gather host candidates on 127.0.0.1 only (aioice leaves out 127.0.0.1 by default).
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []


STARTED = time.monotonic()


def report(event, **fields):
    elapsed = round(time.monotonic() - STARTED, 3)
    print(json.dumps({"event": event, "t": elapsed, **fields}), flush=True)


async def run(args):
    pc = RTCPeerConnection()
    channel = pc.createDataChannel("switchboard", negotiated=True, id=0)
    received = asyncio.Event()
    remote = None
    chatted = False

    @channel.on("open")
    def on_open():
        report("datachannel-open")
        channel.send(args.send)
        report("sent", data=args.send)

    @channel.on("message")
    def on_message(message):
        report("message", data=message)
        if message == args.expect:
            received.set()

    @pc.on("connectionstatechange")
    def on_state():
        report("connection-state", state=pc.connectionState)

    async with websockets.connect(args.url, max_size=2**20) as ws:
        report("connected", url=args.url)

        async def signaling():
            nonlocal remote, chatted
            async for text in ws:
                frame = json.loads(text)
                kind = frame.get("type")
                sender = frame.get("from")
                payload = frame.get("payload")
                if kind == "offer":
                    remote = sender
                    report("offer", sender=sender)
                    await pc.setRemoteDescription(RTCSessionDescription(payload["sdp"], payload["type"]))
                    await pc.setLocalDescription(await pc.createAnswer())
                    answer = {"type": pc.localDescription.type, "sdp": pc.localDescription.sdp}
                    await ws.send(json.dumps({"type": "answer", "to": sender, "payload": answer}))
                    report("answer-sent", to=sender)
                    if args.chat and not chatted:
                        chatted = True
                        await ws.send(json.dumps({"type": "chat", "payload": {"text": args.chat}}))
                        report("chat-sent", text=args.chat)
                elif kind == "ice_candidate":
                    await add_candidate(pc, payload)
                elif kind == "answer":
                    report("unexpected-answer", sender=sender)
                else:
                    report("frame", type=kind, sender=sender)

        task = asyncio.create_task(signaling())
        try:
            await received.wait()
            report("done", peer=remote)
            # Give the last SCTP acknowledgements a moment before closing the connection.
            await asyncio.sleep(0.2)
        finally:
            task.cancel()
            await pc.close()


async def add_candidate(pc, payload):
    """Adds one trickled candidate; skips end-of-candidates and TCP (aiortc is UDP only)."""
    if not payload or not payload.get("candidate"):
        return
    line = payload["candidate"]
    text = line.split(":", 1)[1] if line.startswith("candidate:") else line
    candidate = candidate_from_sdp(text)
    if candidate.protocol.lower() != "udp":
        return
    candidate.sdpMid = payload.get("sdpMid")
    candidate.sdpMLineIndex = payload.get("sdpMLineIndex")
    await pc.addIceCandidate(candidate)
    report("candidate-added", address=f"{candidate.ip}:{candidate.port}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--send", required=True)
    parser.add_argument("--expect", required=True)
    parser.add_argument("--chat")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    try:
        asyncio.run(asyncio.wait_for(run(args), args.timeout))
    except asyncio.TimeoutError:
        report("timeout", seconds=args.timeout)
        sys.exit(2)
    except Exception as err:  # report any failure as a line the test can show
        report("error", message=f"{type(err).__name__}: {err}")
        sys.exit(1)


if __name__ == "__main__":
    main()
