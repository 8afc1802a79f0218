"""Protect photos end to end: decode, find faces, attack, encode, and measure what was written.

One pipeline for the CLI, the daemon and the evaluation. The models live in a shared
:class:`~lowkey.pool.ModelPool` (each loaded once per device); a :class:`Protector` is cheap
settings over it (preset, strength, seed, which faces), so a caller may make one per request.
Every report is measured on the *encoded* output (after 8-bit rounding and JPEG/WebP
compression), with faces found afresh in it, because that is what a recognition system will see.

One core, :meth:`Protector.protect_jobs`: decode, find faces, (no face: done), one attack for
every photo of a batch, then each photo's floor, encoding and measuring, with an outcome per
photo as it is ready. The ways in are thin adapters over it:

- :meth:`Protector.protect_photo` (a decoded photo), :meth:`Protector.protect_file` and
  :meth:`Protector.protect_files` (files in, files out: output naming, skipping what exists,
  writing; the CLI and each Ray actor of :mod:`lowkey.ray_protect`);
- :func:`protect_bytes` and :func:`protect_bytes_batch`: the servable form, bytes in, bytes
  out, nothing written to disk, with phases, cancellation and a deadline through a
  :class:`~lowkey.jobs.JobControl` (the daemon's queue).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import torch

from lowkey.attack import (
    JPEG_QUALITIES,
    VIEW_CYCLES,
    AttackCancelled,
    AttackResult,
    LowKeyAttack,
    PhotoTask,
    StepCallback,
    StopCheck,
    objective_for,
)
from lowkey.errors import LowKeyError, WeightsError
from lowkey.faces import Face, FaceSelection, select_faces
from lowkey.filters import jpeg_compressed
from lowkey.image_decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, Photo, load_photo
from lowkey.image_encode import encode_photo
from lowkey.image_formats import DEFAULT_QUALITY, MEDIA_TYPES
from lowkey.jobs import JobControl, JobProgress, JobStopped, ProtectOptions
from lowkey.measure import DLIB, FaceReport, PhotoMeasurer, PhotoReport, face_region
from lowkey.models.recognizer import FaceRecognizer
from lowkey.models.registry import report_judges
from lowkey.output_files import output_path_for, write_encoded
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


class Protector:
    """Protects photos with fixed settings, over a shared model pool: one photo, or a batch with
    one attack for all (:meth:`protect_jobs`, the core every way in goes through).

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
        #: the settings this protector attacks with (checked there: :class:`ProtectOptions`)
        self.options = ProtectOptions(preset=preset, strength=strength, seed=seed, faces=faces,
                                      judge=judge, models=models)
        chosen = get_preset(self.options.preset)
        self.preset = (chosen if self.options.models is None
                       else replace(chosen, models=self.options.models))
        self.settings = self.preset.settings(self.options.strength, self.options.seed)
        self.quality_floor = self.preset.quality_floor
        self.face_selection = self.options.faces
        self.pool = pool if pool is not None else shared_pool(device)
        self.device = self.pool.device
        self.models = self.pool.recognizers(self.preset.models, download=download,
                                            progress=progress)
        self.detector = self.pool.detector()
        self.penalty = self.pool.penalty(self.preset.penalty, load_penalty)
        self.objective = objective_for(self.models, self.penalty, self.settings)
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
        """The faces this protector protects in ``photo`` (all, or the largest)."""
        return select_faces(self.detector.detect(photo.pixels), self.face_selection)

    def protect_jobs(self, jobs: Sequence[PhotoJob], on_step: StepCallback | None = None,
                     ) -> Iterator[tuple[int, ProtectOutcome | Exception]]:
        """The pipeline, for every way in: decode, find faces, (no face: done), one attack for
        every photo with faces, then each photo's quality floor, encoding and measuring.

        Every step of the attack runs each model once on every face of every photo
        (:meth:`LowKeyAttack.run_many`; each photo gets the result it would get alone, up to
        float summation order). Each job's :class:`JobControl` hears its phases and steps and
        may stop it: a job stopped during the attack goes on with the batch (its result is
        dropped, it gets its ``JobCancelled``/``JobTimedOut``) and the attack stops when every
        job has stopped. ``on_step`` returning False stops the attack for all
        (:class:`AttackCancelled`).

        Yields ``(index in jobs, outcome or the exception that job raised)`` once per job, as
        each is ready: a photo that fails to decode or has no face at once, the others one by
        one after the attack. Raises ValueError when a job's options ask for other attack
        settings than this protector's (:attr:`ProtectOptions.batch_key`).
        """
        if any(job.options.batch_key != self.options.batch_key for job in jobs):
            raise ValueError("the jobs of a batch must have the same preset, strength, seed, "
                             "faces, models and judging as their protector")
        waiting: list[_Waiting] = []
        for index, job in enumerate(jobs):
            start = time.perf_counter()
            try:
                job.enter("decode")
                photo = job.load()
                report = self._new_report(photo, job.options.format)
                job.enter("detect")
                faces = self.find_faces(photo)
                if faces:
                    waiting.append(_Waiting(index, job, photo, faces, report, start))
                    continue
                report.status = "no-face"
                report.seconds = time.perf_counter() - start
                job.enter("done")
                yield index, ProtectOutcome(None, None, report, job.options.measure)
            except Exception as exc:
                yield index, _released(exc)
        ready = []
        for item in waiting:
            item.job.progress("attack", 0, self.settings.steps)
            stop = item.job.control.stopped()
            if stop is None:
                ready.append(item)
            else:
                yield item.index, stop
        if not ready:
            return

        def step(k: int, n: int, terms: Mapping[str, float]) -> bool:
            """Each running job's progress; False (stop the attack) when every job has
            stopped or ``on_step`` says so."""
            for item in ready:
                if item.job.control.stopped() is None:
                    item.job.progress("attack", k, n)
            if on_step is not None and on_step(k, n, terms) is False:
                return False
            return any(item.job.control.stopped() is None for item in ready)

        def all_stopped() -> bool:  # asked before each model call: a cancel ends the attack there
            return all(item.job.control.stopped() is not None for item in ready)

        try:
            results = self._attack_batch([(item.photo, item.faces) for item in ready], step,
                                         all_stopped)
        except AttackCancelled as exc:
            for item in ready:
                yield item.index, item.job.control.stopped() or exc
            return
        except Exception as exc:
            exc = _released(exc)
            for item in ready:
                yield item.index, exc
            return
        for item, result in zip(ready, results, strict=True):
            try:
                item.job.control.check()
                options = item.job.options
                encoded = self._finish(item.photo, item.faces, result, item.report,
                                       item.job.control, keep_location=options.keep_location,
                                       format=options.format, quality=options.quality,
                                       measure=options.measure)
                item.report.seconds = time.perf_counter() - item.start
                item.job.enter("done")
                yield item.index, ProtectOutcome(
                    encoded, MEDIA_TYPES[options.format or item.photo.format], item.report,
                    options.measure)
            except Exception as exc:
                yield item.index, _released(exc)

    def protect_photo(self, photo: Photo, on_step: StepCallback | None = None,
                      keep_location: bool = False) -> tuple[bytes | None, PhotoReport]:
        """Protect a decoded photo; returns the encoded output (None if no face) and a report.

        ``on_step`` returning False raises :class:`~lowkey.attack.AttackCancelled`. (As a job,
        with phases, cancellation and a deadline: :func:`protect_bytes`.)
        """
        job = PhotoJob(lambda: photo, replace(self.options, keep_location=keep_location))
        for _, outcome in self.protect_jobs([job], on_step):
            if isinstance(outcome, Exception):
                raise outcome
            return outcome.output, outcome.report
        raise AssertionError("protect_jobs gave no outcome")  # pragma: no cover

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
        (the sample astronaut at 256 px, :func:`lowkey.sample.sample_photo`), so that the first
        real photo does not pay for lazy initialisation (kernels, caches, ColorVideoVDP's set-up,
        the JPEG view's import of kornia, some 3 s)."""
        import numpy as np

        from lowkey.sample import sample_photo

        t = time.perf_counter()
        pixels = torch.from_numpy(np.ascontiguousarray(sample_photo()[::2, ::2]))
        photo = Photo(pixels=pixels.permute(2, 0, 1).float() / 255, alpha=None, format="PNG",
                      mode="RGB", grayscale=False, bit_depth=8, icc_profile=None, exif=None,
                      xmp=None, lossless=True, source=None)
        faces = self.find_faces(photo) or [Face(
            box=(45.0, 10.0, 135.0, 120.0), score=1.0,
            landmarks=((75.0, 55.0), (105.0, 55.0), (90.0, 75.0), (78.0, 95.0), (102.0, 95.0)))]
        one_step = LowKeyAttack(self.objective, replace(self.settings, steps=1))
        result = one_step.run(photo.pixels.to(self.device), faces)
        if "compressed" in VIEW_CYCLES[self.settings.views]:  # step 0 sees x': import kornia
            jpeg_compressed(photo.pixels[None, :, :64, :64].to(self.device), JPEG_QUALITIES[0])
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
        """:meth:`protect_file` of each source, with one attack for all of them
        (:meth:`protect_jobs`). What fits in one batch is the caller's choice (``lowkey protect
        --batch``). Reports come in the order of ``sources``.
        """
        reports: dict[int, PhotoReport] = {}
        jobs: list[PhotoJob] = []
        destinations: list[tuple[int, Path]] = []  # (index in sources, output) of each job
        options = replace(self.options, keep_location=keep_location)
        for i, source in enumerate(sources):
            start = time.perf_counter()
            try:
                dest = output_path_for(source, out_dir)
            except (LowKeyError, ValueError, OSError) as exc:
                reports[i] = _failed(source, exc, start)
                continue
            if dest.exists():
                logger.info("%s: %s exists already: skipped", source, dest)
                reports[i] = PhotoReport(
                    source=str(source), status="skipped", output=str(dest),
                    error=f"{dest} exists already (delete it to protect the photo again)",
                    seconds=time.perf_counter() - start)
                continue
            jobs.append(PhotoJob(partial(load_photo, source), options))
            destinations.append((i, dest))
        for j, outcome in self.protect_jobs(jobs, on_step):
            i, dest = destinations[j]
            start = time.perf_counter()
            try:
                if isinstance(outcome, Exception):
                    raise outcome
                if outcome.output is not None:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    outcome.report.output = str(write_encoded(outcome.output, dest,
                                                              source=sources[i]))
                    outcome.report.seconds += time.perf_counter() - start
                reports[i] = outcome.report
            except (LowKeyError, ValueError, OSError) as exc:
                reports[i] = _failed(sources[i], exc, start)
        return [reports[i] for i in sorted(reports)]

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



def _failed(source: Path, exc: Exception, start: float) -> PhotoReport:
    """The report of a file that could not be protected: ``cancelled`` or ``timed out`` when
    it was stopped, else ``failed``, and why."""
    status = (exc.status if isinstance(exc, JobStopped)
              else "cancelled" if isinstance(exc, AttackCancelled) else "failed")
    logger.warning("%s %s: %s", source, status, exc)
    return PhotoReport(source=str(source), status=status, error=str(exc),
                       seconds=time.perf_counter() - start)


@dataclass
class ProtectOutcome:
    """What :meth:`Protector.protect_jobs` made of one job: the encoded photo (None when no face
    was found, then nothing changes), its MIME type, the report and whether the report was
    measured."""

    output: bytes | None
    media_type: str | None
    report: PhotoReport
    measured: bool


@dataclass(frozen=True)
class PhotoJob:
    """One photo for :meth:`Protector.protect_jobs`: ``load`` decodes it (called once, in the
    ``decode`` phase: its errors are the job's), ``options`` say how its output is written and
    reported (format, quality, keep_location, measure; the attack settings must be the
    protector's), ``control`` hears its phases and may stop it."""

    load: Callable[[], Photo]
    options: ProtectOptions
    control: JobControl = field(default_factory=JobControl)

    def enter(self, phase: str) -> None:
        """Report ``phase`` to the control, then stop here if the job must stop."""
        self.control.enter(JobProgress.at(phase, measure=self.options.measure))

    def progress(self, phase: str, step: int | None = None, steps: int | None = None) -> None:
        self.control.report(JobProgress.at(phase, step, steps, self.options.measure))


@dataclass
class _Waiting:
    """A job of :meth:`Protector.protect_jobs` whose photo has faces, waiting for the attack."""

    index: int
    job: PhotoJob
    photo: Photo
    faces: list[Face]
    report: PhotoReport
    start: float


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


def protect_bytes_batch(jobs: Sequence[BytesJob], pool: ModelPool, *,
                        max_pixels: int = DEFAULT_MAX_PIXELS,
                        max_bytes: int = DEFAULT_MAX_BYTES,
                        ) -> Iterator[tuple[int, ProtectOutcome | Exception]]:
    """:func:`protect_bytes` of several photos, ``(data, options, control)`` each, with one
    attack for all of them (:meth:`Protector.protect_jobs`, over a protector of ``pool`` with
    the first job's options). Their options must have the same
    :attr:`~lowkey.jobs.ProtectOptions.batch_key` (ValueError otherwise).

    Yields ``(index in jobs, outcome or the exception that job raised)`` once per job, as each
    is ready (see :meth:`Protector.protect_jobs`).
    """
    if not jobs:
        return
    photo_jobs = [PhotoJob(partial(load_photo, bytes(data), max_pixels=max_pixels,
                                   max_bytes=max_bytes), options, control)
                  for data, options, control in jobs]
    try:
        protector = Protector.for_options(jobs[0][1], pool)
    except Exception as exc:
        exc = _released(exc)
        for index in range(len(jobs)):
            yield index, exc
        return
    yield from protector.protect_jobs(photo_jobs)


def _released(exc: Exception) -> Exception:
    """``exc``, after releasing the CUDA cache when it is an out-of-memory error."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
    return exc


__all__ = ["BATCH_ON_GPU", "BytesJob", "PhotoJob", "Preset", "ProtectOutcome", "Protector",
           "protect_bytes", "protect_bytes_batch"]
