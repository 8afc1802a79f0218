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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from lowkey.attack import AttackSettings, LowKeyAttack, StepCallback
from lowkey.dlib_judge import DLIB_SAME_PERSON, DlibFace, DlibJudge, box_iou, dlib_available
from lowkey.embedding import embed_faces
from lowkey.errors import LowKeyError
from lowkey.faces import Face, FaceDetector, FaceSelection, select_faces
from lowkey.image_io import Photo, encode_photo, load_photo, output_path_for, write_encoded
from lowkey.models.registry import default_ensemble
from lowkey.models.store import load_recognizer
from lowkey.objective import LowKeyObjective
from lowkey.perceptual import LPIPSPenalty, load_penalty, whole_photo_distance

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
    step_scale: int = 1

    def settings(self, strength: int = 50, seed: int = 0) -> AttackSettings:
        if not 1 <= strength <= 200:
            raise ValueError("strength must be between 1 and 200 (the paper uses 10 to 50)")
        steps = max(1, math.ceil(strength / self.step_scale))
        return AttackSettings(steps=steps, step_size=0.0025 * self.step_scale, seed=seed)


PRESETS: dict[str, Preset] = {
    "paper": Preset("paper", "the paper's ensemble (face.evoLVe IR-152/ResNet-152, ArcFace and "
                    "CosFace) and hyper-parameters; needs those four checkpoints", PAPER_MODELS),
    "default": Preset("default", "the offline ensemble (SFace, FaceNet-128, FaceNet-512) with "
                      "the paper's hyper-parameters",
                      tuple(r.name for r in default_ensemble())),
    "fast": Preset("fast", "for CPUs: the offline ensemble, half as many steps of twice the "
                   "size (same change budget)", tuple(r.name for r in default_ensemble()),
                   step_scale=2),
}


@dataclass
class FaceReport:
    """One protected face: where it is, and how far the protection moved it."""

    box: list[float]
    score: float
    #: cosine(original, protected) embedding per ensemble model (white-box: these were attacked).
    #: None when no face was found at this place in the protected photo.
    cosine: dict[str, float | None] = field(default_factory=dict)
    #: dlib distance original -> protected (black-box: dlib was never attacked); None when dlib
    #: is not installed or found no face here in the original or the protected photo.
    dlib_distance: float | None = None
    dlib_found_after: bool | None = None


@dataclass
class PhotoReport:
    """What happened to one photo. ``status``: "protected", "no-face" or "failed"."""

    source: str
    status: str
    output: str | None = None
    error: str | None = None
    size: list[int] | None = None
    format: str | None = None
    faces: list[FaceReport] = field(default_factory=list)
    ssim: float | None = None
    psnr: float | None = None
    penalty: str | None = None
    penalty_value: float | None = None
    #: LPIPS (AlexNet) of the whole decoded output against the original; None without its weights
    lpips: float | None = None
    linf: float | None = None
    seconds: float = 0.0
    device: str | None = None
    preset: str | None = None
    steps: int | None = None
    dlib_threshold: float = DLIB_SAME_PERSON

    def to_json(self) -> dict:
        return asdict(self)


