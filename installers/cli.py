"""``lowkey install`` / ``lowkey uninstall``: the browser's native host and the daemon at login.

``lowkey install ...`` calls :func:`install_main` and ``lowkey uninstall ...``
:func:`uninstall_main` (the ``lowkey.commands`` entry points in pyproject.toml); both are
``main([action, ...])``. Options: ``--dry-run`` (print every file, link and registry value it
would write or remove, each file's content indented under its path; nothing is touched),
``--user`` (default) or ``--system`` (all users; needs root on Linux/macOS, an administrator on
Windows).

For tests only, hidden from ``--help``: ``--os {linux,macos,windows}``, ``--home DIR`` and
``--python EXE`` build the plan for that machine instead of this one, from those values alone
(the environment is not read), so a golden dry run is the same everywhere. With any of them only
``--dry-run`` is allowed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from lowkey_installers.plan import (
    OSES,
    Plan,
    RegistryValue,
    Symlink,
    WriteFile,
    build_plan,
    host_os,
    host_target,
    synthetic_target,
)

PROG = "lowkey"


def build_parser(action: str) -> argparse.ArgumentParser:
    """The parser of ``lowkey install`` or ``lowkey uninstall``."""
    if action == "install":
        desc = ("Register LowKey's native-messaging host with Chrome, Chromium, Edge, Brave and "
                "Firefox, and start the daemon at login. `lowkey uninstall` removes exactly "
                "what this writes.")
    else:
        desc = ("Remove exactly what `lowkey install` wrote (from its receipt; without one, only "
                "files whose content is exactly what install writes).")
    p = argparse.ArgumentParser(prog=f"{PROG} {action}", description=desc)
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be written or removed, touch nothing")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--user", dest="scope", action="store_const", const="user",
                       help="for you only (the default)")
    scope.add_argument("--system", dest="scope", action="store_const", const="system",
                       help="for all users (root on Linux/macOS, administrator on Windows)")
    p.set_defaults(scope="user")
    p.add_argument("--os", choices=OSES, help=argparse.SUPPRESS)
    p.add_argument("--home", help=argparse.SUPPRESS)
    p.add_argument("--python", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="log each step to stderr")
    return p


def _indent(text: str, prefix: str = "    ") -> str:
    return "".join(prefix + line + "\n" for line in text.splitlines())


def render_plan(plan: Plan, action: str = "install") -> str:
    """The dry run of ``install``: every file (with its content), link and registry value."""
    t = plan.target
    out = [f"lowkey {action} --dry-run: {t.os}, {t.scope} scope",
           f"native host: {plan.host_executable}",
           f"receipt: {plan.receipt}", ""]
    if action == "uninstall":
        out[-1:] = ["removes each of these where it is still exactly as install wrote it:", ""]
    for a in plan.actions:
        if isinstance(a, WriteFile):
            extra = ", CRLF line endings" if a.crlf else ""
            out.append(f"file {a.path}  (mode {a.mode:o}{extra}; {a.what})")
            out.append(_indent(a.content).rstrip("\n"))
        elif isinstance(a, Symlink):
            out.append(f"symlink {a.path} -> {a.target}  ({a.what})")
        elif isinstance(a, RegistryValue):
            out.append(f"registry {a.root}\\{a.key}  [{a.name or '(default)'}] = {a.data}  "
                       f"(REG_SZ; {a.what})")
        out.append("")
    out.append(f"start the daemon now: {plan.start_now}")
    return "\n".join(out) + "\n"


def _make_plan(args: argparse.Namespace) -> Plan:
    if args.os or args.home or args.python:
        os_name = args.os or host_os()
        if not (args.home and args.python):
            raise ValueError("--os needs --home and --python too")
        return build_plan(synthetic_target(os_name, args.scope, args.home, args.python))
    return build_plan(host_target(args.scope))


def _needs_root(plan: Plan) -> bool:
    return (plan.target.scope == "system" and plan.target.os != "windows"
            and hasattr(os, "geteuid") and os.geteuid() != 0)


def main(argv: Sequence[str]) -> int:
    """``lowkey install|uninstall [options]``; argv[0] is the action. Returns the exit code."""
    if not argv or argv[0] not in ("install", "uninstall"):
        print(f"{PROG}: expected install or uninstall", file=sys.stderr)
        return 2
    action = argv[0]
    args = build_parser(action).parse_args(list(argv[1:]))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        stream=sys.stderr, format=f"{PROG} {action}: %(message)s")
    err = f"{PROG} {action}: error:"
    try:
        plan = _make_plan(args)
    except ValueError as exc:
        print(f"{err} {exc}", file=sys.stderr)
        return 2
    synthetic = bool(args.os or args.home or args.python)
    if synthetic and not args.dry_run:
        print(f"{err} --os/--home/--python are for dry runs only", file=sys.stderr)
        return 2
    if action == "install" and args.dry_run:
        sys.stdout.write(render_plan(plan))
        return 0
    if synthetic:  # uninstall --dry-run of a foreign plan: only the plan can be shown
        sys.stdout.write(render_plan(plan, "uninstall"))
        return 0
    if _needs_root(plan) and not args.dry_run:
        print(f"{err} --system writes to system folders and needs root: run it with sudo "
              f"(or drop --system to {action} for yourself only)", file=sys.stderr)
        return 1
    from lowkey_installers import apply

    try:
        if action == "install":
            if not os.path.exists(str(plan.host_executable)) and plan.target.os != "windows":
                print(f"{err} the native host {plan.host_executable} does not exist: set LowKey "
                      f"up first (bash installers/setup.sh)", file=sys.stderr)
                return 1
            steps = apply.install(plan)
        else:
            steps = apply.uninstall(plan, dry_run=args.dry_run)
    except PermissionError as exc:
        print(f"{err} permission denied: {exc.filename or exc}: "
              f"{'run as administrator' if plan.target.os == 'windows' else 'run it with sudo'}"
              f"{' (or use --user)' if plan.target.scope == 'system' else ''}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{err} {exc}", file=sys.stderr)
        return 1
    for step in steps:
        print(step)
    failed = [s for s in steps if s.failed]
    if failed:
        print(f"{err} {len(failed)} file(s) left alone (see 'refused' above)", file=sys.stderr)
        return 1
    if action == "install":
        print(f"\nThe browser starts the native host (and the host the daemon) when the "
              f"extension needs it. To start the daemon now: {plan.start_now}")
    return 0


def install_main(argv: Sequence[str]) -> int:
    """Register the native host with the browsers and the daemon's start at login."""
    return main(["install", *argv])


def uninstall_main(argv: Sequence[str]) -> int:
    """Remove exactly what `lowkey install` wrote."""
    return main(["uninstall", *argv])
