"""``lowkey daemon``: run the daemon in the foreground, or talk to a running one.

    lowkey daemon [--port N] [--device D] [--preset P] ...   run it (systemd/launchd run this)
                                                            (defaults: daemon.toml, see
                                                            lowkey.service)
    lowkey daemon status [--port N] [--json]                  is one running, and how is it
    lowkey daemon stop [--port N]                             stop it gracefully
    lowkey daemon token [--rotate]                            print (or replace) the token

Exit codes of ``status``: 0 running and ready, 1 not running, 3 running but not ready.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from lowkey.private_log import private_log_handler
from lowkey.service import (
    CLI_CLIENT,
    CLIENT_HEADER,
    DEFAULT_HOST,
    TokenStore,
    daemon_config_dir,
    load_settings,
    port_from_env,
)
from lowkey_daemon.config import DaemonConfig

logger = logging.getLogger("lowkey_daemon")

LOG_FILE = "daemon.log"
LOG_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3


def _port_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=None,
                        help="TCP port on 127.0.0.1 (default: $LOWKEY_DAEMON_PORT, else 7787)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lowkey daemon", description="the local LowKey protection service",
        epilog="Options not given come from daemon.toml in LowKey's config folder "
               "(preset, devices, models, port, queue_size, job_timeout, warm_up, batch), "
               "else the defaults shown.")
    _port_option(parser)
    parser.add_argument("--device", action="append",
                        help="a device to work on (one worker each; repeat for several; "
                             "default: cuda when present, else cpu)")
    parser.add_argument("--preset",
                        help="preset loaded and warmed at start, and used when a request "
                             "names none (default: default, which protects; subtle looks unchanged "
                             "and does NOT protect)")
    parser.add_argument("--models", help="comma-separated registry models to attack under "
                                         "every preset instead of its own ensemble")
    parser.add_argument("--queue-size", type=int,
                        help="jobs queued or running before new ones get 503 (default 8)")
    parser.add_argument("--job-timeout", type=float,
                        help="longest a job may take from submission, seconds (default 900)")
    parser.add_argument("--batch", type=int,
                        help="most queued jobs with the same options protected with one attack "
                             "(default: 8 on a GPU, 1 on a CPU)")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_const", const=False,
                        help="skip the dummy step at start")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="action")
    p = sub.add_parser("status", help="whether a daemon is running, and its status")
    _port_option(p)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("stop", help="stop the running daemon gracefully")
    _port_option(p)
    p = sub.add_parser("token", help="print the token other local tools send")
    p.add_argument("--rotate", action="store_true",
                   help="replace it (a running daemon takes the new one at once)")
    return parser


def _setup_logging(state_dir: Path, verbose: bool) -> Path:
    """Log to a rotating file in the state folder (0600 in a 0700 folder) and to stderr."""
    path = state_dir / LOG_FILE
    file_handler = private_log_handler(path, LOG_BYTES, LOG_BACKUPS)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                                "%(message)s"))
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [file_handler, stderr]
    level = logging.DEBUG if verbose else logging.INFO
    for name in ("lowkey_daemon", "lowkey"):
        logging.getLogger(name).setLevel(level)
    root.setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return path


def run(args: argparse.Namespace) -> int:
    from lowkey_daemon.app import create_app
    from lowkey_daemon.connections import serve

    settings = load_settings(daemon_config_dir())
    models = ([m.strip() for m in args.models.split(",") if m.strip()] if args.models
              else settings.get("models"))
    devices = args.device or settings.get("devices")
    defaults = DaemonConfig.__dataclass_fields__

    def pick(name: str) -> object:
        value = getattr(args, name)
        return value if value is not None else settings.get(name, defaults[name].default)

    config = DaemonConfig(
        port=port_from_env(args.port), devices=tuple(devices) if devices else None,
        preset=pick("preset"), models=tuple(models) if models else None,
        queue_size=pick("queue_size"), job_timeout=pick("job_timeout"),
        warm_up=pick("warm_up"), batch=pick("batch"))
    log = _setup_logging(config.state_dir, args.verbose)
    tokens = TokenStore(config.config_dir)
    app = create_app(config, tokens=tokens)
    logger.info("lowkey daemon on http://%s:%d (log %s, token in %s)", config.host,
                config.port, log, tokens.where)
    try:
        serve(app, config.host, config.port)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        return 1
    logger.info("lowkey daemon stopped")
    return 0


def _call(port: int, method: str, path: str, token: str | None = None,
          timeout: float = 5.0) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{DEFAULT_HOST}:{port}{path}", method=method)
    request.add_header(CLIENT_HEADER, CLI_CLIENT)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def status(args: argparse.Namespace) -> int:
    port = port_from_env(args.port)
    try:
        _, health = _call(port, "GET", "/v1/health")
    except OSError:
        if args.json:
            print(json.dumps({"running": False, "port": port}))
        else:
            print(f"no daemon answers on 127.0.0.1:{port}")
        return 1
    token = TokenStore(daemon_config_dir()).get(create=False)
    code, info = _call(port, "GET", "/v1/status", token) if token else (401, {})
    if args.json:
        print(json.dumps({"running": True, "port": port, "health": health,
                          "status": info if code == 200 else None}, indent=2))
    else:
        print(f"daemon on 127.0.0.1:{port}: {health.get('status')} ({health.get('message')})")
        if code == 200:
            queue, jobs = info["queue"], info["jobs"]
            print(f"  {', '.join(info['ensemble'])} on {', '.join(info['devices'])}; preset "
                  f"{info['preset']}, penalty {info['penalty']}"
                  + ("; PAUSED" if info["paused"] else ""))
            print(f"  queue {queue['queued']} queued, {queue['running']} running (of "
                  f"{queue['capacity']}); jobs {jobs['done']} done, {jobs['failed']} failed, "
                  f"{jobs['cancelled']} cancelled, {jobs['timed_out']} timed out")
        else:
            print("  (no status: the token here is not the daemon's; see `lowkey daemon token`)")
    return 0 if health.get("ready") else 3


def stop(args: argparse.Namespace) -> int:
    port = port_from_env(args.port)
    token = TokenStore(daemon_config_dir()).get(create=False)
    try:
        code, body = _call(port, "POST", "/v1/shutdown", token)
    except OSError:
        print(f"no daemon answers on 127.0.0.1:{port}", file=sys.stderr)
        return 1
    if code != 202:
        print(f"the daemon refused to stop: {body.get('error', {}).get('message', code)}",
              file=sys.stderr)
        return 1
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            _call(port, "GET", "/v1/health", timeout=1.0)
        except OSError:
            print("stopped")
            return 0
        time.sleep(0.2)
    print("asked to stop, but it still answers after 30 s", file=sys.stderr)
    return 1


def token(args: argparse.Namespace) -> int:
    store = TokenStore(daemon_config_dir())
    print(store.rotate() if args.rotate else store.get())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The local protection service: run it, or status, stop, token."""
    args = build_parser().parse_args(argv)
    try:
        if args.action is None:
            return run(args)
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        return {"status": status, "stop": stop, "token": token}[args.action](args)
    except ValueError as exc:
        print(f"lowkey daemon: error: {exc}", file=sys.stderr)
        return 2
