"""The LowKey attack: gradient ascent on objective (1), with a seed and a step callback.

Bound: like the paper and its public ports, the perturbation has no explicit epsilon ball. It
starts uniform in [-init_noise, init_noise]. With the paper's sign steps each of the ``steps``
steps moves every pixel by exactly ``step_size``, so ``|x' - x| <= init_noise + steps *
step_size`` per pixel (0.13, about 33/255, for the paper's settings); with l2 steps
(``step_rule="l2"``) each step has root mean square ``step_size`` over the window, so that bound
holds for the window's root mean square instead, and one pixel may move further. ``x'`` is kept
in [0, 1]; pixels outside the windows around the faces never change.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from lowkey.align import alignment_matrix
from lowkey.errors import LowKeyError
from lowkey.faces import Face
from lowkey.models.recognizer import FaceRecognizer
from lowkey.objective import (
    FEATURE_DISTANCES,
    PENALTY_REGIONS,
    Layout,
    LowKeyObjective,
    gaussian_smoothing,
)
from lowkey.perceptual import PerceptualPenalty
from lowkey.visibility import change_budget
from lowkey.windows import FaceInWindow, Window, place_faces

logger = logging.getLogger(__name__)

#: ``on_step(step, total_steps, terms) -> keep going?``; ``terms``: a :class:`StepTerms`.
StepCallback = Callable[[int, int, Mapping[str, float]], bool]
#: ``stop() -> stop now?``, asked before every model call of a step (see ``run_many``).
StopCheck = Callable[[], bool]


class AttackCancelled(LowKeyError):
    """The step callback asked to stop; nothing was produced."""


#: The views of x' that the steps see in turn, for each value of :attr:`AttackSettings.views`.
VIEW_CYCLES: dict[str, tuple[str, ...]] = {
    "both": ("both",), "alternate": ("plain", "smoothed"),
    "alternate-jpeg": ("plain", "smoothed", "compressed"),
}
#: The JPEG qualities of the "compressed" steps, in turn: the range platforms re-encode uploads
#: at. Four, so that with five models taking turns every model meets every quality.
JPEG_QUALITIES = (90.0, 75.0, 60.0, 80.0)


@dataclass(frozen=True)
class AttackSettings:
    """Hyper-parameters of the attack (defaults: the paper's, appendix 8.1)."""

    steps: int = 50
    step_size: float = 0.0025
    alpha: float = 0.05
    #: What the perceptual term judges (a key of :data:`lowkey.objective.PENALTY_REGIONS`):
    #: "photo" (the paper: the whole photo) or "faces" (each face's face region, where a person
    #: looks: a small face in a big photo counts as much as a close-up)
    penalty_region: str = "photo"
    #: the feature term's distance (a key of :data:`lowkey.objective.FEATURE_DISTANCES`): the
    #: paper's "normalised" (||f(x) - f(x')|| / ||f(x)||) or "direction" (between unit vectors)
    feature_distance: str = "normalised"
    #: Which views of x' each step's feature term sees: "both" (the paper: x' and G(x') every
    #: step) or "alternate" (x' on odd steps, G(x') on even ones: half the model calls, and the
    #: objective over the attack is still (1)'s two terms, one step each).
    #: "alternate-jpeg": x', G(x') and J(x') in turn, J a JPEG of the window at one of
    #: :data:`JPEG_QUALITIES` (a third of the steps see the photo as a platform will serve it,
    #: so the change is made to survive re-encoding).
    views: str = "both"
    #: How a step follows the gradient: "sign" (the paper: every pixel moves by ``step_size``)
    #: or "l2" (the gradient divided by its root mean square over the window: the same energy
    #: a step as a sign step, put where the models are most sensitive instead of on every pixel
    #: alike; no per-pixel bound unless :attr:`epsilon` sets one).
    step_rule: str = "sign"
    blur_sigma: float = 3.0
    blur_window: int = 7
    init_noise: float = 0.005
    seed: int = 0
    penalty_max_side: int = 1536
    #: A window whose long side is over this many pixels (a face of some 1100 px and more: a
    #: 24-megapixel close-up) is attacked at a working resolution: average-pooled by the smallest
    #: integer factor k that brings it under, with the change found there and upsampled
    #: (bilinear) onto the full-resolution window. The models see such a face through a pooling
    #: of more than k anyway, so little is lost, and time and memory stay bounded whatever the
    #: photo's size.
    work_max_side: int = 1536
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
    #: How many of the ensemble's models each step's feature term asks (0 = all): the models
    #: take turns in the ensemble's order, k at a time (step i asks models i*k .. i*k + k - 1,
    #: modulo their number), so each takes part in k/n of the steps, alike for both views, and
    #: a step costs k/n of the model calls.
    models_per_step: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if not 0 < self.step_size <= 0.1:
            raise ValueError("step_size must be in (0, 0.1]")
        if self.alpha < 0 or self.init_noise < 0:
            raise ValueError("alpha and init_noise must not be negative")
        if self.blur_window < 1 or self.blur_window % 2 == 0 or self.blur_sigma <= 0:
            raise ValueError("blur_window must be odd and positive, blur_sigma positive")
        if self.work_max_side < 64 or self.penalty_max_side < 64:
            raise ValueError("work_max_side and penalty_max_side must be at least 64")
        if self.penalty_region not in PENALTY_REGIONS:
            raise ValueError(f"unknown penalty_region {self.penalty_region!r}")
        if self.feature_distance not in FEATURE_DISTANCES:
            raise ValueError(f"unknown feature_distance {self.feature_distance!r}")
        if self.views not in VIEW_CYCLES:
            raise ValueError(f"unknown views {self.views!r}; choose from {', '.join(VIEW_CYCLES)}")
        if self.step_rule not in ("sign", "l2"):
            raise ValueError(f"unknown step_rule {self.step_rule!r}; choose sign or l2")
        if self.budget not in ("uniform", "visibility"):
            raise ValueError(f"unknown budget {self.budget!r}")
        if not 0 <= self.budget_low <= 1 or not 0 <= self.feather < 0.5:
            raise ValueError("budget_low must be in [0, 1] and feather in [0, 0.5)")
        if self.epsilon is not None and not 0 < self.epsilon <= 1:
            raise ValueError("epsilon must be in (0, 1]")
        if self.models_per_step < 0:
            raise ValueError("models_per_step must not be negative (0: every model)")
        if min(self.momentum, self.gradient_blur, self.jitter, self.highpass) < 0:
            raise ValueError("momentum, gradient_blur, jitter and highpass must not be negative")

    @property
    def linf_bound(self) -> float:
        """Largest possible per-pixel change, in [0, 1] units (1: none below the [0, 1] range)."""
        reach = 1.0
        if self.step_rule == "sign":
            reach = min(reach, self.init_noise + self.steps * self.step_size)
        return reach if self.epsilon is None else min(reach, self.epsilon)


def objective_for(models: list[FaceRecognizer], penalty: PerceptualPenalty,
                  settings: AttackSettings) -> LowKeyObjective:
    """The objective (1) that ``settings`` describe (penalty weight, G, feature distance), over
    ``models`` with ``penalty``: the one place settings become an objective."""
    return LowKeyObjective(models, penalty, settings.alpha, settings.blur_sigma,
                           settings.blur_window, settings.penalty_max_side,
                           settings.feature_distance, settings.penalty_region)


@dataclass
class AttackResult:
    """``pixels``: the protected photo (3, H, W) RGB [0, 1]; ``original_embeddings``: each model's
    embeddings (N, D) of the original faces, in the order given; ``history``: terms per step."""

    pixels: torch.Tensor
    windows: list[Window]
    original_embeddings: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class PhotoTask:
    """One photo for :meth:`LowKeyAttack.run_many`: ``pixels`` (3, H, W) RGB [0, 1] on the
    models' device, the ``faces`` to protect, and whether the change must stay gray."""

    pixels: torch.Tensor
    faces: list[Face]
    grayscale: bool = False


@dataclass
class _Batch:
    """What :meth:`LowKeyAttack.run_many` works on: every photo's windows (photo pixels), their
    originals at working resolution (3, h, w), the faces in them, each window's change channels
    (1: gray or luma-only), each photo's generator and the layout (photo and scale of each
    window)."""

    windows: list[Window] = field(default_factory=list)
    originals: list[torch.Tensor] = field(default_factory=list)
    targets: list[FaceInWindow] = field(default_factory=list)
    channels: list[int] = field(default_factory=list)
    generators: list[torch.Generator] = field(default_factory=list)
    layout: Layout = field(default_factory=lambda: Layout((), ()))


def _pooled_to_source(factor: int) -> np.ndarray:
    """(3, 3) map from a pixel of a window average-pooled by ``factor`` to the window's own
    pixels (pooled pixel x' has its centre at ``factor x' + (factor - 1) / 2``)."""
    offset = (factor - 1) / 2
    return np.array([[factor, 0.0, offset], [0.0, factor, offset], [0.0, 0.0, 1.0]])


def _pooled_region(region: Window | None, factor: int, shape: Sequence[int]) -> Window | None:
    """A face's window-relative ``region`` (window pixels) on the window average-pooled by
    ``factor`` (``shape``: the pooled window's (h, w)): every pooled pixel it touches."""
    if region is None or factor == 1:
        return region
    return Window(region.x0 // factor, region.y0 // factor,
                  min(-(-region.x1 // factor), shape[1]), min(-(-region.y1 // factor), shape[0]))


class StepTerms(Mapping[str, float]):
    """The terms of one step (see :class:`~lowkey.objective.LowKeyObjective`), averaged over the
    photos of a batch, read from the device only when a value is asked for."""

    def __init__(self, terms: dict[str, torch.Tensor]) -> None:
        self._terms = terms

    def __getitem__(self, key: str) -> float:
        return float(self._terms[key].mean())

    def __iter__(self) -> Iterator[str]:
        return iter(self._terms)

    def __len__(self) -> int:
        return len(self._terms)


class LowKeyAttack:
    """Configured once with an ensemble and a penalty; ``run`` protects one photo's faces,
    ``run_many`` several photos' faces with one model call per step."""

    def __init__(self, objective: LowKeyObjective, settings: AttackSettings) -> None:
        self.objective = objective
        self.settings = settings

    def run(self, pixels: torch.Tensor, faces: list[Face], grayscale: bool = False,
            on_step: StepCallback | None = None, stop: StopCheck | None = None
            ) -> AttackResult:
        """Protect ``faces`` in ``pixels`` (3, H, W) RGB [0, 1] on the models' device.

        ``grayscale``: keep the perturbation gray (one channel repeated), so a grayscale photo
        stays grayscale. Raises :class:`AttackCancelled` if ``on_step`` returns False or
        ``stop`` returns True (see :meth:`run_many`).
        """
        return self.run_many([PhotoTask(pixels, faces, grayscale)], on_step, stop)[0]

    def run_many(self, photos: Sequence[PhotoTask], on_step: StepCallback | None = None,
                 stop: StopCheck | None = None) -> list[AttackResult]:
        """Protect several photos at once: every step runs each model once on all their faces.

        The objective is the sum of the photos' own objectives and every random draw comes from
        the photo's own generator (seeded with ``settings.seed``), so each photo gets the result
        it would get alone (up to floating-point summation order). ``on_step`` sees the terms
        averaged over the photos; returning False raises :class:`AttackCancelled`.

        ``stop`` is asked before each ensemble member's model call and before each step's
        backward pass: True raises :class:`AttackCancelled` there, so a cancelled attack ends
        within one model call instead of at the end of its step. It changes nothing else.
        """
        if not photos or any(not p.faces for p in photos):
            raise ValueError("no faces to protect")
        s = self.settings

        def check() -> None:
            if stop is not None and stop():
                raise AttackCancelled("cancelled during a step")

        batch = self._place(photos)
        plans = self.objective.plan(batch.originals, batch.targets)
        with torch.no_grad():
            original_embeddings = self.objective.embeddings(batch.originals, batch.targets, plans,
                                                            check)
        budgets = [self._budget(o) for o in batch.originals]
        blur_sigmas = [self._gradient_blur_sigma(batch.targets, i)
                       for i in range(len(batch.windows))]

        deltas = []
        for i, (original, budget) in enumerate(zip(batch.originals, budgets, strict=True)):
            noise = torch.rand((batch.channels[i], *original.shape[-2:]),
                               generator=batch.generators[batch.layout.window_photo[i]]) * 2 - 1
            deltas.append(self._project(original, (noise * s.init_noise).to(original), budget))
        velocity = [torch.zeros_like(d) for d in deltas]

        history: list[dict[str, torch.Tensor]] = []
        for step in range(s.steps):
            for delta in deltas:
                delta.requires_grad_(True)
            current = [o + d.expand_as(o) for o, d in zip(batch.originals, deltas, strict=True)]
            step_plans = plans
            if s.jitter:
                step_plans = self.objective.plan(batch.originals, self._jittered(
                    batch.targets, [batch.generators[batch.layout.window_photo[f.window]]
                                    for f in batch.targets]))
            view, quality = self._view(step)
            value, terms = self.objective(original_embeddings, batch.originals, current,
                                          batch.targets, batch.layout, step_plans, check, view,
                                          self._members(step), quality)
            check()
            grads = torch.autograd.grad(value, deltas)
            with torch.no_grad():
                deltas = [self._step(i, o, d, g, velocity, budgets[i], blur_sigmas[i],
                                     batch.layout.scale(i))
                          for i, (o, d, g) in enumerate(zip(batch.originals, deltas, grads,
                                                            strict=True))]
            history.append(terms)
            if on_step is not None and on_step(step + 1, s.steps, StepTerms(terms)) is False:
                raise AttackCancelled(f"cancelled after step {step + 1} of {s.steps}")
        results = self._results(photos, batch, deltas, original_embeddings, history)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("attack of %d photo(s), %d steps: last terms %s", len(photos), s.steps,
                         results[0].history[-1])
        return results

    def _view(self, step: int) -> tuple[str, float]:
        """The view step ``step`` sees (:data:`VIEW_CYCLES`) and, for a "compressed" one, its
        JPEG quality (:data:`JPEG_QUALITIES` in turn over the compressed steps)."""
        cycle = VIEW_CYCLES[self.settings.views]
        turn, at = divmod(step, len(cycle))
        return cycle[at], JPEG_QUALITIES[turn % len(JPEG_QUALITIES)]

    def _members(self, step: int) -> tuple[str, ...] | None:
        """The models step ``step`` asks (None: all; see :attr:`AttackSettings.models_per_step`)."""
        names = [m.name for m in self.objective.models]
        k = self.settings.models_per_step
        if not k or k >= len(names):
            return None
        return tuple(names[(step * k + j) % len(names)] for j in range(k))

    def _place(self, photos: Sequence[PhotoTask]) -> _Batch:
        """Every photo's windows (at their working resolution), faces and generator."""
        s = self.settings
        models = self.objective.models
        sizes = {m.name: m.input_size for m in models}
        batch = _Batch()
        window_photo: list[int] = []
        scales: list[int] = []
        for index, photo in enumerate(photos):
            height, width = photo.pixels.shape[-2:]
            matrices = [{m.name: alignment_matrix(m.record.contract, f.landmarks_array(), f.box,
                                                  (width, height)) for m in models}
                        for f in photo.faces]
            own, faces = place_faces(matrices, sizes, (width, height),
                                     [f.box for f in photo.faces])
            first = len(batch.windows)
            for w in own:
                factor = math.ceil(max(w.x1 - w.x0, w.y1 - w.y0) / s.work_max_side)
                # whole pooling cells only (the window's margin allows losing k - 1 pixels)
                w = Window(w.x0, w.y0, w.x0 + (w.x1 - w.x0) // factor * factor,
                           w.y0 + (w.y1 - w.y0) // factor * factor)
                full = photo.pixels[:, w.y0:w.y1, w.x0:w.x1].detach()
                batch.originals.append(full if factor == 1
                                       else F.avg_pool2d(full[None], factor)[0])
                batch.windows.append(w)
                scales.append(factor)
            batch.targets += [
                replace(f, window=first + f.window,
                        matrices={n: m @ _pooled_to_source(scales[first + f.window])
                                  for n, m in f.matrices.items()},
                        region=_pooled_region(f.region, scales[first + f.window],
                                              batch.originals[first + f.window].shape[-2:]))
                for f in faces]
            window_photo += [index] * len(own)
            batch.channels += [1 if photo.grayscale or s.luminance_only else 3] * len(own)
            batch.generators.append(torch.Generator(device="cpu").manual_seed(s.seed))
        batch.layout = Layout(tuple(window_photo),
                              tuple(p.pixels.shape[-2] * p.pixels.shape[-1] for p in photos),
                              tuple(scales))
        return batch

    def _step(self, i: int, original: torch.Tensor, delta: torch.Tensor, grad: torch.Tensor,
              velocity: list[torch.Tensor], budget: torch.Tensor | None, blur_sigma: float,
              scale: int) -> torch.Tensor:
        """Window ``i``'s next change: (TI) blur of the gradient, (MI) momentum, one step (signed,
        or scaled to unit root mean square: :attr:`AttackSettings.step_rule`), (high-pass), then
        back within the budget and the [0, 1] range."""
        s = self.settings
        if blur_sigma > 0:
            grad = gaussian_smoothing(grad[None], blur_sigma, 2 * math.ceil(3 * blur_sigma) + 1)[0]
        if s.momentum:
            velocity[i] = s.momentum * velocity[i] + grad / grad.abs().mean().clamp_min(1e-12)
            grad = velocity[i]
        if s.step_rule == "sign":
            direction = grad.sign()
        else:
            direction = grad / grad.square().mean().sqrt().clamp_min(1e-12)
        delta = delta.detach() + s.step_size * direction
        if s.highpass:  # sigma in photo pixels
            sigma = s.highpass / scale
            delta = delta - gaussian_smoothing(delta[None], sigma, 2 * math.ceil(3 * sigma) + 1)[0]
        return self._project(original, delta, budget)

    @staticmethod
    def _results(photos: Sequence[PhotoTask], batch: _Batch, deltas: list[torch.Tensor],
                 embeddings: dict[str, torch.Tensor],
                 history: list[dict[str, torch.Tensor]]) -> list[AttackResult]:
        """Each photo with its windows' changes (upsampled from a working resolution), its
        faces' original embeddings and its terms per step (read from the device once)."""
        names = list(dict.fromkeys(k for h in history for k in h))
        # a model that a step did not ask (models_per_step) has no term there: NaN
        missing = torch.full_like(history[0]["objective"], math.nan)
        table = torch.stack([torch.stack([h.get(k, missing) for k in names])
                             for h in history]).tolist()
        window_photo = batch.layout.window_photo
        results = []
        for index, photo in enumerate(photos):
            protected = photo.pixels.detach().clone()
            mine = [i for i, p in enumerate(window_photo) if p == index]
            for i in mine:
                w = batch.windows[i]
                delta = deltas[i]
                if batch.layout.scale(i) > 1:
                    delta = F.interpolate(delta[None], size=(w.y1 - w.y0, w.x1 - w.x0),
                                          mode="bilinear", align_corners=False)[0]
                full = photo.pixels[:, w.y0:w.y1, w.x0:w.x1]
                protected[:, w.y0:w.y1, w.x0:w.x1] = (full + delta.expand_as(full)).clamp(0, 1)
            faces = [i for i, f in enumerate(batch.targets) if window_photo[f.window] == index]
            results.append(AttackResult(
                protected, [batch.windows[i] for i in mine],
                {k: v[faces] for k, v in embeddings.items()},
                [dict(zip(names, (row[index] for row in step_terms), strict=True))
                 for step_terms in table]))
        return results

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
                  generators: list[torch.Generator]) -> list[FaceInWindow]:
        """Each model's alignment moved by a random similarity about the crop's centre: scale
        and angle within ``jitter`` (radians), shift within ``jitter`` x the crop size; face
        ``i``'s draws come from ``generators[i]``."""
        amount = self.settings.jitter
        sizes = {m.name: m.input_size for m in self.objective.models}
        out = []
        for face, generator in zip(targets, generators, strict=True):
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
            out.append(replace(face, matrices=matrices))
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
