"""The default models on real faces: identity separation on faces-dev, and input contracts.

The contract tests show that the wrappers feed each network what it was trained on: the same
faces fed with the wrong value range or colour order separate identities measurably worse.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

from lowkey.embedding import aligned_faces
from lowkey.faces import FaceDetector
from lowkey.image_decode import load_photo
from lowkey.models.recognizer import FaceRecognizer
from lowkey.models.registry import default_ensemble
from lowkey.models.store import load_recognizer

pytestmark = pytest.mark.weights
SUBSET = ("person00", "person01", "person02", "person03", "person04", "person05")


@pytest.fixture(scope="session")
def recognizers():
    return {r.name: load_recognizer(r, progress=False) for r in default_ensemble()}


def _crops(faces_dev, people, per_person):
    """Per model contract: (labels, crops (N, 3, S, S)) of the largest face of each photo."""
    detector = FaceDetector()
    labels, photos = [], []
    for person in people:
        for path in sorted((faces_dev / person).iterdir())[:per_person]:
            photo = load_photo(path)
            faces = detector.detect(photo.pixels)
            assert faces, f"no face found in {path}"
            labels.append(person)
            photos.append((photo.pixels, faces[:1]))
    crops = {}
    for record in default_ensemble():
        crops[record.name] = torch.cat([aligned_faces(p, f, record.contract) for p, f in photos])
    return labels, crops


@pytest.fixture(scope="session")
def subset_crops(faces_dev):
    return _crops(faces_dev, SUBSET, 3)


@pytest.fixture(scope="session")
def all_crops(faces_dev):
    people = sorted(p.name for p in faces_dev.iterdir() if p.is_dir())
    return _crops(faces_dev, people, 100)


def separation(labels, embeddings):
    """Mean cosine of same / different identity pairs and best-threshold pair accuracy."""
    e = torch.nn.functional.normalize(embeddings.float(), dim=1).numpy()
    same, diff = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        (same if labels[i] == labels[j] else diff).append(float(e[i] @ e[j]))
    same, diff = np.array(same), np.array(diff)
    scores = np.concatenate([same, diff])
    truth = np.concatenate([np.ones_like(same), np.zeros_like(diff)])
    # Balanced accuracy at the best threshold (pairs are mostly "different").
    best = max(0.5 * ((scores[truth == 1] >= t).mean() + (scores[truth == 0] < t).mean())
               for t in np.unique(scores))
    return same.mean(), diff.mean(), best


def _embed(model: FaceRecognizer, crops, contract=None, bgr=False):
    if contract is not None:
        model = FaceRecognizer(replace(model.record, contract=contract), model.net)
    with torch.no_grad():
        return model(crops.flip(1) if bgr else crops)


@pytest.mark.parametrize("name", [r.name for r in default_ensemble()])
def test_each_model_separates_identities_on_a_faces_dev_subset(name, recognizers, subset_crops):
    labels, crops = subset_crops
    same, diff, acc = separation(labels, _embed(recognizers[name], crops[name]))
    assert same > 0.55 and diff < 0.3 and same - diff > 0.4
    assert acc > 0.9


@pytest.mark.parametrize("name", [r.name for r in default_ensemble()])
def test_wrong_range_or_colour_order_is_measurably_worse(name, recognizers, subset_crops):
    labels, crops = subset_crops
    model = recognizers[name]
    right = separation(labels, _embed(model, crops[name]))
    # Value range: what the network would see if its contract were ignored (0..1 instead of
    # 0..255, or 0..255 instead of standardised values).
    wrong_norm = {"unit": "scale255", "scale255": "half", "half": "scale255", "fixed_standardise": "scale255",
                  "per_image_standardise": "scale255"}[model.record.contract.normalisation]
    bad_range = separation(labels, _embed(model, crops[name],
                                          replace(model.record.contract,
                                                  normalisation=wrong_norm)))
    bad_colour = separation(labels, _embed(model, crops[name], bgr=True))
    margin = right[0] - right[1]
    assert bad_range[0] - bad_range[1] < margin - 0.1 or bad_range[2] < right[2] - 0.05
    assert bad_colour[0] - bad_colour[1] < margin - 0.005 or bad_colour[2] < right[2]


def test_astronaut_embeddings_are_stable_under_a_flip(recognizers, astronaut_rgb):
    photo = load_photo(_png(astronaut_rgb))
    faces = FaceDetector().detect(photo.pixels)
    flipped = photo.pixels.flip(2)
    faces_flipped = FaceDetector().detect(flipped)
    for model in recognizers.values():
        with torch.no_grad():
            a = model(aligned_faces(photo.pixels, faces, model.record.contract))[0]
            b = model(aligned_faces(flipped, faces_flipped, model.record.contract))[0]
        assert a.norm() > 0.5  # OpenFace's embeddings are unit vectors; the others' longer
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.7, model.name


def _png(rgb):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("name", [r.name for r in default_ensemble()])
def test_faces_dev_separation_matches_assets(name, recognizers, all_crops):
    """ASSETS.md: sface 0.754/0.128 acc 1.000, facenet128 0.819/0.030 0.999,
    facenet512 0.751/0.021 0.998 (all 61 photos, all pairs); /work/data/weights/SOURCE.md (the
    check of bench/get_heldout_models.py): openface 0.809/0.180 0.982 (0.804/0.169 0.964
    through LowKey's alignment), faceplugin 0.718/0.009 0.999 (0.753/0.019 in BGR)."""
    labels, crops = all_crops
    same, diff, acc = separation(labels, _embed(recognizers[name], crops[name]))
    print(f"{name}: same {same:.3f} different {diff:.3f} pair accuracy {acc:.3f}")
    expected = {"sface": (0.70, 0.18), "facenet128": (0.76, 0.08), "facenet512": (0.70, 0.07),
                "openface": (0.75, 0.24), "faceplugin": (0.70, 0.06)}
    low_same, high_diff = expected[name]
    assert same > low_same and diff < high_diff
    assert acc > (0.95 if name == "openface" else 0.97)
