"""Presets: which models to attack, with which penalty, steps, budget and quality floor.

``strength`` (``lowkey protect --strength``) is the number of attack steps at the preset's step
size (the paper's Table 4 magnitude for ``paper``); docs/results.md gives the measured look and
protection at each point.
"""

from __future__ import annotations

from dataclasses import dataclass

from lowkey.attack import AttackSettings
from lowkey.models.registry import default_ensemble
from lowkey.quality_floor import QualityFloor

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


#: Where the change goes and how it is found, for ``default`` and ``fast``: luma
#: only (no coloured speckle), each pixel's budget from its local texture (flat skin gets a fifth
#: of what hair and edges get), feathered to nothing at the window's border (no visible
#: rectangle), momentum and alignment jitter (meant to transfer to recognisers we do not have;
#: docs/results.md has what each bought).
_INVISIBLE_FIRST = (("luminance_only", True), ("budget", "visibility"), ("budget_low", 0.2),
                    ("feather", 0.1), ("momentum", 0.9), ("jitter", 0.05))
_OFFLINE = tuple(r.name for r in default_ensemble())

PRESETS: dict[str, Preset] = {
    "paper": Preset("paper", "the paper's ensemble (face.evoLVe IR-152/ResNet-152, ArcFace and "
                    "CosFace), penalty (LPIPS) and hyper-parameters; needs those four "
                    "checkpoints and LPIPS's AlexNet backbone", PAPER_MODELS,
                    penalty="lpips-alex"),
    "default": Preset("default", "looks unchanged: the offline ensemble (SFace, FaceNet-128, "
                      "FaceNet-512), luma-only change where texture hides it, at most 0.03 a "
                      "pixel, then scaled down until every face region keeps 9.5 JOD, FLIP 0.05 "
                      "and SSIM 0.95; in our measurements that does not stop recognition",
                      _OFFLINE, strength=10, step_size=0.003,
                      attack=_INVISIBLE_FIRST + (("epsilon", 0.03),),
                      quality_floor=QualityFloor()),
    "fast": Preset("fast", "default in 5 steps (for slow CPUs)", _OFFLINE, strength=5,
                   step_size=0.003, attack=_INVISIBLE_FIRST + (("epsilon", 0.03),),
                   quality_floor=QualityFloor()),
    "strong": Preset("strong", "protects, visibly: the paper's attack on the offline ensemble "
                     "(colour sign steps, no bound or floor; the default before the quality "
                     "floor); at strength 50 the face looks painted over (face region about "
                     "7-7.5 JOD, FLIP 0.16-0.22, SSIM 0.8)", _OFFLINE),
}


__all__ = ["PAPER_MODELS", "PRESETS", "Preset"]
