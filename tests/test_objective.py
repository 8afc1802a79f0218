"""Objective (1) term by term on a hand-checkable case, and the attack loop's contracts."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from lowkey.align import alignment_matrix, box_crop_matrix
from lowkey.attack import (
    JPEG_QUALITIES,
    AttackCancelled,
    AttackSettings,
    LowKeyAttack,
    PhotoTask,
    _pooled_region,
)
from lowkey.faces import Face
from lowkey.models.recognizer import FaceRecognizer
from lowkey.models.registry import InputContract, get_record
from lowkey.objective import Layout, LowKeyObjective, direction_distance, normalised_distance
from lowkey.perceptual import SSIMPenalty
from lowkey.windows import FaceInWindow, Window, face_region, face_windows, place_faces

SIZE = 8
BOX = (16.0, 16.0, 24.0, 24.0)  # an 8x8 box: the crop copies it pixel for pixel
CONTRACT = InputContract(size=SIZE, alignment="box", normalisation="half", template=None)


class MeanPlusBias(nn.Module):
    """f(z) = per-channel mean of z + (1, 2, 3): linear, so blurring does not change it."""

    def forward(self, z):
        return z.mean(dim=(2, 3)) + torch.tensor([1.0, 2.0, 3.0])


class MeanSquarePlusOne(nn.Module):
    """f(z) = per-channel mean of z^2 + 1: sees the checkerboard's contrast, which G removes."""

    def forward(self, z):
        return (z**2).mean(dim=(2, 3)) + 1.0


def toy_model(name, net):
    record = replace(get_record("sface"), name=name, contract=CONTRACT, embedding_dim=3)
    return FaceRecognizer(record, net)


def checker_photo(shift, contrast):
    yy, xx = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    checker = ((-1.0) ** (xx + yy)).float()
    original = torch.full((3, 40, 40), 0.5)
    perturbed = (0.5 + shift + contrast * checker).expand(3, 40, 40).clone()
    return original, perturbed


def test_normalised_distance_divides_by_the_original_norm():
    a = torch.tensor([[3.0, 4.0]])
    b = torch.tensor([[3.0, 1.0]])
    assert normalised_distance(a, b).item() == pytest.approx(3.0 / 5.0)


def test_direction_distance_sees_only_the_direction():
    a = torch.tensor([[3.0, 4.0], [3.0, 4.0], [3.0, 4.0]])
    b = torch.tensor([[6.0, 8.0], [-3.0, -4.0], [-4.0, 3.0]])  # longer, opposite, orthogonal
    assert direction_distance(a, b).tolist() == pytest.approx([0.0, 2.0, math.sqrt(2)], abs=1e-6)
    # the paper's term rewards the longer embedding that no cosine comparison sees
    assert normalised_distance(a, b)[0].item() == pytest.approx(1.0)


def test_direction_feature_term_gives_nothing_for_a_longer_embedding():
    """MeanSquarePlusOne's embedding is (1 + q)(1, 1, 1): a change moves its length, never its
    direction, so the direction term stays 0 where the paper's does not."""
    original, perturbed = checker_photo(0.05, 0.1)
    matrix = box_crop_matrix(BOX, 0, SIZE, (40, 40))
    faces = [FaceInWindow(0, {"b": matrix})]
    feature = {}
    for distance in ("normalised", "direction"):
        objective = LowKeyObjective([toy_model("b", MeanSquarePlusOne())], SSIMPenalty(),
                                    distance=distance)
        with torch.no_grad():
            emb = objective.embeddings([original], faces)
            _, terms = objective(emb, [original], [perturbed], faces, Layout.single(1, 1600))
        feature[distance] = terms["feature/b"].item()
    assert feature["normalised"] > 0.01
    assert feature["direction"] == pytest.approx(0.0, abs=1e-6)


def test_unknown_feature_distance_is_refused():
    with pytest.raises(ValueError, match="feature distance"):
        LowKeyObjective([toy_model("a", MeanPlusBias())], SSIMPenalty(), distance="cosine?")
    with pytest.raises(ValueError, match="feature_distance"):
        AttackSettings(feature_distance="cosine?")


