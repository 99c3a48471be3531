"""Where sender state lives, measured (issue 30, item 2): the two NATS ways to count one
event per message for a flooding sender, against a nats-server of its own (random port,
JetStream in a temp dir).

* stream: what offpath does. Each event is one JetStream publish with a `Nats-Msg-Id`
  (a redelivered request's event is stored once), acknowledgements awaited a few hundred at
  a time; every moderator folds the stream in memory.
* kv: a counter per sender in a KV bucket, updated by read + compare-and-set, by W writers
  at once (W moderators taking one flooding sender's messages; here W tasks on one
  connection), retrying on a conflict.

Prints events per second for each, and for kv the conflicts per event.

    scripts/bootstrap --nats-py
    PYTHONPATH=.tools/nats-py python3 benches/sender_store.py [EVENTS] [WRITERS]
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import nats
from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.errors import KeyWrongLastSequenceError

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def quiet(_error):
    """The server may not listen yet: the loop tries again."""


async def stream(js, events):
    await js.add_stream(StreamConfig(name="SENDERS", subjects=["offpath.sender.*"]))
    start, pending = time.perf_counter(), []
    for i in range(events):
        payload = json.dumps({"v": 1, "kind": "message", "id": f"m{i}", "tenant": "acme",
                              "sender": "bot", "room": "lobby", "at_ms": i, "text": 7}).encode()
        pending.append(js.publish("offpath.sender.acme", payload, headers={"Nats-Msg-Id": f"acme/m{i}/message"}))
        if len(pending) == 256:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    return events / (time.perf_counter() - start)


async def kv(js, events, writers):
    bucket = await js.create_key_value(KeyValueConfig(bucket="senders"))
    await bucket.put("acme.bot", b"0")
    conflicts = 0

    async def writer(n):
        nonlocal conflicts
        for _ in range(n):
            while True:
                entry = await bucket.get("acme.bot")
                try:
                    await bucket.update("acme.bot", str(int(entry.value) + 1).encode(), last=entry.revision)
                    break
                except KeyWrongLastSequenceError:
                    conflicts += 1

    start = time.perf_counter()
    await asyncio.gather(*(writer(events // writers) for _ in range(writers)))
    elapsed = time.perf_counter() - start
    final = int((await bucket.get("acme.bot")).value)
    assert final == events // writers * writers, final
    return final / elapsed, conflicts / final


async def main(events, writers):
    port = free_port()
    with tempfile.TemporaryDirectory() as store:
        server = subprocess.Popen([os.path.join(ROOT, ".tools/bin/nats-server"), "-a", "127.0.0.1",
                                   "-p", str(port), "-js", "-sd", store],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    nc = await nats.connect(f"nats://127.0.0.1:{port}", error_cb=quiet,
                                            allow_reconnect=False)
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            js = nc.jetstream()
            per_s = await stream(js, events)
            print(f"stream: {per_s:,.0f} events/s ({events} events, acks awaited 256 at a time)")
            per_s, conflicts = await kv(js, events, writers)
            print(f"kv:     {per_s:,.0f} events/s ({events} events, {writers} writers on one sender, "
                  f"{conflicts:.2f} conflicts per event)")
            await nc.close()
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 2))
