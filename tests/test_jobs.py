"""The servable core: a shared model pool, per-call options, phases, cancellation, deadlines,
per-job errors, bytes in and bytes out (lowkey/pool.py, lowkey/jobs.py, lowkey/protect.py).

Real models, small settings: SFace alone (a test preset), two attack steps, a 256 px crop of the
astronaut's face.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image
from test_daemon_helpers import install_tiny_preset

from lowkey.attack import AttackCancelled
from lowkey.errors import ImageError
from lowkey.image_io import load_photo
from lowkey.jobs import (
    JobCancelled,
    JobControl,
    JobProgress,
    JobTimedOut,
    ProtectOptions,
    job_error,
)
from lowkey.pool import ModelPool, ModelsMissing, missing_models
from lowkey.protect import Protector, protect_bytes

pytestmark = pytest.mark.weights

SMALL = dict(preset="tiny", strength=2, measure=False)  # SFace alone, two steps


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch):
    install_tiny_preset(monkeypatch)


def options(**changes) -> ProtectOptions:
    return ProtectOptions(**(SMALL | changes))


def face_png(astronaut: np.ndarray, fmt: str = "PNG") -> bytes:
    """A 256 x 256 crop of the astronaut around her face."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(astronaut[20:276, 90:346])).save(buffer, format=fmt)
    return buffer.getvalue()