def test_a_single_view_is_one_half_of_both():
    """``view="plain"`` / ``"smoothed"`` give the two terms that ``"both"`` averages."""
    models = [toy_model("b", MeanSquarePlusOne())]
    objective = LowKeyObjective(models, SSIMPenalty())
    original, perturbed = checker_photo(0.05, 0.1)
    matrix = box_crop_matrix(BOX, 0, SIZE, (40, 40))
    faces = [FaceInWindow(0, {"b": matrix})]
    with torch.no_grad():
        emb = objective.embeddings([original], faces)
        terms = {view: objective.feature_terms(emb, [perturbed], faces, view=view)["b"].item()
                 for view in ("both", "plain", "smoothed")}
    assert terms["plain"] > 2 * terms["smoothed"] > 0  # G removes most of the checkerboard
    assert terms["both"] == pytest.approx((terms["plain"] + terms["smoothed"]) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="view"):
        objective.feature_terms(emb, [perturbed], faces, view="sharp")


class CountingModel(nn.Module):
    """MeanPlusBias that counts the faces it is given."""

    def __init__(self):
        super().__init__()
        self.faces = 0

    def forward(self, z):
        self.faces += z.shape[0]
        return z.mean(dim=(2, 3)) + torch.tensor([1.0, 2.0, 3.0])


def test_alternate_views_halve_the_model_calls_and_still_attack():
    seen = {}
    for views in ("both", "alternate", "alternate-jpeg"):
        net = CountingModel()
        objective = LowKeyObjective([toy_model("b", net)], SSIMPenalty(), distance="direction")
        settings = AttackSettings(steps=6, step_size=0.01, seed=3, views=views,
                                  feature_distance="direction")
        photo = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
        net.faces = 0
        result = LowKeyAttack(objective, settings).run(photo, [_face()])
        seen[views] = net.faces
        # the direction moved away (both views see the mean, which G keeps)
        assert result.history[-1]["feature"] > result.history[0]["feature"] > 0
    # 1 original + 6 steps x 2 views, against 1 + 6 x 1
    assert seen == {"both": 13, "alternate": 7, "alternate-jpeg": 7}
    with pytest.raises(ValueError, match="views"):
        AttackSettings(views="sometimes")


def test_the_jpeg_view_takes_turns_and_every_model_meets_every_quality():
    """views="alternate-jpeg": x', G(x'), J(x') in turn; over the compressed steps the qualities
    go round JPEG_QUALITIES, and with five models one a step every model meets every quality."""
    models = [toy_model(name, MeanPlusBias()) for name in "abcde"]
    objective = LowKeyObjective(models, SSIMPenalty(), distance="direction")
    attack = LowKeyAttack(objective, AttackSettings(views="alternate-jpeg", models_per_step=1))
    views = [attack._view(step) for step in range(60)]
    assert [v for v, _ in views[:6]] == ["plain", "smoothed", "compressed"] * 2
    met = {(attack._members(step)[0], quality) for step, (view, quality) in enumerate(views)
           if view == "compressed"}
    assert met == {(m, q) for m in "abcde" for q in JPEG_QUALITIES}
    assert attack._view(0) == ("plain", JPEG_QUALITIES[0])


def test_the_compressed_view_sees_what_jpeg_leaves():
    """J(x') is what JPEG leaves of the change: a fine checkerboard survives quality 95 and
    much less of it quality 30 (its highest frequencies are quantised away)."""
    objective = LowKeyObjective([toy_model("b", MeanSquarePlusOne())], SSIMPenalty())
    original, perturbed = checker_photo(0.05, 0.1)
    faces = [FaceInWindow(0, {"b": box_crop_matrix(BOX, 0, SIZE, (40, 40))})]
    with torch.no_grad():
        emb = objective.embeddings([original], faces)
        plain = objective.feature_terms(emb, [perturbed], faces, view="plain")["b"].item()
        high, low = (objective.feature_terms(emb, [perturbed], faces, view="compressed",
                                             quality=q)["b"].item() for q in (95, 30))
    assert high == pytest.approx(plain, rel=0.1)
    assert 0 < low < 0.8 * high  # the shift (what JPEG keeps) still counts


