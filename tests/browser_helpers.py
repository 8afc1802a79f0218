"""Helpers for the tests that drive real browsers (no tests here): what they need and skip
without, a temporary HOME with the real ``lowkey install --user``, running a Node driver, and
killing whatever ran with the test's environment.

The fixtures (``chromium_driver``, ``firefox_driver``, ``installed_home``) are made available to
every test module by ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BROWSER_DIR = REPO / "tests" / "browser"
EXTENSION_IDS = REPO / "native_host" / "extension_ids.json"
NODE_MODULES = REPO / "extension" / "node_modules"
BIN = Path(sys.executable).parent  # the venv's bin: lowkey, lowkey-native-host

DRIVER_TIMEOUT_S = 90  # the hello drivers' own deadline; the subprocess gets a margin above it


def _ids() -> dict:
    return json.loads(EXTENSION_IDS.read_text(encoding="utf-8"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require(tool: str, override: str, how: str) -> Path:
    """The executable of ``tool`` (``$override`` names another), or skip saying what is missing."""
    found = shutil.which(os.environ.get(override) or tool)
    if not found:
        pytest.skip(f"{tool} is not installed ({how}; or name one in ${override})")
    return Path(found)


def _require_browser(tool: str, override: str) -> Path:
    return _require(tool, override, "apt-get install -y chromium firefox-esr xvfb")


def _require_node_tools(*packages: str) -> Path:
    node = _require("node", "LOWKEY_NODE", "Node 20 or newer runs the drivers")
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < 20:
        pytest.skip(f"node {version} is too old for the drivers (Node 20 or newer)")
    for package in packages:
        if not (NODE_MODULES / package / "package.json").is_file():
            pytest.skip(f"{NODE_MODULES / package} is missing (run `npm ci --prefix extension`)")
    return node


# -- a temporary HOME with the real install --------------------------------------------------------


@dataclass
class InstalledHome:
    home: Path
    env: dict[str, str]  # the browsers' environment (their hosts inherit it)
    chromium_profile: Path  # $HOME/.config/chromium: where `lowkey install --user` writes
    chromium_manifest: Path
    firefox_manifest: Path


@dataclass
class Driver:
    node: Path
    browser: Path


@pytest.fixture
def chromium_driver() -> Driver:
    return Driver(browser=_require_browser("chromium", "LOWKEY_CHROMIUM"),
                  node=_require_node_tools("playwright-core"))


@pytest.fixture
def firefox_driver() -> Driver:
    return Driver(browser=_require_browser("firefox-esr", "LOWKEY_FIREFOX"),
                  node=_require_node_tools("puppeteer-core"))


@pytest.fixture
def installed_home(tmp_path: Path) -> Iterator[InstalledHome]:
    """A fresh HOME with `lowkey install --user` done; kills what ran with its environment."""
    home = tmp_path / "home"
    home.mkdir()
    config_dir = home / "config"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "LOWKEY_", "MOZ_"))}
    env.update(
        HOME=str(home),
        LOWKEY_CONFIG_DIR=str(config_dir),
        LOWKEY_DAEMON_PORT=str(_free_port()),  # nothing listens there: the daemon is "down"
        LOWKEY_NO_AUTOSTART="1",  # and the host must not start one
        PYTHONDONTWRITEBYTECODE="1",
        LOWKEY_BROWSER_TEST=str(home),  # marks every process started here, see _kill_marked
    )
    name = _ids()["native_host_name"]
    installed = InstalledHome(
        home=home,
        env=env,
        chromium_profile=home / ".config" / "chromium",
        chromium_manifest=home / ".config" / "chromium" / "NativeMessagingHosts" / f"{name}.json",
        firefox_manifest=home / ".mozilla" / "native-messaging-hosts" / f"{name}.json",
    )
    try:
        _install(installed)
        yield installed
    finally:
        _kill_marked(env["LOWKEY_BROWSER_TEST"])


def _install(installed: InstalledHome) -> None:
    """`lowkey install --user` into the temporary HOME, as a user would."""
    lowkey = BIN / "lowkey"
    done = subprocess.run([str(lowkey), "install", "--user"], env=installed.env, cwd=installed.home,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"lowkey install --user failed:\n{done.stdout}\n{done.stderr}"
    for manifest in (installed.chromium_manifest, installed.firefox_manifest):
        assert manifest.is_file(), f"lowkey install --user did not write {manifest}:\n{done.stdout}"
        host = Path(json.loads(manifest.read_text(encoding="utf-8"))["path"])
        assert host.is_file() and os.access(host, os.X_OK), f"{manifest} names {host}: not runnable"


# -- running a driver ------------------------------------------------------------------------------


def _run_driver(script: str, *, node: Path, browser: Path, extension: Path, profile: Path,
                port: int, env: dict[str, str]) -> tuple[dict, float]:
    """Run a hello driver (:func:`run_node_driver`); its last JSON line and the seconds taken."""
    args = ["--browser", str(browser), "--extension", str(extension), "--profile", str(profile),
            "--port", str(port), "--timeout", str(DRIVER_TIMEOUT_S * 1000)]
    started = time.monotonic()
    code, lines, output = run_node_driver(script, args, node=node, env=env,
                                          timeout=DRIVER_TIMEOUT_S + 30,
                                          log=profile.parent / f"{Path(script).stem}.log")
    elapsed = time.monotonic() - started
    assert code == 0, f"{script} exited {code}\n{output}"
    assert lines, f"{script} printed no result\n{output}"
    return lines[-1], elapsed


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_marked(marker: str) -> None:
    """SIGKILL every process whose environment carries ``LOWKEY_BROWSER_TEST=marker``.

    The browsers pass their environment on to the native hosts they start, and the host to a
    daemon it would start; those need not stay in the driver's process group.
    """
    needle = f"LOWKEY_BROWSER_TEST={marker}".encode()
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            environ = (proc_dir / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and int(proc_dir.name) != os.getpid():
            try:
                os.kill(int(proc_dir.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass




def run_node_driver(script: str, args: list[str], *, node: Path, env: dict[str, str],
                    timeout: float, log: Path) -> tuple[int, list[dict], str]:
    """Run ``tests/browser/<script>`` with ``args`` in its own process group and kill the group
    (and whatever ran with ``env``'s marker) whatever happens: (exit code, its JSON lines, its
    output for failure messages). Its stderr goes to ``log`` as it runs (where a hang shows)."""
    with log.open("w") as stderr:
        proc = subprocess.Popen([str(node), str(BROWSER_DIR / script), *args], env=env,
                                cwd=BROWSER_DIR, stdout=subprocess.PIPE, stderr=stderr,
                                text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            out, _ = proc.communicate(timeout=10)
            pytest.fail(f"{script} hung past {timeout} s\nstdout:\n{out}\nstderr:\n"
                        f"{log.read_text()[-4000:]}")
        finally:
            _kill_group(proc.pid)
            _kill_marked(env["LOWKEY_BROWSER_TEST"])
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return proc.returncode, lines, f"stdout:\n{out}\nstderr:\n{log.read_text()[-4000:]}"
