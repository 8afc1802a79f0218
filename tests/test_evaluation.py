"""`lowkey eval`: metrics against hand-computed answers, the seeded split, counter-measures, the
caches, the kNN backends, and the whole pipeline on a tiny real set (3 identities x 2 photos)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lowkey.evaluation.cache import EmbeddingCache
from lowkey.evaluation.countermeasures import (
    COUNTERMEASURES,
    downscale,
    gaussian_blur,
    get_countermeasures,
    jpeg_bytes,
    jpeg_reencode,
    platform_reprocess,
)
from lowkey.evaluation.dataset import probe_count, scan_dataset, split_dataset
from lowkey.evaluation.metrics import (
    FAISS_MIN_GALLERY,
    accept_rate,
    choose_backend,
    faiss_available,
    far_threshold,
    identification_ranks,
    nearest_neighbours,
    rank_k_accuracy,
)
from lowkey.evaluation.runner import EvalConfig, attacks_for
from lowkey.presets import PRESETS

# --- identification ranks ---------------------------------------------------------------------

# 1-D embeddings. Gallery: position -> identity (-1 = distractor).
GALLERY = np.array([[0.0], [1.0], [2.0], [3.0], [5.0]])
GALLERY_LABELS = np.array([0, 1, 0, -1, 2])
# Probes and their ranks, worked out by hand (rank = 1 + wrong photos strictly closer than the
# nearest correct one; a tie goes to the recogniser):
PROBES = np.array([[0.9], [1.0], [3.0], [0.5], [0.0], [2.5]])
PROBE_LABELS = np.array([0, 1, 2, 1, 0, 3])
PROBE_FOUND = np.array([True, True, True, True, False, True])
EXPECTED_RANKS = [
    2,  # id 0 at 0.9: nearest correct 0.0 (d 0.9); 1.0 (id 1, d 0.1) is closer
    1,  # id 1 at 1.0: exact match
    3,  # id 2 at 3.0: correct 5.0 (d 2); 3.0 (d 0) and 2.0 (d 1) closer; 1.0 (d 2) is a tie
    1,  # id 1 at 0.5: 0.0 (wrong) and 1.0 (correct) both at 0.5: tie -> rank 1
    math.inf,  # no face in the probe: a miss
    math.inf,  # id 3 has no gallery photo: a miss
]


def test_ranks_match_hand_computed_values():
    ranks = identification_ranks(PROBES, PROBE_LABELS, PROBE_FOUND, GALLERY, GALLERY_LABELS,
                                 k=50, backend="exact")
    assert ranks.tolist() == EXPECTED_RANKS
    assert rank_k_accuracy(ranks, 1) == pytest.approx(2 / 6)
    assert rank_k_accuracy(ranks, 2) == pytest.approx(3 / 6)
    assert rank_k_accuracy(ranks, 3) == pytest.approx(4 / 6)
    # the gallery (5 photos) is smaller than k = 50: every retrievable match is found
    assert rank_k_accuracy(ranks, 50) == pytest.approx(4 / 6)


def test_ranks_beyond_the_search_depth_are_misses():
    ranks = identification_ranks(PROBES, PROBE_LABELS, PROBE_FOUND, GALLERY, GALLERY_LABELS,
                                 k=2, backend="exact")
    assert ranks.tolist() == [2, 1, math.inf, 1, math.inf, math.inf]


def test_empty_gallery_and_no_trial():
    ranks = identification_ranks(PROBES, PROBE_LABELS, PROBE_FOUND, GALLERY[:0],
                                 GALLERY_LABELS[:0], k=5)
    assert np.isinf(ranks).all()
    assert math.isnan(rank_k_accuracy(np.array([]), 1))


def test_nearest_neighbours_are_sorted_and_capped_by_the_gallery():
    dists, idx = nearest_neighbours(np.array([[2.4]]), GALLERY, k=50, backend="exact")
    assert idx.tolist() == [[2, 3, 1, 0, 4]]
    assert dists[0].tolist() == pytest.approx([0.4, 0.6, 1.4, 2.4, 2.6])


def test_exact_search_in_chunks_equals_one_block():
    g = np.random.default_rng(1)
    gallery, queries = g.normal(size=(300, 16)), g.normal(size=(7, 16))
    one = nearest_neighbours(queries, gallery, 12, backend="exact", chunk=1000)
    chunked = nearest_neighbours(queries, gallery, 12, backend="exact", chunk=37)
    assert np.array_equal(one[1], chunked[1])
    assert np.allclose(one[0], chunked[0])


def test_backend_switch():
    assert choose_backend(1000) == "exact"
    assert choose_backend(FAISS_MIN_GALLERY) == ("faiss" if faiss_available() else "exact")
    with pytest.raises(ValueError):
        choose_backend(10, "annoy")  # type: ignore[arg-type]


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")
def test_faiss_and_exact_give_the_same_neighbours():
    g = np.random.default_rng(0)
    gallery = g.normal(size=(3000, 64)).astype(np.float32)
    queries = g.normal(size=(40, 64)).astype(np.float32)
    d_exact, i_exact = nearest_neighbours(queries, gallery, 20, backend="exact")
    d_faiss, i_faiss = nearest_neighbours(queries, gallery, 20, backend="faiss")
    assert np.array_equal(i_exact, i_faiss)
    assert np.allclose(d_exact, d_faiss, atol=1e-4)


# --- verification --------------------------------------------------------------------------

IMPOSTORS = np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
GENUINE = np.array([0.95, 0.85, 0.8, 0.75, -np.inf])  # the last pair had no face


@pytest.mark.parametrize(("far", "achieved", "tar"), [
    (0.01, 0.0, 1 / 5),   # none of 10 may pass: threshold just above 0.9
    (0.1, 0.1, 2 / 5),    # one may pass: 0.9; threshold just above 0.8
    (0.2, 0.1, 2 / 5),    # two may pass, but the tie 0.8/0.8 is not split: still only 0.9
    (0.3, 0.3, 4 / 5),    # three pass: 0.9, 0.8, 0.8; threshold just above 0.7
])
def test_tar_at_far_on_hand_made_scores(far, achieved, tar):
    threshold = far_threshold(IMPOSTORS, far)
    assert accept_rate(IMPOSTORS, threshold) == pytest.approx(achieved)
    assert accept_rate(GENUINE, threshold) == pytest.approx(tar)


def test_tar_edge_cases():
    assert far_threshold(IMPOSTORS, 1.0) == -math.inf
    assert accept_rate(GENUINE, -math.inf) == pytest.approx(4 / 5)  # a missing face never passes
    assert math.isnan(far_threshold(np.array([]), 0.1))
    assert math.isnan(accept_rate(GENUINE, math.nan))


# --- split -----------------------------------------------------------------------------------

@pytest.fixture
def synthetic_dataset(tmp_path):
    sizes = {"one": 1, "two": 2, "five": 5, "twelve": 12, "many": 25}
    for identity, n in sizes.items():
        (tmp_path / "ds" / identity).mkdir(parents=True)
        for i in range(n):
            (tmp_path / "ds" / identity / f"p{i:02d}.jpg").write_bytes(b"")
    (tmp_path / "ds" / "two" / "p00_lowkey.jpg").write_bytes(b"")  # an output: ignored
    (tmp_path / "ds" / "two" / "notes.txt").write_bytes(b"")  # not a photo: ignored
    (tmp_path / "distractors" / "sub").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "distractors" / "sub" / f"d{i}.png").write_bytes(b"")
    return scan_dataset(tmp_path / "ds", tmp_path / "distractors"), sizes


def test_scan_finds_identities_and_distractors(synthetic_dataset):
    dataset, sizes = synthetic_dataset
    assert {k: len(v) for k, v in dataset.identities.items()} == sizes
    assert len(dataset.distractors) == 3


def test_distractors_behind_symbolic_links_are_found_and_none_is_an_error(tmp_path):
    """A distractor set made of links to other folders (a subset of a bigger set) is read
    through them, a link loop ends, and a distractor folder without photos is refused instead
    of giving a gallery without distractors."""
    (tmp_path / "ds" / "a").mkdir(parents=True)
    (tmp_path / "ds" / "a" / "p.jpg").write_bytes(b"")
    (tmp_path / "all" / "x").mkdir(parents=True)
    (tmp_path / "all" / "x" / "x_0001.jpg").write_bytes(b"")
    (tmp_path / "subset").mkdir()
    (tmp_path / "subset" / "x").symlink_to(tmp_path / "all" / "x", target_is_directory=True)
    (tmp_path / "subset" / "loop").symlink_to(tmp_path / "subset", target_is_directory=True)
    dataset = scan_dataset(tmp_path / "ds", tmp_path / "subset")
    assert [p.name for p in dataset.distractors] == ["x_0001.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no photos"):
        scan_dataset(tmp_path / "ds", tmp_path / "empty")


def test_split_is_seeded_and_complete(synthetic_dataset):
    dataset, sizes = synthetic_dataset
    a, b, c = (split_dataset(dataset, seed, users="all") for seed in (0, 0, 1))
    assert (a.probes, a.gallery) == (b.probes, b.gallery)
    assert (a.probes, a.gallery) != (c.probes, c.gallery)
    for split in (a, c):
        for identity, photos in dataset.identities.items():
            probes, gallery = split.probes[identity], split.gallery[identity]
            assert len(probes) >= 1
            assert len(gallery) >= (1 if len(photos) >= 2 else 0)
            assert not set(probes) & set(gallery)
            assert set(probes) | set(gallery) == set(photos)
        assert len(split.probes["many"]) == 3 and len(split.probes["twelve"]) == 1
        assert "one" not in split.users  # no gallery photo: can never be a user
        assert set(split.users) == set(sizes) - {"one"}
        assert [p for p, i in split.gallery_items() if i is None] == list(dataset.distractors)


def test_user_selection_is_seeded(synthetic_dataset):
    dataset, _ = synthetic_dataset
    picks = [split_dataset(dataset, seed, users=2).users for seed in range(6)]
    assert picks[0] == split_dataset(dataset, 0, users=2).users
    assert all(len(p) == 2 and "one" not in p for p in picks)
    assert len(set(picks)) > 1  # different seeds choose different users
    assert len(split_dataset(dataset, 0, users=2).user_gallery()) == sum(
        len(split_dataset(dataset, 0).gallery[u]) for u in picks[0])


def test_probe_count():
    assert [probe_count(n) for n in (1, 2, 9, 14, 15, 25, 100)] == [1, 1, 1, 1, 2, 3, 10]


def test_transfer_adds_single_model_and_leave_one_out_attacks(tmp_path):
    attacks = attacks_for(EvalConfig(tmp_path, tmp_path, preset="subtle", transfer=True))
    fingerprint = PRESETS["subtle"].fingerprint()
    models = PRESETS["subtle"].models
    n = len(models)
    assert n >= 3
    assert [a.tag for a in attacks] == [f"subtle{name}-1-ssim-s10-seed0-{fingerprint}" for name in (
        [""] + [f"-{m}" for m in models] + [f"-without-{m}" for m in models])]
    assert [a.kind for a in attacks] == ["ensemble"] + ["single"] * n + ["leave-one-out"] * n
    assert [a.models for a in attacks[1:n + 1]] == [(m,) for m in models]
    assert [a.models for a in attacks[n + 1:]] == [
        tuple(m for m in models if m != left) for left in models]
    rest = "+".join(models[1:])
    assert attacks[n + 1].label == f"without {models[0]} ({rest})"
    assert len(attacks_for(EvalConfig(tmp_path, tmp_path, preset="subtle"))) == 1
    only = attacks_for(EvalConfig(tmp_path, tmp_path, preset="subtle", leave_one_out=True))
    assert [a.tag for a in only] == [attacks[0].tag] + [a.tag for a in attacks[n + 1:]]
    with pytest.raises(ValueError, match="kind"):
        type(attacks[0])("x", "subtle", ("sface",), 50, 0, kind="pair")


def test_protector_refuses_a_bare_model_name():
    from lowkey.protect import Protector

    with pytest.raises(ValueError, match="non-empty list"):
        Protector(preset="subtle", models="sface")
    with pytest.raises(ValueError, match="non-empty list"):
        Protector(preset="subtle", models=[])


# --- counter-measures ------------------------------------------------------------------------

@pytest.fixture
def astronaut(astronaut_rgb):
    return torch.from_numpy(astronaut_rgb).permute(2, 0, 1).float() / 255


def test_countermeasure_sizes(astronaut):
    small = astronaut[:, :100, :150]
    assert COUNTERMEASURES["none"].apply(small) is small
    assert gaussian_blur(small).shape == (3, 100, 150)
    assert jpeg_reencode(small).shape == (3, 100, 150)
    assert downscale(small).shape == (3, 50, 75)
    assert platform_reprocess(small).shape == (3, 100, 150)  # small photos keep their size
    big = torch.nn.functional.interpolate(astronaut[None], size=(1000, 3000))[0]
    assert platform_reprocess(big).shape == (3, 683, 2048)  # long side 2048, aspect kept
    for cm in COUNTERMEASURES.values():
        out = cm.apply(small)
        assert out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1


def test_blur_smooths_and_keeps_flat_regions(astronaut):
    flat = torch.full((3, 40, 40), 0.3)
    assert torch.allclose(gaussian_blur(flat), flat, atol=1e-6)
    noise = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert gaussian_blur(noise).std() < 0.3 * noise.std()
    # sigma 2 moves a sharp photo noticeably
    assert (gaussian_blur(astronaut) - astronaut).abs().mean() > 0.01


def test_jpeg_quality_matters(astronaut):
    q75, q95 = jpeg_bytes(astronaut, 75), jpeg_bytes(astronaut, 95)
    assert len(q75) < 0.7 * len(q95)
    err75 = (jpeg_reencode(astronaut, 75) - astronaut).pow(2).mean()
    err95 = (jpeg_reencode(astronaut, 95) - astronaut).pow(2).mean()
    assert err95 < err75 and err75 > 1e-5
    assert Image.open(io.BytesIO(q75)).format == "JPEG"


def test_countermeasure_selection():
    assert [c.name for c in get_countermeasures(["jpeg75"])] == ["none", "jpeg75"]
    assert len({c.key for c in get_countermeasures()}) == len(COUNTERMEASURES)
    with pytest.raises(ValueError, match="unknown counter-measure"):
        get_countermeasures(["sharpen"])


# --- embedding cache -------------------------------------------------------------------------

def test_embedding_cache_round_trip_and_resume(tmp_path):
    path = tmp_path / "judge" / "none.npz"
    cache = EmbeddingCache(path, dim=4, flush_every=2)
    cache.put("a" * 64, np.arange(4, dtype=np.float32))
    assert not path.parent.exists()  # nothing written yet
    cache.put("b" * 64, None)  # no face found
    cache.put("c" * 64, np.ones(4))
    # "interrupted" here: the first two were flushed to a part file, the third was not
    resumed = EmbeddingCache(path, dim=4)
    assert sorted(resumed._entries) == ["a" * 64, "b" * 64]
    assert resumed.get("b" * 64) is None
    cache.compact()
    assert path.exists() and not list(path.parent.glob("none.part*.npz"))
    again = EmbeddingCache(path, dim=4)
    assert len(again) == 3
    assert again.get("a" * 64).tolist() == [0, 1, 2, 3]
    assert again.get("b" * 64) is None
    with pytest.raises(KeyError):
        again.get("d" * 64)
    with pytest.raises(ValueError):
        again.put("e" * 64, np.ones(5))
    assert len(EmbeddingCache(path, dim=8)) == 0  # other weights' dimension: not reused


def test_an_existing_output_is_reused_untouched(tmp_path, astronaut_rgb):
    """A protected photo written by another job (no report beside it) is never redone: its
    quality is measured from the two files and its time recorded as unknown."""
    from lowkey.evaluation.protection import Attack, GalleryProtector

    source = tmp_path / "ds" / "alice" / "a.png"
    source.parent.mkdir(parents=True)
    Image.fromarray(astronaut_rgb).save(source)
    attack = Attack("ensemble", "subtle", ("sface",), 50, 0)
    output = tmp_path / "out" / attack.tag / "alice" / "a_lowkey.png"
    output.parent.mkdir(parents=True)
    noisy = np.clip(astronaut_rgb.astype(int) + np.random.default_rng(0).integers(
        -3, 4, astronaut_rgb.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(output)
    before = (output.read_bytes(), output.stat().st_mtime_ns)
    worker = GalleryProtector(attack, tmp_path / "out")
    photo = worker.protect(source, "alice")
    assert (photo.status, photo.used) == ("protected", output)
    assert worker.protected_now == 0 and worker._protector is None  # no model was loaded
    assert (output.read_bytes(), output.stat().st_mtime_ns) == before
    report = json.loads((output.parent / "a_lowkey.png.json").read_text())
    assert report["measured"] == "recovered" and report["seconds"] is None
    assert 0.8 < report["ssim"] < 1 and 35 < report["psnr"] < 50
    assert report["protected_bytes"] == output.stat().st_size
    # the face region is measured too (the astronaut's one face; the noise is everywhere)
    (face,) = report["faces"]
    assert report["face_ssim"] == face["ssim"] and 0.9 < face["ssim"] < 1
    assert 0 < report["face_flip"] < 1 and 0 < report["face_jod"] < 10


# --- end to end on real photos ---------------------------------------------------------------

# The smallest photos of three faces-dev identities (2 each: 1 probe + 1 protected gallery photo).
TINY_SET = {"person00": ("img5.jpg", "img10.jpg"), "person01": ("img46.jpg", "img44.jpg"),
            "person02": ("img50.jpg", "img51.jpg")}


@pytest.fixture(scope="module")
def tiny_run(faces_dev, tmp_path_factory):
    """Runs `lowkey eval` twice on the tiny set; returns (out dir, first, second results)."""
    from lowkey.cli import main
    from lowkey.dlib_judge import dlib_available

    root = tmp_path_factory.mktemp("eval")
    for identity, names in TINY_SET.items():
        (root / "ds" / identity).mkdir(parents=True)
        for name in names:
            (root / "ds" / identity / name).symlink_to(faces_dev / identity / name)
    judges = "sface,dlib" if dlib_available() else "sface"
    argv = ["eval", str(root / "ds"), "--strength", "1", "--judges", judges,
            "--users", "all", "--out", str(root / "out"), "--json"]
    runs = []
    for _ in range(2):
        assert main(argv) == 0
        runs.append(json.loads((root / "out" / "results.json").read_text()))
    return root / "out", runs[0], runs[1]


@pytest.mark.weights
def test_eval_end_to_end(tiny_run):
    out, results, _ = tiny_run
    for name in ("report.md", "results.json", "results.csv", "transfer.png", "rank1.png"):
        assert (out / name).stat().st_size > 0, name
    assert results["dataset"]["user_probes"] == 3 and results["dataset"]["gallery"] == 3
    assert results["knn"] == {"backend": "exact", "gallery_photos": 3, "k": 3}
    judges = [j["name"] for j in results["judges"]]
    base = [j for j in judges if "@" not in j]
    assert judges == [n for j in base for n in (j, f"{j}@fixed")]  # each judge, then its variant
    assert results["black_box_judges"] == [j for j in judges if j.startswith("dlib")]
    cms = {c["name"] for c in results["countermeasures"]}
    assert cms == set(COUNTERMEASURES)
    # every judge (and its fixed-detector variant) x (clean, ensemble) x counter-measure
    assert len(results["results"]) == len(judges) * 2 * len(cms)
    for row in results["results"]:
        values = [row["rank1"], row["rank_k"], *row["tar"].values()]
        assert all(0.0 <= v <= 1.0 for v in values), row
        assert row["rank1"] <= row["rank_k"]
        assert row["trials"] == 3 and row["k"] == 3
        expected = None if row["attack"] == "clean" else (
            "white-box" if row["base_judge"] == "sface" else "black-box")
        assert row["access"] == expected
        assert 0 <= row["user_gallery_without_face"] <= row["gallery_without_face"] <= 3
        for metric, total in (("rank1", 3), ("rank_k", 3)):
            lo, hi = row[f"{metric}_ci"]
            assert lo <= row[metric] <= hi
            assert sum(row[f"{metric}_outcomes"].values()) == total
        for far, outcomes in row["tar_outcomes"].items():
            assert sum(outcomes.values()) == row["genuine_pairs"] == 3
            assert row["tar_ci"][far][0] <= row["tar"][far] <= row["tar_ci"][far][1]
    # probes are clean: a fixed-detector judge sees them as its judge does (same thresholds)
    # and so is the clean gallery without counter-measure (each photo is its own source)
    figures = ("rank1", "rank_k", "tar", "rank1_outcomes", "tar_outcomes", "gallery_size")
    for judge in base:
        assert results["thresholds"][f"{judge}@fixed"] == results["thresholds"][judge]
        own, fixed = (next(r for r in results["results"] if r["judge"] == name
                           and r["attack"] == "clean" and r["countermeasure"] == "none")
                      for name in (judge, f"{judge}@fixed"))
        assert {f: own[f] for f in figures} == {f: fixed[f] for f in figures}
    # the protected photos are exactly protect_file's outputs, with their reports beside them
    assert results["penalty"] == "ssim+cvvdp+flip"
    tag = out / "protected" / f"default-ssim+cvvdp+flip-s1-seed0-{PRESETS['default'].fingerprint()}"
    outputs = sorted(tag.glob("*/*_lowkey.jpg"))
    assert len(outputs) == 3
    for output in outputs:
        report = json.loads(output.with_name(output.name + ".json").read_text())
        assert report["status"] == "protected" and report["output"] == str(output)
        assert report["steps"] == 1 and report["original_bytes"] > 0
    quality = results["quality"]["ensemble"]
    assert quality["protected"] == 3 and 0.9 < quality["ssim_mean"] <= 1
    # the default preset's penalty is 1 - SSIM plus ColorVideoVDP plus FLIP, and whole-photo LPIPS is
    # measured only under LPIPS
    assert quality["penalty"] == "ssim+cvvdp+flip"
    assert quality["lpips_measured"] == 0 and quality["lpips_mean"] is None
    assert quality["face_measured"] == 3
    assert 0 < quality["face_ssim_min"] <= quality["face_ssim_mean"] <= 1
    assert quality["seconds_per_photo"] > 0 and quality["devices"]
    report = (out / "report.md").read_text()
    assert "white-box" in report and "Transfer matrix" in report
    assert "(no face: " in report.split("## Every judge")[0]


@pytest.mark.weights
def test_eval_headline_shows_dlib_and_its_fixed_variant(tiny_run):
    from lowkey.dlib_judge import dlib_available

    if not dlib_available():
        pytest.skip("dlib is not installed: no black-box judge in the tiny run")
    out, results, _ = tiny_run
    headline = (out / "report.md").read_text().split("## Every judge")[0]
    assert "| dlib |" in headline and "| dlib@fixed |" in headline
    assert results["black_box_judges"] == ["dlib", "dlib@fixed"]


@pytest.mark.weights
def test_eval_second_run_reuses_both_caches(tiny_run):
    out, first, second = tiny_run
    assert first["cache"]["protected_now"] == 3
    assert first["cache"]["embeddings_computed"] > 0
    assert second["cache"]["protected_now"] == 0
    assert second["cache"]["protected_reused"] == 3
    assert second["cache"]["embeddings_computed"] == 0
    assert second["cache"]["embeddings_reused"] == first["cache"]["embeddings_computed"]
    assert second["results"] == first["results"]


def test_quality_summary_and_lpips_cell():
    from lowkey.evaluation.protection import ProtectedPhoto
    from lowkey.evaluation.report import _lpips_cell
    from lowkey.evaluation.runner import _quality

    def photo(status, **report):
        return ProtectedPhoto(Path("a.jpg"), "p", Path("a.jpg"), status, report)

    photos = [photo("protected", ssim=0.9, psnr=30.0, lpips=0.1, original_bytes=100,
                    protected_bytes=250, seconds=4.0, device="cpu", penalty="lpips-alex",
                    face_ssim=0.8, face_psnr=25.0, face_flip=0.1, face_jod=9.0),
              photo("protected", ssim=0.95, psnr=float("inf"), lpips=None, original_bytes=100,
                    protected_bytes=150, seconds=None, device="cpu", penalty="lpips-alex",
                    face_ssim=0.9, face_psnr=None, face_flip=0.3, face_jod=7.0),
              photo("no-face"), photo("failed")]
    q = _quality(photos)
    # the face region: means, and the worst photo (lowest SSIM and JOD, highest FLIP)
    assert q["face_ssim_mean"] == pytest.approx(0.85) and q["face_ssim_min"] == 0.8
    assert q["face_psnr_mean"] == pytest.approx(25.0)  # None is not a zero
    assert q["face_flip_mean"] == pytest.approx(0.2) and q["face_flip_max"] == 0.3
    assert q["face_jod_mean"] == pytest.approx(8.0) and q["face_jod_min"] == 7.0
    assert q["face_measured"] == 2 and _quality(photos[2:])["face_ssim_mean"] is None
    assert (q["photos"], q["protected"], q["no_face"], q["failed"]) == (4, 2, 1, 1)
    assert q["ssim_mean"] == pytest.approx(0.925) and q["psnr_mean"] == pytest.approx(30.0)
    assert q["lpips_mean"] == pytest.approx(0.1) and q["lpips_measured"] == 1
    assert q["size_ratio_mean"] == pytest.approx(2.0) and q["seconds_known"] == 1
    assert _lpips_cell(q) == "0.1000 (1 photos)"
    assert _lpips_cell(_quality(photos[:1])) == "0.1000"
    assert _lpips_cell(_quality(photos[2:])) == "n/a"


def test_transfer_matrix_orders_rows_and_marks_held_out_judges_black_box():
    from lowkey.evaluation.report import _short_label, transfer_matrix

    attacks = [
        {"name": "ensemble", "kind": "ensemble", "models": ["a", "b", "c"]},
        {"name": "a", "kind": "single", "models": ["a"]},
        {"name": "without-a", "kind": "leave-one-out", "models": ["b", "c"]},
    ]
    judges = [{"name": "a"}, {"name": "dlib"}]
    rows = [{"judge": j, "attack": at, "countermeasure": "none", "rank1": r, "rank_k": 1.0}
            for (j, at), r in {("a", "clean"): 1.0, ("dlib", "clean"): 0.9,
                               ("a", "ensemble"): 0.0, ("dlib", "ensemble"): 0.1,
                               ("a", "a"): 0.0, ("dlib", "a"): 0.8,
                               ("a", "without-a"): 0.5}.items()]
    results = {"attacks": attacks, "judges": judges, "results": rows}
    names, cols, values = transfer_matrix(results)
    assert names == ["clean", "a", "without-a", "ensemble"] and cols == ["a", "dlib"]
    assert values[:3] == [[1.0, 0.9], [0.0, 0.8], [0.5, values[2][1]]]
    assert math.isnan(values[2][1]) and values[3] == [0.0, 0.1]
    assert [_short_label(results, n) for n in names] == [
        "clean", "a only", "without a", "ensemble"]


# --- honest figures: no face apart, intervals, fixed detector, default users, cache keys -----

def test_wilson_interval_known_values():
    from lowkey.evaluation.metrics import wilson_interval

    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=5e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=5e-4)
    assert wilson_interval(1, 4) == pytest.approx((0.0456, 0.6994), abs=5e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def _hand_made_row():
    """One judge's figures on a hand-made 1-D table of four user trials, one of each outcome."""
    from lowkey.evaluation.runner import _scores

    # gallery: A at 0.0 (face) and A without a face, B without a face (its only photo),
    # C at 5.0, a distractor at 1.0, D at 9.0
    gallery = np.array([[0.0], [0.0], [0.0], [5.0], [1.0], [9.0]])
    found = np.array([True, False, False, True, True, True])
    labels = np.array([0, 0, 1, 2, -1, 3])
    user_gallery = labels >= 0
    probes = np.array([[0.1], [3.0], [1.2], [9.0]])
    trials = (probes, np.array([True, True, True, False]), np.array([0, 1, 2, 3]))
    # A: recognised; B: no face in its gallery photos; C: found, but the distractor (d 0.2) and
    # A (d 1.2) are nearer than C (d 3.8): rank 3; D: no face in the probe
    thresholds = {"0.1": -1.0, "0.01": math.nan}  # accept distance <= 1; no threshold
    return _scores(trials, gallery, found, labels, user_gallery, 3, thresholds, "exact")


