"""Measuring a written photo: what a person sees, and what a recogniser sees.

Used by ``lowkey protect`` (every report), ``lowkey eval`` (outputs made elsewhere) and the
daemon, always on the photo *as written* (decoded again after 8-bit rounding and JPEG/WebP
encoding), with faces found afresh in it.

What a person sees is judged on the **face region**: the original's MTCNN box widened by
:data:`FACE_REGION_WIDEN` of its size on each side, clipped to the photo. Whole-photo figures
hide a disfigured face (a painted-over face in a big photo still scores SSIM 0.98), so they come
second. FLIP and ColorVideoVDP judge regions over :data:`QUALITY_MAX_SIDE` pixels area-downscaled
to it; SSIM and PSNR always judge the full resolution. Per face region:

- SSIM (Gaussian window 11, sigma 1.5) and PSNR (dB) of the sRGB values in [0, 1];
- NVIDIA FLIP (``flip-evaluator``, LDR, 67 pixels per degree): mean error, 0 = identical;
- ColorVideoVDP (``cvvdp``, display model ``standard_4k``): JOD, 10 = identical, a calibrated
  model of human vision (one JOD: 75% of observers would pick the better image).

What a recogniser sees: each attacked model's cosine between the original face's embedding and
the protected face's (white-box), and the verdict of every recogniser that was never attacked
(black-box; :data:`lowkey.models.registry.report_judges`, e.g. InsightFace's ArcFace model, and
dlib): does it still take the protected face for the original one, at its own threshold
(:class:`Verdict`)? ``PhotoReport.recognised_by`` names those that still do.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from lowkey.dlib_judge import DLIB_SAME_PERSON, DlibFace, DlibJudge, box_iou
from lowkey.embedding import embed_faces
from lowkey.faces import Face, FaceDetector
from lowkey.flip_loss import FLIP_PPD
from lowkey.image_decode import Photo
from lowkey.models.recognizer import FaceRecognizer
from lowkey.perceptual import CVVDP_DISPLAY, LPIPSPenalty, pooled_under, whole_photo_distance
from lowkey.windows import FACE_REGION_WIDEN, face_region

logger = logging.getLogger(__name__)

#: dlib's name in verdicts and ``recognised_by``.
DLIB = "dlib"
#: FLIP and ColorVideoVDP judge a face region whose long side is over this many pixels (a face
#: of some 700 px and more) after an area downscale by the smallest integer factor that brings
#: it under: on the 4K display of :data:`CVVDP_DISPLAY` such a face already fills half the
#: screen's height, and ColorVideoVDP's memory grows with the region (about 0.7 GB at 1024 px,
#: 2.2 GB at 2048 px), which a 24-megapixel close-up would otherwise blow past any budget.
#: SSIM and PSNR always judge the full resolution (strip by strip, in bounded memory), so a
#: change that shows only when zoomed in still counts.
QUALITY_MAX_SIDE = 1024


@dataclass
class Verdict:
    """What one never-attacked recogniser makes of a protected face against the original one:
    ``score`` is a ``"cosine"`` (higher: more alike) or a ``"distance"`` (lower: more alike),
    ``threshold`` its same-person threshold (None: not known, then ``match`` is None too),
    ``match`` whether it still takes them for the same person (None: it found no face in the
    original, so it has no say; ``score`` None with ``match`` False: it found none in the
    protected photo)."""

    kind: str
    score: float | None
    threshold: float | None
    match: bool | None


@dataclass
class FaceReport:
    """One protected face: where it is, how it looks now, and how far the protection moved it.

    ``region`` is the face region (x0, y0, x1, y1) in photo pixels, x1/y1 exclusive; ``ssim``,
    ``psnr``, ``flip`` and ``jod`` compare the original with the written photo there.
    """

    box: list[float]
    score: float
    region: list[int] = field(default_factory=list)
    ssim: float | None = None
    psnr: float | None = None
    flip: float | None = None
    jod: float | None = None
    #: cosine(original, protected) embedding per ensemble model (white-box: these were attacked).
    #: None when no face was found at this place in the protected photo.
    cosine: dict[str, float | None] = field(default_factory=dict)
    #: dlib distance original -> protected (black-box: dlib was never attacked); None when dlib
    #: is not installed or found no face here in the original or the protected photo.
    dlib_distance: float | None = None
    dlib_found_after: bool | None = None
    #: every never-attacked recogniser's verdict (dlib's too), by name
    judges: dict[str, Verdict] = field(default_factory=dict)

    def __post_init__(self) -> None:  # a report read back from JSON
        self.judges = {name: Verdict(**v) if isinstance(v, dict) else v
                       for name, v in self.judges.items()}


@dataclass
class PhotoReport:
    """What happened to one photo. ``status``: "protected", "no-face", "failed" or "skipped"
    (its output existed already: nothing was done, ``output`` names it, ``error`` says why).

    ``face_ssim``, ``face_psnr``, ``face_flip`` and ``face_jod`` are the photo's *worst* face
    region (lowest SSIM, PSNR and JOD, highest FLIP); ``ssim``, ``psnr`` and ``lpips`` are about
    the whole photo. ``smallest_face_px`` is the smallest face (box side, photo pixels) the
    detector could have found in this photo: smaller faces were not looked for.
    """

    source: str
    status: str
    output: str | None = None
    error: str | None = None
    size: list[int] | None = None
    format: str | None = None
    faces: list[FaceReport] = field(default_factory=list)
    smallest_face_px: int | None = None
    face_ssim: float | None = None
    face_psnr: float | None = None
    face_flip: float | None = None
    face_jod: float | None = None
    ssim: float | None = None
    psnr: float | None = None
    penalty: str | None = None
    penalty_value: float | None = None
    #: LPIPS (AlexNet) of the whole decoded output against the original; measured only when
    #: LPIPS is the preset's penalty (its weights are then on disk)
    lpips: float | None = None
    linf: float | None = None
    #: per window, the fraction of the attack's change kept by the preset's quality floor
    #: (None: no floor)
    change_kept: list[float] | None = None
    #: the whole job; ``measure_seconds`` of it went to this report's measurements
    seconds: float = 0.0
    measure_seconds: float | None = None
    device: str | None = None
    preset: str | None = None
    steps: int | None = None
    dlib_threshold: float = DLIB_SAME_PERSON
    #: the never-attacked recognisers that judged this photo, and those of them that still
    #: take at least one protected face for the original (empty: none does)
    judges: list[str] = field(default_factory=list)
    recognised_by: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def ssim_psnr(a: torch.Tensor, b: torch.Tensor, rows: int = 512) -> tuple[float, float]:
    """SSIM (Gaussian window 11, sigma 1.5) and PSNR in dB of two (3, H, W) images in [0, 1].

    Computed in horizontal strips of ``rows`` output rows (each read with the window's 10 extra
    rows) so memory stays bounded on 24-megapixel photos; the result equals the whole-image SSIM
    of pytorch-msssim (valid convolution, mean over every window position). Images smaller than
    the window (11 px) get SSIM NaN.
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
    return (weighted / count if count else math.nan,
            float("inf") if mse == 0 else 10 * math.log10(1.0 / mse))


