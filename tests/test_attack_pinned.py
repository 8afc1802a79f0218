"""The attack's result for a fixed seed is pinned: a speed change must not change what it makes.

For two presets (``subtle``: luma-only change, visibility budget, momentum, jitter; ``default``:
the paper's colour sign steps; recorded as ``default`` and ``strong`` before those were
renamed) the attack runs 8 steps on the astronaut (256 px) with seed 0, and its change and
final terms are compared with the ones recorded in ``tests/golden/attack/`` before the hot path
was made faster (commit 679bd6e). ``default`` has changed seven times since, each change
pinned when made: the feature term between unit embeddings on x' and G(x') in turn, with
jittered alignments (``default-direction``, 2026-12-07); then steps along the gradient (l2)
with SSIM of the faces' windows weighted 2 (``default-l2``, 2026-12-07); then SSIM plus
ColorVideoVDP's JOD loss weighted 1 (``default-cvvdp``, 2026-12-07); then of the face regions,
weighted 0.8 (``default-face``); then weighted 0.9, larger steps, the models taking turns
(``default-turns``); then weighted 1.5, two models a step, 70 steps (``default-70``); then
weighted 2, one model a step, 100 steps, SSIM read under 512 px (``default-100``); then a third
of the steps through JPEG, weighted 0.8 (``default-jpeg``, 2026-12-08). Each earlier
form is still pinned, with the overrides (and penalty) that bring it back.

Tolerance: the change's correlation with the recorded one at least 0.97, its mean magnitude
within 5%, and each model's feature term within 0.02. Detection and attack run on one torch
thread, as the goldens were recorded: the sum order of a reduction depends on the thread count,
and sign steps amplify rounding differences (1 against 2 threads: correlation 0.9987 on the
machine that recorded them, 0.957 for ``default-direction`` on a later 2-core Xeon, which failed
the test with nothing changed). A real change to the algorithm (another step rule, a missing
term, a different alignment) moves them far more.

Regenerate (only when the attack is *meant* to change, saying so in the commit):
``LOWKEY_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_attack_pinned.py``.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.weights

GOLDEN = Path(__file__).parent / "golden" / "attack"
#: the change is stored as int16 in units of 1/QUANT of the [0, 1] range
QUANT = 32768
STEPS = 8
#: the models the golden files were recorded with: the algorithm is pinned, not the ensemble
#: (the presets' ensemble grew after recording)
PINNED_MODELS = ("sface", "facenet128", "facenet512")


def _run(preset: str, astronaut_rgb: np.ndarray, penalty: str | None = None,
         **overrides: object) -> tuple[np.ndarray, dict[str, float]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the goldens' thread count (face detection included): see above
    try:
        return _run_on_one_thread(preset, astronaut_rgb, penalty, **overrides)
    finally:
        torch.set_num_threads(threads)


def _run_on_one_thread(preset: str, astronaut_rgb: np.ndarray, penalty: str | None,
                       **overrides: object) -> tuple[np.ndarray, dict[str, float]]:
    from lowkey.attack import LowKeyAttack, objective_for
    from lowkey.perceptual import load_penalty
    from lowkey.protect import Protector

    protector = Protector(preset, judge=False, device="cpu", models=PINNED_MODELS)
    pixels = torch.from_numpy(np.ascontiguousarray(astronaut_rgb[::2, ::2])).permute(2, 0, 1)
    pixels = pixels.float() / 255
    faces = protector.detector.detect(pixels)
    assert faces, "the astronaut's face must be found"
    settings = replace(protector.settings, steps=STEPS, seed=0, **overrides)
    chosen = protector.penalty if penalty is None else load_penalty(penalty)
    attack = LowKeyAttack(objective_for(protector.models, chosen, settings), settings)
    result = attack.run(pixels, faces[:1])
    change = (result.pixels - pixels).numpy()
    return change, result.history[-1]


#: ``default``'s two views in turn (x', G(x')), as it had them until its ninth change
_TWO_VIEWS = {"views": "alternate"}
#: ``default``'s perceptual term until its tenth change, without FLIP
_NO_FLIP = {"penalty": "ssim+cvvdp"}
#: ``default``'s sign steps and the paper's penalty, as it had them until 2026-12-07
_SIGN_STEPS = {"step_rule": "sign", "step_size": 0.0025, "alpha": 0.05, "penalty_region": "photo",
               "penalty_max_side": 1536, "penalty": "1-ssim", "models_per_step": 0}


@pytest.mark.parametrize(("golden", "preset", "overrides"), [
    ("subtle", "subtle", {}),
    # the paper's objective, as ``default`` had it when recorded before 679bd6e
    ("default", "default", {"feature_distance": "normalised", "views": "both", "jitter": 0.0,
                            **_SIGN_STEPS}),
    # unit embeddings' distance, alternate views, jittered alignments, sign steps (recorded
    # 2026-12-07)
    ("default-direction", "default", {**_SIGN_STEPS, **_TWO_VIEWS}),
    # l2 steps, SSIM weighted 2 (recorded 2026-12-07, later; again at the fifth change, when
    # the perceptual term of penalty_region "faces" came to judge each face's face region)
    ("default-l2", "default", {"alpha": 2.0, "penalty": "1-ssim", "step_size": 0.0012,
                               "models_per_step": 0, **_TWO_VIEWS}),
    # SSIM plus ColorVideoVDP weighted 1 (recorded 2026-12-07 at its fourth change; again at
    # the fifth)
    ("default-cvvdp", "default", {"alpha": 1.0, "step_size": 0.0012, "models_per_step": 0,
                                  **_TWO_VIEWS, **_NO_FLIP}),
    # SSIM plus ColorVideoVDP of the face regions, weighted 0.8, every model every step of
    # 0.0012 (recorded 2026-12-07, its fifth change)
    ("default-face", "default", {"alpha": 0.8, "step_size": 0.0012, "models_per_step": 0,
                                 **_TWO_VIEWS, **_NO_FLIP}),
    # weighted 0.9, steps of 0.0015, three models a step (recorded 2026-12-07, its sixth
    # change; with three pinned models, all three take part in every step) ...
    ("default-turns", "default", {"alpha": 0.9, "models_per_step": 3, **_TWO_VIEWS,
                                  **_NO_FLIP}),
    # ... and the models taking turns, two of the three a step
    ("default-turns-2of3", "default", {"alpha": 0.9, "models_per_step": 2, **_TWO_VIEWS,
                                       **_NO_FLIP}),
    # weighted 1.5, two models a step in turn (recorded 2026-12-07, its seventh change; the
    # test's 8 steps, not the preset's 70)
    ("default-70", "default", {"alpha": 1.5, "models_per_step": 2, "penalty_max_side": 256,
                               **_TWO_VIEWS, **_NO_FLIP}),
    # weighted 2, one model a step in turn, SSIM read under 512 px (the astronaut's face region
    # is under 256 px either way; recorded 2026-12-07, its eighth change; the test's 8 steps,
    # not the preset's 100)
    ("default-100", "default", {"alpha": 2.0, **_TWO_VIEWS, **_NO_FLIP}),
    # FLIP inside the perceptual term (weight 0.3), steps of 0.0018, weighted 1.8: tried after
    # the eighth change and not kept (docs/results.md, "Tried after the eighth change: FLIP
    # inside the objective"); pinned so that the FLIP penalty's path through the attack stays
    # what was measured (recorded 2026-12-07)
    ("default-flip", "default", {"penalty": "ssim+cvvdp+flip", "step_size": 0.0018,
                                 "alpha": 1.8, **_TWO_VIEWS}),
    # a third of the steps see the window through JPEG, weighted 0.8 (recorded 2026-12-08,
    # its ninth change; the test's 8 steps see J(x') at steps 2 and 5) ...
    ("default-jpeg", "default", _NO_FLIP),
    # ... and ``default`` as it is: FLIP (weight 0.3, under 128 px) in the perceptual term as
    # well (recorded 2026-12-08, its tenth change)
    ("default-jpeg-flip", "default", {}),
])
def test_attack_result_for_a_fixed_seed_is_pinned(golden, preset, overrides, astronaut_rgb):
    change, terms = _run(preset, astronaut_rgb, **overrides)
    array_path = GOLDEN / f"{golden}.npz"
    terms_path = GOLDEN / f"{golden}.json"
    if os.environ.get("LOWKEY_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(array_path, change=np.round(change * QUANT).astype(np.int16))
        terms_path.write_text(json.dumps(terms, indent=1, sort_keys=True) + "\n")
        pytest.skip("golden files written")
    golden = np.load(array_path)["change"].astype(np.float64) / QUANT
    golden_terms = json.loads(terms_path.read_text())

    assert change.shape == golden.shape
    correlation = np.corrcoef(change.ravel(), golden.ravel())[0, 1]
    assert correlation >= 0.97, f"the change differs from the pinned one (corr {correlation:.4f})"
    magnitude, pinned = np.abs(change).mean(), np.abs(golden).mean()
    assert abs(magnitude - pinned) <= 0.05 * pinned, (magnitude, pinned)
    features = {k: v for k, v in golden_terms.items() if k.startswith("feature/")}
    assert set(features) == {k for k in terms if k.startswith("feature/")}
    for name, value in features.items():  # NaN: the model took no part in the last step
        assert terms[name] == pytest.approx(value, abs=0.02, nan_ok=True), name
