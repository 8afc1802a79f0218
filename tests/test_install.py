"""`lowkey install` / `lowkey uninstall` (installers/): golden dry runs for every OS x scope, the
extension ids, and a real install and uninstall into a temporary HOME on Linux.

Regenerate the golden files after a deliberate change:
    LOWKEY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_install.py
"""

import importlib.util
import json
import os
import plistlib
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from lowkey_installers import apply, cli
from lowkey_installers.ids import chromium_id_from_key, load_extension_ids
from lowkey_installers.plan import (
    Plan,
    RegistryValue,
    WriteFile,
    build_plan,
    synthetic_target,
)

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "install"
VENV_BIN = Path(sys.executable).parent
LOWKEY = VENV_BIN / "lowkey"
IDS = load_extension_ids()
HOST_NAME = "org.lowkey.native_host"

FAKE = {  # fixed fake machines: the golden files are the same everywhere
    "linux": ("/home/alice", "/home/alice/lowkey/.venv/bin/python"),
    "macos": ("/Users/alice", "/Users/alice/lowkey/.venv/bin/python"),
    "windows": ("C:\\Users\\alice", "C:\\Users\\alice\\lowkey\\.venv\\Scripts\\python.exe"),
}
BROWSER_NAMES = ("Google Chrome", "Chromium", "Microsoft Edge", "Brave", "Firefox")


def _dry_run(capsys, os_name: str, scope: str, action: str = "install") -> str:
    home, python = FAKE[os_name]
    rc = cli.main([action, "--dry-run", f"--{scope}", "--os", os_name, "--home", home,
                   "--python", python])
    out = capsys.readouterr().out
    assert rc == 0
    return out