def _hwc(pixels: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(pixels.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy())


def flip_error(original: torch.Tensor, protected: torch.Tensor) -> float:
    """Mean NVIDIA FLIP error (LDR, sRGB, :data:`FLIP_PPD`) of two (3, H, W) RGB images in
    [0, 1]: 0 for identical images, up to 1."""
    import flip_evaluator

    _, mean, _ = flip_evaluator.evaluate(_hwc(original), _hwc(protected), "LDR", inputsRGB=True,
                                         applyMagma=False, parameters={"ppd": FLIP_PPD})
    return float(mean)


@functools.cache
def _cvvdp_metric() -> object:
    import pycvvdp

    return pycvvdp.cvvdp(display_name=CVVDP_DISPLAY, device=torch.device("cpu"), quiet=True)


def cvvdp_jod(original: torch.Tensor, protected: torch.Tensor) -> float:
    """ColorVideoVDP quality (JOD, 10 = identical) of ``protected`` against ``original``, both
    (3, H, W) RGB display-encoded (sRGB) values in [0, 1], seen on :data:`CVVDP_DISPLAY`."""
    with torch.no_grad():
        jod, _ = _cvvdp_metric().predict(torch.from_numpy(_hwc(protected)),
                                         torch.from_numpy(_hwc(original)), dim_order="HWC")
    return float(jod)


@dataclass(frozen=True)
class RegionQuality:
    """How one region of the written photo compares with the original (see the module doc)."""

    ssim: float
    psnr: float
    flip: float
    jod: float


def region_pair(original: torch.Tensor, protected: torch.Tensor,
                region: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``region`` (x0, y0, x1, y1) of two (3, H, W) RGB images in [0, 1], as float32 (3, h, w)
    crops at full resolution (what SSIM and PSNR judge)."""
    x0, y0, x1, y1 = region
    return original[:, y0:y1, x0:x1].float(), protected[:, y0:y1, x0:x1].float()


def as_viewed(original: torch.Tensor, protected: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (3, h, w) region crops as FLIP and ColorVideoVDP judge them: area-downscaled by the
    smallest integer factor that brings their long side to at most :data:`QUALITY_MAX_SIDE`
    (unchanged when it already is)."""
    a, b = pooled_under(original[None], protected[None], QUALITY_MAX_SIDE)
    return a[0], b[0]


def region_quality(original: torch.Tensor, protected: torch.Tensor,
                   region: tuple[int, int, int, int]) -> RegionQuality:
    """SSIM, PSNR (full resolution), FLIP and ColorVideoVDP (:func:`as_viewed`) of ``region``
    (x0, y0, x1, y1) of two (3, H, W) RGB images in [0, 1]."""
    a, b = region_pair(original, protected, region)
    ssim, psnr = ssim_psnr(a, b)
    a, b = as_viewed(a, b)
    return RegionQuality(ssim, psnr, flip_error(a, b), cvvdp_jod(a, b))


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


class PhotoMeasurer:
    """Measures written photos against their originals and fills a :class:`PhotoReport`.

    ``detector`` finds the faces again in the written photo; ``models`` are the attacked
    ensemble (white-box cosines; may be empty); ``held_out``: registry models that were never
    attacked (black-box verdicts at their ``match_cosine``); ``judge`` is dlib (black-box; None
    to skip); ``lpips``: the LPIPS penalty when it is the preset's (whole-photo LPIPS), else None.
    """

    def __init__(self, detector: FaceDetector, models: list[FaceRecognizer] | None = None,
                 judge: DlibJudge | None = None, lpips: LPIPSPenalty | None = None,
                 lpips_max_side: int = 1536,
                 held_out: list[FaceRecognizer] | None = None) -> None:
        self.detector = detector
        self.models = list(models or [])
        self.held_out = [m for m in held_out or [] if m.name not in {x.name for x in self.models}]
        self.judge = judge
        self.lpips = lpips
        self.lpips_max_side = lpips_max_side

    def measure(self, original: Photo, protected: Photo, report: PhotoReport,
                faces: list[Face] | None = None,
                before: dict[str, torch.Tensor] | None = None) -> PhotoReport:
        """Fill ``report`` by comparing ``original`` with the decoded written ``protected``.

        ``faces``: the original's faces that were protected (detected here when None);
        ``before``: each model's (N, D) embeddings of ``faces`` in the original (computed here
        when None). Returns ``report``.
        """
        a, b = original.pixels, protected.pixels
        if a.shape != b.shape:
            raise ValueError(f"the written photo is {tuple(b.shape)}, the original "
                             f"{tuple(a.shape)}: they cannot be compared")
        width, height = original.size
        report.smallest_face_px = self.detector.smallest_face_px((width, height))
        if faces is None:
            faces = self.detector.detect(a)
        report.ssim, report.psnr = ssim_psnr(a, b)
        report.linf = max(float((a[:, top:top + 512] - b[:, top:top + 512]).abs().max())
                          for top in range(0, a.shape[1], 512))  # strips: bounded memory
        if self.lpips is not None:
            report.lpips = round(whole_photo_distance(self.lpips, a, b, self.lpips_max_side), 5)
        if not faces:
            return report
        recognisers = self.models + self.held_out
        device = (next(recognisers[0].parameters()).device if recognisers
                  else torch.device("cpu"))
        before = dict(before or {})
        with torch.no_grad():
            for m in recognisers:
                if m.name not in before:
                    before[m.name] = embed_faces(a.to(device), faces, m)
        after = self.detector.detect(b) if recognisers else []
        b_device = b.to(device) if recognisers else b
        judge_before = self.judge.faces(a) if self.judge else []
        judge_after = self.judge.faces(b) if self.judge else []
        for i, face in enumerate(faces):
            region = face_region(face.box, (width, height))
            quality = region_quality(a, b, region)
            entry = FaceReport(box=[round(v, 1) for v in face.box], score=round(face.score, 4),
                               region=list(region), ssim=_rounded(quality.ssim, 4),
                               psnr=_rounded(quality.psnr, 2), flip=_rounded(quality.flip, 4),
                               jod=_rounded(quality.jod, 3))
            match = max(after, key=lambda f: box_iou(f.box, face.box), default=None)
            found = match is not None and box_iou(match.box, face.box) > 0.3
            with torch.no_grad():
                for m in recognisers:
                    cosine = None
                    if found:
                        emb = embed_faces(b_device, [match], m)[0]
                        cosine = round(float(torch.nn.functional.cosine_similarity(
                            before[m.name][i], emb, dim=0)), 4)
                    if m in self.models:
                        entry.cosine[m.name] = cosine
                    else:
                        threshold = m.record.match_cosine
                        entry.judges[m.name] = Verdict(
                            "cosine", cosine, threshold,
                            None if threshold is None else bool(
                                cosine is not None and cosine >= threshold))
            if self.judge:
                entry.dlib_distance, entry.dlib_found_after = dlib_distance(
                    face.box, judge_before, judge_after)
                entry.judges[DLIB] = Verdict(
                    "distance", entry.dlib_distance, DLIB_SAME_PERSON,
                    None if entry.dlib_found_after is None else bool(
                        entry.dlib_distance is not None
                        and entry.dlib_distance <= DLIB_SAME_PERSON))
            report.faces.append(entry)
        report.judges = [m.name for m in self.held_out] + ([DLIB] if self.judge else [])
        report.recognised_by = [name for name in report.judges
                                if any(f.judges[name].match for f in report.faces)]
        _worst_face(report)
        return report


def _worst_face(report: PhotoReport) -> None:
    """The photo-level face-region figures: its worst face for each measure."""
    def pick(key: str, worst: Callable[[list[float]], float]) -> float | None:
        values = [getattr(f, key) for f in report.faces if getattr(f, key) is not None]
        return worst(values) if values else None

    report.face_ssim = pick("ssim", min)
    report.face_psnr = pick("psnr", min)
    report.face_flip = pick("flip", max)
    report.face_jod = pick("jod", min)


def dlib_distance(box: tuple[float, ...], before: list[DlibFace],
                  after: list[DlibFace]) -> tuple[float | None, bool | None]:
    """dlib distance between the original face at ``box`` and the protected one at that place:
    (None, None) when dlib finds no face there in the original, (None, False) when it finds
    none in the protected photo."""
    a = max(before, key=lambda f: box_iou(f.box, box), default=None)
    if a is None or box_iou(a.box, box) < 0.2:
        return None, None
    b = max(after, key=lambda f: box_iou(f.box, a.box), default=None)
    if b is None or box_iou(b.box, a.box) < 0.3:
        return None, False
    return round(float(np.linalg.norm(a.descriptor - b.descriptor)), 4), True


__all__ = ["DLIB", "FACE_REGION_WIDEN", "Verdict", "QUALITY_MAX_SIDE", "FaceReport", "PhotoMeasurer", "PhotoReport",
           "RegionQuality", "as_viewed", "cvvdp_jod", "dlib_distance", "face_region", "flip_error",
           "region_pair", "region_quality", "ssim_psnr"]
