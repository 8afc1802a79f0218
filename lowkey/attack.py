"""The LowKey attack: signed gradient ascent on objective (1), with a seed and a step callback.

Bound: like the paper and its public ports, the perturbation has no explicit epsilon ball. It
starts uniform in [-init_noise, init_noise] and each of the ``steps`` steps moves every pixel by
exactly ``step_size``, so ``|x' - x| <= init_noise + steps * step_size`` per pixel (0.13, about
33/255, for the paper's settings), and ``x'`` is kept in [0, 1]. Pixels outside the windows
around the faces never change.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from lowkey.align import alignment_matrix, source_region, translated
from lowkey.errors import LowKeyError
from lowkey.faces import Face
from lowkey.models.recognizer import FaceRecognizer
from lowkey.objective import FaceInWindow, LowKeyObjective, gaussian_smoothing
from lowkey.visibility import change_budget

logger = logging.getLogger(__name__)

#: ``on_step(step, total_steps, terms) -> keep going?``; ``terms`` as in LowKeyObjective.
StepCallback = Callable[[int, int, dict[str, float]], bool]


class AttackCancelled(LowKeyError):
    """The step callback asked to stop; nothing was produced."""


@dataclass(frozen=True)
class AttackSettings:
    """Hyper-parameters of the attack (defaults: the paper's, appendix 8.1)."""

    steps: int = 50
    step_size: float = 0.0025
    alpha: float = 0.05
    blur_sigma: float = 3.0
    blur_window: int = 7
    init_noise: float = 0.005
    seed: int = 0
    penalty_max_side: int = 1536
    #: Where change may go. "uniform" (the paper): every pixel up to :attr:`linf_bound`;
    #: "visibility": each pixel up to its :func:`lowkey.visibility.change_budget`, from
    #: ``budget_low x linf_bound`` on flat areas to ``linf_bound`` on textured ones, feathered
    #: to zero over ``feather`` x the window's smaller side at the window's border.
    budget: str = "uniform"
    #: an explicit largest change per pixel, below what the steps could reach (None: the
    #: paper's implicit bound, init_noise + steps x step_size)
    epsilon: float | None = None
    budget_low: float = 1.0
    feather: float = 0.0
    #: Change luma only (the same change on R, G and B): no coloured speckle.
    luminance_only: bool = False
    #: Transfer boosters (0 = off, the paper): momentum of the gradient (MI-FGSM); Gaussian blur
    #: of the gradient, sigma in aligned-crop pixels (TI); random jitter of each model's
    #: alignment every step, as a fraction of scale, angle (radians) and size (DI).
    momentum: float = 0.0
    gradient_blur: float = 0.0
    jitter: float = 0.0
    #: Keep the change high-frequency (where the eye is least sensitive): after each step,
    #: remove its Gaussian blur of this sigma in photo pixels (0 = off).
    highpass: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if not 0 < self.step_size <= 0.1:
            raise ValueError("step_size must be in (0, 0.1]")
        if self.alpha < 0 or self.init_noise < 0:
            raise ValueError("alpha and init_noise must not be negative")
        if self.blur_window < 1 or self.blur_window % 2 == 0 or self.blur_sigma <= 0:
            raise ValueError("blur_window must be odd and positive, blur_sigma positive")
        if self.budget not in ("uniform", "visibility"):
            raise ValueError(f"unknown budget {self.budget!r}")
        if not 0 <= self.budget_low <= 1 or not 0 <= self.feather < 0.5:
            raise ValueError("budget_low must be in [0, 1] and feather in [0, 0.5)")
        if self.epsilon is not None and not 0 < self.epsilon <= 1:
            raise ValueError("epsilon must be in (0, 1]")
        if min(self.momentum, self.gradient_blur, self.jitter, self.highpass) < 0:
            raise ValueError("momentum, gradient_blur, jitter and highpass must not be negative")

    @property
    def linf_bound(self) -> float:
        """Largest possible per-pixel change, in [0, 1] units."""
        reach = self.init_noise + self.steps * self.step_size
        return reach if self.epsilon is None else min(reach, self.epsilon)


@dataclass(frozen=True)
class Window:
    """A rectangle of the photo that the attack may change: columns x0..x1-1, rows y0..y1-1."""

    x0: int
    y0: int
    x1: int
    y1: int

    def union(self, other: Window) -> Window:
        return Window(min(self.x0, other.x0), min(self.y0, other.y0), max(self.x1, other.x1),
                      max(self.y1, other.y1))

    def overlaps(self, other: Window) -> bool:
        return (self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1
                and other.y0 < self.y1)


@dataclass
class AttackResult:
    """``pixels``: the protected photo (3, H, W) RGB [0, 1]; ``original_embeddings``: each model's
    embeddings (N, D) of the original faces, in the order given; ``history``: terms per step."""

    pixels: torch.Tensor
    windows: list[Window]
    original_embeddings: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)


