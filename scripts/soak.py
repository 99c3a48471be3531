"""Soak: mixed chat through the whole pipeline (`offpath up`) for a long time, sampling the
resident memory and open file descriptors of every process each minute and the error
counters of both services, then one pass/fail line.

Pass: every process's RSS and fd count at the end of the run (the highest of the last three
samples) stay within TOLERANCE of their value at the end of the warm-up (the highest of its
last three samples), no error counter moves after the warm-up, and every message sent was
acked and got a verdict.

Run by scripts/soak, which installs the websockets client and builds the release binary.
"""

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

TOLERANCE = 0.05
WINDOW = 3
ERROR_COUNTERS = [
    "offpath_moderator_dead_letters_total",
    "offpath_moderator_batch_failures_total",
    "offpath_moderator_nats_errors_total",
    "offpath_moderator_inference_cancelled_total",
    "offpath_moderator_threads_replaced_total",
    "offpath_transport_outbox_shed_total",
    "offpath_transport_slow_clients_total",
    "offpath_transport_frame_errors_total",
    "offpath_transport_nats_errors_total",
    "offpath_transport_fail_closed_retracts_total",
]
CLEAN = [
    "see you at the game tonight, bring snacks",
    "did anyone finish the report for monday?",
    "the new release fixed the login bug, nice work",
    "lunch at noon? the usual place",
    "thanks a lot for the help yesterday",
]
INSULT = [
    "you are a stupid worthless idiot",
    "shut up you pathetic moron",
    "nobody likes you, you dumb loser",
]


def http_get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def counters(url):
    """Sum of every sample of each error counter at `url`."""
    try:
        _, text = http_get(url)
    except OSError:
        return {}
    sums = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = re.split(r"[{ ]", line, 1)[0]
        if name in ERROR_COUNTERS:
            sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return sums


def children(pid):
    """Every descendant of `pid` (from /proc), with its command name."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append((int(entry), name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def sample(pid):
    """RSS (KiB) and open fds of `pid`, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, AttributeError):
        return None


class Load:
    def __init__(self, url, clients, rooms, rate):
        self.url, self.clients, self.rooms, self.rate = url, clients, rooms, rate
        self.sent = self.acked = 0
        self.pending = set()
        self.verdicts = {}
        self.stop = False

    async def client(self, n):
        user = f"soak{n}"
        room = f"room{n % self.rooms}"
        async with websockets.connect(f"{self.url}?user={user}", max_queue=None) as ws:
            await ws.send(json.dumps({"type": "join", "room": room}))
            reader = asyncio.create_task(self.read(ws))
            interval = self.clients / self.rate
            await asyncio.sleep(random.random() * interval)
            seq = 0
            while not self.stop:
                text = random.choice(INSULT if random.random() < 0.1 else CLEAN)
                seq += 1
                self.sent += 1
                await ws.send(json.dumps({
                    "type": "send", "room": room,
                    "text": f"{text} {n}.{seq}", "client_msg_id": f"{n}.{seq}",
                }))
                await asyncio.sleep(interval)
            await asyncio.sleep(30)  # let the last verdicts come
            reader.cancel()

    async def read(self, ws):
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "ack":
                self.acked += 1
                self.pending.add(frame["id"])
            elif frame["type"] == "verdict" and frame["action"] != "unmoderated":
                self.pending.discard(frame["id"])
                self.verdicts[frame["action"]] = self.verdicts.get(frame["action"], 0) + 1

    async def run(self):
        await asyncio.gather(*(self.client(n) for n in range(self.clients)))


def wait_ready(urls, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if all(http_get(u)[0] == 200 for u in urls):
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"soak: the pipeline was not ready within {timeout} s")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--minutes", type=float, default=30)
    # Longer than the longest window anything fills up to: the transport remembers messages
    # for their verdicts for 10 minutes (--track-for-ms), the moderator's cache holds up
    # to 10,000 texts. Before that, growth is the design, not a leak.
    parser.add_argument("--warmup-minutes", type=float, default=12)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--rate", type=float, default=100, help="messages/s in all")
    parser.add_argument("--port-base", type=int, default=28080)
    args = parser.parse_args()

    chat, tops, mops = args.port_base, args.port_base + 1, args.port_base + 2
    data = tempfile.mkdtemp(prefix="offpath-soak-")
    up = subprocess.Popen(
        [args.binary, "up", f"--listen-addr=127.0.0.1:{chat}",
         f"--transport-metrics-addr=127.0.0.1:{tops}",
         f"--moderator-metrics-addr=127.0.0.1:{mops}", f"--data-dir={data}"],
        env={**os.environ, "OFFPATH_LOG": "warn"},
    )
    metrics = [f"http://127.0.0.1:{tops}/metrics", f"http://127.0.0.1:{mops}/metrics"]
    try:
        wait_ready([f"http://127.0.0.1:{p}/readyz" for p in (tops, mops)], 180)
        load = Load(f"ws://127.0.0.1:{chat}/ws", args.clients, args.rooms, args.rate)
        runner = asyncio.create_task(load.run())
        samples, baseline, errors_at_warmup = [], None, None
        minutes = int(args.minutes)
        for minute in range(1, minutes + 1):
            await asyncio.sleep(60)
            procs = [(up.pid, "offpath up")] + children(up.pid)
            row = {f"{name}[{pid}]": sample(pid) for pid, name in procs}
            samples.append(row)
            print(f"soak: minute {minute}: sent {load.sent} acked {load.acked} "
                  f"waiting {len(load.pending)} "
                  + " ".join(f"{k} rss={v[0] // 1024}MiB fds={v[1]}"
                             for k, v in row.items() if v), flush=True)
            if minute == int(args.warmup_minutes):
                baseline = row
                errors_at_warmup = {u: counters(u) for u in metrics}
        load.stop = True
        await runner
        errors_at_end = {u: counters(u) for u in metrics}
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)

    problems = []
    # Trend, not sawtooth: a garbage-collected process (nats-server) swings by a fifth
    # between samples. Compare the highest of the last WINDOW samples of the warm-up with
    # the highest of the last WINDOW samples of the run.
    warm = int(args.warmup_minutes)
    for key in baseline or {}:
        for i, what in ((0, "rss"), (1, "fds")):
            def peak(rows):
                return max((r[key][i] for r in rows if r.get(key)), default=None)
            base = peak(samples[max(0, warm - WINDOW):warm])
            end = peak(samples[-WINDOW:])
            if base is None or end is None:
                problems.append(f"{key} is gone")
            elif end > base * (1 + TOLERANCE) and end - base > 2:
                problems.append(f"{key} {what} grew {base} -> {end}")
    for url in metrics:
        for name, value in errors_at_end.get(url, {}).items():
            before = errors_at_warmup.get(url, {}).get(name, 0.0)
            if value != before:
                problems.append(f"{name} moved {before} -> {value}")
    if load.acked != load.sent:
        problems.append(f"sent {load.sent}, acked {load.acked}")
    if load.pending:
        problems.append(f"{len(load.pending)} messages without a model verdict")
    verdicts = " ".join(f"{k}={v}" for k, v in sorted(load.verdicts.items()))
    summary = (f"{load.sent} messages in {args.minutes:g} min, verdicts {verdicts}, "
               f"{len(samples[0]) if samples else 0} processes sampled")
    if problems:
        print(f"soak: FAIL: {summary}; " + "; ".join(problems))
        sys.exit(1)
    print(f"soak: PASS: {summary}; RSS and fds flat within {TOLERANCE:.0%} after "
          f"{args.warmup_minutes:g} min warm-up; no error counter moved")


if __name__ == "__main__":
    asyncio.run(main())
