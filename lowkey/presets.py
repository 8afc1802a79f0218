"""Presets: which models to attack, with which penalty, steps, budget and quality floor.

``strength`` (``lowkey protect --strength``) is the number of attack steps at the preset's step
size (the paper's Table 4 magnitude for ``paper``); docs/results.md gives the measured look and
protection at each point.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from lowkey.attack import AttackSettings
from lowkey.models.registry import default_ensemble
from lowkey.quality_floor import QualityFloor

#: Raised whenever the attack's code changes what a preset does to a photo at the same settings,
#: so that caches keyed on :meth:`Preset.fingerprint` are not served stale. 2: the perceptual
#: term of ``penalty_region="faces"`` judges each face's face region, seen at its size in the
#: photo (issue 21, fifth change).
ATTACK_REVISION = 2
PAPER_MODELS = ("ir152-arcface", "ir152-cosface", "resnet152-arcface", "resnet152-cosface")


@dataclass(frozen=True)
class Preset:
    """An ensemble and attack settings.

    ``strength`` is the number of attack steps of ``step_size`` (for ``paper``: the paper's
    Table 4 magnitude, 50 = the paper). Each preset has its own default strength, the point on
    the measured frontier (docs/results.md) that it stands for.
    """

    name: str
    description: str
    models: tuple[str, ...]
    #: the perceptual penalty P of the objective (see :data:`lowkey.perceptual.PENALTIES`)
    penalty: str = "1-ssim"
    #: the strength used when none is given
    strength: int = 50
    step_size: float = 0.0025
    #: attack settings beyond the paper's (budget, colour, transfer boosters; see
    #: :class:`~lowkey.attack.AttackSettings`), as field -> value
    attack: tuple[tuple[str, object], ...] = ()
    #: each face's change is scaled down until its region meets this floor; None: no floor
    quality_floor: QualityFloor | None = None

    def settings(self, strength: int | None = None, seed: int = 0) -> AttackSettings:
        """The attack settings at ``strength`` (None: the preset's own)."""
        strength = self.strength if strength is None else strength
        if not 1 <= strength <= 200:
            raise ValueError("strength must be between 1 and 200 (the paper uses 10 to 50)")
        return AttackSettings(steps=strength, step_size=self.step_size, seed=seed,
                              **dict(self.attack))

    def fingerprint(self) -> str:
        """8 hex digits that change whenever how this preset changes a photo changes (models,
        step size, attack settings, penalty, quality floor, :data:`ATTACK_REVISION`; not the
        name, strength or description): caches of protected photos are keyed on it."""
        floor = None if self.quality_floor is None else asdict(self.quality_floor)
        what = json.dumps([sorted(self.models), self.step_size, sorted(self.attack), self.penalty,
                           floor, ATTACK_REVISION],
                          sort_keys=True, default=str)
        return hashlib.sha256(what.encode()).hexdigest()[:8]


#: Where the change goes and how it is found, for ``subtle``: luma only (no coloured speckle),
#: each pixel's budget from its local texture (flat skin gets a fifth of what hair and edges
#: get), feathered to nothing at the window's border (no visible rectangle), momentum and
#: alignment jitter (docs/results.md has what each bought).
_INVISIBLE_FIRST = (("luminance_only", True), ("budget", "visibility"), ("budget_low", 0.2),
                    ("feather", 0.1), ("momentum", 0.9), ("jitter", 0.05))
_OFFLINE = tuple(r.name for r in default_ensemble())
#: How ``default`` departs from the paper's objective (docs/results.md, "direction"): the feature
#: term is the distance between unit embeddings, which is what recognisers compare (the paper's
#: also pays for a longer embedding); each step sees x' or G(x') in turn (half the model calls;
#: the change accumulates less where the two views disagree); and each model's alignment is
#: jittered every step (5% of scale, angle, shift), so the change does not depend on one crop:
#: recognisers align faces their own way. The views are three since the ninth change
#: (docs/results.md, "a third of the steps through JPEG"): x', G(x') and J(x'), J what the
#: step's model reads of the window through a differentiable JPEG at quality 90, 75, 60 or 80
#: in turn, because every platform re-encodes what is uploaded and the change must survive that.
_DIRECTION_ALTERNATE = (("feature_distance", "direction"), ("views", "alternate-jpeg"),
                        ("jitter", 0.05))
#: How ``default`` finds the change it makes (docs/results.md, "The default follows the
#: gradient", "ColorVideoVDP inside the objective", "The face region in the objective",
#: "Models take turns" and "One model a step"): steps that follow the gradient's magnitude
#: (root mean square 0.0015) instead of its sign, so the change goes to the pixels the models
#: read most and not to every pixel alike; one of the five models a step, taking turns (each
#: model in one step of five: a fifth of the model calls a step), which pays for 100 steps
#: instead of 50; and the perceptual term, ``1 - SSIM`` plus ColorVideoVDP's JOD loss plus 0.3
#: FLIP (the preset's ``penalty``; FLIP since the tenth change, docs/results.md, "FLIP inside
#: the objective, on the JPEG view"), weighted 0.8 instead of the paper's 0.05 (2 before the
#: ninth change, whose margin proved to depend on the seed; with the JPEG view at 2 the margin
#: went) and judged on each face's face region (what a person looks at, each face counting
#: alike), SSIM read at most 512 px, ColorVideoVDP at most 256 px and FLIP at most 128 px, seen
#: at the size it has in the photo, not diluted over the photo or the background around the
#: face. The longer path gives the term the steps to take the change out of what people see.
_FOLLOW_THE_GRADIENT = (("step_rule", "l2"), ("alpha", 0.8), ("penalty_region", "faces"),
                        ("penalty_max_side", 512), ("models_per_step", 1))

#: What ``lowkey protect``, the daemon, the extension and ``--ray`` use when no preset is named.
#: It must protect: measured against recognisers outside its ensemble (docs/results.md).
DEFAULT_PRESET = "default"

PRESETS: dict[str, Preset] = {
    "default": Preset("default", "protects: the paper's attack on the offline ensemble of five "
                      "models, three architectures (SFace, FaceNet-128, FaceNet-512, OpenFace, "
                      "FacePlugin; no bound or floor), 100 colour steps that follow the "
                      "gradient, one model a step in turn, turning each embedding's "
                      "direction (what recognisers compare) away from the original's under "
                      "jittered alignments, a third of the steps seeing the photo through "
                      "JPEG as platforms serve it, while SSIM, "
                      "ColorVideoVDP and FLIP judge the face; in our tests the recognisers never "
                      "attacked (ArcFace, dlib) recognised no protected face among 1,000 "
                      "strangers; the face looks visibly altered up close (docs/results.md)",
                      _OFFLINE, penalty="ssim+cvvdp+flip", strength=100, step_size=0.0015,
                      attack=_DIRECTION_ALTERNATE + _FOLLOW_THE_GRADIENT),
    "subtle": Preset("subtle", "looks unchanged and does NOT protect: in our measurements every "
                     "recogniser still recognised every face. Luma-only change where texture "
                     "hides it, at most 0.03 a pixel, then scaled down until every face region "
                     "keeps 9.5 JOD, FLIP 0.05 and SSIM 0.95", _OFFLINE, strength=10,
                     step_size=0.003, attack=_INVISIBLE_FIRST + (("epsilon", 0.03),),
                     quality_floor=QualityFloor()),
    "paper": Preset("paper", "the paper's ensemble (face.evoLVe IR-152/ResNet-152, ArcFace and "
                    "CosFace), penalty (LPIPS) and hyper-parameters; needs those four "
                    "checkpoints and LPIPS's AlexNet backbone", PAPER_MODELS,
                    penalty="lpips-alex"),
}

#: Names presets had before: asking for one says what it is called now.
RENAMED = {"strong": "default (the protecting preset is now the default)",
           "fast": "subtle (it did not protect; 'subtle' is the look-first preset)"}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a clear :class:`ValueError` for any other name (an old name
    says what it became)."""
    if name in PRESETS:
        return PRESETS[name]
    hint = f" ('{name}' is now {RENAMED[name]})" if name in RENAMED else ""
    raise ValueError(f"unknown preset {name!r}{hint}; choose from {', '.join(PRESETS)}")


__all__ = ["ATTACK_REVISION", "DEFAULT_PRESET", "PAPER_MODELS", "PRESETS", "RENAMED", "Preset", "get_preset"]
