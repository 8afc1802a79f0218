"""Presets: which models to attack, with which penalty, steps, budget and quality floor.

``strength`` (``lowkey protect --strength``) is the number of attack steps at the preset's step
size (the paper's Table 4 magnitude for ``paper``); docs/results.md gives the measured look and
protection at each point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lowkey.attack import AttackSettings
from lowkey.models.registry import default_ensemble
from lowkey.quality_floor import QualityFloor

PAPER_MODELS = ("ir152-arcface", "ir152-cosface", "resnet152-arcface", "resnet152-cosface")


@dataclass(frozen=True)
class Preset:
    """An ensemble and attack settings. ``strength`` is the paper's Table 4 magnitude: the
    number of 0.0025 steps' worth of change allowed (50 = the paper); ``step_scale`` > 1 reaches
    it in fewer, larger steps."""

    name: str
    description: str
    models: tuple[str, ...]
    #: the perceptual penalty P of the objective (see :data:`lowkey.perceptual.PENALTIES`)
    penalty: str = "1-ssim"
    step_scale: int = 1
    #: attack settings beyond the paper's (budget, colour, transfer boosters; see
    #: :class:`~lowkey.attack.AttackSettings`), as field -> value
    attack: tuple[tuple[str, object], ...] = ()
    #: each face's change is scaled down until its region meets this floor; None: no floor
    quality_floor: QualityFloor | None = None

    def settings(self, strength: int = 50, seed: int = 0) -> AttackSettings:
        if not 1 <= strength <= 200:
            raise ValueError("strength must be between 1 and 200 (the paper uses 10 to 50)")
        steps = max(1, math.ceil(strength / self.step_scale))
        return AttackSettings(steps=steps, step_size=0.0025 * self.step_scale, seed=seed,
                              **dict(self.attack))


PRESETS: dict[str, Preset] = {
    "paper": Preset("paper", "the paper's ensemble (face.evoLVe IR-152/ResNet-152, ArcFace and "
                    "CosFace), penalty (LPIPS) and hyper-parameters; needs those four "
                    "checkpoints and LPIPS's AlexNet backbone", PAPER_MODELS,
                    penalty="lpips-alex"),
    "default": Preset("default", "the offline ensemble (SFace, FaceNet-128, FaceNet-512) with "
                      "the paper's hyper-parameters and a weight-free penalty (1 - SSIM)",
                      tuple(r.name for r in default_ensemble())),
    "fast": Preset("fast", "for CPUs: the offline ensemble, half as many steps of twice the "
                   "size (same change budget), penalty 1 - SSIM",
                   tuple(r.name for r in default_ensemble()), step_scale=2),
}


__all__ = ["PAPER_MODELS", "PRESETS", "Preset"]
