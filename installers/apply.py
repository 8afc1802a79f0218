"""Carry a :class:`~lowkey_installers.plan.Plan` out on this machine, and undo it exactly.

Install writes every action, records what it wrote (with each file's sha256) and every folder or
registry key it had to create in a receipt (JSON), and never replaces a file that is not
LowKey's. Uninstall removes what the receipt lists, where it is still as install left it, then
the folders and keys install created if they are empty. Without a receipt it removes only the
plan's files whose content is exactly what install would write now.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lowkey_installers.ids import ExtensionIds, load_extension_ids
from lowkey_installers.plan import Plan, RegistryValue, Symlink, WriteFile, is_lowkey_file

log = logging.getLogger(__name__)

RECEIPT_VERSION = 1


@dataclass(frozen=True)
class Step:
    """One line of the report: what happened (or would happen) to one thing."""

    status: str  # wrote, updated, unchanged, refused, removed, left, absent, would ...
    subject: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.status:<10} {self.subject}" + (f"  ({self.detail})" if self.detail else "")

    @property
    def failed(self) -> bool:
        """A step that left the job undone (the CLI exits non-zero)."""
        return self.status == "refused"


class Registry(Protocol):
    """The few registry operations install needs (``winreg`` on Windows; a fake in tests)."""

    def get(self, root: str, key: str, name: str) -> str | None: ...
    def key_exists(self, root: str, key: str) -> bool: ...
    def set(self, root: str, key: str, name: str, data: str) -> None: ...
    def delete_value(self, root: str, key: str, name: str) -> None: ...
    def delete_key_if_empty(self, root: str, key: str) -> bool: ...


class WinRegistry:
    """:class:`Registry` over ``winreg`` (imported only here, only on Windows)."""

    def __init__(self) -> None:
        import winreg

        self._w = winreg
        self._roots = {"HKCU": winreg.HKEY_CURRENT_USER, "HKLM": winreg.HKEY_LOCAL_MACHINE}

    def get(self, root: str, key: str, name: str) -> str | None:
        try:
            with self._w.OpenKey(self._roots[root], key) as k:
                value, _ = self._w.QueryValueEx(k, name)
                return str(value)
        except FileNotFoundError:
            return None

    def key_exists(self, root: str, key: str) -> bool:
        try:
            self._w.OpenKey(self._roots[root], key).Close()
            return True
        except FileNotFoundError:
            return False

    def set(self, root: str, key: str, name: str, data: str) -> None:
        with self._w.CreateKey(self._roots[root], key) as k:
            self._w.SetValueEx(k, name, 0, self._w.REG_SZ, data)

    def delete_value(self, root: str, key: str, name: str) -> None:
        with self._w.OpenKey(self._roots[root], key, 0, self._w.KEY_SET_VALUE) as k:
            self._w.DeleteValue(k, name)

    def delete_key_if_empty(self, root: str, key: str) -> bool:
        try:
            with self._w.OpenKey(self._roots[root], key) as k:
                subkeys, values, _ = self._w.QueryInfoKey(k)
            if subkeys or values:
                return False
            self._w.DeleteKey(self._roots[root], key)
            return True
        except FileNotFoundError:
            return False


def _registry(plan: Plan, registry: Registry | None) -> Registry | None:
    if registry is not None or not any(isinstance(a, RegistryValue) for a in plan.actions):
        return registry
    return WinRegistry()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _missing_parents(path: Path) -> list[Path]:
    """Ancestors of ``path`` that do not exist yet, outermost first."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return list(reversed(missing))


def _make_parents(path: Path, created: list[str]) -> None:
    for d in _missing_parents(path):
        d.mkdir()
        created.append(str(d))
        log.debug("created folder %s", d)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.lowkey-tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _reg_name(a: RegistryValue | dict) -> str:
    root, key, name = (a.root, a.key, a.name) if isinstance(a, RegistryValue) else (
        a["root"], a["key"], a["name"])
    return f"{root}\\{key}  [{name or '(default)'}]"


def _key_chain(key: str) -> list[str]:
    parts = key.split("\\")
    return ["\\".join(parts[:i]) for i in range(1, len(parts) + 1)]


