"""The package edges (issue 23): which of LowKey's packages may import which, and that every
installed import name is LowKey's own.

Layers, bottom up:

- the core, ``lowkey`` (folder ``lowkey/``): knows no server, socket, browser or installer;
- the daemon, ``lowkey_daemon`` (folder ``daemon/``), and the native host, ``lowkey_native_host``
  (folder ``native_host/``): both stand on the core and never import each other; they meet over
  HTTP and through :mod:`lowkey.service` (port, settings file, folders, token store). The host
  imports only the light core modules (:data:`LIGHT_CORE`): it starts in a blink, without torch;
- the installers, ``lowkey_installers`` (folder ``installers/``): write the files that start the
  host and the daemon, and read the host's extension ids; light core modules only, too.

``lowkey daemon|install|uninstall`` reach the outer packages through the ``lowkey.commands`` entry
points in pyproject.toml, so the core names none of them. Checked over the AST of every module:
imports (in functions too), ``importlib.import_module``/``__import__``/``find_spec``/
``resources.files`` with a literal name, and any string that names an outer package
(``"lowkey_daemon.cli:main"``). The folder names ``daemon``, ``native_host`` and ``installers``
are never imported at all: ``daemon`` is python-daemon's.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: installed import name -> its folder in the repository
PACKAGES = {"lowkey": "lowkey", "lowkey_daemon": "daemon", "lowkey_native_host": "native_host",
            "lowkey_installers": "installers"}
#: Each package and the LowKey packages it may import (itself included).
ALLOWED = {
    "lowkey": {"lowkey"},
    "lowkey_daemon": {"lowkey_daemon", "lowkey"},
    "lowkey_native_host": {"lowkey_native_host", "lowkey"},
    "lowkey_installers": {"lowkey_installers", "lowkey_native_host", "lowkey"},
}
#: The core modules the host and the installers may import (and that import only each other).
LIGHT_CORE = {"lowkey", "lowkey.paths", "lowkey.service", "lowkey.private_log"}
LIGHT_USERS = {"lowkey_native_host", "lowkey_installers"}
#: What the folders were installed as before: generic names other projects own.
OLD_NAMES = {"daemon", "native_host", "installers"}
#: Calls whose first argument, a literal, names a module.
IMPORTING_CALLS = {"import_module", "__import__", "find_spec", "files"}
OUTER_NAME = re.compile(r"^(lowkey_daemon|lowkey_native_host|lowkey_installers)(\.\w+)*(:\w+)?$")


def _modules() -> dict[str, Path]:
    """Every module of every package, by its installed dotted name."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _references(module: str, path: Path) -> list[tuple[int, str, str]]:
    """(line, how, dotted name) of every module ``module`` imports or names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, "import", alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from pkg import sub` imports pkg.sub when it is one
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, "import", sub if sub in MODULES else base))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if name in IMPORTING_CALLS and isinstance(arg, ast.Constant) \
                    and isinstance(arg.value, str):
                found.append((node.lineno, f"{name}()", arg.value.split(":")[0]))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and OUTER_NAME.match(node.value):
            found.append((node.lineno, "string", node.value.split(":")[0]))
    return found


def _violations() -> list[str]:
    problems = []
    for module, path in MODULES.items():
        package = module.split(".")[0]
        where = path.relative_to(REPO)
        for line, how, name in _references(module, path):
            top = name.split(".")[0]
            if top in OLD_NAMES:
                problems.append(f"{where}:{line}: {how} {name}: a generic name, not LowKey's")
            elif top in PACKAGES and top not in ALLOWED[package]:
                problems.append(f"{where}:{line}: {package} {how} {name}: an arrow up or "
                                f"across (allowed: {', '.join(sorted(ALLOWED[package]))})")
            elif top == "lowkey" and how != "string" and name not in LIGHT_CORE and (
                    package in LIGHT_USERS or module in LIGHT_CORE):
                problems.append(f"{where}:{line}: {module} {how} {name}: only the light core "
                                f"modules ({', '.join(sorted(LIGHT_CORE))}) are allowed here")
    return problems


def test_no_arrow_runs_up_or_across():
    assert len(MODULES) > 60  # every folder was walked
    assert _violations() == []


def test_the_checker_sees_each_kind_of_reference(tmp_path):
    """The checker is only as good as what it sees: an import in a function, importlib with a
    literal, an entry-point string and a relative import each count."""
    path = tmp_path / "mod.py"
    path.write_text(textwrap.dedent("""
        import importlib
        from . import sibling

        def f():
            from lowkey_daemon.cli import main
            importlib.import_module("daemon.cli")
            return "lowkey_installers.cli:install_main"
    """))
    names = {(how, name) for _, how, name in _references("lowkey.mod", path)}
    assert {("import", "lowkey_daemon.cli"), ("import_module()", "daemon.cli"),
            ("string", "lowkey_installers.cli"), ("import", "lowkey")} <= names


def test_installed_import_names_are_lowkeys_own():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    packages = setuptools["packages"]
    assert all(p == "lowkey" or p.startswith(("lowkey.", "lowkey_")) for p in packages)
    assert setuptools["package-dir"] == {k: v for k, v in PACKAGES.items() if k != v}
    # every folder with an __init__.py goes into the wheel (a listed package per folder)
    expected = {module for module, path in MODULES.items() if path.name == "__init__.py"}
    assert set(packages) == expected
    for target in project["project"]["scripts"].values():
        assert target.split(".")[0] in PACKAGES, target
    commands = project["project"]["entry-points"]["lowkey.commands"]
    assert set(commands) == {"daemon", "install", "uninstall"}
    for target in commands.values():
        assert target.split(".")[0] in PACKAGES.keys() - {"lowkey"}, target
    # what this environment has installed says the same
    top_level = set(metadata.distribution("lowkey").read_text("top_level.txt").split())
    assert top_level == set(PACKAGES)


def test_lowkey_and_python_daemon_live_side_by_side(tmp_path):
    """python-daemon (import name ``daemon``) installed beside LowKey: each keeps its own files,
    and both run in one process. Run from a folder outside the repository (``-P``: the
    repository's ``daemon/`` folder is not on the path), as a user's program would."""
    python_daemon = metadata.distribution("python-daemon")
    theirs = set(python_daemon.read_text("top_level.txt").split())
    ours = set(metadata.distribution("lowkey").read_text("top_level.txt").split())
    assert "daemon" in theirs and not theirs & ours
    code = textwrap.dedent(f"""
        import io, contextlib, pathlib, sys
        import daemon, lowkey_daemon, lowkey_daemon.cli, lowkey.cli
        out = pathlib.Path({str(tmp_path)!r})
        assert pathlib.Path(daemon.__file__).parent.name == "daemon", daemon.__file__
        assert "site-packages" in daemon.__file__, daemon.__file__
        assert pathlib.Path(lowkey_daemon.__file__).parent == pathlib.Path(
            {str(REPO / "daemon")!r}) or "site-packages" in lowkey_daemon.__file__
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert lowkey.cli.main(["daemon", "token"]) == 0   # LowKey's daemon command
        token = printed.getvalue().strip()
        assert len(token) >= 40, token
        with daemon.DaemonContext(detach_process=False, working_directory=str(out)):
            pathlib.Path("python-daemon-ran").write_text(str(daemon.DaemonContext))
        (out / "lowkey-token").write_text(token)
    """)
    env = {"PATH": "/usr/bin:/bin", "LOWKEY_CONFIG_DIR": str(tmp_path / "config"),
           "LOWKEY_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-P", "-c", code], check=True, cwd=tmp_path, env=env,
                   timeout=120)
    assert "DaemonContext" in (tmp_path / "python-daemon-ran").read_text()
    stored = (tmp_path / "config" / "daemon-token").read_text().strip()
    assert (tmp_path / "lowkey-token").read_text() == stored
    # and the console script reaches the same daemon command with python-daemon installed
    lowkey = Path(sys.executable).with_name("lowkey")
    result = subprocess.run([str(lowkey), "daemon", "token"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == stored, result.stderr


@pytest.mark.parametrize("name", sorted(OLD_NAMES))
def test_no_generic_name_is_installed_by_lowkey(name, tmp_path):
    """Outside the repository, ``import native_host`` and ``import installers`` find nothing, and
    ``import daemon`` finds python-daemon, never a LowKey folder."""
    code = (f"import importlib.util, sys; spec = importlib.util.find_spec({name!r}); "
            f"print(spec.origin if spec else '')")
    origin = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, check=True,
                            capture_output=True, text=True, timeout=60).stdout.strip()
    assert not origin.startswith(str(REPO / name))
    if name == "daemon":
        assert "site-packages" in origin
    else:
        assert origin == ""