def face_windows(faces: list[Face], models: list[FaceRecognizer], image_size: tuple[int, int],
                 margin: float = 0.15) -> tuple[list[Window], list[int]]:
    """Disjoint windows covering what every model's alignment reads of every face.

    Each face's region (the union over models of the source area its crop sees) is widened by
    ``margin`` of its size on every side (context for the blur and the perceptual metric),
    clipped to the photo; overlapping regions are merged. Returns the windows and, per face,
    the index of its window.
    """
    width, height = image_size
    regions = []
    for face in faces:
        boxes = [source_region(alignment_matrix(m.record.contract, face.landmarks_array(),
                                                face.box, image_size), m.input_size)
                 for m in models]
        left = min(b[0] for b in boxes)
        top = min(b[1] for b in boxes)
        right = max(b[2] for b in boxes)
        bottom = max(b[3] for b in boxes)
        pad = margin * max(right - left, bottom - top) + 8
        regions.append(Window(max(0, math.floor(left - pad)), max(0, math.floor(top - pad)),
                              min(width, math.ceil(right + pad)),
                              min(height, math.ceil(bottom + pad))))
    windows: list[Window] = []
    for region in regions:
        merged = region
        while True:
            overlapping = [w for w in windows if w.overlaps(merged)]
            if not overlapping:
                break
            for w in overlapping:
                windows.remove(w)
                merged = merged.union(w)
        windows.append(merged)
    owner = [next(i for i, w in enumerate(windows) if w.overlaps(r) or w == r) for r in regions]
    return windows, owner


