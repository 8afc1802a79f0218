"""`lowkey protect` end to end with the real default ensemble (CPU-sized settings).

The fast tier uses few steps of the ``default`` preset (the paper-style attack, no floor) and
``subtle`` (the look-first preset) in 5 steps; the slow tier runs ``subtle`` and
``default`` at their own strengths on the astronaut. Bounds were measured on this project's
2-core CI machine and carry a margin.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lowkey.cli import main
from lowkey.dlib_judge import dlib_available
from lowkey.image_decode import load_photo
from lowkey.presets import PRESETS
from lowkey.protect import Protector

pytestmark = pytest.mark.weights


def _need_dlib():
    if not dlib_available():
        pytest.skip("dlib is not installed (pip install 'lowkey[judge]'): no black-box check")


@pytest.fixture(scope="module")
def protector():
    """The paper-style attack (no floor), 20 steps: its effect on the attacked models is clear."""
    return Protector(preset="default", strength=20)


@pytest.fixture(scope="module")
def quick():
    """Four steps, no floor: enough to change pixels, for tests of what survives protection."""
    return Protector(preset="default", strength=4, judge=False)


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def astronaut_report(protector, astronaut_rgb):
    photo = load_photo(_png(astronaut_rgb))
    encoded, report = protector.protect_photo(photo)
    return photo, encoded, report


def test_astronaut_embeddings_move_far_and_the_photo_stays_close(astronaut_report):
    photo, encoded, report = astronaut_report
    assert report.status == "protected" and encoded is not None
    (face,) = report.faces
    # Measured (default, l2 steps of 0.0012, SSIM + ColorVideoVDP weighted 1;
    # bench/face_crops.py): cosines -0.33 to 0.02 at 25 steps (SFace the highest), -0.60 to
    # -0.36 at 50 (with SSIM alone weighted 2, 20 steps gave -0.22 to 0.18, photo SSIM 0.998,
    # PSNR 45 dB); unprotected the cosines are over 0.95.
    for name, cosine in face.cosine.items():
        assert cosine is not None and cosine < 0.5, name
    # l2 steps have no per-pixel bound (0.31 measured at the strongest pixel); their energy
    # has one: root mean square over the window at most 0.005 + 20 x the step size
    assert report.ssim > 0.97 and report.psnr > 33
    assert report.penalty == "ssim+cvvdp+flip"
    assert report.smallest_face_px == 20  # a 512 px photo is searched at full resolution


def test_astronaut_face_region_is_measured_like_a_person_sees_it(astronaut_report):
    """The face region (box widened 20% a side) is worse than the whole photo on every
    measure, and each figure agrees with a recomputation on the written file."""
    from lowkey.measure import cvvdp_jod, face_region, flip_error, ssim_psnr

    photo, encoded, report = astronaut_report
    (face,) = report.faces
    x0, y0, x1, y1 = face_region(face.box, photo.size)
    assert face.region == [x0, y0, x1, y1]
    width = face.box[2] - face.box[0]
    assert x0 == pytest.approx(face.box[0] - 0.2 * width, abs=1.01)
    a = photo.pixels[:, y0:y1, x0:x1]
    b = load_photo(encoded).pixels[:, y0:y1, x0:x1]
    ssim, psnr = ssim_psnr(a, b)
    assert face.ssim == pytest.approx(ssim, abs=1e-4) and face.psnr == pytest.approx(psnr, abs=0.01)
    assert face.flip == pytest.approx(flip_error(a, b), abs=1e-4)
    assert face.jod == pytest.approx(cvvdp_jod(a, b), abs=1e-3)
    # the face is where the change is: every face-region figure is worse than the whole photo's
    assert face.ssim < report.ssim and face.psnr < report.psnr
    assert 0 < face.flip < 1 and 0 < face.jod < 10
    assert (report.face_ssim, report.face_jod, report.face_flip) == (face.ssim, face.jod,
                                                                      face.flip)


def test_astronaut_is_no_longer_the_same_person_to_dlib(astronaut_report):
    _need_dlib()
    (face,) = astronaut_report[2].faces
    assert face.dlib_distance is not None and face.dlib_distance > 0.4


def test_preset_strength_sets_the_steps_and_each_preset_has_its_own():
    assert [PRESETS[n].settings().steps for n in ("paper", "default", "subtle")] == [50, 100, 10]
    assert PRESETS["default"].settings(35).steps == 35
    # the look-first preset: a bound of 0.03 whatever the steps, luma only, a floor
    settings = PRESETS["subtle"].settings(50)
    assert settings.linf_bound == pytest.approx(0.03) and settings.luminance_only
    assert PRESETS["subtle"].quality_floor is not None
    # default: colour steps along the gradient (l2) without a bound or floor, on the
    # embeddings' directions with three views in turn (x', G(x'), JPEG(x')) and jittered
    # alignments, SSIM of the face regions (read under 512 px) plus ColorVideoVDP's JOD loss,
    # weighted 0.8, one model a step in turn, 100 steps; paper: exactly the paper
    default = PRESETS["default"].settings()
    assert default.linf_bound == 1.0 and default.step_size == 0.0015
    assert (default.feature_distance, default.views, default.jitter) == (
        "direction", "alternate-jpeg", 0.05)
    assert (default.step_rule, default.alpha, default.penalty_region) == ("l2", 0.8, "faces")
    assert (default.models_per_step, default.steps, default.penalty_max_side) == (1, 100, 512)
    assert PRESETS["default"].penalty == "ssim+cvvdp+flip"
    assert PRESETS["default"].quality_floor is None
    paper = PRESETS["paper"].settings()
    assert (paper.step_size, paper.budget, paper.luminance_only, paper.momentum) == (
        0.0025, "uniform", False, 0.0)
    assert (paper.feature_distance, paper.views, paper.jitter) == ("normalised", "both", 0.0)
    assert (paper.step_rule, paper.alpha, paper.penalty_region) == ("sign", 0.05, "photo")
    assert PRESETS["paper"].quality_floor is None
    with pytest.raises(ValueError):
        PRESETS["default"].settings(0)


def test_photo_without_a_face_is_left_unchanged(quick, tmp_path):
    g = np.random.default_rng(0)
    source = tmp_path / "noise.png"
    source.write_bytes(_png(g.integers(0, 256, (120, 160, 3), dtype=np.uint8)))
    before = source.read_bytes()
    report = quick.protect_file(source, tmp_path / "out")
    assert report.status == "no-face" and report.output is None
    assert report.smallest_face_px == 20 and report.faces == []
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert source.read_bytes() == before


@pytest.mark.slow
def test_every_face_of_a_two_face_photo_is_protected(protector, astronaut_rgb):
    pair = np.concatenate([astronaut_rgb, astronaut_rgb[:, ::-1]], axis=1)  # 1024x512, 2 faces
    encoded, report = protector.protect_photo(load_photo(_png(np.ascontiguousarray(pair))))
    assert report.status == "protected"
    assert len(report.faces) == 2
    for face in report.faces:
        for name, cosine in face.cosine.items():
            assert cosine is not None and cosine < 0.5, (name, face.box)


@pytest.mark.slow
def test_every_face_of_a_group_photo_is_protected(protector, multi_face_dir, tmp_path):
    report = protector.protect_file(multi_face_dir / "couple.jpg", tmp_path)
    assert report.status == "protected"
    assert len(report.faces) == 2
    for face in report.faces:
        for name, cosine in face.cosine.items():
            assert cosine is not None and cosine < 0.6, (name, face.box)


def test_the_penalty_is_the_presets_whatever_is_on_disk(quick):
    """The offline presets name weight-free penalties (SSIM, ColorVideoVDP, FLIP) and the
    paper's names LPIPS: output never depends on whether LPIPS's weights happen to be cached."""
    assert PRESETS["default"].penalty == "ssim+cvvdp+flip"
    assert PRESETS["subtle"].penalty == "1-ssim"
    assert PRESETS["paper"].penalty == "lpips-alex"
    assert quick.penalty.name == "ssim+cvvdp+flip"


def test_report_has_lpips_only_when_lpips_is_the_penalty(quick, astronaut_rgb, monkeypatch):
    """With LPIPS as the preset's penalty (random AlexNet weights here: a small real model; its
    loading from the cache is tested in test_perceptual) the report carries the whole photo's
    LPIPS; with 1 - SSIM it says None."""
    from dataclasses import replace

    import torch
    import torchvision

    import lowkey.protect
    from lowkey.perceptual import LPIPSPenalty, whole_photo_distance

    photo = load_photo(_png(astronaut_rgb))
    assert quick.protect_photo(photo)[1].lpips is None
    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    asked = []

    def load(name, device):
        asked.append(name)
        return LPIPSPenalty(state).to(device)

    monkeypatch.setattr(lowkey.protect, "load_penalty", load)
    # the paper's sign steps, so that 2 steps change enough for the report's 4 decimals (the
    # default's l2 steps with SSIM weighted 2 move the astronaut by an LPIPS of 1e-5 in 2 steps)
    monkeypatch.setitem(PRESETS, "default", replace(PRESETS["default"], penalty="lpips-alex",
                                                    step_size=0.0025, attack=()))
    protector = Protector(preset="default", strength=2, judge=False)
    assert asked == ["lpips-alex"]
    encoded, report = protector.protect_photo(photo)
    assert report.penalty == "lpips-alex" and report.lpips is not None
    again = whole_photo_distance(protector.penalty, photo.pixels, load_photo(encoded).pixels)
    assert report.lpips == pytest.approx(again, abs=1e-4) and report.lpips > 0


def test_alpha_survives_protection_bit_exact(quick, astronaut_rgb):
    alpha = np.tile(np.linspace(0, 255, 512, dtype=np.uint8), (512, 1))
    rgba = np.dstack([astronaut_rgb, alpha])
    photo = load_photo(_png(rgba, "RGBA"))
    encoded, report = quick.protect_photo(photo)
    assert report.status == "protected"
    out = Image.open(io.BytesIO(encoded))
    assert out.mode == "RGBA" and out.size == (512, 512)
    assert np.array_equal(np.asarray(out)[..., 3], alpha)
    assert not np.array_equal(np.asarray(out)[..., :3], astronaut_rgb)


def test_grayscale_stays_grayscale(quick, astronaut_rgb):
    gray = np.asarray(Image.fromarray(astronaut_rgb).convert("L"))
    photo = load_photo(_png(gray, "L"))
    encoded, report = quick.protect_photo(photo)
    assert report.status == "protected"
    out = Image.open(io.BytesIO(encoded))
    assert out.mode == "L" and out.size == (512, 512)
    assert not np.array_equal(np.asarray(out), gray)


def test_orientation_survives_protection(quick, astronaut_rgb):
    # Stored sideways with EXIF orientation 6 (viewers rotate it 90 degrees clockwise).
    stored = Image.fromarray(astronaut_rgb[:, :400]).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    photo = load_photo(buffer.getvalue())
    assert photo.size == (400, 512)  # upright
    encoded, report = quick.protect_photo(photo)
    assert report.status == "protected"
    out = Image.open(io.BytesIO(encoded))
    assert out.size == (400, 512)
    assert out.getexif().get(0x0112, 1) == 1
    upright = np.asarray(out.convert("RGB")).astype(float)
    assert np.abs(upright - astronaut_rgb[:, :400]).mean() < 6  # same picture, same way up


def test_outputs_never_overwrite_inputs(quick, tmp_path, astronaut_rgb):
    source = tmp_path / "me.png"
    source.write_bytes(_png(astronaut_rgb))
    original = source.read_bytes()
    first = quick.protect_file(source)
    assert first.status == "protected" and first.output == str(tmp_path / "me_lowkey.png")
    written = (tmp_path / "me_lowkey.png").read_bytes()
    second = quick.protect_file(source)
    # A re-run finds the output before any work: skipped, nothing touched, in no time.
    assert second.status == "skipped" and "exists already" in second.error
    assert second.output == first.output and second.seconds < 0.5 * first.seconds
    assert source.read_bytes() == original
    assert (tmp_path / "me_lowkey.png").read_bytes() == written


def test_cli_batch_reports_failures_and_goes_on(tmp_path, astronaut_rgb, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (folder / "good.png").write_bytes(_png(astronaut_rgb))
    code = main(["protect", str(folder), "-o", str(tmp_path / "out"), "--preset", "subtle",
                 "--strength", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # not everything succeeded
    status = {r["source"].rsplit("/", 1)[-1]: r["status"] for r in out["photos"]}
    assert status == {"broken.jpg": "failed", "good.png": "protected"}
    assert out["summary"] == {"protected": 1, "no-face": 0, "failed": 1, "skipped": 0}
    assert (tmp_path / "out" / "good_lowkey.png").exists()
    assert not (tmp_path / "out" / "broken_lowkey.jpg").exists()
    assert out["settings"]["penalty"] == "1-ssim"
    # The same command again: the protected photo is skipped (not an error), the broken one
    # still fails.
    code = main(["protect", str(folder), "-o", str(tmp_path / "out"), "--preset", "subtle",
                 "--strength", "2", "--json"])
    again = json.loads(capsys.readouterr().out)
    assert code == 1 and again["summary"] == {"protected": 0, "no-face": 0, "failed": 1,
                                              "skipped": 1}


def test_cli_batch_attacks_photos_together_with_the_results_of_one_by_one(
        tmp_path, astronaut_rgb, capsys):
    """--batch 4: the two faces' photos share one attack, the broken and the faceless photo get
    their own statuses, and every output is protected as --batch 1 protects it.

    What holds on any CPU: batched and single model calls may sum in another order (oneDNN
    picks kernels by batch size). Both runs start from the same noise (each photo's own
    generator) and draw the same jitter; the default's l2 steps follow the gradient's value, so
    a float-order difference in it moves a pixel by as little (a sign step could flip: 3 signed
    steps of 0.0025 would be at most 0.015, 4 levels apart). Allowed: 4 levels, each attacked
    model's cosine within 0.01 and the face region's SSIM within 0.005 (measured here with sign
    steps: bit-identical; another CPU: 3 levels apart)."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (folder / "b_face.png").write_bytes(_png(astronaut_rgb))
    (folder / "c_noface.png").write_bytes(_png(np.full((64, 80, 3), 120, np.uint8)))
    (folder / "d_face.png").write_bytes(_png(np.ascontiguousarray(astronaut_rgb[:400, 60:460])))
    outputs, reports = {}, {}
    for batch in ("1", "4"):
        code = main(["protect", str(folder), "-o", str(tmp_path / batch), "--preset", "default",
                     "--strength", "3", "--batch", batch, "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 1
        reports[batch] = {r["source"].rsplit("/", 1)[-1]: r for r in out["photos"]}
        assert {name: r["status"] for name, r in reports[batch].items()} == {
            "a_broken.jpg": "failed", "b_face.png": "protected", "c_noface.png": "no-face",
            "d_face.png": "protected"}
        outputs[batch] = {n: np.asarray(Image.open(tmp_path / batch / f"{n}_lowkey.png"),
                                        np.int16) for n in ("b_face", "d_face")}
    for name, one_by_one in outputs["1"].items():
        together = outputs["4"][name]
        assert np.abs(together - _original_of(name, astronaut_rgb)).max() > 0  # changed
        assert np.abs(together - one_by_one).max() <= 4, name
        alone, batched = reports["1"][f"{name}.png"], reports["4"][f"{name}.png"]
        assert len(batched["faces"]) == len(alone["faces"]) == 1
        cosines = alone["faces"][0]["cosine"]
        assert set(batched["faces"][0]["cosine"]) == set(cosines) and cosines
        for model, cosine in cosines.items():
            assert cosine < 0.99, (name, model)  # the protection moved it
            assert abs(batched["faces"][0]["cosine"][model] - cosine) <= 0.01, (name, model)
        assert abs(batched["face_ssim"] - alone["face_ssim"]) <= 0.005, name


def test_a_batch_the_gpu_cannot_hold_is_attacked_one_photo_at_a_time(quick, tmp_path,
                                                                        astronaut_rgb,
                                                                        monkeypatch):
    """When run_many runs out of GPU memory on a batch, each photo is attacked alone and
    every photo is still protected (simulated: the CPU has no GPU to fill)."""
    paths = []
    for name, rgb in (("a", astronaut_rgb), ("b", astronaut_rgb[:400, 60:460])):
        paths.append(tmp_path / f"{name}.png")
        paths[-1].write_bytes(_png(np.ascontiguousarray(rgb)))
    run_many = quick.attack.run_many
    sizes = []

    def only_one_fits(photos, on_step=None, stop=None):
        sizes.append(len(photos))
        if len(photos) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return run_many(photos, on_step, stop)

    monkeypatch.setattr(quick.attack, "run_many", only_one_fits)
    reports = quick.protect_files(paths, tmp_path / "out")
    assert [r.status for r in reports] == ["protected", "protected"]
    assert sizes == [2, 1, 1]


def _original_of(name: str, astronaut_rgb: np.ndarray) -> np.ndarray:
    rgb = astronaut_rgb if name == "b_face" else astronaut_rgb[:400, 60:460]
    return rgb.astype(np.int16)


@pytest.mark.slow
def test_default_preset_on_the_astronaut_protects(astronaut_rgb):
    """``default`` at its own strength (measured with SSIM + ColorVideoVDP on the face region,
    x2, one model a step in turn, 100 steps: face region 9.43 JOD, whole-photo SSIM 0.997,
    cosines -0.54 to -0.11, dlib distance 0.83 on the 2-core CPU; bench/face_crops.py)."""
    protector = Protector()
    encoded, report = protector.protect_photo(load_photo(_png(astronaut_rgb)))
    (face,) = report.faces
    print(json.dumps(report.to_json(), indent=1))
    for name, cosine in face.cosine.items():
        assert cosine is not None and cosine < 0.1, name
    assert report.ssim > 0.97
    _need_dlib()
    assert face.dlib_distance > 0.6


@pytest.mark.slow
def test_subtle_preset_on_the_astronaut_keeps_the_face_looking_unchanged(astronaut_rgb):
    """``subtle`` at its own 10 steps: the face region meets the quality targets of issue 9
    and the attacked models still move (measured: cosines about 0.7-0.85)."""
    protector = Protector(preset="subtle")
    encoded, report = protector.protect_photo(load_photo(_png(astronaut_rgb)))
    (face,) = report.faces
    print(json.dumps(report.to_json(), indent=1))
    assert face.jod >= 9.5 and face.flip <= 0.05 and face.ssim >= 0.95
    assert all(cosine < 0.95 for cosine in face.cosine.values()), face.cosine


def test_the_subtle_preset_keeps_every_face_above_the_floor_without_visible_edges(astronaut_rgb):
    """End to end with the real ensemble: ``subtle`` (in 5 steps) writes a
    photo whose face region, measured afresh on the written file, meets the floor; the change
    is luma only and fades out before the border of the window it was allowed in."""
    protector = Protector(preset="subtle", strength=5, judge=False)
    floor = protector.quality_floor
    photo = load_photo(_png(astronaut_rgb))
    encoded, report = protector.protect_photo(photo)
    (face,) = report.faces
    (kept,) = report.change_kept
    assert 0 < kept <= 1
    assert face.jod >= floor.jod and face.flip <= floor.flip and face.ssim >= floor.ssim
    out = np.asarray(Image.open(io.BytesIO(encoded))).astype(int)
    diff = out - astronaut_rgb.astype(int)
    # luma only: R, G and B change alike (up to 8-bit rounding where a change sits on a half)
    assert np.abs(diff).max() > 0
    assert np.abs(diff[..., 0] - diff[..., 1]).max() <= 1
    assert np.mean(diff[..., 0] != diff[..., 1]) < 0.01
    # no edge: where the change stops (the box around every changed pixel), it has faded to
    # 8-bit rounding; without the feather it would stop at up to 0.03 x 255 = 7 levels
    changed = np.argwhere(np.abs(diff).max(axis=2) > 0)
    (y0, x0), (y1, x1) = changed.min(axis=0), changed.max(axis=0) + 1
    box = np.abs(diff[y0:y1, x0:x1]).max(axis=2)
    ring = np.concatenate([box[:4].ravel(), box[-4:].ravel(), box[:, :4].ravel(),
                           box[:, -4:].ravel()])
    assert ring.max() <= 2 < box.max()


def test_a_presets_fingerprint_changes_with_the_attacks_revision(monkeypatch):
    """Caches keyed on the fingerprint are not served stale when the attack's code changes
    what a preset does at the same settings."""
    import lowkey.presets

    before = {name: preset.fingerprint() for name, preset in PRESETS.items()}
    assert len(set(before.values())) == len(before)
    monkeypatch.setattr(lowkey.presets, "ATTACK_REVISION", lowkey.presets.ATTACK_REVISION + 1)
    assert all(PRESETS[name].fingerprint() != value for name, value in before.items())


def test_an_old_preset_name_says_what_it_became(capsys):
    from lowkey.presets import get_preset

    with pytest.raises(ValueError, match="'strong' is now default"):
        get_preset("strong")
    with pytest.raises(ValueError, match="'fast' is now subtle"):
        get_preset("fast")
    with pytest.raises(ValueError, match="choose from default, subtle, paper"):
        Protector(preset="nonsense")
    with pytest.raises(SystemExit):
        main(["protect", "x.jpg", "--preset", "strong"])
    assert "'strong' is now default" in capsys.readouterr().err