def test_the_filtered_views_filter_only_what_the_asked_models_read():
    """G(x') and J(x') are computed only where the step's models read the window (their crops'
    regions, with the filter's reach as margin; for JPEG a block, on the window's 16-px block
    grid): what the models read is what the filter of the whole window gives them, the rest of
    the window is untouched, and a step asking one model filters less than one asking both."""
    from lowkey.filters import jpeg_compressed
    from lowkey.objective import JPEG_BLOCK, gaussian_smoothing, read_box

    models = [toy_model("a", MeanSquarePlusOne()), toy_model("b", MeanSquarePlusOne())]
    objective = LowKeyObjective(models, SSIMPenalty())
    window = torch.rand(3, 320, 300, generator=torch.Generator().manual_seed(0))
    faces = [FaceInWindow(0, {"a": box_crop_matrix((130, 140, 194, 204), 0, SIZE, (300, 320)),
                              "b": box_crop_matrix((90, 100, 220, 230), 0, SIZE, (300, 320))})]
    plans = objective.plan([window], faces)
    filters = {  # name: (filter of a (1, 3, h, w) part, margin, grid)
        "jpeg": (lambda part, i: jpeg_compressed(part, 60.0), JPEG_BLOCK, JPEG_BLOCK),
        "blur": (lambda part, i: gaussian_smoothing(part, 3.0, 7), 3, 1),
    }
    for name, (view, margin, grid) in filters.items():
        whole = objective.embeddings([view(window[None], 0)[0]], faces, plans)
        area = {}
        for members in (("a",), ("b",), ("a", "b")):
            reads = [plans[m][0] for m in members]
            rows, cols = read_box(reads, (320, 300), margin, grid)
            area[members] = (rows.stop - rows.start) * (cols.stop - cols.start)
            for p in reads:  # every region read, with the margin, inside the box
                assert rows.start <= p.rows.start - margin and p.rows.stop + margin <= rows.stop
                assert cols.start <= p.cols.start - margin and p.cols.stop + margin <= cols.stop
            assert all(v % grid == 0 for v in (rows.start, rows.stop, cols.start, cols.stop))
            seen_window = objective._where_read([window], faces, plans, members, view, margin,
                                                grid)[0]
            seen = objective.embeddings([seen_window], faces, plans, members=members)
            for m in members:
                # the same values to float rounding (without the margin: 3e-5 to 5e-5 off)
                torch.testing.assert_close(seen[m], whole[m], rtol=0, atol=1e-6, msg=name)
            assert torch.equal(seen_window[:, :rows.start], window[:, :rows.start])
        assert area[("a",)] < area[("b",)] <= area[("a", "b")] < 320 * 300, name
    # and the objective's views are these: the feature terms of J(x') and G(x') for one model
    # are those of the whole window's JPEG and blur
    original = objective.embeddings([torch.rand(3, 320, 300)], faces, plans)
    whole = {v: objective.embeddings([f(window[None], 0)[0]], faces, plans)
             for v, f in (("compressed", lambda p, i: jpeg_compressed(p, 75.0)),
                          ("smoothed", filters["blur"][0]))}
    for v in whole:
        terms = objective.feature_terms(original, [window], faces, plans, view=v,
                                        members=("a",), quality=75.0)
        expected = normalised_distance(original["a"], whole[v]["a"])
        torch.testing.assert_close(terms["a"], expected, rtol=0, atol=1e-6, msg=v)