def test_no_face_is_counted_apart_from_not_recognised():
    row = _hand_made_row()
    assert row["trials"] == 4 and row["rank1"] == pytest.approx(0.25)
    assert row["rank1_outcomes"] == {"recognised": 1, "not_recognised": 1, "no_face": 1,
                                     "probe_no_face": 1}
    assert row["rank_k_outcomes"] == {"recognised": 2, "not_recognised": 0, "no_face": 1,
                                      "probe_no_face": 1}
    assert row["rank1_ci"] == pytest.approx([0.0456, 0.6994], abs=5e-4)
    # genuine pairs: A x {0.0 (accepted), no face}, B x no face, C x 5.0 (rejected), D x 9.0
    # (no face in the probe)
    assert row["genuine_pairs"] == 5 and row["tar"]["0.1"] == pytest.approx(0.2)
    assert row["tar_outcomes"]["0.1"] == {"recognised": 1, "not_recognised": 1, "no_face": 2,
                                          "probe_no_face": 1}
    assert row["tar_ci"]["0.1"] == pytest.approx([0.0362, 0.6245], abs=5e-4)
    assert row["tar_outcomes"]["0.01"] == {"recognised": None, "not_recognised": None,
                                           "no_face": 2, "probe_no_face": 1}
    assert math.isnan(row["tar"]["0.01"]) and all(math.isnan(v) for v in row["tar_ci"]["0.01"])
    assert (row["user_gallery_without_face"], row["gallery_size"]) == (2, 4)


