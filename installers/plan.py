"""What ``lowkey install`` writes, where, for each OS and scope: a pure function of a :class:`Target`.

Nothing here touches the machine, so a plan for macOS or Windows can be built (and tested against
golden files) on Linux. :mod:`lowkey_installers.apply` carries a plan out.

Where each native-messaging location comes from (checked against the browsers' own docs/source):

- Chrome and Chromium, Linux/macOS system-wide: Chromium source ``chrome/common/chrome_paths.cc``
  (``DIR_NATIVE_MESSAGING``): ``/etc/opt/chrome/native-messaging-hosts`` and
  ``/Library/Google/Chrome/NativeMessagingHosts`` for Google Chrome builds,
  ``/etc/chromium/native-messaging-hosts`` and
  ``/Library/Application Support/Chromium/NativeMessagingHosts`` for every other build.
  Per user (``DIR_USER_NATIVE_MESSAGING``): ``<user data dir>/NativeMessagingHosts``, the user data
  dir being ``$XDG_CONFIG_HOME/google-chrome`` / ``$XDG_CONFIG_HOME/chromium`` on Linux and
  ``~/Library/Application Support/Google/Chrome`` / ``.../Chromium`` on macOS
  (developer.chrome.com/docs/extensions/develop/concepts/native-messaging, "Native messaging host
  location"; chromium docs/user_data_dir.md).
- Chrome and Chromium, Windows: registry ``HKCU|HKLM\\SOFTWARE\\Google\\Chrome\\NativeMessagingHosts\\<name>``;
  Chromium builds look under ``SOFTWARE\\Chromium\\NativeMessagingHosts`` first, then Chrome's
  (Chromium source ``chrome/browser/extensions/api/messaging/native_process_launcher_win.cc``).
  The key's default value is the manifest's path.
- Edge (learn.microsoft.com/microsoft-edge/extensions/developer-guide/native-messaging, step 3):
  Windows ``HKCU|HKLM\\SOFTWARE\\Microsoft\\Edge\\NativeMessagingHosts\\<name>``; macOS
  ``/Library/Microsoft/Edge/NativeMessagingHosts`` and
  ``~/Library/Application Support/Microsoft Edge/NativeMessagingHosts``; Linux
  ``/etc/opt/edge/native-messaging-hosts`` and ``~/.config/microsoft-edge/NativeMessagingHosts``.
- Brave: a Chromium build that does not override ``DIR_NATIVE_MESSAGING`` or the Windows lookup
  (brave-core ``chromium_src/chrome/common/chrome_paths.cc``), so system-wide (Linux/macOS) and on
  Windows it reads Chromium's locations, which we write anyway. Per user its user data dir is
  ``$XDG_CONFIG_HOME/BraveSoftware/Brave-Browser`` on Linux (brave-core
  ``chromium_src/chrome/common/chrome_paths_linux.cc``) and
  ``~/Library/Application Support/BraveSoftware/Brave-Browser`` on macOS (as KeePassXC's
  ``NativeMessageInstaller.cpp`` writes it; some Brave builds on macOS read Chrome's folder instead,
  which we also write).
- Firefox (MDN, Mozilla/Add-ons/WebExtensions/Native_manifests, "Manifest location"): Linux
  ``~/.mozilla/native-messaging-hosts`` and ``/usr/lib/mozilla/native-messaging-hosts``; macOS
  ``~/Library/Application Support/Mozilla/NativeMessagingHosts`` and
  ``/Library/Application Support/Mozilla/NativeMessagingHosts``; Windows
  ``HKCU|HKLM\\SOFTWARE\\Mozilla\\NativeMessagingHosts\\<name>``.
"""

from __future__ import annotations

import json
import os
import string
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import PurePath, PurePosixPath, PureWindowsPath

from lowkey_installers.ids import ExtensionIds, load_extension_ids

OSES = ("linux", "macos", "windows")
SCOPES = ("user", "system")
MARKER = "Written by `lowkey install`"
UNIT_NAME = "lowkey-daemon.service"
LAUNCHD_LABEL = "org.lowkey.daemon"
RUN_VALUE_NAME = "LowKey daemon"
RECEIPT_NAME = "install-receipt.json"

# Browser key -> (display name, family). Order is the order of the plan and of the README table.
BROWSERS: dict[str, tuple[str, str]] = {
    "chrome": ("Google Chrome", "chromium"),
    "chromium": ("Chromium", "chromium"),
    "edge": ("Microsoft Edge", "chromium"),
    "brave": ("Brave", "chromium"),
    "firefox": ("Firefox", "firefox"),
}


