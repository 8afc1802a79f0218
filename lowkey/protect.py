"""Protect photos end to end: decode, find faces, attack, encode, and measure what was written.

One pipeline for the CLI, the daemon and the evaluation. A :class:`Protector` loads the ensemble,
the detector and the perceptual penalty once, then protects any number of photos. Every report
is measured on the *encoded* output (after 8-bit rounding and JPEG/WebP compression), with faces
found afresh in it, because that is what a recognition system will see.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch

from lowkey.attack import LowKeyAttack, StepCallback
from lowkey.dlib_judge import DlibJudge, dlib_available
from lowkey.errors import LowKeyError
from lowkey.faces import Face, FaceDetector, FaceSelection, select_faces
from lowkey.image_io import Photo, encode_photo, load_photo, output_path_for, write_encoded
from lowkey.measure import PhotoMeasurer, PhotoReport
from lowkey.models.store import load_recognizer
from lowkey.objective import LowKeyObjective
from lowkey.perceptual import LPIPSPenalty, load_penalty
from lowkey.presets import PRESETS, Preset
from lowkey.quality_floor import apply_floor

logger = logging.getLogger(__name__)

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


__all__ = ["PRESETS", "Preset", "Protector"]  # presets re-exported from lowkey.presets