def test_report_cells_show_interval_and_no_face():
    from lowkey.evaluation.report import ci_text, rate_cell

    row = _hand_made_row()
    assert rate_cell(row, "rank1") == "25.0% [5-70%] (no face: 1 of 4; none in the probe: 1)"
    assert rate_cell(row, "tar", "0.1") == "20.0% [4-62%] (no face: 2 of 5; none in the probe: 1)"
    assert rate_cell(row, "tar", "0.01").startswith("n/a [n/a]")
    assert ci_text([0.0, 0.2775]) == "[0-28%]" and ci_text([None, None]) == "[n/a]"


def test_default_users_are_a_fifth_of_the_eligible_identities(synthetic_dataset):
    from lowkey.cli import build_parser
    from lowkey.evaluation.dataset import default_user_count

    assert [default_user_count(n) for n in (1, 2, 4, 5, 8, 10, 530)] == [1, 1, 1, 1, 2, 2, 106]
    dataset, _ = synthetic_dataset  # 4 identities with a gallery photo
    assert len(split_dataset(dataset, 0).users) == 1
    assert split_dataset(dataset, 0).users == split_dataset(dataset, 0).users  # seeded
    assert len(split_dataset(dataset, 0, users="all").users) == 4
    assert len(split_dataset(dataset, 0, users=2).users) == 2
    with pytest.raises(ValueError):
        split_dataset(dataset, 0, users="most")  # type: ignore[arg-type]
    parse = build_parser().parse_args
    assert parse(["eval", "ds"]).users is None and parse(["eval", "ds"]).fixed_detector
    assert parse(["eval", "ds", "--users", "all"]).users == "all"
    assert parse(["eval", "ds", "--users", "7"]).users == 7
    assert not parse(["eval", "ds", "--no-fixed-detector"]).fixed_detector
    with pytest.raises(SystemExit):
        parse(["eval", "ds", "--users", "0"])


