"""Load on a running daemon: N concurrent clients for a bounded time, then the daemon's overhead
over a direct library call for the same photo and settings.

    .venv/bin/lowkey daemon --preset fast &                  # or any running daemon
    .venv/bin/python bench/bench_daemon.py --clients 4 --seconds 60 --params strength=2

(``lowkey daemon --batch N`` for the queue's batching: compare throughput and latency at 1 and N
with N clients.)

Prints throughput, latency percentiles, errors by code, and the overhead: the median latency of
one client alone (HTTP, queue, decode/encode included) against the median of
:func:`lowkey.protect.protect_bytes` in this process with the same options and ensemble (target:
under 5%). The token comes from ``--token`` or the daemon's own store (``lowkey daemon token``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def one(session, url: str, headers: dict, params: dict, photo: bytes
              ) -> tuple[float, str, float | None]:
    """(latency s, "ok" or the error code, the daemon's own seconds for the job)."""
    start = time.perf_counter()
    async with session.post(f"{url}/v1/protect", data=photo, params=params,
                            headers=headers) as response:
        body = await response.read()
        latency = time.perf_counter() - start
        if response.status == 200:
            report = json.loads(response.headers.get("X-LowKey-Report", "{}"))
            return latency, "ok", report.get("seconds")
        try:
            code = json.loads(body)["error"]["code"]
        except (ValueError, KeyError):
            code = f"http {response.status}"
        return latency, code, None


async def load(url: str, headers: dict, params: dict, photo: bytes, clients: int,
               seconds: float) -> tuple[list[tuple[float, str, float | None]], float]:
    import aiohttp

    results: list[tuple[float, str, float | None]] = []
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        end = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < end:
                try:
                    result = await one(session, url, headers, params, photo)
                except aiohttp.ClientError as exc:
                    result = (0.0, f"connection: {type(exc).__name__}", None)
                results.append(result)
                if result[1] in ("queue_full", "rate_limited"):
                    await asyncio.sleep(0.5)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return results, time.perf_counter() - start


async def sequential(url: str, headers: dict, params: dict, photo: bytes,
                     runs: int) -> list[tuple[float, str, float | None]]:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        return [await one(session, url, headers, params, photo) for _ in range(runs)]


def direct(status: dict, params: dict, photo: bytes, runs: int) -> list[float]:
    """Seconds of protect_bytes in this process, same options, ensemble and device."""
    from lowkey.jobs import ProtectOptions
    from lowkey.pool import ModelPool
    from lowkey.presets import PRESETS
    from lowkey.protect import Protector, protect_bytes

    preset = params.get("preset", status["preset"])
    models = tuple(status["ensemble"])
    options = ProtectOptions(
        preset=preset, strength=int(params["strength"]) if "strength" in params else None,
        seed=int(params.get("seed", 0)), faces=params.get("faces", "all"),
        format=params.get("format"), quality=int(params.get("quality", 95)),
        measure=params.get("measure", "true").lower() in ("1", "true", "yes"),
        models=None if models == PRESETS[preset].models else models)
    pool = ModelPool(status["devices"][0])
    Protector.for_options(options, pool).warm_up()
    protect_bytes(photo, options, pool)  # as the daemon's first request did
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        protect_bytes(photo, options, pool)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="the daemon (default http://127.0.0.1:$LOWKEY_DAEMON_PORT)")
    p.add_argument("--token", help="default: the daemon's token store")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=60.0, help="length of the load phase")
    p.add_argument("--photo", type=Path, help="default: the sample astronaut (lowkey.sample, 512 px PNG)")
    p.add_argument("--params", default="", help="query string for /v1/protect, e.g. "
                                                "strength=2&measure=false")
    p.add_argument("--runs", type=int, default=5,
                   help="sequential runs for the overhead, through the daemon and direct")
    p.add_argument("--no-direct", action="store_true", help="skip the direct library runs")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()

    from lowkey.sample import sample_png
    from lowkey.service import TokenStore, daemon_config_dir, port_from_env

    url = (args.url or f"http://127.0.0.1:{port_from_env()}").rstrip("/")
    token = args.token or TokenStore(daemon_config_dir()).get(create=False)
    if not token:
        print("no token: pass --token or run `lowkey daemon` first", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/png"}
    params = dict(parse_qsl(args.params))
    photo = args.photo.read_bytes() if args.photo else sample_png()
    if args.photo:
        headers["Content-Type"] = "application/octet-stream"

    import urllib.request

    request = urllib.request.Request(f"{url}/v1/status", headers={"Authorization":
                                                                   f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        status = json.loads(response.read())
    print(f"daemon {url}: {', '.join(status['ensemble'])} on {', '.join(status['devices'])}, "
          f"preset {params.get('preset', status['preset'])}, params {params or 'none'}, "
          f"batch {status['queue'].get('batch', 1)}; photo {len(photo)} bytes", flush=True)

    first = asyncio.run(sequential(url, headers, params, photo, 1))[0]
    print(f"first request (after the daemon's warm-up): {first[0]:.2f} s ({first[1]})",
          flush=True)
    alone = asyncio.run(sequential(url, headers, params, photo, args.runs))
    results, wall = asyncio.run(load(url, headers, params, photo, args.clients, args.seconds))
    ok = [r for r in results if r[1] == "ok"]
    errors = Counter(r[1] for r in results if r[1] != "ok")
    latencies = [r[0] for r in ok]
    figures: dict = {"clients": args.clients, "batch": status["queue"].get("batch", 1),
                     "seconds": round(wall, 1), "requests": len(results),
                     "ok": len(ok), "errors": dict(errors),
                     "throughput_per_s": round(len(ok) / wall, 3) if wall else None,
                     "first_request_s": round(first[0], 3)}
    if latencies:
        figures["latency_s"] = {f"p{q}": round(percentile(latencies, q), 3)
                                for q in (50, 90, 99)} | {"max": round(max(latencies), 3)}
    alone_ok = [r for r in alone if r[1] == "ok"]
    if alone_ok:
        figures["alone_median_s"] = round(statistics.median(r[0] for r in alone_ok), 3)
        inside = [r[0] - r[2] for r in alone_ok if r[2] is not None]
        if inside:
            figures["http_and_queue_median_s"] = round(statistics.median(inside), 4)
    if not args.no_direct and alone_ok:
        times = direct(status, params, photo, args.runs)
        figures["direct_median_s"] = round(statistics.median(times), 3)
        figures["overhead_pct"] = round(100 * (figures["alone_median_s"]
                                               / figures["direct_median_s"] - 1), 1)

    print(f"\n{args.clients} clients for {figures['seconds']} s: {figures['ok']} protected of "
          f"{figures['requests']} requests, {figures['throughput_per_s']} photos/s")
    if latencies:
        lat = figures["latency_s"]
        print(f"latency under load: p50 {lat['p50']} s, p90 {lat['p90']} s, p99 {lat['p99']} s, "
              f"max {lat['max']} s")
    print(f"errors: {dict(errors) or 'none'}")
    if "alone_median_s" in figures:
        print(f"one client alone: median {figures['alone_median_s']} s per photo "
              f"(HTTP + queue + report header around the job: "
              f"{figures.get('http_and_queue_median_s', 'n/a')} s)")
    if "direct_median_s" in figures:
        print(f"direct library call (protect_bytes, same options): median "
              f"{figures['direct_median_s']} s -> daemon overhead {figures['overhead_pct']}% "
              f"(target < 5%)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
