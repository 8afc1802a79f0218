"""Protect photos end to end: decode, find faces, attack, encode, and measure what was written.

One pipeline for the CLI, the daemon and the evaluation. A :class:`Protector` loads the ensemble,
the detector and the perceptual penalty once, then protects any number of photos. Every report
is measured on the *encoded* output (after 8-bit rounding and JPEG/WebP compression), with faces
found afresh in it, because that is what a recognition system will see.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from lowkey.attack import AttackSettings, LowKeyAttack, StepCallback
from lowkey.dlib_judge import DlibJudge, dlib_available
from lowkey.errors import LowKeyError
from lowkey.faces import Face, FaceDetector, FaceSelection, select_faces
from lowkey.image_io import Photo, encode_photo, load_photo, output_path_for, write_encoded
from lowkey.measure import PhotoMeasurer, PhotoReport
from lowkey.models.registry import default_ensemble
from lowkey.models.store import load_recognizer
from lowkey.objective import LowKeyObjective
from lowkey.perceptual import LPIPSPenalty, load_penalty
from lowkey.quality_floor import QualityFloor, apply_floor

logger = logging.getLogger(__name__)

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


def _device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Protector:
    """Holds the warm ensemble and protects photos one after another.

    ``preset``: a key of :data:`PRESETS`; ``strength``: see :class:`Preset`; ``faces``: protect
    every face (default) or only the largest; ``device``: default CUDA when present, else CPU;
    ``judge``: also measure with dlib when it is installed; ``models``: attack these registry
    models instead of the preset's ensemble (same step settings; e.g. one model, for the
    evaluation's transfer matrix).
    """

    def __init__(self, preset: str = "default", strength: int = 50, seed: int = 0,
                 faces: FaceSelection = "all", device: str | None = None,
                 judge: bool = True, progress: bool = False,
                 models: Sequence[str] | None = None) -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        if models is not None and (isinstance(models, str) or not models):
            raise ValueError("models must be a non-empty list of registry model names")
        self.preset = (PRESETS[preset] if models is None
                       else replace(PRESETS[preset], models=tuple(models)))
        self.settings = self.preset.settings(strength, seed)
        self.quality_floor = self.preset.quality_floor
        self.face_selection = faces
        self.device = _device(device)
        self.models = [load_recognizer(name, self.device, progress=progress)
                       for name in self.preset.models]
        self.detector = FaceDetector(device=self.device)
        self.penalty = load_penalty(self.preset.penalty, self.device)
        self.objective = LowKeyObjective(self.models, self.penalty, self.settings.alpha,
                                         self.settings.blur_sigma, self.settings.blur_window,
                                         self.settings.penalty_max_side)
        self.attack = LowKeyAttack(self.objective, self.settings)
        self.judge = DlibJudge() if judge and dlib_available() else None
        self.measurer = PhotoMeasurer(
            self.detector, self.models, self.judge,
            self.penalty if isinstance(self.penalty, LPIPSPenalty) else None,
            self.settings.penalty_max_side)
        logger.info("protector ready: preset %s, %d models on %s, penalty %s, judge %s",
                    self.preset.name, len(self.models), self.device, self.penalty.name,
                    self.judge.name if self.judge else "none")

    def describe(self) -> dict:
        """The settings in force (for reports and the daemon's status)."""
        return {"preset": self.preset.name, "models": [m.name for m in self.models],
                "device": str(self.device), "penalty": self.penalty.name,
                "judge": self.judge.name if self.judge else None,
                "settings": asdict(self.settings), "linf_bound": self.settings.linf_bound}

    def find_faces(self, photo: Photo) -> list[Face]:
        return select_faces(self.detector.detect(photo.pixels), self.face_selection)

    def protect_photo(self, photo: Photo, on_step: StepCallback | None = None,
                      keep_location: bool = False) -> tuple[bytes | None, PhotoReport]:
        """Protect a decoded photo; returns the encoded output (None if no face) and a report."""
        start = time.perf_counter()
        report = PhotoReport(source=str(photo.source or "<bytes>"), status="protected",
                             size=list(photo.size), format=photo.format,
                             device=str(self.device), preset=self.preset.name,
                             steps=self.settings.steps, penalty=self.penalty.name,
                             smallest_face_px=self.detector.smallest_face_px(photo.size))
        faces = self.find_faces(photo)
        if not faces:
            report.status = "no-face"
            report.seconds = time.perf_counter() - start
            return None, report
        pixels = photo.pixels.to(self.device)
        result = self.attack.run(pixels, faces, grayscale=photo.grayscale, on_step=on_step)
        protected = result.pixels.cpu()
        if self.quality_floor is not None:
            protected, report.change_kept = apply_floor(photo, protected, result.windows,
                                                        faces, self.quality_floor)
        encoded = encode_photo(photo, protected, keep_location=keep_location)
        measure_start = time.perf_counter()
        self.measurer.measure(photo, load_photo(encoded), report, faces,
                              result.original_embeddings)
        report.measure_seconds = time.perf_counter() - measure_start
        report.penalty_value = result.history[-1]["perceptual"] if result.history else None
        report.seconds = time.perf_counter() - start
        return encoded, report

    def protect_file(self, source: Path, out_dir: Path | None = None,
                     on_step: StepCallback | None = None,
                     keep_location: bool = False) -> PhotoReport:
        """Protect one file into ``out_dir`` (default: beside it, ``name_lowkey.ext``).

        Never raises for a bad photo: the report says ``failed`` and why. The source is never
        written to; a no-face photo gets no output.
        """
        start = time.perf_counter()
        try:
            dest = output_path_for(source, out_dir)
            photo = load_photo(source)
            encoded, report = self.protect_photo(photo, on_step, keep_location)
            if encoded is not None:
                dest.parent.mkdir(parents=True, exist_ok=True)
                report.output = str(write_encoded(photo, encoded, dest))
            return report
        except (LowKeyError, ValueError, OSError) as exc:
            logger.warning("%s failed: %s", source, exc)
            return PhotoReport(source=str(source), status="failed", error=str(exc),
                               seconds=time.perf_counter() - start)


__all__ = ["PRESETS", "Preset", "Protector"]