def test_objective_matches_equation_1_term_by_term():
    models = [toy_model("a", MeanPlusBias()), toy_model("b", MeanSquarePlusOne())]
    penalty = SSIMPenalty()
    objective = LowKeyObjective(models, penalty, alpha=0.05, blur_sigma=3.0, blur_window=7)
    s, d = 0.05, 0.1
    original, perturbed = checker_photo(s, d)
    matrix = box_crop_matrix(BOX, 0, SIZE, (40, 40))
    faces = [FaceInWindow(0, {"a": matrix, "b": matrix})]
    with torch.no_grad():
        emb = objective.embeddings([original], faces)
        value, tensors = objective(emb, [original], [perturbed], faces, Layout.single(1, 40 * 40))
    terms = {k: v.item() for k, v in tensors.items()}

    # Normalised crop values z = (x - 0.5) / 0.5 = 2s + 2d c, c = +-1 checkerboard.
    a_plain = math.sqrt(3) * 2 * s / math.sqrt(14)  # mean moves by 2s; ||(1,2,3)|| = sqrt(14)
    a_smooth = a_plain  # G keeps the mean
    g = [math.exp(-(k**2) / 18) for k in range(-3, 4)]  # sigma 3, window 7
    r = (sum(w * (-1) ** k for k, w in zip(range(-3, 4), g, strict=True)) / sum(g)) ** 2
    b_plain = 4 * s**2 + 4 * d**2  # ||(1+4s²+4d²) - 1|| * sqrt(3) / sqrt(3)
    b_smooth = 4 * s**2 + 4 * d**2 * r**2  # G shrinks the 2D checkerboard by r
    feature = (a_plain + a_smooth + b_plain + b_smooth) / (2 * 2)
    perceptual = penalty(original[None], perturbed[None]).item()

    assert terms["feature/a"] == pytest.approx((a_plain + a_smooth) / 2, rel=1e-5)
    assert terms["feature/b"] == pytest.approx((b_plain + b_smooth) / 2, rel=1e-4)
    assert terms["feature"] == pytest.approx(feature, rel=1e-4)
    assert terms["perceptual"] == pytest.approx(perceptual, rel=1e-5)
    assert value.item() == pytest.approx(feature - 0.05 * perceptual, rel=1e-4)
    # The smoothed term really saw a blurred image: without G it would equal the plain one.
    assert b_smooth < 0.5 * b_plain


def test_perceptual_penalty_is_area_weighted_over_the_photo():
    models = [toy_model("a", MeanPlusBias())]
    penalty = SSIMPenalty()
    objective = LowKeyObjective(models, penalty)
    original, perturbed = checker_photo(0.0, 0.05)
    whole = objective.perceptual([original], [perturbed], Layout.single(1, 40 * 40)).item()
    quarter = objective.perceptual([original], [perturbed], Layout.single(1, 4 * 40 * 40)).item()
    assert quarter == pytest.approx(whole / 4)


def test_perceptual_penalty_of_the_faces_alone_judges_each_face_on_its_own_region():
    """``penalty_region="faces"``: a face judged by itself whatever the photo's size; a photo's
    faces count alike however large each one is, and each face is judged on its face region,
    not diluted over the window around it (nor over a bigger face sharing the window)."""
    models = [toy_model("a", MeanPlusBias())]
    penalty = SSIMPenalty()
    objective = LowKeyObjective(models, penalty, penalty_region="faces")
    original, perturbed = checker_photo(0.0, 0.05)
    face = FaceInWindow(0, {})
    alone = objective.perceptual([original], [perturbed], Layout.single(1, 40 * 40),
                                 [face]).item()
    in_big_photo = objective.perceptual([original], [perturbed],
                                        Layout.single(1, 16 * 40 * 40), [face]).item()
    assert alone > 0 and in_big_photo == pytest.approx(alone)
    # Two windows of one photo, the changed one four times the other's area: the mean of the
    # faces, not of the pixels (that would be 4/5 of the changed face's).
    small = original[:, :20, :20].clone()
    two = objective.perceptual([original, small], [perturbed, small],
                               Layout((0, 0), (10 * 40 * 40,), (1, 1)),
                               [face, FaceInWindow(1, {})]).item()
    assert two == pytest.approx(alone / 2, rel=1e-5)
    # Two faces in one window, the change on the small face's region alone: the small face is
    # judged on its region, not diluted over the bigger face's.
    changed = original.clone()
    changed[:, :20, :20] = perturbed[:, :20, :20]
    small_face = FaceInWindow(0, {}, Window(0, 0, 20, 20))
    shared = objective.perceptual([original], [changed], Layout.single(1, 40 * 40),
                                  [small_face, face]).item()
    own = penalty(original[None, :, :20, :20], changed[None, :, :20, :20]).item()
    whole = penalty(original[None], changed[None]).item()
    assert own > 2 * whole
    assert shared == pytest.approx((own + whole) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="needs the faces"):
        objective.perceptual([original], [perturbed], Layout.single(1, 40 * 40))
    with pytest.raises(ValueError, match="penalty region"):
        LowKeyObjective(models, SSIMPenalty(), penalty_region="face")
    with pytest.raises(ValueError, match="penalty_region"):
        AttackSettings(penalty_region="everything")