class LowKeyAttack:
    """Configured once with an ensemble and a penalty; ``run`` protects one photo's faces."""

    def __init__(self, objective: LowKeyObjective, settings: AttackSettings) -> None:
        self.objective = objective
        self.settings = settings

    def run(self, pixels: torch.Tensor, faces: list[Face], grayscale: bool = False,
            on_step: StepCallback | None = None) -> AttackResult:
        """Protect ``faces`` in ``pixels`` (3, H, W) RGB [0, 1] on the models' device.

        ``grayscale``: keep the perturbation gray (one channel repeated), so a grayscale photo
        stays grayscale. Raises :class:`AttackCancelled` if ``on_step`` returns False.
        """
        if not faces:
            raise ValueError("no faces to protect")
        s = self.settings
        models = self.objective.models
        height, width = pixels.shape[-2:]
        windows, owner = face_windows(faces, models, (width, height))
        targets = [
            FaceInWindow(owner[i], {
                m.name: translated(alignment_matrix(m.record.contract, f.landmarks_array(),
                                                    f.box, (width, height)),
                                   windows[owner[i]].x0, windows[owner[i]].y0)
                for m in models})
            for i, f in enumerate(faces)
        ]
        originals = [pixels[:, w.y0:w.y1, w.x0:w.x1].detach() for w in windows]
        with torch.no_grad():
            original_embeddings = self.objective.embeddings(originals, targets)
        budgets = [self._budget(o) for o in originals]
        blur_sigmas = [self._gradient_blur_sigma(targets, i) for i in range(len(windows))]

        generator = torch.Generator(device="cpu").manual_seed(s.seed)
        channels = 1 if grayscale or s.luminance_only else 3
        deltas = []
        for original, budget in zip(originals, budgets, strict=True):
            noise = (torch.rand((channels, *original.shape[-2:]), generator=generator) * 2 - 1)
            delta = (noise * s.init_noise).to(original)
            deltas.append(self._project(original, delta, budget))
        velocity = [torch.zeros_like(d) for d in deltas]

        history: list[dict[str, float]] = []
        for step in range(s.steps):
            for delta in deltas:
                delta.requires_grad_(True)
            current = [o + d.expand_as(o) for o, d in zip(originals, deltas, strict=True)]
            seen = self._jittered(targets, generator) if s.jitter else targets
            value, terms = self.objective(original_embeddings, originals, current, seen,
                                          height * width)
            grads = torch.autograd.grad(value, deltas)
            with torch.no_grad():
                updated = []
                for i, (o, d, g) in enumerate(zip(originals, deltas, grads, strict=True)):
                    if blur_sigmas[i] > 0:
                        g = gaussian_smoothing(g[None], blur_sigmas[i],
                                               2 * math.ceil(3 * blur_sigmas[i]) + 1)[0]
                    if s.momentum:
                        velocity[i] = s.momentum * velocity[i] + g / g.abs().mean().clamp_min(
                            1e-12)
                        g = velocity[i]
                    d = d.detach() + s.step_size * g.sign()
                    if s.highpass:
                        d = d - gaussian_smoothing(d[None], s.highpass,
                                                   2 * math.ceil(3 * s.highpass) + 1)[0]
                    updated.append(self._project(o, d, budgets[i]))
                deltas = updated
            history.append(terms)
            logger.debug("step %d/%d %s", step + 1, s.steps, terms)
            if on_step is not None and on_step(step + 1, s.steps, terms) is False:
                raise AttackCancelled(f"cancelled after step {step + 1} of {s.steps}")

        protected = pixels.detach().clone()
        for w, o, d in zip(windows, originals, deltas, strict=True):
            protected[:, w.y0:w.y1, w.x0:w.x1] = o + d.expand_as(o)
        return AttackResult(protected, windows, original_embeddings, history)

    def _budget(self, original: torch.Tensor) -> torch.Tensor | None:
        """Per-pixel change budget (1, h, w) of a window (3, h, w); None: uniform."""
        s = self.settings
        if s.budget == "uniform":
            return None if s.epsilon is None else torch.full_like(original[:1], s.linf_bound)
        ramp = round(s.feather * min(original.shape[-2:]))
        return change_budget(original, s.budget_low * s.linf_bound, s.linf_bound, ramp=ramp)

    def _gradient_blur_sigma(self, targets: list[FaceInWindow], window: int) -> float:
        """TI's blur in window pixels: ``gradient_blur`` aligned-crop pixels at the mean scale
        of the window's faces (0 when off)."""
        if not self.settings.gradient_blur:
            return 0.0
        scales = [1.0 / math.sqrt(abs(np.linalg.det(m[:2, :2])))
                  for f in targets if f.window == window for m in f.matrices.values()]
        return self.settings.gradient_blur * float(np.mean(scales))

    def _jittered(self, targets: list[FaceInWindow],
                  generator: torch.Generator) -> list[FaceInWindow]:
        """Each model's alignment moved by a random similarity about the crop's centre: scale
        and angle within ``jitter`` (radians), shift within ``jitter`` x the crop size."""
        amount = self.settings.jitter
        sizes = {m.name: m.input_size for m in self.objective.models}
        out = []
        for face in targets:
            matrices = {}
            for name, matrix in face.matrices.items():
                r = (torch.rand(4, generator=generator) * 2 - 1).numpy() * amount
                size = sizes[name]
                c = (size - 1) / 2
                scale, angle = 1 + r[0], r[1]
                cos, sin = scale * math.cos(angle), scale * math.sin(angle)
                jitter = np.array([[cos, -sin, c - cos * c + sin * c + r[2] * size],
                                   [sin, cos, c - sin * c - cos * c + r[3] * size],
                                   [0.0, 0.0, 1.0]])
                matrices[name] = jitter @ matrix
            out.append(FaceInWindow(face.window, matrices))
        return out

    @staticmethod
    def _project(original: torch.Tensor, delta: torch.Tensor,
                 budget: torch.Tensor | None = None) -> torch.Tensor:
        """Keep ``|delta| <= budget`` (when given) and ``original + delta`` in [0, 1]; delta
        may have 1 channel (a gray change), then it keeps every channel in range."""
        if budget is not None:
            delta = torch.maximum(torch.minimum(delta, budget), -budget)
        if delta.shape[0] == 1:
            low = (-original).amax(0, keepdim=True)
            high = (1 - original).amin(0, keepdim=True)
            return torch.maximum(torch.minimum(delta, high), low).detach()
        return ((original + delta).clamp(0.0, 1.0) - original).detach()