def _device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def ssim_psnr(a: torch.Tensor, b: torch.Tensor, rows: int = 512) -> tuple[float, float]:
    """SSIM (Gaussian window 11, sigma 1.5) and PSNR in dB of two (3, H, W) images in [0, 1].

    Computed in horizontal strips of ``rows`` output rows (each read with the window's 10 extra
    rows) so memory stays bounded on 24-megapixel photos; the result equals the whole-image SSIM
    of pytorch-msssim (valid convolution, mean over every window position).
    """
    from pytorch_msssim import ssim

    height = a.shape[1]
    weighted, count, squared = 0.0, 0, 0.0
    with torch.no_grad():
        for top in range(0, max(height - 10, 1), rows):
            x = a[:, top:top + rows + 10].float()[None]
            y = b[:, top:top + rows + 10].float()[None]
            valid = (x.shape[2] - 10) * (x.shape[3] - 10)
            if valid > 0:
                weighted += ssim(x, y, data_range=1.0).item() * valid
                count += valid
        for top in range(0, height, rows):
            squared += torch.sum((a[:, top:top + rows].float() - b[:, top:top + rows].float()) ** 2
                                 ).item()
    mse = squared / a.numel()
    return weighted / count, (float("inf") if mse == 0 else 10 * math.log10(1.0 / mse))


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
        self.face_selection = faces
        self.device = _device(device)
        self.models = [load_recognizer(name, self.device, progress=progress)
                       for name in self.preset.models]
        self.detector = FaceDetector(device=self.device)
        self.penalty = load_penalty(self.device)
        self.objective = LowKeyObjective(self.models, self.penalty, self.settings.alpha,
                                         self.settings.blur_sigma, self.settings.blur_window,
                                         self.settings.penalty_max_side)
        self.attack = LowKeyAttack(self.objective, self.settings)
        self.judge = DlibJudge() if judge and dlib_available() else None
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
                             steps=self.settings.steps, penalty=self.penalty.name)
        faces = self.find_faces(photo)
        if not faces:
            report.status = "no-face"
            report.seconds = time.perf_counter() - start
            return None, report
        pixels = photo.pixels.to(self.device)
        result = self.attack.run(pixels, faces, grayscale=photo.grayscale, on_step=on_step)
        encoded = encode_photo(photo, result.pixels.cpu(), keep_location=keep_location)
        self._measure(photo, faces, result.original_embeddings, load_photo(encoded), report)
        report.penalty_value = result.history[-1]["perceptual"] if result.history else None
        report.seconds = time.perf_counter() - start
        return encoded, report

    def _measure(self, photo: Photo, faces: list[Face], before_emb: dict[str, torch.Tensor],
                 protected: Photo, report: PhotoReport) -> None:
        """Fill ``report`` by comparing the original with the decoded protected output.

        ``before_emb``: each model's (N, D) embeddings of ``faces`` in the original (the attack
        computed them already).
        """
        report.ssim, report.psnr = ssim_psnr(photo.pixels, protected.pixels)
        report.linf = float((photo.pixels - protected.pixels).abs().max())
        if isinstance(self.penalty, LPIPSPenalty):
            report.lpips = round(whole_photo_distance(
                self.penalty, photo.pixels, protected.pixels, self.settings.penalty_max_side), 5)
        after = self.detector.detect(protected.pixels)
        protected_pixels = protected.pixels.to(self.device)
        judge_before = self.judge.faces(photo.pixels) if self.judge else []
        judge_after = self.judge.faces(protected.pixels) if self.judge else []
        for i, face in enumerate(faces):
            entry = FaceReport(box=[round(v, 1) for v in face.box], score=round(face.score, 4))
            match = max(after, key=lambda f: box_iou(f.box, face.box), default=None)
            if match is not None and box_iou(match.box, face.box) > 0.3:
                with torch.no_grad():
                    for m in self.models:
                        emb = embed_faces(protected_pixels, [match], m)[0]
                        entry.cosine[m.name] = round(float(torch.nn.functional.cosine_similarity(
                            before_emb[m.name][i], emb, dim=0)), 4)
            else:
                entry.cosine = {m.name: None for m in self.models}
            if self.judge:
                entry.dlib_distance, entry.dlib_found_after = _dlib_distance(
                    face.box, judge_before, judge_after)
            report.faces.append(entry)

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


def _dlib_distance(box: tuple[float, ...], before: list[DlibFace],
                   after: list[DlibFace]) -> tuple[float | None, bool | None]:
    """dlib distance between the original face at ``box`` and the protected one at that place."""
    a = max(before, key=lambda f: box_iou(f.box, box), default=None)
    if a is None or box_iou(a.box, box) < 0.2:
        return None, None
    b = max(after, key=lambda f: box_iou(f.box, a.box), default=None)
    if b is None or box_iou(b.box, a.box) < 0.3:
        return None, False
    return round(float(np.linalg.norm(a.descriptor - b.descriptor)), 4), True


__all__ = ["PRESETS", "FaceReport", "PhotoReport", "Preset", "Protector"]