def _face():
    landmarks = ((18.0, 18.0), (22.0, 18.0), (20.0, 20.0), (18.0, 22.0), (22.0, 22.0))
    return Face(BOX, landmarks, 0.99)


def test_attack_increases_the_objective_and_respects_its_bound():
    models = [toy_model("b", MeanSquarePlusOne())]
    objective = LowKeyObjective(models, SSIMPenalty())
    settings = AttackSettings(steps=6, step_size=0.01, init_noise=0.005, seed=3)
    g = torch.Generator().manual_seed(0)
    photo = torch.rand(3, 40, 48, generator=g) * 0.5 + 0.25
    result = LowKeyAttack(objective, settings).run(photo, [_face()])
    values = [h["feature"] for h in result.history]
    assert values[-1] > values[0] > 0
    change = (result.pixels - photo).abs()
    assert change.max() <= settings.linf_bound + 1e-6
    # Outside the window nothing moved.
    (w,) = result.windows
    mask = torch.ones_like(photo, dtype=torch.bool)
    mask[:, w.y0:w.y1, w.x0:w.x1] = False
    assert change[mask].max() == 0


@pytest.mark.parametrize("rule", ["sign", "l2"])
def test_one_step_of_each_rule(rule):
    """A sign step moves every pixel the gradient reaches by exactly ``step_size``; an l2 step
    has the same root mean square over the window but follows the gradient's magnitude."""
    models = [toy_model("b", MeanSquarePlusOne())]
    objective = LowKeyObjective(models, SSIMPenalty(), alpha=0.0)
    settings = AttackSettings(steps=1, step_size=0.01, init_noise=0.0, step_rule=rule)
    photo = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    result = LowKeyAttack(objective, settings).run(photo, [_face()])
    (w,) = result.windows
    change = (result.pixels - photo)[:, w.y0:w.y1, w.x0:w.x1]
    moved = change.abs()[change.abs() > 0]
    if rule == "sign":
        assert torch.allclose(moved, torch.full_like(moved, 0.01), atol=1e-6)
        assert settings.linf_bound == pytest.approx(0.01)
    else:
        assert change.square().mean().sqrt().item() == pytest.approx(0.01, rel=1e-4)
        assert moved.max() > 2 * moved.min() and moved.max() > 0.01
        assert settings.linf_bound == 1.0
        assert replace(settings, epsilon=0.02).linf_bound == pytest.approx(0.02)
    assert result.history[0]["feature"] > 0


def test_attack_is_reproducible_with_its_seed():
    models = [toy_model("b", MeanSquarePlusOne())]
    objective = LowKeyObjective(models, SSIMPenalty())
    photo = torch.full((3, 40, 40), 0.5)
    runs = [LowKeyAttack(objective, AttackSettings(steps=2, seed=seed)).run(photo, [_face()])
            for seed in (7, 7, 8)]
    assert torch.equal(runs[0].pixels, runs[1].pixels)
    assert not torch.equal(runs[0].pixels, runs[2].pixels)


def test_grayscale_perturbation_stays_gray_and_values_stay_in_range():
    models = [toy_model("b", MeanSquarePlusOne())]
    objective = LowKeyObjective(models, SSIMPenalty())
    photo = torch.zeros(3, 40, 40)
    photo[:, :, 20:] = 1.0  # saturated pixels must stay in [0, 1]
    result = LowKeyAttack(objective, AttackSettings(steps=3)).run(photo, [_face()],
                                                                   grayscale=True)
    assert torch.equal(result.pixels[0], result.pixels[1])
    assert torch.equal(result.pixels[1], result.pixels[2])
    assert result.pixels.min() >= 0 and result.pixels.max() <= 1


def test_cancel_from_the_step_callback():
    models = [toy_model("b", MeanSquarePlusOne())]
    attack = LowKeyAttack(LowKeyObjective(models, SSIMPenalty()), AttackSettings(steps=10))
    seen = []

    def stop_after_two(step, total, terms):
        seen.append(step)
        return step < 2

    with pytest.raises(AttackCancelled):
        attack.run(torch.full((3, 40, 40), 0.5), [_face()], on_step=stop_after_two)
    assert seen == [1, 2]