def load_receipt(path: Path) -> dict | None:
    """The receipt at ``path``, or None when there is none (or it is unreadable: logged)."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable receipt %s: %s", path, exc)
        return None
    if data.get("version") != RECEIPT_VERSION:
        log.warning("ignoring receipt %s of unknown version %r", path, data.get("version"))
        return None
    return data


def _entry_key(e: dict) -> tuple:
    return (e["type"], e.get("path") or f"{e['root']}\\{e['key']}\\{e['name']}")


def install(plan: Plan, *, registry: Registry | None = None,
            ids: ExtensionIds | None = None) -> list[Step]:
    """Write the plan on this machine and record the receipt; returns the report."""
    ids = ids or load_extension_ids()
    reg = _registry(plan, registry)
    steps: list[Step] = []
    entries: list[dict] = []
    created_dirs: list[str] = []
    created_keys: list[dict] = []
    for a in plan.actions:
        if isinstance(a, WriteFile):
            steps.append(_install_file(a, ids, entries, created_dirs))
        elif isinstance(a, Symlink):
            steps.append(_install_symlink(a, entries, created_dirs))
        else:
            assert reg is not None
            steps.append(_install_registry(a, reg, entries, created_keys))
    receipt_path = Path(str(plan.receipt))
    old = load_receipt(receipt_path) or {}
    merged = {_entry_key(e): e for e in old.get("entries", [])}
    merged.update({_entry_key(e): e for e in entries})
    receipt = {
        "version": RECEIPT_VERSION,
        "os": plan.target.os,
        "scope": plan.target.scope,
        "entries": list(merged.values()),
        "created_dirs": sorted(set(old.get("created_dirs", [])) | set(created_dirs)),
        "created_keys": [dict(t) for t in sorted({tuple(sorted(k.items()))
                                                  for k in old.get("created_keys", []) + created_keys})],
    }
    receipt_dirs: list[str] = []
    _make_parents(receipt_path, receipt_dirs)
    receipt["created_dirs"] = sorted(set(receipt["created_dirs"]) | set(receipt_dirs))
    _write_atomic(receipt_path, (json.dumps(receipt, indent=2) + "\n").encode(), 0o644)
    steps.append(Step("wrote", str(receipt_path), "receipt: what `lowkey uninstall` removes"))
    return steps


def _install_file(a: WriteFile, ids: ExtensionIds, entries: list[dict],
                  created_dirs: list[str]) -> Step:
    p = Path(str(a.path))
    data = a.data()
    status = "wrote"
    if p.is_symlink() or p.exists():
        try:
            old = p.read_bytes()
        except OSError:
            old = None
        if old == data:
            entries.append({"type": "file", "path": str(p), "sha256": _sha256(data)})
            return Step("unchanged", str(p), a.what)
        if old is None or p.is_symlink() or not is_lowkey_file(a.kind, old.decode("utf-8", "replace"), ids):
            return Step("refused", str(p), "exists with content that is not LowKey's: move it "
                        "away and run again")
        status = "updated"
    _make_parents(p, created_dirs)
    _write_atomic(p, data, a.mode)
    entries.append({"type": "file", "path": str(p), "sha256": _sha256(data)})
    return Step(status, str(p), a.what)


def _install_symlink(a: Symlink, entries: list[dict], created_dirs: list[str]) -> Step:
    p, target = Path(str(a.path)), str(a.target)
    entry = {"type": "symlink", "path": str(p), "target": target}
    if p.is_symlink():
        if os.readlink(p) == target:
            entries.append(entry)
            return Step("unchanged", f"{p} -> {target}", a.what)
        p.unlink()  # our unit's name: an older install's link
        status = "updated"
    elif p.exists():
        return Step("refused", str(p), "exists and is not a link: move it away and run again")
    else:
        status = "wrote"
    _make_parents(p, created_dirs)
    os.symlink(target, p)
    entries.append(entry)
    return Step(status, f"{p} -> {target}", a.what)


def _install_registry(a: RegistryValue, reg: Registry, entries: list[dict],
                      created_keys: list[dict]) -> Step:
    entry = {"type": "registry", "root": a.root, "key": a.key, "name": a.name, "data": a.data}
    old = reg.get(a.root, a.key, a.name)
    if old == a.data:
        entries.append(entry)
        return Step("unchanged", _reg_name(a), a.what)
    for k in _key_chain(a.key):
        if not reg.key_exists(a.root, k):
            created_keys.append({"root": a.root, "key": k})
    reg.set(a.root, a.key, a.name, a.data)
    entries.append(entry)
    return Step("wrote" if old is None else "updated", _reg_name(a), a.what)


def uninstall(plan: Plan, *, dry_run: bool = False, registry: Registry | None = None,
              ids: ExtensionIds | None = None) -> list[Step]:
    """Remove what install wrote (per the receipt, else per the plan, exact content only)."""
    ids = ids or load_extension_ids()
    reg = _registry(plan, registry)
    receipt_path = Path(str(plan.receipt))
    receipt = load_receipt(receipt_path)
    if receipt is None:
        return _uninstall_from_plan(plan, reg, dry_run)
    steps = [_remove_entry(e, reg, dry_run) for e in reversed(receipt["entries"])]
    keys = sorted(receipt.get("created_keys", []), key=lambda k: -k["key"].count("\\"))
    for k in keys:
        assert reg is not None
        if dry_run:
            steps.append(Step("would rmkey", f"{k['root']}\\{k['key']}", "if empty"))
        elif reg.delete_key_if_empty(k["root"], k["key"]):
            steps.append(Step("removed", f"{k['root']}\\{k['key']}", "registry key install created"))
    steps.append(Step("would rm" if dry_run else "removed", str(receipt_path), "receipt"))
    if not dry_run:
        receipt_path.unlink(missing_ok=True)
    dirs = sorted(receipt.get("created_dirs", []), key=lambda d: -len(Path(d).parts))
    steps += _remove_empty_dirs([Path(d) for d in dirs], dry_run, "folder install created")
    return steps


def _remove_entry(e: dict, reg: Registry | None, dry_run: bool) -> Step:
    verb = "would rm" if dry_run else "removed"
    if e["type"] == "registry":
        assert reg is not None
        name = _reg_name(e)
        current = reg.get(e["root"], e["key"], e["name"])
        if current is None:
            return Step("absent", name)
        if current != e["data"]:
            return Step("left", name, "changed since install")
        if not dry_run:
            reg.delete_value(e["root"], e["key"], e["name"])
        return Step(verb, name)
    p = Path(e["path"])
    if e["type"] == "symlink":
        if not p.is_symlink():
            return Step("absent" if not p.exists() else "left", str(p))
        if os.readlink(p) != e["target"]:
            return Step("left", str(p), "points elsewhere since install")
        if not dry_run:
            p.unlink()
        return Step(verb, f"{p} -> {e['target']}")
    if not p.exists() and not p.is_symlink():
        return Step("absent", str(p))
    if p.is_symlink() or not p.is_file() or _sha256(p.read_bytes()) != e["sha256"]:
        return Step("left", str(p), "changed since install: not removed")
    if not dry_run:
        p.unlink()
    return Step(verb, str(p))


def _remove_empty_dirs(dirs: list[Path], dry_run: bool, why: str) -> list[Step]:
    if dry_run:
        return [Step("would rmdir", f"{d}/", f"{why}, if empty then") for d in dirs]
    steps = []
    gone: set[Path] = set()
    for d in dirs:
        if not d.is_dir() or d.is_symlink():
            continue
        if any(c not in gone for c in d.iterdir()):
            continue
        d.rmdir()
        gone.add(d)
        steps.append(Step("removed", f"{d}/", why))
    return steps


def _uninstall_from_plan(plan: Plan, reg: Registry | None, dry_run: bool) -> list[Step]:
    steps = [Step("note", str(plan.receipt), "no receipt: removing only files exactly as "
                  "install writes them")]
    verb = "would rm" if dry_run else "removed"
    for a in reversed(plan.actions):
        if isinstance(a, WriteFile):
            p = Path(str(a.path))
            if p.is_file() and not p.is_symlink() and p.read_bytes() == a.data():
                if not dry_run:
                    p.unlink()
                steps.append(Step(verb, str(p), a.what))
            elif p.exists() or p.is_symlink():
                steps.append(Step("left", str(p), "not what install writes"))
        elif isinstance(a, Symlink):
            p = Path(str(a.path))
            if p.is_symlink() and os.readlink(p) == str(a.target):
                if not dry_run:
                    p.unlink()
                steps.append(Step(verb, f"{p} -> {a.target}", a.what))
        else:
            assert reg is not None
            if reg.get(a.root, a.key, a.name) == a.data:
                if not dry_run:
                    reg.delete_value(a.root, a.key, a.name)
                    if a.name == "":  # the key is ours by name (…\NativeMessagingHosts\<ours>)
                        reg.delete_key_if_empty(a.root, a.key)
                steps.append(Step(verb, _reg_name(a), a.what))
    steps += _remove_empty_dirs([Path(str(d)) for d in plan.owned_dirs], dry_run,
                                "LowKey's folder")
    return steps
