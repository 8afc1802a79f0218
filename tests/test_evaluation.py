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


def test_split_is_seeded_and_complete(synthetic_dataset):
    dataset, sizes = synthetic_dataset
    a, b, c = (split_dataset(dataset, seed) for seed in (0, 0, 1))
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
    attacks = attacks_for(EvalConfig(tmp_path, tmp_path, preset="fast", transfer=True))
    assert [a.tag for a in attacks] == [
        "fast-s50-seed0", "fast-sface-s50-seed0", "fast-facenet128-s50-seed0",
        "fast-facenet512-s50-seed0", "fast-without-sface-s50-seed0",
        "fast-without-facenet128-s50-seed0", "fast-without-facenet512-s50-seed0"]
    assert [a.kind for a in attacks] == ["ensemble"] + ["single"] * 3 + ["leave-one-out"] * 3
    assert [a.models for a in attacks[1:4]] == [("sface",), ("facenet128",), ("facenet512",)]
    assert [a.models for a in attacks[4:]] == [
        ("facenet128", "facenet512"), ("sface", "facenet512"), ("sface", "facenet128")]
    assert attacks[4].label == "without sface (facenet128+facenet512)"
    assert len(attacks_for(EvalConfig(tmp_path, tmp_path, preset="fast"))) == 1
    with pytest.raises(ValueError, match="kind"):
        type(attacks[0])("x", "fast", ("sface",), 50, 0, kind="pair")


def test_protector_refuses_a_bare_model_name():
    from lowkey.protect import Protector

    with pytest.raises(ValueError, match="non-empty list"):
        Protector(preset="fast", models="sface")
    with pytest.raises(ValueError, match="non-empty list"):
        Protector(preset="fast", models=[])


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
    attack = Attack("ensemble", "fast", ("sface",), 50, 0)
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
    argv = ["eval", str(root / "ds"), "--preset", "fast", "--strength", "2", "--judges", judges,
            "--out", str(root / "out"), "--json"]
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
    assert results["black_box_judges"] == [j for j in judges if j == "dlib"]
    cms = {c["name"] for c in results["countermeasures"]}
    assert cms == set(COUNTERMEASURES)
    # every judge x (clean, ensemble) x counter-measure
    assert len(results["results"]) == len(judges) * 2 * len(cms)
    for row in results["results"]:
        values = [row["rank1"], row["rank_k"], *row["tar"].values()]
        assert all(0.0 <= v <= 1.0 for v in values), row
        assert row["rank1"] <= row["rank_k"]
        assert row["trials"] == 3 and row["k"] == 3
        expected = None if row["attack"] == "clean" else (
            "white-box" if row["judge"] == "sface" else "black-box")
        assert row["access"] == expected
        assert 0 <= row["user_gallery_without_face"] <= row["gallery_without_face"] <= 3
    # the protected photos are exactly protect_file's outputs, with their reports beside them
    tag = out / "protected" / "fast-s2-seed0"
    outputs = sorted(tag.glob("*/*_lowkey.jpg"))
    assert len(outputs) == 3
    for output in outputs:
        report = json.loads(output.with_name(output.name + ".json").read_text())
        assert report["status"] == "protected" and report["output"] == str(output)
        assert report["steps"] == 1 and report["original_bytes"] > 0
    quality = results["quality"]["ensemble"]
    assert quality["protected"] == 3 and 0.9 < quality["ssim_mean"] <= 1
    if quality["penalty"] == "1-ssim":  # no AlexNet backbone: LPIPS is said to be missing
        assert quality["lpips_measured"] == 0 and quality["lpips_mean"] is None
    assert quality["seconds_per_photo"] > 0 and quality["devices"]
    report = (out / "report.md").read_text()
    assert "white-box" in report and "Transfer matrix" in report
    if "dlib" in judges:
        assert "| dlib |" in report.split("## Every judge")[0]  # the black-box headline


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
                    protected_bytes=250, seconds=4.0, device="cpu", penalty="lpips-alex"),
              photo("protected", ssim=0.95, psnr=float("inf"), lpips=None, original_bytes=100,
                    protected_bytes=150, seconds=None, device="cpu", penalty="lpips-alex"),
              photo("no-face"), photo("failed")]
    q = _quality(photos)
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
