"""What one authenticated client sees while unauthenticated clients hammer the daemon (issue 22).

    .venv/bin/python bench/bench_load.py                       # 8 clients, 1,000 req/s, 20 s
    .venv/bin/python bench/bench_load.py --clients 32 --rate 2000 --seconds 30 --idle-sockets 200

Starts its own ``lowkey daemon`` on a free 127.0.0.1 port (``python -m lowkey_daemon``, as the native
host does) with its config, state and model cache in a temporary folder: the model cache is
empty, so the daemon loads no model (its state is ``models missing``; ``GET /v1/status`` answers
all the same), and nothing is downloaded. Then, for ``--seconds``:

- ``--clients`` unauthenticated clients (in ``--processes`` processes of their own) send
  ``GET /v1/status`` at ``--rate`` requests a second in all, on keep-alive connections: without
  a token or with a wrong one, without ``X-LowKey-Client`` (as the authenticated client) or
  with a new name each time;
- ``--idle-sockets`` connections are opened and never sent anything (kept open again when the
  daemon closes them);
- one authenticated client polls ``GET /v1/status`` every ``--interval`` seconds with the token,
  each request on a fresh connection, as the native host does.

Every loop stops by itself at the deadline; the daemon is stopped at the end. Prints the
authenticated client's latency (p50, p90, p99, max), its answers by status (the target: p99
under 50 ms and no 429 at 1,000 unauthenticated requests a second), and what the unauthenticated
clients sent and got. A benchmark, not a test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

HOST = "127.0.0.1"
#: No network wait of the benchmark lasts longer than this (a full backlog makes connect hang).
WAIT_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One HTTP/1.1 answer: its status and whether the server will close the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:] if line)}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() == "close"


def request(port: int, extra: dict[str, str], keep_alive: bool = True) -> bytes:
    lines = ["GET /v1/status HTTP/1.1", f"Host: {HOST}:{port}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- the unauthenticated clients (their own processes) ------------------------------------------

async def attacker(index: int, port: int, interval: float, deadline: float,
                   counts: Counter) -> None:
    """Requests every ``interval`` s until ``deadline`` on a keep-alive connection (reopened when
    the daemon closes it), in turn: no token and no client name (as the native host used to
    send), a wrong token and a client name of its own, no token and a name of its own."""
    kinds = [{}, {"Authorization": "Bearer not-the-token"}, {}]
    reader = writer = None
    sent = 0
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port),
                                                        WAIT_S)
            extra = dict(kinds[sent % 3])
            if sent % 3:
                extra["X-LowKey-Client"] = f"spoof-{index}-{sent}"
            writer.write(request(port, extra))
            sent += 1
            status, closing = await asyncio.wait_for(read_answer(reader), WAIT_S)
            counts[str(status)] += 1
            if closing:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            counts[type(exc).__name__] += 1
            if writer is not None:
                writer.close()
            writer = None
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    if writer is not None:
        writer.close()


async def idle_sockets(port: int, count: int, deadline: float, counts: Counter) -> None:
    """``count`` connections that never send a byte, reopened when the daemon closes them."""

    async def one() -> None:
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port),
                                                        WAIT_S)
            except (OSError, TimeoutError):
                counts["idle connect failed"] += 1
                await asyncio.sleep(0.1)
                continue
            counts["idle opened"] += 1
            try:
                await asyncio.wait_for(reader.read(), max(0.01, deadline - time.monotonic()))
            except (TimeoutError, OSError):
                pass
            writer.close()

    await asyncio.gather(*(one() for _ in range(count)))


def attack_process(port: int, clients: int, rate: float, idle: int, deadline_in: float,
                   results: multiprocessing.Queue) -> None:
    """One process's unauthenticated clients (``rate``: this process's requests a second)."""

    async def main() -> Counter:
        counts: Counter = Counter()
        deadline = time.monotonic() + deadline_in
        interval = clients / rate
        tasks = [attacker(i, port, interval, deadline, counts) for i in range(clients)]
        if idle:
            tasks.append(idle_sockets(port, idle, deadline, counts))
        await asyncio.gather(*tasks)
        return counts

    results.put(dict(asyncio.run(main())))


# -- the authenticated client -------------------------------------------------------------------

async def poller(port: int, token: str, interval: float, deadline: float,
                 keep_alive: bool) -> tuple[list[float], Counter]:
    """``GET /v1/status`` with the token every ``interval`` s; latencies (s) and answers."""
    latencies: list[float] = []
    counts: Counter = Counter()
    reader = writer = None
    while time.monotonic() < deadline:
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port),
                                                        WAIT_S)
            writer.write(request(port, {"Authorization": f"Bearer {token}"}, keep_alive))
            status, closing = await asyncio.wait_for(read_answer(reader), WAIT_S)
            latencies.append(time.perf_counter() - start)
            counts[str(status)] += 1
            if closing or not keep_alive:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            counts[type(exc).__name__] += 1
            if writer is not None:
                writer.close()
            writer = None
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - start)))
    if writer is not None:
        writer.close()
    return latencies, counts


# -- the daemon ---------------------------------------------------------------------------------

def start_daemon(folder: Path, port: int) -> tuple[subprocess.Popen, str]:
    """``python -m lowkey_daemon`` on ``port`` with everything in ``folder`` and no model; its token."""
    env = dict(os.environ, LOWKEY_CONFIG_DIR=str(folder / "config"),
               LOWKEY_CACHE_DIR=str(folder / "cache"), XDG_STATE_HOME=str(folder / "state"),
               LOWKEY_OFFLINE="1", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    env.pop("LOWKEY_DAEMON_PORT", None)
    log = (folder / "daemon.out").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "lowkey_daemon", "--port", str(port),
                                "--no-warm-up"], env=env, stdout=log, stderr=subprocess.STDOUT)
    token_file = folder / "config" / "daemon-token"
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit(f"the daemon stopped: {(folder / 'daemon.out').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/v1/health", timeout=2):
                return process, token_file.read_text().strip()
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the daemon did not answer within 120 s")


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{model}, {os.cpu_count()} CPUs, load average {load}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="unauthenticated clients")
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="unauthenticated requests a second, all clients together")
    parser.add_argument("--processes", type=int, default=1,
                        help="processes the unauthenticated clients run in")
    parser.add_argument("--idle-sockets", type=int, default=0,
                        help="connections opened and never used")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the load lasts")
    parser.add_argument("--interval", type=float, default=0.1,
                        help="the authenticated client's polling interval, seconds")
    parser.add_argument("--keep-alive", action="store_true",
                        help="the authenticated client keeps its connection (default: a fresh "
                             "one per request, as the native host)")
    args = parser.parse_args(argv)
    if min(args.clients, args.processes) < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--clients, --processes, --rate and --seconds must be positive")

    with tempfile.TemporaryDirectory(prefix="lowkey-bench-load-") as tmp:
        port = free_port()
        daemon, token = start_daemon(Path(tmp), port)
        try:
            results: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
            per_process = max(1, args.clients // args.processes)
            processes = [multiprocessing.get_context("spawn").Process(
                target=attack_process,
                args=(port, per_process, args.rate / args.processes,
                      args.idle_sockets // args.processes if i else
                      args.idle_sockets - args.idle_sockets // args.processes
                      * (args.processes - 1), args.seconds + 1.0, results))
                for i in range(args.processes)]
            for process in processes:
                process.start()
            time.sleep(1.0)  # the attackers are running before the first poll
            latencies, answers = asyncio.run(poller(port, token, args.interval,
                                                    time.monotonic() + args.seconds,
                                                    args.keep_alive))
            attacks: Counter = Counter()
            for _ in processes:
                attacks.update(results.get(timeout=60))
            for process in processes:
                process.join(30)
        finally:
            daemon.terminate()
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()

    sent = sum(v for k, v in attacks.items() if k.isdigit())
    attack_seconds = args.seconds + 1.0  # they start a second before the first poll
    print(f"machine: {machine()}")
    print(f"settings: {args.clients} unauthenticated clients in {args.processes} process(es) at "
          f"{args.rate:g} req/s, {args.idle_sockets} idle sockets, {args.seconds:g} s; the "
          f"authenticated client every {args.interval:g} s on "
          f"{'one kept-alive connection' if args.keep_alive else 'a fresh connection each'}")
    print(f"unauthenticated: {sent} answers ({sent / attack_seconds:.0f} req/s): "
          + ", ".join(f"{k} {v}" for k, v in sorted(attacks.items())))
    if latencies:
        ms = [x * 1000 for x in latencies]
        print(f"authenticated GET /v1/status: {len(ms)} requests, p50 {percentile(ms, 50):.1f} "
              f"ms, p90 {percentile(ms, 90):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
              f"max {max(ms):.1f} ms")
    print("authenticated answers: " + ", ".join(f"{k} {v}" for k, v in sorted(answers.items())))
    ok = bool(latencies) and percentile(latencies, 99) < 0.050 and set(answers) == {"200"}
    print(f"target (p99 < 50 ms, every answer 200, no 429): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
