"""The extension end to end (issue 12), in Debian's chromium and firefox-esr, headless.

Everything is real: the extension (a test build of ``extension/``: the same code, with 127.0.0.1
added to the default site list), the native host registered by ``lowkey install --user`` in a
temporary HOME, the daemon (``lowkey daemon``, the ``default`` preset on SFace alone, so a photo
takes seconds on a CPU), and a local site whose pages upload the way real sites do
(``tests/browser/pages/``, ``tests/upload_site.py``): a plain form post, fetch on ``change``, a
FileReader data URL on ``input``, a drop zone, a paste target, a multi-file input, a React-style
page, a file input the page never puts in the document (opened by ``click()``). The drivers
(``tests/browser/e2e_*.mjs``) act as a user; these tests check what the site
received: the protected photo (other bytes, same size and format, and dlib, which was never
attacked, sees the face moved), never the original; with protection paused, the original; with
the daemon gone, nothing until the user chooses to upload the original.

Issue 22, the extension against the page it runs in: a photo chosen the moment the browser
starts with LowKey, or in a tab open before LowKey was installed or enabled, is held
(``tests/browser/startup_*.mjs``); an upload frame of another origin inside an enabled page is
protected like the page's own inputs; and no page can load LowKey's files by their known URLs.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from browser_helpers import REPO, _free_port, _require_node_tools, run_node_driver
from PIL import Image
from test_daemon_e2e import RunningDaemon, call
from test_daemon_helpers import encode, face_crop
from upload_site import Upload, UploadSite

pytestmark = [pytest.mark.browser, pytest.mark.weights, pytest.mark.timeout(1800)]

#: one driver run: 9 photos through a CPU daemon on a busy 2-core machine (the protecting
#: `default` took 80-105 s a photo there on SFace alone, with two other engineers' work running)
RUN_TIMEOUT_S = 1500
STARTUP_TRIES = 3  # fresh profiles per start-up test: the issue saw the original in 1 of 3
#: dlib descriptor distance between a photo and its protected copy that counts as "moved" (the
#: same photo re-encoded moves it by ~0.01; the face-matching threshold is 0.6)
DLIB_MOVED = 0.05


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    running = RunningDaemon(tmp_path_factory.mktemp("daemon"), "--preset", "default", "--models",
                            "sface", "--no-warm-up")
    try:
        assert running.wait_ready()["status"] == "ready"
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The test build of the extension: ``{"chromium": folder, "firefox": folder}``."""
    node = _require_node_tools("playwright-core")
    out = tmp_path_factory.mktemp("extension")
    done = subprocess.run([str(node), str(REPO / "extension" / "scripts" / "build.mjs"),
                           "--extra-host", "127.0.0.1", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {"chromium": out / "chromium", "firefox": out / "firefox"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut_rgb):
    folder = tmp_path_factory.mktemp("photos")
    (folder / "face.jpg").write_bytes(encode(face_crop(astronaut_rgb), "JPEG"))
    (folder / "face2.png").write_bytes(encode(face_crop(astronaut_rgb, dx=24, dy=12), "PNG"))
    (folder / "wall.png").write_bytes(encode(np.full((240, 320, 3), 180, np.uint8), "PNG"))
    (folder / "notes.txt").write_bytes("not a photo: \u00e9t\u00e9\n".encode())
    return folder


@pytest.fixture(scope="module")
def dlib_judge():
    from lowkey.dlib_judge import DlibJudge, dlib_available

    if not dlib_available():
        pytest.skip("dlib is not installed (pip install lowkey[judge])")
    return DlibJudge()


def _pixels(data: bytes) -> torch.Tensor:
    array = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


def assert_protected(upload: Upload, original: bytes, judge, name: str) -> float:
    """``upload`` is a protected copy of ``original``: another file, same name, size and format,
    and dlib's descriptor of the face moved. Returns that distance."""
    assert upload.name == name, upload
    assert upload.data != original, f"{name}: the site received the original"
    before, after = Image.open(io.BytesIO(original)), Image.open(io.BytesIO(upload.data))
    assert (after.format, after.size, after.mode) == (before.format, before.size, before.mode)
    a, b = judge.faces(_pixels(original)), judge.faces(_pixels(upload.data))
    assert a and b, f"{name}: dlib finds no face"
    distance = float(np.linalg.norm(a[0].descriptor - b[0].descriptor))
    assert distance > DLIB_MOVED, f"{name}: dlib's view of the face moved by {distance:.3f} only"
    return distance


def _browser_env(installed_home, config_dir, port: int) -> dict[str, str]:
    return dict(installed_home.env, LOWKEY_CONFIG_DIR=str(config_dir), LOWKEY_DAEMON_PORT=str(port),
                PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")


def _run(browser: str, driver, built, site: UploadSite, photos, env, profile, phase: str,
         log_dir, only: str | None = None) -> list[dict]:
    args = ["--extension", str(built[browser]), "--profile", str(profile), "--site", site.origin,
            "--other-site", site.other_origin, "--files", str(photos), "--phase", phase,
            "--browser", str(driver.browser), "--timeout", str(RUN_TIMEOUT_S * 1000)]
    if only:
        args += ["--only", only]
    if os.environ.get("LOWKEY_E2E_SCREENSHOTS"):  # where docs/img's extension pictures come from
        args += ["--screenshots", os.environ["LOWKEY_E2E_SCREENSHOTS"]]
    log = log_dir / f"e2e_{browser}_{only or phase}.log"
    code, lines, output = run_node_driver(f"e2e_{browser}.mjs", args, node=driver.node, env=env,
                                          timeout=RUN_TIMEOUT_S + 60, log=log)
    scenarios = [line for line in lines if "scenario" in line]
    failed = [s for s in scenarios if not s["ok"]]
    assert code == 0 and scenarios and not failed, f"{browser} {phase}: {failed}\n{output}"
    for s in scenarios:
        print(f"{browser} {s['scenario']}: {s['ms'] / 1000:.1f} s ({s.get('detail')})")
    return lines


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
def test_uploads_are_protected_paused_pass_the_original(browser, request, daemon, built, photos,
                                                       dlib_judge, installed_home, tmp_path):
    driver = request.getfixturevalue(f"{browser}_driver")
    env = _browser_env(installed_home, daemon.env["LOWKEY_CONFIG_DIR"], daemon.port)
    profile = installed_home.chromium_profile if browser == "chromium" else tmp_path / "ff"
    face, face2 = (photos / "face.jpg").read_bytes(), (photos / "face2.png").read_bytes()
    token = daemon.lowkey("token").stdout.strip()
    assert call(daemon.port, "POST", "/v1/resume", token)[0] == 200  # whatever ran before
    with UploadSite() as site:
        lines = _run(browser, driver, built, site, photos, env, profile, "up", tmp_path)
        got = {page: site.received(page) for page in
               ("form", "fetch", "dataurl", "drop", "paste", "multi", "react", "detached",
                "noface", "cancel", "paused")}
    if browser == "chromium":  # the toggle told the daemon, and resuming resumed it
        assert json.loads(call(daemon.port, "GET", "/v1/status", token)[2])["paused"] is False
    moved = []
    # "detached": a file input the page never put in the document, opened by click()
    for page in ("form", "drop", "react", "detached"):
        assert len(got[page]) == 1, (page, got[page])
        moved.append(assert_protected(got[page][0], face, dlib_judge, "face.jpg"))
    assert len(got["dataurl"]) == 1 and got["dataurl"][0].content_type == "image/png"
    moved.append(assert_protected(got["dataurl"][0], face2, dlib_judge, "face2.png"))
    if browser == "chromium":
        assert len(got["paste"]) == 1
        moved.append(assert_protected(got["paste"][0], face2, dlib_judge, "face2.png"))
    else:
        assert got["paste"] == []  # Firefox cannot simulate a paste with a file
    # Several files at once: in order, the photos protected, the text file untouched.
    assert [u.name for u in got["multi"]] == ["face.jpg", "notes.txt", "face2.png"]
    moved.append(assert_protected(got["multi"][0], face, dlib_judge, "face.jpg"))
    assert got["multi"][1].data == (photos / "notes.txt").read_bytes()
    moved.append(assert_protected(got["multi"][2], face2, dlib_judge, "face2.png"))
    assert len(got["fetch"]) == 1
    moved.append(assert_protected(got["fetch"][0], face, dlib_judge, "face.jpg"))
    # No face: the original, byte for byte (the driver checked the user was told). Cancelled:
    # nothing.
    assert [u.data for u in got["noface"]] == [(photos / "wall.png").read_bytes()]
    assert got["cancel"] == []
    # Paused from the popup's toggle (Chromium only: Firefox's remote protocol can reach neither
    # the popup nor the toolbar): the original.
    assert [u.data for u in got["paused"]] == ([face] if browser == "chromium" else [])
    summary = lines[-1]
    assert summary.get("extension_id"), summary
    assert not summary.get("worker_errors"), summary["worker_errors"]
    print(f"{browser} {summary.get('version')}: dlib distance protected/original "
          f"{min(moved):.2f}..{max(moved):.2f}")


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
def test_without_the_daemon_nothing_is_uploaded_until_the_user_chooses(
        browser, request, built, photos, installed_home, tmp_path):
    """The daemon is not running (its port answers nothing; the host may not start one): the page
    gets nothing, the indicator offers the choice, and only the user's click sends the
    original."""
    driver = request.getfixturevalue(f"{browser}_driver")
    config = tmp_path / "config"
    config.mkdir()
    env = _browser_env(installed_home, config, _free_port())
    assert env["LOWKEY_NO_AUTOSTART"] == "1"
    profile = installed_home.chromium_profile if browser == "chromium" else tmp_path / "ff"
    with UploadSite() as site:
        _run(browser, driver, built, site, photos, env, profile, "down", tmp_path)
        got = site.received()
    assert [(u.page, u.name) for u in got] == [("down", "face.jpg")]
    assert got[0].data == (photos / "face.jpg").read_bytes()


# -- issue 22: the extension against the page it runs in -------------------------------------------


def _down_env(installed_home, tmp_path) -> dict[str, str]:
    """The browsers' environment with no daemon (nothing listens on its port, none is started)."""
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    env = _browser_env(installed_home, config, _free_port())
    assert env["LOWKEY_NO_AUTOSTART"] == "1"
    return env


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
def test_photos_are_held_from_the_first_moment(browser, request, built, photos, installed_home,
                                                tmp_path):
    """A photo chosen on an upload page opened the moment the browser starts with LowKey (a fresh
    profile: LowKey is installed with it; Firefox: the moment the add-on is installed), or in a
    tab that was open before LowKey was enabled (Chromium) or installed (Firefox), never reaches
    the site: with the daemon down it is held until the user chooses. Issue 22 saw the original
    uploaded 1.3 s after it was chosen on the first page after start: the content scripts were
    registered at install, after that page had loaded. (Chromium: a start page that loaded
    before `--load-extension` had installed LowKey, a race of the harness that an installed LowKey
    does not have, is reported and that try started again; see startup_chromium.mjs.)"""
    driver = request.getfixturevalue(f"{browser}_driver")
    env = _down_env(installed_home, tmp_path)
    profiles = []
    for i in range(STARTUP_TRIES):
        profile = tmp_path / f"profile{i}"
        if browser == "chromium":  # where `lowkey install --user` put the host, for this profile
            shutil.copytree(installed_home.chromium_profile / "NativeMessagingHosts",
                            profile / "NativeMessagingHosts")
        else:
            profile.mkdir()
        profiles.append(str(profile))
    with UploadSite() as site:
        code, lines, output = run_node_driver(
            f"startup_{browser}.mjs",
            ["--extension", str(built[browser]), "--profiles", ",".join(profiles),
             "--site", site.origin, "--files", str(photos), "--browser", str(driver.browser),
             "--timeout", str(RUN_TIMEOUT_S * 1000)],
            node=driver.node, env=env, timeout=RUN_TIMEOUT_S + 60,
            log=tmp_path / f"startup_{browser}.log")
        got = site.received()
    checks = [line for line in lines if "scenario" in line]
    for race in (line for line in lines if "race" in line):  # the harness's, not LowKey's
        print(f"{browser} startup #{race['race']} launch {race['launch'] + 1}: {race['detail']}")
    for check in checks:
        print(f"{browser} {check['scenario']} #{check['try']}: {check['ms'] / 1000:.1f} s "
              f"({check.get('detail') or check.get('error', '')[:200]})")
    assert [(u.page, u.name) for u in got] == [], f"the site received originals\n{output}"
    assert len(checks) == 2 * STARTUP_TRIES, output
    assert code == 0 and all(check["ok"] for check in checks), output


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
def test_an_upload_frame_of_another_origin_is_protected(browser, request, daemon, built, photos,
                                                        dlib_judge, installed_home, tmp_path):
    """An upload widget served by another origin (127.0.0.2, on no list of LowKey's) in a frame
    of an enabled page (127.0.0.1): the frame is judged by its page, its photo held and
    protected."""
    driver = request.getfixturevalue(f"{browser}_driver")
    env = _browser_env(installed_home, daemon.env["LOWKEY_CONFIG_DIR"], daemon.port)
    profile = installed_home.chromium_profile if browser == "chromium" else tmp_path / "ff"
    token = daemon.lowkey("token").stdout.strip()
    assert call(daemon.port, "POST", "/v1/resume", token)[0] == 200  # whatever ran before
    with UploadSite() as site:
        _run(browser, driver, built, site, photos, env, profile, "up", tmp_path, only="frame")
        got = site.received()
    assert [(u.page, u.name) for u in got] == [("frame", "face.jpg")]
    distance = assert_protected(got[0], (photos / "face.jpg").read_bytes(), dlib_judge, "face.jpg")
    print(f"{browser} frame: dlib distance protected/original {distance:.2f}")


def test_the_preset_chosen_in_the_options_goes_with_the_photo(request, daemon, built, photos,
                                                              installed_home, tmp_path):
    """Issue 20: the options page offers `default` and `subtle`, each with what it does to the
    face; a photo uploaded after choosing `subtle` is protected with it (the daemon, started with
    `default`, reports `subtle`, and the popup shows it with its label), then back to
    `default`. Chromium only: Firefox's remote protocol cannot open the options page."""
    driver = request.getfixturevalue("chromium_driver")
    env = _browser_env(installed_home, daemon.env["LOWKEY_CONFIG_DIR"], daemon.port)
    token = daemon.lowkey("token").stdout.strip()
    assert call(daemon.port, "POST", "/v1/resume", token)[0] == 200
    with UploadSite() as site:
        _run("chromium", driver, built, site, photos, env, installed_home.chromium_profile, "up",
             tmp_path, only="preset")
        got = site.received()
    assert [(u.page, u.name) for u in got] == [("subtle", "face.jpg")]
    assert got[0].data != (photos / "face.jpg").read_bytes()


def test_no_page_can_load_lowkeys_files(request, built, photos, installed_home, tmp_path):
    """A page tries LowKey's files under its fixed Chromium id (the manifest, config.js, the
    content script's modules, icons...): none loads, by fetch or by element. Firefox's
    moz-extension:// address is random per profile: no page knows it."""
    driver = request.getfixturevalue("chromium_driver")
    env = _down_env(installed_home, tmp_path)
    with UploadSite() as site:
        _run("chromium", driver, built, site, photos, env, installed_home.chromium_profile, "down",
             tmp_path, only="probe")
        assert site.received() == []