def test_attack_tag_includes_the_penalty(monkeypatch):
    from dataclasses import replace

    from lowkey.evaluation.protection import Attack
    subtle = Attack("ensemble", "subtle", ("sface",), 50, 0)
    assert subtle.penalty == PRESETS["subtle"].penalty == "1-ssim"
    assert "1-ssim" in subtle.tag
    assert "lpips-alex" in Attack("ensemble", "paper", ("sface",), 50, 0).tag
    before = subtle.tag
    monkeypatch.setitem(PRESETS, "subtle", replace(PRESETS["subtle"], penalty="lpips-alex"))
    assert subtle.tag != before and "lpips-alex" in subtle.tag  # other photos, other folder
    # any other change to how the preset attacks: another folder too (no stale photos)
    with_lpips = subtle.tag
    monkeypatch.setitem(PRESETS, "subtle", replace(PRESETS["subtle"], step_size=0.004))
    assert subtle.tag.rsplit("-", 1)[0] == with_lpips.rsplit("-", 1)[0]
    assert subtle.tag != with_lpips


def test_fixed_variant_names_and_cache_keys():
    from lowkey.evaluation.judges import (
        DlibLocation,
        base_judge,
        fixed_variant,
        judge_info,
        scale_face,
    )
    from lowkey.faces import Face

    own, fixed = judge_info("sface"), judge_info("sface@fixed")
    assert (fixed.name, fixed.base, fixed.fixed, own.fixed) == ("sface@fixed", "sface", True,
                                                                 False)
    assert fixed.cache_tag != own.cache_tag and fixed.embedding_dim == own.embedding_dim
    assert fixed_variant("dlib") == "dlib@fixed" and base_judge("dlib@fixed") == "dlib"
    face = Face((10.0, 20.0, 30.0, 60.0), ((12.0, 30.0),) * 5, 0.99)
    half = scale_face(face, 0.5, 0.25)
    assert half.box == (5.0, 5.0, 15.0, 15.0) and half.landmarks[0] == (6.0, 7.5)
    loc = DlibLocation((10, 20, 30, 60), ((12, 30),) * 5).scaled(0.5, 0.25)
    assert loc.box == (5, 5, 15, 15) and loc.points[0] == (6, 8)