def test_windows_cover_each_face_and_merge_when_faces_overlap():
    models = [toy_model("a", MeanPlusBias())]
    near = Face((20.0, 16.0, 28.0, 24.0), _face().landmarks, 0.9)
    far = Face((80.0, 80.0, 88.0, 88.0), _face().landmarks, 0.9)
    matrices = [{m.name: alignment_matrix(m.record.contract, f.landmarks_array(), f.box,
                                          (100, 100)) for m in models} for f in (_face(), near, far)]
    sizes = {m.name: m.input_size for m in models}
    windows, owner = face_windows(matrices, sizes, (100, 100))
    assert len(windows) == 2 and owner[0] == owner[1] != owner[2]
    for face, i in zip([_face(), near, far], owner, strict=True):
        w = windows[i]
        assert w.x0 <= face.box[0] and face.box[2] <= w.x1
        assert w.y0 <= face.box[1] and face.box[3] <= w.y1
    # place_faces: the same windows, and each face's face region (the detector's box widened
    # as the report judges it) in window pixels; the two merged faces' regions differ.
    placed, faces = place_faces(matrices, sizes, (100, 100),
                                [f.box for f in (_face(), near, far)])
    assert placed == windows and [f.window for f in faces] == owner
    for face, placed_face in zip([_face(), near, far], faces, strict=True):
        w, r = windows[placed_face.window], placed_face.region
        x0, y0, x1, y1 = face_region(face.box, (100, 100))
        assert r == Window(x0 - w.x0, y0 - w.y0, x1 - w.x0, y1 - w.y0)
        assert 0 <= r.x0 and r.x1 <= w.x1 - w.x0 and 0 <= r.y0 and r.y1 <= w.y1 - w.y0
    assert faces[0].region != faces[1].region
    assert place_faces(matrices, sizes, (100, 100))[1][0].region is None  # no boxes given
    # a box its models never read (outside its window): judged on the whole window
    assert place_faces(matrices[:1], sizes, (100, 100), [(90.0, 90.0, 99.0, 99.0)]
                       )[1][0].region is None


def test_settings_are_validated():
    with pytest.raises(ValueError):
        AttackSettings(steps=0)
    with pytest.raises(ValueError):
        AttackSettings(blur_window=6)
    with pytest.raises(ValueError, match="step_rule"):
        AttackSettings(step_rule="adam")
    assert AttackSettings().linf_bound == pytest.approx(0.005 + 50 * 0.0025)
    assert np.isclose(AttackSettings(steps=10).linf_bound, 0.03)


def test_a_batch_of_photos_gets_what_each_photo_gets_alone():
    """run_many sums the photos' objectives and draws each photo's noise from its own seeded
    generator, so each photo's result is the one run() gives it alone."""
    models = [toy_model("b", MeanSquarePlusOne()), toy_model("a", MeanPlusBias())]
    objective = LowKeyObjective(models, SSIMPenalty())
    settings = AttackSettings(steps=4, step_size=0.01, seed=5, momentum=0.9, jitter=0.05)
    g = torch.Generator().manual_seed(1)
    first = torch.rand(3, 40, 48, generator=g) * 0.5 + 0.25
    second = torch.rand(3, 60, 44, generator=g) * 0.5 + 0.25
    shifted = Face((20.0, 30.0, 28.0, 38.0), tuple((x + 2, y + 14) for x, y in _face().landmarks),
                   0.9)
    attack = LowKeyAttack(objective, settings)
    alone = [attack.run(first, [_face()]), attack.run(second, [_face(), shifted])]
    batch = attack.run_many([PhotoTask(first, [_face()]), PhotoTask(second, [_face(), shifted])])
    for one, together in zip(alone, batch, strict=True):
        assert torch.allclose(one.pixels, together.pixels, atol=1e-6)
        assert one.windows == together.windows
        for name in one.original_embeddings:
            assert torch.allclose(one.original_embeddings[name],
                                  together.original_embeddings[name], atol=1e-6)
        for a, b in zip(one.history, together.history, strict=True):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
    assert alone[0].history[-1]["feature"] != pytest.approx(alone[1].history[-1]["feature"])