@dataclass(frozen=True)
class Target:
    """The machine a plan is for: OS, scope and the folders the locations derive from.

    ``python`` is the venv's interpreter (``sys.executable``); the native host, ``lowkey`` and
    ``pythonw.exe`` are found next to it. ``config_dir`` is LowKey's config folder (user scope:
    where the receipt goes). Windows also needs ``localappdata`` and ``programdata``.
    """

    os: str
    scope: str
    home: PurePath
    python: PurePath
    config_dir: PurePath
    xdg_config_home: PurePath | None = None
    localappdata: PurePath | None = None
    programdata: PurePath | None = None

    def __post_init__(self) -> None:
        if self.os not in OSES:
            raise ValueError(f"unknown OS {self.os!r} (expected one of {', '.join(OSES)})")
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r} (expected user or system)")


def pure_path_type(os_name: str) -> type[PurePath]:
    """The pure path flavour of an OS."""
    return PureWindowsPath if os_name == "windows" else PurePosixPath


def synthetic_target(os_name: str, scope: str, home: str, python: str) -> Target:
    """A target built only from its arguments, never from this machine's environment (used by
    the golden dry runs and the hidden ``--os/--home/--python`` options)."""
    P = pure_path_type(os_name)
    home_p = P(home)
    if os_name == "windows":
        local = home_p / "AppData" / "Local"
        return Target(os_name, scope, home_p, P(python), config_dir=local / "lowkey" / "lowkey",
                      localappdata=local, programdata=P("C:/ProgramData"))
    if os_name == "macos":
        return Target(os_name, scope, home_p, P(python),
                      config_dir=home_p / "Library" / "Application Support" / "lowkey")
    return Target(os_name, scope, home_p, P(python), config_dir=home_p / ".config" / "lowkey",
                  xdg_config_home=home_p / ".config")


@dataclass(frozen=True)
class WriteFile:
    """Write ``content`` to ``path`` (UTF-8; ``crlf`` turns newlines into CRLF) with ``mode``."""

    path: PurePath
    content: str
    mode: int
    what: str
    kind: str  # "manifest" | "unit" | "plist" | "bat": how to tell an older LowKey file
    crlf: bool = False

    def data(self) -> bytes:
        """The exact bytes on disk."""
        text = self.content.replace("\n", "\r\n") if self.crlf else self.content
        return text.encode("utf-8")


@dataclass(frozen=True)
class Symlink:
    """A symbolic link ``path`` -> ``target``."""

    path: PurePath
    target: PurePath
    what: str


@dataclass(frozen=True)
class RegistryValue:
    """A REG_SZ value ``name`` ("" = the key's default value) in ``root\\key``."""

    root: str  # "HKCU" | "HKLM"
    key: str
    name: str
    data: str
    what: str


Action = WriteFile | Symlink | RegistryValue


@dataclass(frozen=True)
class Plan:
    """Everything install writes, in order, and how to start the daemon now."""

    target: Target
    host_executable: PurePath
    receipt: PurePath
    actions: list[Action]
    start_now: str
    owned_dirs: list[PurePath] = field(default_factory=list)  # ours by name: removable if empty


