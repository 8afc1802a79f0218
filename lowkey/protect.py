"""Protect photos end to end: decode, find faces, attack, encode, and measure what was written.

One pipeline for the CLI, the daemon and the evaluation. The models live in a shared
:class:`~lowkey.pool.ModelPool` (each loaded once per device); a :class:`Protector` is cheap
settings over it (preset, strength, seed, which faces), so a caller may make one per request.
Every report is measured on the *encoded* output (after 8-bit rounding and JPEG/WebP
compression), with faces found afresh in it, because that is what a recognition system will see.

:func:`protect_bytes` is the servable form: bytes in, bytes out, nothing written to disk, with
phases, cancellation and a deadline through a :class:`~lowkey.jobs.JobControl`;
:func:`protect_bytes_batch` the same for several photos with one attack (the daemon's queue on a
GPU).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from lowkey.attack import (
    AttackCancelled,
    AttackResult,
    LowKeyAttack,
    PhotoTask,
    StepCallback,
    StopCheck,
)
from lowkey.errors import LowKeyError, WeightsError
from lowkey.faces import Face, FaceSelection, select_faces
from lowkey.image_io import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_QUALITY,
    Photo,
    encode_photo,
    load_photo,
    output_path_for,
    write_encoded,
)
from lowkey.jobs import JobCancelled, JobControl, JobProgress, ProtectOptions
from lowkey.measure import DLIB, FaceReport, PhotoMeasurer, PhotoReport, face_region
from lowkey.models.recognizer import FaceRecognizer
from lowkey.models.registry import report_judges
from lowkey.objective import LowKeyObjective
from lowkey.perceptual import LPIPSPenalty, load_penalty
from lowkey.pool import ModelPool, shared_pool
from lowkey.presets import DEFAULT_PRESET, Preset, get_preset
from lowkey.quality_floor import apply_floor

logger = logging.getLogger(__name__)

#: Photos attacked together on a GPU (``lowkey protect --batch``, Ray's GPU actors): a step
#: there is bound by kernel launches, so a batch costs little more than one photo. On a CPU the
#: default is 1: batching 3 small photos measured 0.86 of the time one by one, while every photo
#: of a batch is held in memory at once and no output appears before the batch is done.
BATCH_ON_GPU = 8

#: MIME types of the formats LowKey writes.
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
               "HEIF": "image/heif"}


class Protector:
    """Protects photos one after another with fixed settings, over a shared model pool.

    ``preset``: a key of :data:`lowkey.presets.PRESETS`; ``strength``: see :class:`Preset`
    (None: the preset's own); ``faces``: protect every face (default) or only the largest;
    ``device``: default CUDA when present, else CPU; ``judge``: also measure with the
    never-attacked judges (dlib when it is installed, and the registry's report judges that
    this protector does not attack); ``models``: attack these registry models instead of the
    preset's ensemble (same step settings; e.g. one model, for the evaluation's transfer
    matrix); ``pool``: where the models come from (default: the process-wide pool of
    ``device``); ``download``: fetch missing weights (False: raise
    :class:`~lowkey.pool.ModelsMissing` instead, as the daemon does).
    """

    def __init__(self, preset: str = DEFAULT_PRESET, strength: int | None = None, seed: int = 0,
                 faces: FaceSelection = "all", device: str | None = None,
                 judge: bool = True, progress: bool = False,
                 models: Sequence[str] | None = None, *, pool: ModelPool | None = None,
                 download: bool = True) -> None:
        chosen = get_preset(preset)
        if models is not None and (isinstance(models, str) or not models):
            raise ValueError("models must be a non-empty list of registry model names")
        self.preset = chosen if models is None else replace(chosen, models=tuple(models))
        self.settings = self.preset.settings(strength, seed)
        self.quality_floor = self.preset.quality_floor
        self.face_selection = faces
        self.pool = pool if pool is not None else shared_pool(device)
        self.device = self.pool.device
        self.models = self.pool.recognizers(self.preset.models, download=download,
                                            progress=progress)
        self.detector = self.pool.detector()
        self.penalty = self.pool.penalty(self.preset.penalty, load_penalty)
        self.objective = LowKeyObjective(self.models, self.penalty, self.settings.alpha,
                                         self.settings.blur_sigma, self.settings.blur_window,
                                         self.settings.penalty_max_side)
        self.attack = LowKeyAttack(self.objective, self.settings)
        self.judge = self.pool.judge() if judge else None
        self.held_out = self._report_judges(download, progress) if judge else []
        self.measurer = PhotoMeasurer(
            self.detector, self.models, self.judge,
            self.penalty if isinstance(self.penalty, LPIPSPenalty) else None,
            self.settings.penalty_max_side, held_out=self.held_out)
        logger.debug("protector: preset %s, %d models on %s, penalty %s, judge %s",
                     self.preset.name, len(self.models), self.device, self.penalty.name,
                     self.judge.name if self.judge else "none")

    def _report_judges(self, download: bool, progress: bool) -> list[FaceRecognizer]:
        """The registry's report judges that this protector does not attack; without their
        weights (not fetched, and no download allowed) reports go without them, with a warning."""
        names = [r.name for r in report_judges() if r.name not in self.preset.models]
        try:
            return self.pool.recognizers(names, download=download, progress=progress)
        except WeightsError as exc:
            logger.warning("protect reports will not be judged by %s: %s (lowkey models "
                           "fetch)", ", ".join(names), exc)
            return []

    @classmethod
    def for_options(cls, options: ProtectOptions, pool: ModelPool,
                    download: bool = False) -> Protector:
        """A protector with the settings of ``options`` over ``pool`` (no download by default)."""
        return cls(preset=options.preset, strength=options.strength, seed=options.seed,
                   faces=options.faces, judge=options.judge and options.measure,
                   models=options.models, pool=pool, download=download)

    def describe(self) -> dict:
        """The settings in force (for reports and the daemon's status)."""
        return {"preset": self.preset.name, "models": [m.name for m in self.models],
                "device": str(self.device), "penalty": self.penalty.name,
                "judge": self.judge.name if self.judge else None,
                "judges": [m.name for m in self.held_out] + ([DLIB] if self.judge else []),
                "settings": asdict(self.settings), "linf_bound": self.settings.linf_bound}

    def find_faces(self, photo: Photo) -> list[Face]:
        return select_faces(self.detector.detect(photo.pixels), self.face_selection)

    def protect_photo(self, photo: Photo, on_step: StepCallback | None = None,
                      keep_location: bool = False) -> tuple[bytes | None, PhotoReport]:
        """Protect a decoded photo; returns the encoded output (None if no face) and a report.

        ``on_step`` returning False raises :class:`~lowkey.attack.AttackCancelled`. (As a job,
        with phases, cancellation and a deadline: :func:`protect_bytes`.)
        """
        start = time.perf_counter()
        report = self._new_report(photo)
        faces = self.find_faces(photo)
        if not faces:
            report.status = "no-face"
            report.seconds = time.perf_counter() - start
            return None, report
        result = self.attack.run(photo.pixels.to(self.device), faces, grayscale=photo.grayscale,
                                 on_step=on_step)
        encoded = self._finish(photo, faces, result, report, JobControl(),
                               keep_location=keep_location)
        report.seconds = time.perf_counter() - start
        return encoded, report

    def _new_report(self, photo: Photo, format: str | None = None) -> PhotoReport:
        return PhotoReport(source=str(photo.source or "<bytes>"), status="protected",
                           size=list(photo.size), format=format or photo.format,
                           device=str(self.device), preset=self.preset.name,
                           steps=self.settings.steps, penalty=self.penalty.name,
                           smallest_face_px=self.detector.smallest_face_px(photo.size))

    def _finish(self, photo: Photo, faces: list[Face], result: AttackResult, report: PhotoReport,
                control: JobControl, *, keep_location: bool = False, format: str | None = None,
                quality: int = DEFAULT_QUALITY, measure: bool = True) -> bytes:
        """After the attack: the quality floor, encoding and (``measure``) the report's
        measurements of the encoded output. Returns the encoded photo."""
        protected = result.pixels.cpu()
        if self.quality_floor is not None:
            control.enter(JobProgress.at("floor", measure=measure))
            protected, report.change_kept = apply_floor(photo, protected, result.windows,
                                                        faces, self.quality_floor,
                                                        format=format, quality=quality)
        control.enter(JobProgress.at("encode", measure=measure))
        encoded = encode_photo(photo, protected, keep_location=keep_location, quality=quality,
                               format=format)
        report.penalty_value = result.history[-1]["perceptual"] if result.history else None
        if measure:
            control.enter(JobProgress.at("measure", measure=measure))
            measure_start = time.perf_counter()
            self.measurer.measure(photo, load_photo(encoded), report, faces,
                                  result.original_embeddings)
            report.measure_seconds = time.perf_counter() - measure_start
        else:
            report.faces = [FaceReport(box=[round(v, 1) for v in f.box],
                                       score=round(f.score, 4),
                                       region=list(face_region(f.box, photo.size)))
                            for f in faces]
            report.linf = float((protected - photo.pixels).abs().max())
        control.check()
        return encoded

    def warm_up(self, measure: bool = True) -> None:
        """Detection, one attack step, encoding and (``measure``) a measurement on a real face
        (scikit-image's astronaut at 256 px), so that the first real photo does not pay for
        lazy initialisation (kernels, caches, ColorVideoVDP's set-up)."""
        import numpy as np
        from skimage import data

        t = time.perf_counter()
        pixels = torch.from_numpy(np.ascontiguousarray(data.astronaut()[::2, ::2]))
        photo = Photo(pixels=pixels.permute(2, 0, 1).float() / 255, alpha=None, format="PNG",
                      mode="RGB", grayscale=False, bit_depth=8, icc_profile=None, exif=None,
                      xmp=None, lossless=True, source=None)
        faces = self.find_faces(photo) or [Face(
            box=(45.0, 10.0, 135.0, 120.0), score=1.0,
            landmarks=((75.0, 55.0), (105.0, 55.0), (90.0, 75.0), (78.0, 95.0), (102.0, 95.0)))]
        one_step = LowKeyAttack(self.objective, replace(self.settings, steps=1))
        result = one_step.run(photo.pixels.to(self.device), faces)
        encoded = encode_photo(photo, result.pixels.cpu())
        if measure:
            self.measurer.measure(photo, load_photo(encoded), PhotoReport("warm-up", "protected"),
                                  faces, result.original_embeddings)
        logger.info("warmed up %s on %s in %.1f s", self.preset.name, self.device,
                    time.perf_counter() - t)

    def protect_file(self, source: Path, out_dir: Path | None = None,
                     on_step: StepCallback | None = None,
                     keep_location: bool = False) -> PhotoReport:
        """Protect one file into ``out_dir`` (default: beside it, ``name_lowkey.ext``).

        Never raises for a bad photo: the report says ``failed`` (or ``cancelled`` when
        ``on_step`` stopped it) and why. The source is never written to; a no-face photo gets
        no output. When the output exists already the photo is ``skipped`` before any work (a
        re-run does only what is left; delete an output to protect its photo again).
        """
        return self.protect_files([source], out_dir, on_step, keep_location)[0]

    def protect_files(self, sources: Sequence[Path], out_dir: Path | None = None,
                      on_step: StepCallback | None = None,
                      keep_location: bool = False) -> list[PhotoReport]:
        """:meth:`protect_file` of each source, with one attack for all of them: every step
        runs each model once on every face of every photo (:meth:`LowKeyAttack.run_many`;
        each photo gets the result it would get alone). What fits in one batch is the
        caller's choice (``lowkey protect --batch``). Reports come in the order of ``sources``.
        """
        start = time.perf_counter()
        reports: list[PhotoReport | None] = [None] * len(sources)
        pending = []  # (index, photo, faces, report, destination)
        for i, source in enumerate(sources):
            try:
                dest = output_path_for(source, out_dir)
                if dest.exists():
                    logger.info("%s: %s exists already: skipped", source, dest)
                    reports[i] = PhotoReport(
                        source=str(source), status="skipped", output=str(dest),
                        error=f"{dest} exists already (delete it to protect the photo again)",
                        seconds=time.perf_counter() - start)
                    continue
                photo = load_photo(source)
                report = self._new_report(photo)
                faces = self.find_faces(photo)
                if not faces:
                    report.status = "no-face"
                    report.seconds = time.perf_counter() - start
                    reports[i] = report
                    continue
                pending.append((i, photo, faces, report, dest))
            except (LowKeyError, ValueError, OSError) as exc:
                reports[i] = self._failed(source, exc, start)
        if pending:
            try:
                results = self._attack_batch([(p, faces) for _, p, faces, _, _ in pending],
                                             on_step)
            except (LowKeyError, ValueError, OSError) as exc:
                for i, *_ in pending:
                    reports[i] = self._failed(sources[i], exc, start)
                pending, results = [], []
            for (i, photo, faces, report, dest), result in zip(pending, results, strict=True):
                try:
                    encoded = self._finish(photo, faces, result, report, JobControl(),
                                           keep_location=keep_location)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    report.output = str(write_encoded(photo, encoded, dest))
                    report.seconds = time.perf_counter() - start
                    reports[i] = report
                except (LowKeyError, ValueError, OSError) as exc:
                    reports[i] = self._failed(sources[i], exc, start)
        return [r for r in reports if r is not None]

    def _attack_batch(self, photos: list[tuple[Photo, list[Face]]],
                      on_step: StepCallback | None,
                      stop: StopCheck | None = None) -> list[AttackResult]:
        """One attack for every photo; when the GPU's memory does not hold the batch, the
        photos one by one instead (a photo that does not fit alone raises)."""
        try:
            return self.attack.run_many([PhotoTask(p.pixels.to(self.device), faces, p.grayscale)
                                         for p, faces in photos], on_step, stop)
        except torch.cuda.OutOfMemoryError:
            if len(photos) == 1:
                raise
            torch.cuda.empty_cache()
            logger.warning("a batch of %d photos does not fit in the GPU's memory: one by one",
                           len(photos))
            return [self.attack.run(p.pixels.to(self.device), faces, p.grayscale, on_step, stop)
                    for p, faces in photos]

    @staticmethod
    def _failed(source: Path, exc: Exception, start: float) -> PhotoReport:
        status = "cancelled" if isinstance(exc, AttackCancelled) else "failed"
        logger.warning("%s %s: %s", source, status, exc)
        return PhotoReport(source=str(source), status=status, error=str(exc),
                           seconds=time.perf_counter() - start)


@dataclass
class ProtectOutcome:
    """What :func:`protect_bytes` made: the encoded photo (None when no face was found, then
    nothing changes), its MIME type, the report and whether the report was measured."""

    output: bytes | None
    media_type: str | None
    report: PhotoReport
    measured: bool


def protect_bytes(data: bytes, options: ProtectOptions, pool: ModelPool,
                  control: JobControl | None = None, *,
                  max_pixels: int = DEFAULT_MAX_PIXELS,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> ProtectOutcome:
    """Protect the photo in ``data`` with ``options`` over ``pool``: bytes in, bytes out,
    nothing read from or written to disk but the (cached) weights, nothing downloaded.

    Raises :class:`~lowkey.errors.ImageError` for input that is not an acceptable image
    (format, size over ``max_bytes``/``max_pixels``, truncated), ``ModelsMissing``,
    ``JobCancelled``/``JobTimedOut`` when ``control`` stops it, and whatever else failed
    (see :func:`lowkey.jobs.job_error`). A CUDA out-of-memory error releases the cache first.
    """
    control = control if control is not None else JobControl()
    for _, result in protect_bytes_batch([(data, options, control)], pool,
                                         max_pixels=max_pixels, max_bytes=max_bytes):
        if isinstance(result, Exception):
            raise result
        return result
    raise AssertionError("protect_bytes_batch gave no result")  # pragma: no cover


BytesJob = tuple[bytes, ProtectOptions, JobControl]


@dataclass
class _Decoded:
    """A job of :func:`protect_bytes_batch` whose photo has faces, waiting for the attack."""

    index: int
    photo: Photo
    faces: list[Face]
    report: PhotoReport
    control: JobControl
    options: ProtectOptions
    start: float

    def progress(self, phase: str, step: int | None = None, steps: int | None = None) -> None:
        self.control.report(JobProgress.at(phase, step, steps, self.options.measure))


def protect_bytes_batch(jobs: Sequence[BytesJob], pool: ModelPool, *,
                        max_pixels: int = DEFAULT_MAX_PIXELS,
                        max_bytes: int = DEFAULT_MAX_BYTES,
                        ) -> Iterator[tuple[int, ProtectOutcome | Exception]]:
    """:func:`protect_bytes` of several photos, ``(data, options, control)`` each, with one
    attack for all of them (each gets the result it would get alone; see
    :meth:`LowKeyAttack.run_many`). Their options must have the same
    :attr:`~lowkey.jobs.ProtectOptions.batch_key` (ValueError otherwise).

    Yields ``(index in jobs, outcome or the exception that job raised)`` once per job, as each
    is ready: a photo that fails to decode or has no face at once, the others one by one after
    the attack (floor, encoding and measuring are each photo's own). A job whose control stops
    during the attack goes on with the batch (its result is dropped; it gets its
    ``JobCancelled``/``JobTimedOut``); the attack stops when every job of the batch has stopped.
    """
    if len({options.batch_key for _, options, _ in jobs}) > 1:
        raise ValueError("the jobs of a batch must have the same preset, strength, seed, faces, "
                         "models and judging")
    protector: Protector | None = None
    decoded: list[_Decoded] = []
    for index, (data, options, control) in enumerate(jobs):
        try:
            start = time.perf_counter()
            control.enter(JobProgress.at("decode", measure=options.measure))
            photo = load_photo(bytes(data), max_pixels=max_pixels, max_bytes=max_bytes)
            protector = protector or Protector.for_options(options, pool)
            report = protector._new_report(photo, options.format)
            control.enter(JobProgress.at("detect", measure=options.measure))
            faces = protector.find_faces(photo)
            if faces:
                decoded.append(_Decoded(index, photo, faces, report, control, options, start))
                continue
            report.status = "no-face"
            report.seconds = time.perf_counter() - start
            control.enter(JobProgress.at("done"))
            yield index, ProtectOutcome(None, None, report, options.measure)
        except Exception as exc:
            yield index, _released(exc)
    if protector is None:
        return
    ready = []
    for job in decoded:
        job.progress("attack", 0, protector.settings.steps)
        stop = job.control.stopped()
        if stop is None:
            ready.append(job)
        else:
            yield job.index, stop
    if not ready:
        return

    def step(k: int, n: int, terms: Mapping[str, float]) -> bool:
        """Each running job's progress; False (stop the attack) when every job has stopped."""
        for job in ready:
            if job.control.stopped() is None:
                job.progress("attack", k, n)
        return any(job.control.stopped() is None for job in ready)

    def all_stopped() -> bool:  # asked before each model call: a cancel ends the attack there
        return all(job.control.stopped() is not None for job in ready)

    try:
        results = protector._attack_batch([(job.photo, job.faces) for job in ready], step,
                                          all_stopped)
    except AttackCancelled:
        for job in ready:
            yield job.index, job.control.stopped() or JobCancelled("cancelled during attack")
        return
    except Exception as exc:
        exc = _released(exc)
        for job in ready:
            yield job.index, exc
        return
    for job, result in zip(ready, results, strict=True):
        try:
            job.control.check()
            options = job.options
            encoded = protector._finish(job.photo, job.faces, result, job.report, job.control,
                                        keep_location=options.keep_location,
                                        format=options.format, quality=options.quality,
                                        measure=options.measure)
            job.report.seconds = time.perf_counter() - job.start
            job.control.enter(JobProgress.at("done"))
            yield job.index, ProtectOutcome(encoded,
                                            MEDIA_TYPES[options.format or job.photo.format],
                                            job.report, options.measure)
        except Exception as exc:
            yield job.index, _released(exc)


def _released(exc: Exception) -> Exception:
    """``exc``, after releasing the CUDA cache when it is an out-of-memory error."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
    return exc


__all__ = ["BATCH_ON_GPU", "MEDIA_TYPES", "BytesJob", "Preset", "ProtectOutcome",
           "Protector", "protect_bytes", "protect_bytes_batch"]