def test_a_large_window_is_attacked_at_a_working_resolution():
    """A window over work_max_side is attacked pooled by an integer factor and the change is
    upsampled: it stays within the bound and the window, raises the objective, and is smooth
    at the photo's resolution."""
    models = [toy_model("b", MeanSquarePlusOne())]
    objective = LowKeyObjective(models, SSIMPenalty())
    g = torch.Generator().manual_seed(2)
    photo = torch.rand(3, 200, 220, generator=g) * 0.5 + 0.25
    big = Face((60.0, 60.0, 140.0, 140.0), ((80.0, 90.0), (120.0, 90.0), (100.0, 105.0),
                                             (85.0, 120.0), (115.0, 120.0)), 0.99)
    settings = AttackSettings(steps=5, step_size=0.01, seed=1)
    full = LowKeyAttack(objective, settings).run(photo, [big])
    pooled = LowKeyAttack(objective, replace(settings, work_max_side=64)).run(photo, [big])
    (w,) = pooled.windows
    assert max(w.x1 - w.x0, w.y1 - w.y0) > 64  # the window itself is the photo's
    change = pooled.pixels - photo
    assert change.abs().max() <= settings.linf_bound + 1e-6
    outside = torch.ones_like(photo, dtype=torch.bool)
    outside[:, w.y0:w.y1, w.x0:w.x1] = False
    assert change[outside].abs().max() == 0
    assert pooled.history[-1]["feature"] > pooled.history[0]["feature"] > 0
    # The face's region (where its look is judged) follows it to the working resolution.
    for attack in (LowKeyAttack(objective, settings),
                   LowKeyAttack(objective, replace(settings, work_max_side=64))):
        batch = attack._place([PhotoTask(photo, [big])])
        (window,), (target,), (scale,) = batch.windows, batch.targets, batch.layout.window_scale
        x0, y0, x1, y1 = face_region(big.box, (220, 200))
        assert target.region == _pooled_region(
            Window(x0 - window.x0, y0 - window.y0, x1 - window.x0, y1 - window.y0), scale,
            batch.originals[0].shape[-2:])
    assert scale > 1

    def roughness(c):  # mean difference between horizontal neighbours
        return (c[:, :, 1:] - c[:, :, :-1]).abs().mean().item()

    assert roughness(change) < 0.75 * roughness(full.pixels - photo)  # measured: 0.52


def test_a_face_region_follows_its_window_to_the_working_resolution():
    """On a window pooled by k, a face's region covers every pooled pixel it touches, within
    the pooled window."""
    assert _pooled_region(Window(3, 4, 61, 70), 1, (70, 70)) == Window(3, 4, 61, 70)
    assert _pooled_region(Window(3, 4, 61, 70), 3, (23, 21)) == Window(1, 1, 21, 23)
    assert _pooled_region(Window(0, 0, 64, 64), 4, (16, 16)) == Window(0, 0, 16, 16)
    assert _pooled_region(None, 3, (10, 10)) is None


def test_models_take_turns_when_a_step_asks_some_of_them():
    """``models_per_step=k``: step i asks models i*k .. i*k + k - 1 (modulo n), each model
    the same number of times over n steps; a model not asked has no term (NaN) at that step."""
    nets = [CountingModel() for _ in range(3)]
    objective = LowKeyObjective([toy_model(name, net) for name, net in zip("abc", nets, strict=True)],
                                SSIMPenalty(), distance="direction")
    settings = AttackSettings(steps=6, step_size=0.01, seed=3, views="alternate",
                              feature_distance="direction", models_per_step=2)
    attack = LowKeyAttack(objective, settings)
    assert [attack._members(i) for i in range(3)] == [("a", "b"), ("c", "a"), ("b", "c")]
    photo = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    result = attack.run(photo, [_face()])
    # 1 original each, then 6 steps x 2 of 3 models: 4 steps each
    assert [net.faces for net in nets] == [5, 5, 5]
    first = result.history[0]
    assert math.isnan(first["feature/c"]) and not math.isnan(first["feature/a"])
    assert first["feature"] == pytest.approx((first["feature/a"] + first["feature/b"]) / 2,
                                             rel=1e-5)
    assert result.history[-1]["feature"] > first["feature"] > 0
    assert LowKeyAttack(objective, replace(settings, models_per_step=3))._members(1) is None
    with pytest.raises(ValueError, match="models_per_step"):
        AttackSettings(models_per_step=-1)