def _template(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text("utf-8")


def manifest_json(family: str, ids: ExtensionIds, host: PurePath) -> str:
    """A native-messaging host manifest for ``family`` ("chromium" or "firefox")."""
    data = json.loads(_template(f"native-host-{family}.json"))
    data["name"] = ids.native_host_name
    data["path"] = str(host)
    if family == "chromium":
        data["allowed_origins"] = [ids.chromium_origin]
    else:
        data["allowed_extensions"] = [ids.firefox_id]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def is_lowkey_file(kind: str, text: str, ids: ExtensionIds) -> bool:
    """True when ``text`` (an existing file's content) was written by some LowKey install, so
    overwriting it loses nothing of the user's."""
    if kind == "manifest":
        try:
            return json.loads(text).get("name") == ids.native_host_name
        except (ValueError, AttributeError):
            return False
    return MARKER in text


def _systemd_quote(arg: str) -> str:
    if arg and not any(c in arg for c in ' \t"\'\\;$%'):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _manifest_dirs(t: Target) -> dict[str, PurePath]:
    """Browser key -> folder of its manifest, for Linux and macOS. Brave system-wide reads
    Chromium's folder, so it has no entry there (see the module docstring)."""
    P = pure_path_type(t.os)
    if t.os == "linux":
        if t.scope == "system":
            return {
                "chrome": P("/etc/opt/chrome/native-messaging-hosts"),
                "chromium": P("/etc/chromium/native-messaging-hosts"),
                "edge": P("/etc/opt/edge/native-messaging-hosts"),
                "firefox": P("/usr/lib/mozilla/native-messaging-hosts"),
            }
        xdg = t.xdg_config_home or t.home / ".config"
        return {
            "chrome": xdg / "google-chrome" / "NativeMessagingHosts",
            "chromium": xdg / "chromium" / "NativeMessagingHosts",
            "edge": xdg / "microsoft-edge" / "NativeMessagingHosts",
            "brave": xdg / "BraveSoftware" / "Brave-Browser" / "NativeMessagingHosts",
            "firefox": t.home / ".mozilla" / "native-messaging-hosts",
        }
    if t.scope == "system":
        return {
            "chrome": P("/Library/Google/Chrome/NativeMessagingHosts"),
            "chromium": P("/Library/Application Support/Chromium/NativeMessagingHosts"),
            "edge": P("/Library/Microsoft/Edge/NativeMessagingHosts"),
            "firefox": P("/Library/Application Support/Mozilla/NativeMessagingHosts"),
        }
    support = t.home / "Library" / "Application Support"
    return {
        "chrome": support / "Google" / "Chrome" / "NativeMessagingHosts",
        "chromium": support / "Chromium" / "NativeMessagingHosts",
        "edge": support / "Microsoft Edge" / "NativeMessagingHosts",
        "brave": support / "BraveSoftware" / "Brave-Browser" / "NativeMessagingHosts",
        "firefox": support / "Mozilla" / "NativeMessagingHosts",
    }


# Windows: browser key -> registry path (under HKCU or HKLM) holding NativeMessagingHosts.
WINDOWS_REGISTRY = {
    "chrome": "Software\\Google\\Chrome",
    "chromium": "Software\\Chromium",
    "edge": "Software\\Microsoft\\Edge",
    "firefox": "Software\\Mozilla",
}


def _names(keys: list[str]) -> str:
    return ", ".join(BROWSERS[k][0] for k in keys)


def _covered(key: str, dirs: dict[str, PurePath] | dict[str, str]) -> list[str]:
    """Browsers served by ``key``'s location: itself, plus Brave where it has none of its own."""
    return [key, "brave"] if key == "chromium" and "brave" not in dirs else [key]


def _posix_plan(t: Target, ids: ExtensionIds) -> tuple[PurePath, list[Action], str, PurePath]:
    bindir = t.python.parent
    host = bindir / "lowkey-native-host"
    lowkey = bindir / "lowkey"
    dirs = _manifest_dirs(t)
    actions: list[Action] = []
    for key, folder in dirs.items():
        family = BROWSERS[key][1]
        actions.append(WriteFile(folder / f"{ids.native_host_name}.json",
                                 manifest_json(family, ids, host), 0o644,
                                 f"native-messaging manifest for {_names(_covered(key, dirs))}",
                                 "manifest"))
    P = pure_path_type(t.os)
    if t.os == "linux":
        if t.scope == "system":
            unit_dir = P("/etc/systemd/user")
            start = "systemctl --user daemon-reload && systemctl --user start lowkey-daemon"
            enable = "as `systemctl --global enable lowkey-daemon` would"
            receipt = P("/var/lib/lowkey") / RECEIPT_NAME
        else:
            unit_dir = (t.xdg_config_home or t.home / ".config") / "systemd" / "user"
            start = "systemctl --user daemon-reload && systemctl --user start lowkey-daemon"
            enable = "as `systemctl --user enable lowkey-daemon` would"
            receipt = t.config_dir / RECEIPT_NAME
        unit = unit_dir / UNIT_NAME
        exec_start = " ".join(_systemd_quote(a) for a in (str(lowkey), "daemon"))
        content = string.Template(_template(UNIT_NAME)).substitute(exec_start=exec_start)
        actions.append(WriteFile(unit, content, 0o644,
                                 "systemd user unit: the daemon at login", "unit"))
        actions.append(Symlink(unit_dir / "default.target.wants" / UNIT_NAME, unit,
                               f"enables the unit at login, {enable}"))
    else:
        if t.scope == "system":
            agents = P("/Library/LaunchAgents")
            receipt = P("/Library/Application Support/LowKey") / RECEIPT_NAME
        else:
            agents = t.home / "Library" / "LaunchAgents"
            receipt = t.config_dir / RECEIPT_NAME
        plist = agents / f"{LAUNCHD_LABEL}.plist"
        content = string.Template(_template(f"{LAUNCHD_LABEL}.plist")).substitute(
            lowkey=_xml_escape(str(lowkey)))
        actions.append(WriteFile(plist, content, 0o644,
                                 "launchd agent: the daemon at login", "plist"))
        start = f"launchctl load {_shell_quote(str(plist))}"
    return host, actions, start, receipt


def _shell_quote(arg: str) -> str:
    return arg if all(c.isalnum() or c in "/._-~" for c in arg) else "'" + arg.replace("'", "'\\''") + "'"


def _windows_plan(t: Target, ids: ExtensionIds) -> tuple[PurePath, list[Action], str, PurePath,
                                                          PurePath]:
    base = t.programdata if t.scope == "system" else t.localappdata
    if base is None:
        raise ValueError("a Windows target needs LOCALAPPDATA and PROGRAMDATA")
    root = "HKLM" if t.scope == "system" else "HKCU"
    folder = base / "LowKey"
    host = folder / "lowkey-native-host.bat"
    content = string.Template(_template("lowkey-native-host.bat")).substitute(python=str(t.python))
    actions: list[Action] = [WriteFile(host, content, 0o644,
                                       "native host wrapper (Windows needs an executable path)",
                                       "bat", crlf=True)]
    manifests = {}
    for family in ("chromium", "firefox"):
        path = folder / f"{ids.native_host_name}.{family}.json"
        manifests[family] = path
        users = [k for k, (_, fam) in BROWSERS.items() if fam == family]
        actions.append(WriteFile(path, manifest_json(family, ids, host), 0o644,
                                 f"native-messaging manifest for {_names(users)}", "manifest"))
    for key, vendor in WINDOWS_REGISTRY.items():
        family = BROWSERS[key][1]
        actions.append(RegistryValue(root, f"{vendor}\\NativeMessagingHosts\\{ids.native_host_name}",
                                     "", str(manifests[family]),
                                     f"registers the host with {_names(_covered(key, WINDOWS_REGISTRY))}"))
    pythonw = t.python.parent / "pythonw.exe"
    actions.append(RegistryValue(root, "Software\\Microsoft\\Windows\\CurrentVersion\\Run",
                                 RUN_VALUE_NAME, f'"{pythonw}" -m lowkey_daemon',
                                 "starts the daemon at login"))
    start = f'Start-Process -WindowStyle Hidden "{pythonw}" "-m lowkey_daemon"'
    receipt = (folder if t.scope == "system" else t.config_dir) / RECEIPT_NAME
    return host, actions, start, receipt, folder


def build_plan(target: Target, ids: ExtensionIds | None = None) -> Plan:
    """Everything ``lowkey install`` writes for ``target``, in order."""
    ids = ids or load_extension_ids()
    if target.os == "windows":
        host, actions, start, receipt, folder = _windows_plan(target, ids)
        return Plan(target, host, receipt, actions, start, owned_dirs=[folder])
    host, actions, start, receipt = _posix_plan(target, ids)
    return Plan(target, host, receipt, actions, start)


def host_os() -> str:
    """This machine's OS in the plan's terms."""
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "linux"


def host_target(scope: str) -> Target:
    """The target for this machine, from its environment: ``HOME``, ``XDG_CONFIG_HOME``,
    ``LOCALAPPDATA``/``PROGRAMDATA``, ``LOWKEY_CONFIG_DIR`` (via :func:`lowkey.paths.config_dir`)
    and the running interpreter (the venv's)."""
    from pathlib import Path

    from lowkey.paths import config_dir

    os_name = host_os()
    home = Path.home()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    local = os.environ.get("LOCALAPPDATA")
    progdata = os.environ.get("PROGRAMDATA")
    return Target(
        os=os_name, scope=scope, home=home, python=Path(sys.executable),
        config_dir=config_dir(),
        xdg_config_home=Path(xdg) if xdg and os.path.isabs(xdg) else home / ".config",
        localappdata=Path(local) if local else home / "AppData" / "Local",
        programdata=Path(progdata) if progdata else Path("C:/ProgramData"),
    )