def noise_png(size: int = 96) -> bytes:
    buffer = io.BytesIO()
    g = np.random.default_rng(0)
    Image.fromarray(g.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pool():
    return ModelPool("cpu")


@pytest.fixture(scope="module")
def face(astronaut_rgb):
    return face_png(astronaut_rgb)


def test_bytes_in_bytes_out_with_every_phase_reported(pool, face, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen: list[JobProgress] = []
    out = protect_bytes(face, options(), pool, JobControl(on_progress=seen.append))
    assert out.report.status == "protected" and out.media_type == "image/png"
    protected = load_photo(out.output)
    assert protected.size == (256, 256) and protected.format == "PNG"
    assert not torch.equal(protected.pixels, load_photo(face).pixels)
    assert [p.phase for p in seen] == ["decode", "detect", "attack", "attack", "attack", "encode",
                                       "done"]
    assert [(p.step, p.steps) for p in seen if p.phase == "attack"] == [(0, 2), (1, 2), (2, 2)]
    percents = [p.percent for p in seen]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert len(out.report.faces) == 1 and out.report.faces[0].jod is None  # not measured
    assert not out.measured and out.report.source == "<bytes>"
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_output_format_and_quality_are_per_call(pool, face):
    out = protect_bytes(face, options(format="jpg", quality=80), pool)
    assert out.media_type == "image/jpeg" and load_photo(out.output).format == "JPEG"
    assert out.report.format == "JPEG"


def test_the_pool_loads_each_model_once_for_any_settings(pool):
    a = Protector(preset="tiny", strength=2, pool=pool, judge=False)
    b = Protector(preset="strong", strength=30, seed=3, models=["sface"], pool=pool,
                  judge=False, faces="largest")
    assert a.models[0] is b.models[0] and a.detector is b.detector
    assert b.settings.steps == 30 and a.settings.steps == 2
    assert pool.loaded().count("sface") == 1


@pytest.mark.parametrize("phase", ["decode", "detect", "attack", "encode", "measure"])
def test_cancel_in_each_phase(pool, face, phase):
    control = JobControl()
    seen = []

    def watch(progress: JobProgress) -> None:
        seen.append(progress.phase)
        if progress.phase == phase:
            control.cancel()

    control.on_progress = watch
    chosen = options(measure=True, judge=False)
    with pytest.raises(JobCancelled) as info:
        protect_bytes(face, chosen, pool, control)
    assert not isinstance(info.value, JobTimedOut)
    assert seen[-1] == phase and control.progress.phase == phase
    assert job_error(info.value).code == "cancelled" and info.value.status == "cancelled"


def test_cancel_between_attack_steps_stops_the_attack(pool, face):
    control = JobControl()
    steps = []

    def watch(progress: JobProgress) -> None:
        if progress.phase == "attack" and progress.step:
            steps.append(progress.step)
            control.cancel()

    control.on_progress = watch
    chosen = options(strength=5)  # 5 steps
    with pytest.raises(JobCancelled):
        protect_bytes(face, chosen, pool, control)
    assert steps == [1]


def test_deadline_gives_timed_out(pool, face):
    with pytest.raises(JobTimedOut) as info:
        protect_bytes(face, options(), pool, JobControl(deadline=time.monotonic() - 1))
    assert info.value.status == "timed out" and job_error(info.value).code == "timed_out"
    control = JobControl()

    def expire_in_attack(progress: JobProgress) -> None:
        if progress.phase == "attack":
            control.deadline = time.monotonic()

    control.on_progress = expire_in_attack
    with pytest.raises(JobTimedOut, match="attack"):
        protect_bytes(face, options(), pool, control)


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\nxx"])
def test_bad_bytes_are_the_jobs_error(pool, data):
    with pytest.raises(ImageError) as info:
        protect_bytes(data, options(), pool)
    error = job_error(info.value)
    assert error.code == "bad_image" and "Traceback" not in error.message


def test_truncated_and_too_many_pixels(pool, face):
    with pytest.raises(ImageError):
        protect_bytes(face[: len(face) // 2], options(), pool)
    with pytest.raises(ImageError, match="pixels"):
        protect_bytes(face, options(), pool, max_pixels=256 * 255)


def test_no_face_gives_no_output(pool):
    out = protect_bytes(noise_png(), options(), pool)
    assert out.output is None and out.media_type is None and out.report.status == "no-face"


def test_out_of_memory_is_that_jobs_error(pool, face, monkeypatch):
    from lowkey.attack import LowKeyAttack

    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(LowKeyAttack, "run", boom)
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        protect_bytes(face, options(), pool)
    assert job_error(info.value).code == "out_of_memory"
    assert job_error(RuntimeError("something /home/me/secret broke")).code == "internal"
    assert "/home" not in job_error(RuntimeError("x /home/me")).message


def test_missing_weights_never_download(tmp_path, monkeypatch):
    from lowkey.models import store

    monkeypatch.setenv("LOWKEY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LOWKEY_CONFIG_DIR", str(tmp_path / "config"))

    def no_network(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(store, "_download_url", no_network)
    monkeypatch.setattr(store, "_from_wheel", no_network)
    assert missing_models(["sface", "facenet128"]) == ["sface", "facenet128"]
    with pytest.raises(ModelsMissing, match="run `lowkey models fetch sface facenet128`") as info:
        ModelPool("cpu").recognizers(["sface", "facenet128"], download=False)
    assert info.value.names == ("sface", "facenet128")
    assert job_error(info.value).code == "models_missing"
    with pytest.raises(ModelsMissing):
        Protector.for_options(options(), ModelPool("cpu"))
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.part"))


def test_options_are_checked():
    for bad in ({"preset": "nope"}, {"strength": 0}, {"strength": 500}, {"faces": "some"},
                {"format": "gif"}, {"quality": 0}, {"seed": -1}, {"models": ()},
                {"models": "sface"}):
        with pytest.raises(ValueError):
            ProtectOptions(**bad)
    assert ProtectOptions(format="jpg").format == "JPEG"


def test_protector_keeps_its_old_interface(pool, face, tmp_path):
    protector = Protector(preset="tiny", strength=2, pool=pool, judge=False)
    with pytest.raises(AttackCancelled):
        protector.protect_photo(load_photo(face), on_step=lambda k, n, terms: False)
    source = tmp_path / "face.png"
    source.write_bytes(face)
    report = protector.protect_file(source, tmp_path / "out",
                                    on_step=lambda k, n, terms: k < 1)
    assert report.status == "cancelled"
    steps = []
    report = protector.protect_file(source, tmp_path / "out",
                                    on_step=lambda k, n, terms: steps.append(k) is None)
    assert report.status == "protected" and steps == [1, 2]
    assert (tmp_path / "out" / "face_lowkey.png").exists()
    assert report.faces[0].cosine["sface"] is not None  # measured


def test_warm_up_runs(pool):
    Protector(preset="tiny", strength=2, pool=pool, judge=False).warm_up(measure=False)
