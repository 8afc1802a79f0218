"""Objective (1) of the LowKey paper, term by term.

For original photo ``x``, perturbed photo ``x'``, ensemble ``f_1..f_n``, detection + alignment
``A`` and Gaussian smoothing ``G``::

    (1 / 2n) sum_i [ ||f_i(A(x)) - f_i(A(x'))|| + ||f_i(A(x)) - f_i(A(G(x')))|| ] / ||f_i(A(x))||
        - alpha * P(x, x')

averaged over every protected face, with ``P`` the perceptual penalty (LPIPS in the paper) on the
whole photo. ``G`` is a Gaussian blur (sigma 3, window 7) of the photo before alignment.

The feature term may instead be the distance between the embeddings' *directions*,
``||f(A(x)) / ||f(A(x))|| - f(A(x')) / ||f(A(x'))||||`` (``distance="direction"``, the default
preset's): recognisers compare embeddings by cosine, and the paper's term also rewards a longer
or shorter embedding, which no recogniser sees (docs/results.md measured what that costs).

The photo is handled as *windows*: disjoint rectangles around the faces (the region every model's
alignment reads, plus a margin). Pixels outside them never change, so the whole-photo penalty is
the area-weighted sum of the windows' penalties (exact up to the metric's border effects, since
the margin gives it context), and nothing scales with the photo's full size. A window larger
than the attack's working size is given here average-pooled (its :class:`Layout` scale), and G's
sigma shrinks with it. Several photos can be attacked at once: the objective is then the sum of
each photo's own (1) (:class:`Layout` says which window is whose).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from lowkey.align import AlignPlan, aligned, plan_alignments
from lowkey.filters import jpeg_compressed, separable_gaussian_blur, without_onednn
from lowkey.models.recognizer import FaceRecognizer
from lowkey.perceptual import PerceptualPenalty, pooled_under, pooling_factor
from lowkey.windows import FaceInWindow

#: model name -> one :class:`AlignPlan` per face (see :meth:`LowKeyObjective.plan`)
Plans = dict[str, list[AlignPlan]]
#: Which views of x' a step's feature term sees: both (objective (1)), x' alone, G(x') alone, or
#: J(x') alone (x' through JPEG, :func:`lowkey.filters.jpeg_compressed`).
View = Literal["both", "plain", "smoothed", "compressed"]
VIEWS: tuple[str, ...] = get_args(View)
#: Called before each ensemble member's model call; raises to stop the attack there (see
#: :meth:`lowkey.attack.LowKeyAttack.run_many`'s ``stop``).
Check = Callable[[], None]


#: JPEG's block (a 4:2:0 minimum coded unit: 16 x 16 luma pixels, 8 x 8 of each chroma).
JPEG_BLOCK = 16


def read_box(reads: Sequence[AlignPlan], size: tuple[int, int], margin: int,
             grid: int = 1) -> tuple[slice, slice]:
    """The rows and columns of an image of ``size`` (H, W) that a filter must be applied to
    for every crop of ``reads`` to see the filtered image: the union of their regions widened
    by ``margin`` pixels on each side (what the filter reads around a pixel) and snapped
    outwards to multiples of ``grid`` (a block filter's blocks), clipped to the image."""
    height, width = size

    def snapped(lo: int, hi: int, end: int) -> slice:
        return slice(max(0, (lo - margin) // grid * grid),
                     min(end, -(-(hi + margin) // grid) * grid))

    return (snapped(min(p.rows.start for p in reads), max(p.rows.stop for p in reads), height),
            snapped(min(p.cols.start for p in reads), max(p.cols.stop for p in reads), width))


@dataclass(frozen=True)
class Layout:
    """Which photo each window belongs to, each photo's area in pixels, and each window's
    scale (one working pixel is ``scale`` x ``scale`` photo pixels; see
    :attr:`lowkey.attack.AttackSettings.work_max_side`). The objective of a batch of photos is
    the sum of each photo's own objective (1), so a photo's gradient is the one it would get
    alone."""

    window_photo: tuple[int, ...]
    photo_areas: tuple[int, ...]
    window_scale: tuple[int, ...] = ()

    @classmethod
    def single(cls, windows: int, photo_area: int) -> Layout:
        """``windows`` windows of one photo of ``photo_area`` pixels, at full resolution."""
        return cls((0,) * windows, (photo_area,))

    def scale(self, window: int) -> int:
        return self.window_scale[window] if self.window_scale else 1

    @property
    def photos(self) -> int:
        return len(self.photo_areas)


def normalised_distance(original: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """The paper's term: ``||original - perturbed|| / ||original||`` per row;
    (N, D), (N, D) -> (N,), in [0, inf)."""
    return (original - perturbed).norm(dim=1) / original.norm(dim=1)


def direction_distance(original: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """Distance between the embeddings' directions, ``||o / ||o|| - p / ||p||||`` per row
    (``sqrt(2 - 2 cos)``); (N, D), (N, D) -> (N,), in [0, 2].

    Recognisers compare embeddings by cosine (or by distance between unit vectors), so only
    the direction of ``perturbed`` counts for them: unlike :func:`normalised_distance`, this
    term gives nothing for making the embedding longer or shorter."""
    return (F.normalize(original, dim=1) - F.normalize(perturbed, dim=1)).norm(dim=1)


#: The feature term's distance between f(A(x)) and f(A(x')) (see :class:`LowKeyObjective`).
FEATURE_DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "normalised": normalised_distance,
    "direction": direction_distance,
}

#: What the perceptual term P judges (see :class:`LowKeyObjective`): the whole photo, as in the
#: paper, or each face's face region (the detector's box widened, where a person looks).
PENALTY_REGIONS: tuple[str, ...] = ("photo", "faces")


def gaussian_smoothing(image: torch.Tensor, sigma: float, window: int) -> torch.Tensor:
    """``G``: Gaussian blur of (B, C, H, W) with reflect padding: torchvision's, run as two
    one-dimensional passes without oneDNN (:mod:`lowkey.filters`; on one CPU thread a 800 px
    window's forward and backward pass take a third of the time)."""
    return without_onednn(lambda x: separable_gaussian_blur(x, window, sigma), image)


class LowKeyObjective:
    """Computes objective (1) on windows of one or more photos; larger is better for the attacker.

    ``models``: the ensemble; ``penalty``: P; ``alpha``: its weight; ``blur_sigma`` and
    ``blur_window``: G's parameters; ``penalty_max_side``: windows larger than this are
    average-pooled (by an integer factor) before P, which bounds time and memory on big photos;
    ``distance``: a key of :data:`FEATURE_DISTANCES`, the paper's ``"normalised"`` or
    ``"direction"`` (between unit embeddings, what recognisers compare); ``penalty_region``: a
    key of :data:`PENALTY_REGIONS`, what P judges: the whole photo (``"photo"``, the paper: each
    window's penalty weighted by its share of the photo, nothing outside the windows changes) or
    each face on its face region (``"faces"``: the mean over the photo's faces, so a small face
    in a big photo, or beside a bigger one, is judged as closely as a close-up).
    """

    def __init__(self, models: list[FaceRecognizer], penalty: PerceptualPenalty,
                 alpha: float = 0.05, blur_sigma: float = 3.0, blur_window: int = 7,
                 penalty_max_side: int = 1536, distance: str = "normalised",
                 penalty_region: str = "photo") -> None:
        if not models:
            raise ValueError("the ensemble needs at least one model")
        if distance not in FEATURE_DISTANCES:
            raise ValueError(f"unknown feature distance {distance!r}; choose from "
                             f"{', '.join(FEATURE_DISTANCES)}")
        if penalty_region not in PENALTY_REGIONS:
            raise ValueError(f"unknown penalty region {penalty_region!r}; choose from "
                             f"{', '.join(PENALTY_REGIONS)}")
        self.distance = distance
        self.penalty_region = penalty_region
        self.models = models
        self.penalty = penalty
        self.alpha = alpha
        self.blur_sigma = blur_sigma
        self.blur_window = blur_window
        self.penalty_max_side = penalty_max_side
        #: small index and weight tensors of the current attack's layout (see _weights)
        self._constants: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def plan(self, windows: Sequence[torch.Tensor], faces: Sequence[FaceInWindow]) -> Plans:
        """Each model's :class:`AlignPlan` of every face in ``windows`` (3, h, w), on their device.

        The plans depend on the windows' shapes only, so those of an attack's originals serve
        every step (and the blurred view, which has the same shapes)."""
        crops = [(f.matrices[m.name], m.input_size, tuple(windows[f.window].shape[-2:]))
                 for m in self.models for f in faces]
        plans = plan_alignments(crops, windows[0].device, windows[0].dtype)
        n = len(faces)
        return {m.name: plans[i * n:(i + 1) * n] for i, m in enumerate(self.models)}

    def embeddings(self, windows: Sequence[torch.Tensor], faces: Sequence[FaceInWindow],
                   plans: Plans | None = None, check: Check | None = None,
                   members: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Each model's raw embeddings (N, D) of every face, from windows (3, h, w) RGB [0, 1]:
        all of a model's faces in one call; ``check`` is called before each model's call;
        ``members``: only these models (None: all)."""
        plans = self.plan(windows, faces) if plans is None else plans
        out = {}
        for m in self.models:
            if members is not None and m.name not in members:
                continue
            if check is not None:
                check()
            out[m.name] = m(torch.stack([aligned(windows[f.window], p)
                                         for f, p in zip(faces, plans[m.name], strict=True)]))
        return out

    def feature_terms(self, original: dict[str, torch.Tensor], windows: list[torch.Tensor],
                      faces: Sequence[FaceInWindow], plans: Plans | None = None,
                      layout: Layout | None = None, check: Check | None = None,
                      view: View = "both", members: Sequence[str] | None = None,
                      quality: float = 75.0) -> dict[str, torch.Tensor]:
        """Per model (of ``members``; None: all), (N,) feature distance per face: the mean of
        the plain (x') and the smoothed (G(x')) one for ``view="both"`` (objective (1)), or one
        view alone (``"plain"``, ``"smoothed"``, or ``"compressed"``: x' through JPEG at
        ``quality``; half the model calls; see :attr:`lowkey.attack.AttackSettings.views`).

        G's sigma is in photo pixels: on a window at a working scale k it is sigma / k."""
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
        plans = self.plan(windows, faces) if plans is None else plans
        distance = FEATURE_DISTANCES[self.distance]
        scale = layout.scale if layout is not None else (lambda i: 1)
        if view == "compressed":  # JPEG's chroma filters read a block past a block's edge
            seen = self.embeddings(
                self._where_read(windows, faces, plans, members,
                                 lambda part, i: jpeg_compressed(part, quality),
                                 JPEG_BLOCK, JPEG_BLOCK), faces, plans, check, members)
            return {name: distance(original[name], seen[name]) for name in seen}
        blurred = self._where_read(
            windows, faces, plans, members,
            lambda part, i: gaussian_smoothing(part, self.blur_sigma / scale(i), self.blur_window),
            self.blur_window // 2) if view != "plain" else []
        if view != "both":
            seen = self.embeddings(windows if view == "plain" else blurred, faces, plans, check,
                                   members)
            return {name: distance(original[name], seen[name]) for name in seen}
        # One model call per step for both views (faces of x' then of G(x')): half the kernel
        # launches, which is what bounds a step on a GPU (the models are in eval mode, so the
        # batch does not change any embedding).
        n = len(faces)
        both = self.embeddings(
            windows + blurred,
            list(faces) + [replace(f, window=f.window + len(windows)) for f in faces],
            {name: p + p for name, p in plans.items()}, check, members)
        return {
            name: 0.5 * (distance(original[name], both[name][:n])
                         + distance(original[name], both[name][n:]))
            for name in both
        }

    def _where_read(self, windows: list[torch.Tensor], faces: Sequence[FaceInWindow],
                    plans: Plans, members: Sequence[str] | None,
                    view: Callable[[torch.Tensor, int], torch.Tensor], margin: int,
                    grid: int = 1) -> list[torch.Tensor]:
        """Each window (3, h, w) with ``view(part, i)`` (of a (1, 3, h', w') part of window
        ``i``) applied where the asked models read it (:func:`read_box` of their plans, with
        ``margin`` and ``grid``) and the rest left as it is: no model sees it. The models read
        what ``view`` of the whole window would give them, at a fraction of the cost when a
        step asks one model of several, or a window holds more than the models read."""
        names = [m.name for m in self.models if members is None or m.name in members]
        out = []
        for i, w in enumerate(windows):
            reads = [plans[name][k] for name in names for k, f in enumerate(faces)
                     if f.window == i]
            if not reads:
                out.append(w)
                continue
            rows, cols = read_box(reads, tuple(w.shape[-2:]), margin, grid)
            if rows == slice(0, w.shape[-2]) and cols == slice(0, w.shape[-1]):
                out.append(view(w[None], i)[0])
                continue
            seen = w.clone()
            seen[:, rows, cols] = view(w[None, :, rows, cols], i)[0]
            out.append(seen)
        return out

    def perceptual(self, originals: list[torch.Tensor], windows: list[torch.Tensor],
                   layout: Layout, faces: Sequence[FaceInWindow] = ()) -> torch.Tensor:
        """(P,) P(x, x') of each photo. ``penalty_region`` "photo" (the paper): its windows'
        penalties weighted by their share of the photo's area (pixels outside never change).
        "faces": the mean over its ``faces`` of P on each one's face region
        (:attr:`~lowkey.windows.FaceInWindow.region`: the detector's box widened, where a person
        looks at it), read at most ``penalty_max_side`` and seen at the size it has in the photo
        (the penalty's ``pixel_size``). Each face's look then counts as much as its feature
        term does, however small the face and whether or not it shares a window with a bigger
        one, and its change is not diluted over the background around it (a change confined
        to the face would look smaller over the whole window than on the face a person looks
        at)."""
        if self.penalty_region == "faces":
            if not faces:
                raise ValueError('penalty_region "faces" needs the faces')
            per_face = []
            for face in faces:
                before, after = originals[face.window], windows[face.window]
                r = face.region
                if r is not None:
                    before = before[:, r.y0:r.y1, r.x0:r.x1]
                    after = after[:, r.y0:r.y1, r.x0:r.x1]
                per_face.append(self._read(before, after, layout.scale(face.window)))
            face_photo, counts = self._face_photos(layout, faces, originals[0].device)
            return (torch.stack(per_face).new_zeros(layout.photos)
                    .index_add(0, face_photo, torch.stack(per_face)) / counts)
        per_window = [self._read(before, after, layout.scale(i))
                      for i, (before, after) in enumerate(zip(originals, windows, strict=True))]
        shares, window_photo = self._weights(layout, originals)
        weighted = torch.stack(per_window) * shares
        return weighted.new_zeros(layout.photos).index_add(0, window_photo, weighted)

    def _read(self, before: torch.Tensor, after: torch.Tensor, scale: int) -> torch.Tensor:
        """P of two (3, h, w) crops of a window at working scale ``scale``, pooled under
        ``penalty_max_side`` and seen at the size they have in the photo; a scalar."""
        factor = pooling_factor(before.shape, self.penalty_max_side)
        a, b = pooled_under(before[None], after[None], self.penalty_max_side)
        return self.penalty(a, b, factor * scale).sum()

    def _weights(self, layout: Layout, originals: list[torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each window's area share of its photo and its photo's index, as tensors on the
        windows' device: made once per layout, not every step (each new small tensor on a GPU
        is a transfer the host waits for)."""
        key = ("windows", layout, tuple(tuple(o.shape) for o in originals), originals[0].device)
        if key not in self._constants:
            areas = [o.shape[-2] * o.shape[-1] * layout.scale(i) ** 2
                     for i, o in enumerate(originals)]
            shares = [area / layout.photo_areas[layout.window_photo[i]]
                      for i, area in enumerate(areas)]
            self._remember(key, (torch.tensor(shares, dtype=originals[0].dtype,
                                              device=originals[0].device),
                                 torch.tensor(layout.window_photo, device=originals[0].device)))
        return self._constants[key]

    def _face_photos(self, layout: Layout, faces: Sequence[FaceInWindow],
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Each face's photo index and each photo's face count, on ``device`` (made once)."""
        key = ("faces", layout, tuple(f.window for f in faces), device)
        if key not in self._constants:
            index = torch.tensor([layout.window_photo[f.window] for f in faces], device=device)
            counts = torch.zeros(layout.photos, device=device).index_add(
                0, index, torch.ones(len(faces), device=device))
            self._remember(key, (index, counts))
        return self._constants[key]

    def _remember(self, key: tuple, value: tuple[torch.Tensor, torch.Tensor]) -> None:
        if len(self._constants) > 16:  # another attack's: forget them
            self._constants.clear()
        self._constants[key] = value

    def __call__(self, original_embeddings: dict[str, torch.Tensor],
                 originals: list[torch.Tensor], windows: list[torch.Tensor],
                 faces: Sequence[FaceInWindow], layout: Layout, plans: Plans | None = None,
                 check: Check | None = None, view: View = "both",
                 members: Sequence[str] | None = None, quality: float = 75.0
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The objective summed over the photos (a scalar) and each photo's terms, (P,) tensors
        detached from the graph: ``objective``, ``feature``, ``perceptual`` and
        ``feature/<model>``. Nothing here waits for the device (no ``.item()``). ``check`` is
        called before each ensemble member's model call (it raises to stop); ``view``: see
        :meth:`feature_terms`; ``members``: the models this step asks (None: all; the feature
        term is then their mean); ``quality``: the JPEG quality of a ``"compressed"`` view."""
        per_model = self.feature_terms(original_embeddings, windows, faces, plans, layout,
                                       check, view, members, quality)
        face_photo, counts = self._face_photos(layout, faces, windows[0].device)

        def per_photo(values: torch.Tensor) -> torch.Tensor:  # mean over each photo's faces
            return values.new_zeros(layout.photos).index_add(0, face_photo, values) / counts

        model_terms = {name: per_photo(v) for name, v in per_model.items()}
        feature = torch.stack(list(model_terms.values())).mean(0)
        perceptual = self.perceptual(originals, windows, layout, faces)
        value = feature - self.alpha * perceptual
        terms = {"objective": value, "feature": feature, "perceptual": perceptual}
        terms.update({f"feature/{k}": v for k, v in model_terms.items()})
        return value.sum(), {k: v.detach() for k, v in terms.items()}


__all__ = ["FEATURE_DISTANCES", "JPEG_BLOCK", "PENALTY_REGIONS", "VIEWS", "Check", "View", "Layout",
           "LowKeyObjective", "Plans", "read_box",
           "direction_distance", "gaussian_smoothing", "normalised_distance"]