@pytest.mark.parametrize("scope", ["user", "system"])
@pytest.mark.parametrize("os_name", ["linux", "macos", "windows"])
def test_dry_run_matches_golden(capsys, os_name, scope):
    out = _dry_run(capsys, os_name, scope)
    golden = GOLDEN / f"{os_name}-{scope}.txt"
    if os.environ.get("LOWKEY_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(out, encoding="utf-8")
    assert out == golden.read_text(encoding="utf-8"), (
        f"{golden.name} differs; if the change is deliberate: "
        "LOWKEY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_install.py")
    for name in BROWSER_NAMES:  # every browser is served, by its own entry or a shared one
        assert name in out
    assert {"linux": "lowkey-daemon.service", "macos": "org.lowkey.daemon.plist",
            "windows": "CurrentVersion\\Run"}[os_name] in out
    assert "start the daemon now:" in out


@pytest.mark.parametrize("scope", ["user", "system"])
@pytest.mark.parametrize("os_name", ["linux", "macos", "windows"])
def test_plan_manifests_carry_the_exact_ids(os_name, scope):
    home, python = FAKE[os_name]
    plan = build_plan(synthetic_target(os_name, scope, home, python))
    manifests = [a for a in plan.actions if isinstance(a, WriteFile) and a.kind == "manifest"]
    assert manifests
    for a in manifests:
        data = json.loads(a.content)
        assert data["name"] == HOST_NAME and data["type"] == "stdio"
        assert data["path"] == str(plan.host_executable)
        if "allowed_origins" in data:
            assert data["allowed_origins"] == [f"chrome-extension://{IDS.chromium_id}/"]
        else:
            assert data["allowed_extensions"] == [IDS.firefox_id]
        if os_name != "windows":
            assert a.path.name == f"{HOST_NAME}.json"  # the browsers look the host up by name


def test_chromium_id_is_derived_from_the_key():
    raw = json.loads((REPO / "native_host" / "extension_ids.json").read_text())
    assert chromium_id_from_key(raw["chromium"]["key"]) == raw["chromium"]["id"] == IDS.chromium_id
    assert raw["native_host_name"] == IDS.native_host_name == HOST_NAME
    assert raw["firefox"]["id"] == IDS.firefox_id


def test_ids_live_only_in_extension_ids_json():
    checked = set()
    for path in (REPO / "installers").rglob("*"):
        if path.is_file() and path.suffix in {".py", ".json", ".sh", ".ps1", ".bat", ".plist",
                                              ".service"}:
            text = path.read_text(encoding="utf-8")
            assert IDS.chromium_id not in text and IDS.firefox_id not in text, path
            checked.add(path.relative_to(REPO).as_posix())
    # the filter above must have let the files that could hold an id through
    assert {"installers/plan.py", "installers/ids.py", "installers/install.ps1",
            "installers/templates/native-host-chromium.json",
            "installers/templates/native-host-firefox.json",
            "installers/templates/lowkey-native-host.bat",
            "installers/templates/lowkey-daemon.service",
            "installers/templates/org.lowkey.daemon.plist"} <= checked


def test_installers_never_import_torch():
    code = ("import sys, lowkey_installers.cli, lowkey_installers.apply, lowkey_installers.plan;"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_launchd_plist_and_systemd_unit_content():
    home, python = FAKE["macos"]
    plan = build_plan(synthetic_target("macos", "user", home, python))
    (plist,) = [a for a in plan.actions if isinstance(a, WriteFile) and a.kind == "plist"]
    data = plistlib.loads(plist.data())
    assert data["Label"] == "org.lowkey.daemon"
    assert data["ProgramArguments"] == ["/Users/alice/lowkey/.venv/bin/lowkey", "daemon"]
    assert data["RunAtLoad"] is True and data["KeepAlive"] == {"SuccessfulExit": False}
    assert plist.path == PurePosixPath("/Users/alice/Library/LaunchAgents/org.lowkey.daemon.plist")

    home, python = FAKE["linux"]
    plan = build_plan(synthetic_target("linux", "user", home, "/home/a b/.venv/bin/python"))
    (unit,) = [a for a in plan.actions if isinstance(a, WriteFile) and a.kind == "unit"]
    assert 'ExecStart="/home/a b/.venv/bin/lowkey" daemon\n' in unit.content
    assert "Restart=on-failure" in unit.content and "WantedBy=default.target" in unit.content


def test_windows_wrapper_is_crlf_and_runs_the_host_module():
    home, python = FAKE["windows"]
    plan = build_plan(synthetic_target("windows", "user", home, python))
    (bat,) = [a for a in plan.actions if isinstance(a, WriteFile) and a.kind == "bat"]
    assert str(bat.path) == "C:\\Users\\alice\\AppData\\Local\\LowKey\\lowkey-native-host.bat"
    assert b'"C:\\Users\\alice\\lowkey\\.venv\\Scripts\\python.exe" -m lowkey_native_host %*\r\n' in bat.data()
    assert b"\n" not in bat.data().replace(b"\r\n", b"")
    run = [a for a in plan.actions if isinstance(a, RegistryValue) and a.key.endswith("Run")]
    assert run[0].root == "HKCU"
    assert run[0].data == '"C:\\Users\\alice\\lowkey\\.venv\\Scripts\\pythonw.exe" -m lowkey_daemon'
    assert plan.start_now.endswith('"-m lowkey_daemon"')
    # the modules they run are LowKey's own, installed, and runnable with -m
    for module in ("lowkey_native_host", "lowkey_daemon"):
        spec = importlib.util.find_spec(f"{module}.__main__")
        assert spec is not None and spec.origin, module


# --- on this machine (Linux): a real install into a temporary HOME -------------------------


def _listing(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = "file:" + p.read_text(errors="replace")
    return out


def _run(args, home: Path, config: Path):
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
    env.update(HOME=str(home), LOWKEY_CONFIG_DIR=str(config))
    return subprocess.run([str(LOWKEY), *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=home)


@pytest.fixture
def machine(tmp_path):
    """A temporary HOME with some of the user's own files, and a LowKey config folder."""
    if sys.platform != "linux":
        pytest.skip("the real install test runs on Linux")
    home, config = tmp_path / "home", tmp_path / "config"
    (home / ".config" / "other-app").mkdir(parents=True)
    (home / ".config" / "other-app" / "settings.ini").write_text("mine\n")
    (home / ".mozilla").mkdir()  # exists before install: must survive uninstall
    return home, config


def test_real_install_then_uninstall_leaves_home_as_before(machine):
    home, config = machine
    before = _listing(home)
    r = _run(["install"], home, config)
    assert r.returncode == 0, r.stderr
    assert "systemctl --user start lowkey-daemon" in r.stdout

    chromium = home / ".config/chromium/NativeMessagingHosts" / f"{HOST_NAME}.json"
    firefox = home / ".mozilla/native-messaging-hosts" / f"{HOST_NAME}.json"
    others = [home / ".config/google-chrome/NativeMessagingHosts" / f"{HOST_NAME}.json",
              home / ".config/microsoft-edge/NativeMessagingHosts" / f"{HOST_NAME}.json",
              home / ".config/BraveSoftware/Brave-Browser/NativeMessagingHosts" / f"{HOST_NAME}.json"]
    for path in [chromium, *others, firefox]:
        data = json.loads(path.read_text())
        assert data["name"] == HOST_NAME and data["type"] == "stdio"
        host = Path(data["path"])
        assert host.is_absolute() and host.is_file() and os.access(host, os.X_OK), host
        assert host == VENV_BIN / "lowkey-native-host"
        if path == firefox:
            assert data["allowed_extensions"] == [IDS.firefox_id]
            assert "allowed_origins" not in data
        else:
            assert data["allowed_origins"] == [f"chrome-extension://{IDS.chromium_id}/"]
            assert data["allowed_origins"] == [
                f"chrome-extension://{chromium_id_from_key(IDS.chromium_key)}/"]

    unit = home / ".config/systemd/user/lowkey-daemon.service"
    (exec_start,) = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
    exe, arg = exec_start.removeprefix("ExecStart=").split(" ")
    assert arg == "daemon" and os.access(exe, os.X_OK) and Path(exe).name == "lowkey"
    link = home / ".config/systemd/user/default.target.wants/lowkey-daemon.service"
    assert link.is_symlink() and Path(os.readlink(link)) == unit
    receipt = json.loads((config / "install-receipt.json").read_text())
    assert len(receipt["entries"]) == 7

    again = _run(["install"], home, config)  # idempotent; the receipt keeps what it created
    assert again.returncode == 0
    changed = [ln for ln in again.stdout.splitlines() if ln.startswith(("wrote", "updated"))]
    assert changed == [ln for ln in changed if "install-receipt.json" in ln] and len(changed) == 1

    dry = _run(["uninstall", "--dry-run"], home, config)
    assert dry.returncode == 0 and str(chromium) in dry.stdout and chromium.exists()

    r = _run(["uninstall"], home, config)
    assert r.returncode == 0, r.stderr
    assert _listing(home) == before
    assert not (config / "install-receipt.json").exists() and not config.exists()


def test_install_refuses_to_overwrite_a_users_file(machine):
    home, config = machine
    mine = home / ".config/chromium/NativeMessagingHosts" / f"{HOST_NAME}.json"
    mine.parent.mkdir(parents=True)
    mine.write_text('{"name": "something.else"}\n')
    r = _run(["install"], home, config)
    assert r.returncode == 1 and "refused" in r.stdout and str(mine) in r.stdout
    assert mine.read_text() == '{"name": "something.else"}\n'
    assert (home / ".mozilla/native-messaging-hosts" / f"{HOST_NAME}.json").exists()
    r = _run(["uninstall"], home, config)
    assert r.returncode == 0 and mine.read_text() == '{"name": "something.else"}\n'


def test_install_updates_an_older_lowkey_manifest(machine):
    home, config = machine
    old = home / ".mozilla/native-messaging-hosts" / f"{HOST_NAME}.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"name": HOST_NAME, "path": "/old/venv/bin/lowkey-native-host"}))
    r = _run(["install"], home, config)
    assert r.returncode == 0 and f"updated    {old}" in r.stdout
    assert json.loads(old.read_text())["path"] == str(VENV_BIN / "lowkey-native-host")


def test_uninstall_without_receipt_removes_only_exact_files(machine):
    home, config = machine
    assert _run(["install"], home, config).returncode == 0
    (config / "install-receipt.json").unlink()
    edge = home / ".config/microsoft-edge/NativeMessagingHosts" / f"{HOST_NAME}.json"
    edge.write_text(edge.read_text().replace("LowKey:", "LowKey (edited):"))
    r = _run(["uninstall"], home, config)
    assert r.returncode == 0 and "no receipt" in r.stdout
    assert edge.exists()
    assert not (home / ".config/chromium/NativeMessagingHosts" / f"{HOST_NAME}.json").exists()
    assert not (home / ".config/systemd/user/lowkey-daemon.service").exists()
    assert not (home / ".config/systemd/user/default.target.wants/lowkey-daemon.service").is_symlink()


def test_system_scope_needs_root_but_its_dry_run_does_not(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    def never(*args, **kwargs):
        raise AssertionError("must not write anything")

    monkeypatch.setattr(apply, "install", never)
    monkeypatch.setattr(apply, "uninstall", never)
    for action in ("install", "uninstall"):
        assert cli.main([action, "--system"]) == 1
        err = capsys.readouterr().err
        assert "needs root" in err and "sudo" in err and "Traceback" not in err
    assert cli.main(["install", "--system", "--dry-run"]) == 0
    out = capsys.readouterr().out
    if sys.platform == "linux":
        assert "/etc/chromium/native-messaging-hosts/org.lowkey.native_host.json" in out


def test_test_only_options_refuse_a_real_run(capsys):
    assert cli.main(["install", "--os", "macos", "--home", "/Users/a", "--python", "/x/python"]) == 2
    assert "dry runs only" in capsys.readouterr().err
    assert "--os" not in cli.build_parser("install").format_help()


# --- Windows registry logic, against a fake registry --------------------------------------


class FakeRegistry:
    def __init__(self, keys=()):
        self.keys: dict[tuple[str, str], dict[str, str]] = {k: {} for k in keys}

    def get(self, root, key, name):
        return self.keys.get((root, key), {}).get(name)

    def key_exists(self, root, key):
        return (root, key) in self.keys

    def set(self, root, key, name, data):
        parts = key.split("\\")
        for i in range(1, len(parts) + 1):
            self.keys.setdefault((root, "\\".join(parts[:i])), {})
        self.keys[(root, key)][name] = data

    def delete_value(self, root, key, name):
        del self.keys[(root, key)][name]

    def delete_key_if_empty(self, root, key):
        if self.keys.get((root, key)) or any(r == root and k.startswith(key + "\\")
                                             for r, k in self.keys):
            return False
        return self.keys.pop((root, key), None) is not None


def test_registry_values_round_trip_exactly(tmp_path):
    home, python = FAKE["windows"]
    full = build_plan(synthetic_target("windows", "user", home, python))
    regs = [a for a in full.actions if isinstance(a, RegistryValue)]
    plan = Plan(full.target, full.host_executable, tmp_path / "receipt.json", regs, full.start_now)
    existing = [("HKCU", "Software"), ("HKCU", "Software\\Microsoft"),
                ("HKCU", "Software\\Microsoft\\Windows"),
                ("HKCU", "Software\\Microsoft\\Windows\\CurrentVersion"),
                ("HKCU", "Software\\Microsoft\\Windows\\CurrentVersion\\Run"),
                ("HKCU", "Software\\Google")]
    reg = FakeRegistry(existing)
    reg.set("HKCU", "Software\\Microsoft\\Windows\\CurrentVersion\\Run", "OneDrive", "x.exe")
    before = {k: dict(v) for k, v in reg.keys.items()}
    steps = apply.install(plan, registry=reg, ids=IDS)
    assert not any(s.failed for s in steps)
    key = f"Software\\Google\\Chrome\\NativeMessagingHosts\\{HOST_NAME}"
    assert reg.get("HKCU", key, "").endswith("org.lowkey.native_host.chromium.json")
    assert reg.get("HKCU", "Software\\Mozilla\\NativeMessagingHosts\\" + HOST_NAME, "").endswith(
        "firefox.json")
    apply.uninstall(plan, registry=reg, ids=IDS)
    assert reg.keys == before


@pytest.mark.slow
def test_the_wheel_works_in_a_fresh_venv():
    """The built wheel, pip-installed into a fresh venv with its dependencies from the index,
    gives a working ``lowkey protect --sample`` after ``lowkey models fetch`` (the README's
    commands), installs only LowKey's own import names, and lives beside python-daemon."""
    result = subprocess.run(["bash", str(REPO / "installers" / "check_wheel.sh")],
                            capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "the wheel installs and works in a fresh venv" in result.stdout


def test_the_version_is_written_once():
    """``lowkey.__version__`` is the version: pyproject.toml reads it, the installed metadata
    says it, and the extension (whose manifest takes package.json's) carries the same."""
    import tomllib
    from importlib import metadata

    from lowkey import __version__

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lowkey.__version__"}
    assert metadata.version("lowkey") == __version__
    assert json.loads((REPO / "extension" / "package.json").read_text())["version"] == __version__