def _write_colour(path: Path, colour, size: int = 32, seed: int = 0) -> Path:
    noise = np.random.default_rng(seed).uniform(-0.02, 0.02, (size, size, 3))
    pixels = np.clip(np.asarray(colour)[None, None] + noise, 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(path)
    return path


class _FakePanel:
    """Judges that find a "face" in bright photos only; the embedding is the mean colour's
    direction, so a darkened copy is the same "person" when looked at where the face was."""

    def __init__(self, names, device=None, progress=False):
        self.names = list(names)
        self.located: list[tuple[int, int]] = []
        self.embedded_at: list[tuple[tuple[int, int], tuple[float, float]]] = []

    @staticmethod
    def _emb(pixels):
        v = pixels.mean(dim=(1, 2)).double().numpy()
        return (v / np.linalg.norm(v)).astype(np.float32)

    @staticmethod
    def _found(pixels):
        return float(pixels.mean()) > 0.25

    def embed(self, pixels, which=None):
        return {n: self._emb(pixels) if self._found(pixels) else None
                for n in (which or self.names)}

    def locate(self, pixels, which=None):
        self.located.append(tuple(pixels.shape[-2:]))
        return {n: "face" if self._found(pixels) else None for n in (which or self.names)}

    def embed_at(self, pixels, locations, scale=(1.0, 1.0)):
        self.embedded_at.append((tuple(pixels.shape[-2:]), scale))
        return {n: None if loc is None else self._emb(pixels) for n, loc in locations.items()}


def _fake_info(name):
    from lowkey.evaluation.judges import JudgeInfo

    fixed = name.endswith("@fixed")
    return JudgeInfo(name, "registry", "cosine", 3, "fake-v1" + ("@fixed" if fixed else ""),
                     fixed)


def test_fixed_judge_embeds_at_the_clean_source_face_and_caches_apart(tmp_path):
    from lowkey.evaluation.embed import EmbeddingTable

    source = _write_colour(tmp_path / "a.png", (0.9, 0.3, 0.1))
    protected = _write_colour(tmp_path / "a_lowkey.png", (0.18, 0.06, 0.02))  # no "face" in it
    panels = []

    def make_panel():
        panels.append(_FakePanel(["fake"]))
        return panels[-1]

    infos = [_fake_info("fake"), _fake_info("fake@fixed")]
    table = EmbeddingTable(infos, tmp_path / "cache", make_panel, sources={protected: source})
    table.ensure({source: {"none", "half"}, protected: {"none", "half"}})
    assert table.get("fake", protected, "none") is None  # re-detecting: no face
    at_source = table.get("fake@fixed", protected, "none")  # where the clean photo's face is
    assert at_source is not None
    assert np.allclose(at_source, table.get("fake", source, "none"), atol=0.02)
    # the clean photo without counter-measure is exactly what the judge itself saw: reused
    assert table.get("fake@fixed", source, "none") is table.get("fake", source, "none")
    # located once, on the clean source at full size; half-size photos at half-size faces
    panel = panels[0]
    assert panel.located == [(32, 32)]
    assert sorted(panel.embedded_at) == [((16, 16), (0.5, 0.5)), ((16, 16), (0.5, 0.5)),
                                         ((32, 32), (1.0, 1.0))]
    assert table.get("fake@fixed", protected, "half") is not None
    folders = {p.name for p in (tmp_path / "cache" / "embeddings").iterdir()}
    assert folders == {"fake-v1", "fake-v1@fixed"}
    # a second table finds everything on disk and loads no judge
    again = EmbeddingTable(infos, tmp_path / "cache", lambda: pytest.fail("loaded a judge"),
                           sources={protected: source})
    again.ensure({source: {"none", "half"}, protected: {"none", "half"}})
    assert again.computed == 0
    assert np.array_equal(again.get("fake@fixed", protected, "none"), at_source)
    with pytest.raises(ValueError, match="base judge"):
        EmbeddingTable(infos[1:], tmp_path / "cache", make_panel)


# ten identities of clearly different colours
COLOURS = [(0.9, 0, 0), (0, 0.9, 0), (0, 0, 0.9), (0.9, 0.9, 0), (0.9, 0, 0.9), (0, 0.9, 0.9),
           (0.9, 0.9, 0.9), (0.9, 0.45, 0), (0, 0.9, 0.45), (0.45, 0, 0.9)]


def test_eval_pipeline_with_fake_judges_reports_no_face_apart(tmp_path, monkeypatch):
    """run_evaluation and the report end to end, with judges and protection faked: the
    protection darkens the photo so the re-detecting judge finds no face, while its @fixed
    variant still recognises every user."""
    from lowkey.evaluation import runner
    from lowkey.evaluation.protection import ProtectedPhoto
    from lowkey.evaluation.report import write_outputs

    for i, colour in enumerate(COLOURS):
        for j in range(3):
            _write_colour(tmp_path / "ds" / f"id{i}" / f"p{j}.png", colour, seed=10 * i + j)
    made: list[Path] = []

    def fake_protect(items, attack, root, device=None, progress=False):
        photos = []
        for source, identity in items:
            output = Path(root) / attack.tag / identity / f"{source.stem}_lowkey.png"
            output.parent.mkdir(parents=True, exist_ok=True)
            dark = np.asarray(Image.open(source), np.float32) * 0.2
            Image.fromarray(dark.round().astype(np.uint8)).save(output)
            made.append(output)
            photos.append(ProtectedPhoto(source, identity, output, "protected", {
                "ssim": 0.5, "face_ssim": 0.4, "face_psnr": 12.0, "face_flip": 0.5,
                "face_jod": 4.0, "penalty": attack.penalty}))
        return photos, len(photos)

    monkeypatch.setattr(runner, "protect_gallery", fake_protect)
    monkeypatch.setattr(runner, "JudgePanel", _FakePanel)
    monkeypatch.setattr(runner, "judge_info", _fake_info)
    config = runner.EvalConfig(tmp_path / "ds", tmp_path / "out", preset="subtle",
                               judges=["fake"], countermeasures=["half"])
    results = runner.run_evaluation(config)
    assert len(results["dataset"]["users"]) == 2  # a fifth of ten identities
    assert all(p.parent.parent.name == attacks_for(config)[0].tag for p in made)
    assert attacks_for(config)[0].tag.startswith("subtle-1-ssim-s10-seed0-")
    assert results["black_box_judges"] == ["fake", "fake@fixed"]
    rows = {(r["judge"], r["attack"], r["countermeasure"]): r for r in results["results"]}
    assert len(rows) == 2 * 2 * 2
    for judge in ("fake", "fake@fixed"):
        for cm in ("none", "half"):
            clean = rows[judge, "clean", cm]
            assert clean["rank1"] == 1.0 and clean["rank1_outcomes"]["recognised"] == 2
    for cm in ("none", "half"):
        lost, kept = rows["fake", "ensemble", cm], rows["fake@fixed", "ensemble", cm]
        assert lost["rank1"] == 0.0 and lost["rank1_outcomes"] == {
            "recognised": 0, "not_recognised": 0, "no_face": 2, "probe_no_face": 0}
        assert lost["rank1_ci"] == pytest.approx([0.0, 0.6576], abs=5e-4)
        assert lost["user_gallery_without_face"] == 4 and lost["access"] == "black-box"
        assert kept["rank1"] == 1.0 and kept["rank1_outcomes"]["recognised"] == 2
        assert kept["user_gallery_without_face"] == 0 and kept["fixed_detector"]
    paths = write_outputs(results, tmp_path / "out")
    report = paths["report"].read_text()
    headline = report.split("## Every judge")[0]
    assert "| fake | 100.0% [34-100%] (no face: 0 of 2) | 0.0% [0-66%] (no face: 2 of 2) |" \
        in headline
    assert "| fake@fixed | 100.0% [34-100%] (no face: 0 of 2) | 100.0% [34-100%]" in headline
    assert "different one from a face found and not recognised" in headline
    assert "a fifth" in report and "perceptual penalty 1-ssim" in report
    quality_head = next(line for line in report.splitlines() if "face SSIM (min)" in line)
    assert quality_head.index("face JOD") < quality_head.index("photo SSIM")
    assert "| 0.4000 (0.4000) | 12.0 | 0.5000 (0.5000) | 4.00 (4.00) | 0.5000 |" in report
    header = paths["csv"].read_text().splitlines()[0].split(",")
    assert {"rank1_ci_low", "rank1_no_face", "tar@far=0.01_not_recognised",
            "fixed_detector"} <= set(header)
    saved = json.loads(paths["json"].read_text())
    assert saved["results"][0]["rank1_ci"] == pytest.approx(results["results"][0]["rank1_ci"])


@pytest.mark.weights
def test_fixed_detector_finds_the_face_the_protected_photo_hides(astronaut):
    """On the astronaut, with the face painted over (so no detector finds it), the judges find
    nothing while their fixed variants, looking where the clean photo's face is, still embed;
    on the clean photo the two agree, and under half size the face is scaled to fit."""
    from lowkey.dlib_judge import dlib_available
    from lowkey.evaluation.judges import JudgePanel

    names = ["sface", "dlib"] if dlib_available() else ["sface"]
    panel = JudgePanel(names, "cpu")
    clean = panel.locate(astronaut)
    assert all(clean[n] is not None for n in names)

    def paint_over(pixels, box):
        x1, y1, x2, y2 = (int(v) for v in box)
        pad = (x2 - x1) // 2
        out = pixels.clone()
        out[:, max(0, y1 - pad):y2 + pad, max(0, x1 - pad):x2 + pad] = 0.5
        return out

    painted = paint_over(astronaut, clean["sface"].box)
    if "dlib" in names:  # dlib also sees a false face lower down (on the hand): hide it too
        for face in panel._dlib.faces(painted):
            painted = paint_over(painted, face.box)
    assert all(v is None for v in panel.embed(painted).values())  # re-detecting: no face
    fixed = panel.embed_at(painted, clean)
    assert all(v is not None and np.isfinite(v).all() for v in fixed.values())
    # on the clean photo the fixed variant is the judge itself
    same, own = panel.embed_at(astronaut, clean), panel.embed(astronaut)
    assert float(same["sface"] @ own["sface"]) > 0.999
    if "dlib" in names:
        assert np.linalg.norm(same["dlib"] - own["dlib"]) < 1e-4
    # half size: the clean face scaled by the size ratio matches what the judge finds there
    small = downscale(astronaut)
    own_small = panel.embed(small)
    scaled = panel.embed_at(small, clean, (0.5, 0.5))
    unscaled = panel.embed_at(small, clean, (1.0, 1.0))
    assert float(scaled["sface"] @ own_small["sface"]) > 0.9
    assert float(scaled["sface"] @ own_small["sface"]) > float(
        unscaled["sface"] @ own_small["sface"]) + 0.2
    if "dlib" in names:
        assert np.linalg.norm(scaled["dlib"] - own_small["dlib"]) < 0.3


def test_protection_verdicts_hold_every_black_box_row_to_the_bar():
    from lowkey.evaluation.report import markdown  # noqa: F401 - the section is rendered below
    from lowkey.evaluation.runner import PROTECTION_BAR, protection_verdicts

    assert PROTECTION_BAR == {"rank1": 0.05, "rank10": 0.10, "tar@0.01": 0.02}

    def row(access, rank1, rank10, tar, judge="dlib"):
        return {"judge": judge, "attack": "ensemble", "countermeasure": "none",
                "access": access, "rank1": rank1, "rank10": rank10, "tar": {"0.01": tar}}

    verdicts = protection_verdicts([
        row(None, 1.0, 1.0, 1.0),            # clean: not a protection row
        row("white-box", 0.0, 0.0, 0.0),     # an attacked judge proves nothing
        row("black-box", 0.05, 0.10, 0.02),  # exactly at the bar
        row("black-box", 0.0, 0.11, 0.0),    # rank-10 over it
        row("black-box", 0.0, 0.0, 0.03),    # TAR over it
        row("black-box", 0.0, None, 0.0),    # gallery under 10: unknown
    ])
    assert [v["protects"] for v in verdicts] == [True, False, False, None]
    assert verdicts[0] == {"judge": "dlib", "attack": "ensemble", "countermeasure": "none",
                           "rank1": 0.05, "rank10": 0.10, "tar@0.01": 0.02, "protects": True}
