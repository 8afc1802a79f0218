"""One protection as a job: its per-call options, its phases, cancellation, deadline and errors.

A job goes through the phases of :data:`PHASES` (``decode``, ``detect``, ``attack`` step k/n,
``floor`` when the preset has a quality floor, ``encode``, ``measure``) and reports each one to a
:class:`JobControl`, which also carries its cancellation and deadline: a cancelled job stops with
:class:`JobCancelled`, one past its deadline with :class:`JobTimedOut` (statuses ``"cancelled"``
and ``"timed out"``), at the next phase boundary or attack step. :func:`job_error` turns whatever
a job raised into a stable code and a message fit to show (no traceback, no path).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal, get_args

from lowkey.errors import ImageError, LowKeyError, NoFaceError, TooManyPixels, WeightsError
from lowkey.faces import FaceSelection
from lowkey.image_formats import DEFAULT_QUALITY, check_quality, normalise_format
from lowkey.presets import DEFAULT_PRESET

logger = logging.getLogger(__name__)

#: The phases of a job, in order (``floor`` only when the preset has a quality floor,
#: ``measure`` only when the report is measured).
PHASES: tuple[str, ...] = ("queued", "decode", "detect", "attack", "floor", "encode", "measure",
                           "done")
Phase = Literal["queued", "decode", "detect", "attack", "floor", "encode", "measure", "done"]

#: Statuses of a job. "cancelled" and "timed out" are not failures.
STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled", "timed out")

#: Where each phase starts, in percent of the job (attack runs up to the next phase's start).
_PHASE_START = {"queued": 0.0, "decode": 0.0, "detect": 3.0, "attack": 8.0, "floor": 85.0,
                "encode": 88.0, "measure": 90.0, "done": 100.0}
_PHASE_START_UNMEASURED = _PHASE_START | {"floor": 90.0, "encode": 95.0}

#: The largest seed of the initial noise (a signed 32-bit integer, as the daemon's API says).
MAX_SEED = 2**31 - 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ProtectOptions:
    """What a caller chooses per photo, checked: the one place that holds a request's rules.

    The CLI, the daemon's HTTP layer and :class:`~lowkey.protect.Protector` only convert their
    inputs into it and turn its ``ValueError`` into their own errors. The rules themselves come
    from where their subject lives: preset names and the strength's range from
    :meth:`lowkey.presets.Preset.settings`, formats and quality from :mod:`lowkey.image_formats`.

    ``preset``: a key of :data:`lowkey.presets.PRESETS` (an old name says what it became);
    ``strength``: the number of attack steps (None: the preset's own); ``seed``: of the initial
    noise, 0..:data:`MAX_SEED`; ``faces``: "all" or "largest"; ``format``: output format, any
    spelling :func:`~lowkey.image_formats.normalise_format` takes, stored as its name in
    :data:`~lowkey.image_formats.FORMATS` (None: the input's); ``quality``: 1..100 for lossy formats;
    ``keep_location``: keep GPS/XMP; ``measure``: measure the written photo for the report
    (faces found again, face-region quality, cosines); ``judge``: also ask the never-attacked
    judges when measuring; ``models``: another ensemble than the preset's (same step settings).
    """

    preset: str = DEFAULT_PRESET
    strength: int | None = None
    seed: int = 0
    faces: FaceSelection = "all"
    format: str | None = None
    quality: int = DEFAULT_QUALITY
    keep_location: bool = False
    measure: bool = True
    judge: bool = True
    #: attack these registry models instead of the preset's ensemble (None: the preset's)
    models: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        from lowkey.presets import get_preset

        if self.strength is not None and not _is_int(self.strength):
            raise ValueError("strength must be an integer")
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in 0..{MAX_SEED}")
        get_preset(self.preset).settings(self.strength, self.seed)  # name and strength
        if self.faces not in get_args(FaceSelection):
            raise ValueError(f"faces must be one of {', '.join(get_args(FaceSelection))}")
        if self.format is not None:
            object.__setattr__(self, "format", normalise_format(self.format))
        check_quality(self.quality)
        if self.models is not None:
            if isinstance(self.models, str) or not self.models:
                raise ValueError("models must be a non-empty list of registry model names")
            object.__setattr__(self, "models", tuple(self.models))

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def batch_key(self) -> tuple:
        """What must be equal for photos to be attacked together (one :class:`Protector` and
        one attack; see :func:`lowkey.protect.protect_bytes_batch`): everything but the
        output's format, quality, metadata and whether it is measured."""
        return (self.preset, self.strength, self.seed, self.faces, self.models,
                self.judge and self.measure)


@dataclass(frozen=True)
class JobProgress:
    """Where a job is: its phase, the attack's step k of n (attack only) and a percentage."""

    phase: str
    percent: float
    step: int | None = None
    steps: int | None = None

    @classmethod
    def at(cls, phase: str, step: int | None = None, steps: int | None = None,
           measure: bool = True) -> JobProgress:
        starts = _PHASE_START if measure else _PHASE_START_UNMEASURED
        start = starts[phase]
        if phase == "attack" and step is not None and steps:
            start += (starts["floor"] - start) * step / steps
        return cls(phase, round(start, 1), step, steps)

    def to_json(self) -> dict:
        return asdict(self)


ProgressCallback = Callable[[JobProgress], None]


class JobStopped(LowKeyError):
    """A job was stopped before it finished; ``status`` says why."""

    status = "cancelled"


class JobCancelled(JobStopped):
    """The job was cancelled."""

    status = "cancelled"


class JobTimedOut(JobStopped):
    """The job ran past its deadline."""

    status = "timed out"


class JobControl:
    """Progress, cancellation and deadline of one job, shared between the thread running it and
    whoever watches it. ``deadline``: a :func:`time.monotonic` time, or None for none;
    ``on_progress``: called (in the job's thread) at every phase and attack step."""

    def __init__(self, deadline: float | None = None,
                 on_progress: ProgressCallback | None = None) -> None:
        self.deadline = deadline
        self.on_progress = on_progress
        self.progress = JobProgress("queued", 0.0)
        self._cancelled = threading.Event()

    @classmethod
    def with_timeout(cls, seconds: float | None,
                     on_progress: ProgressCallback | None = None) -> JobControl:
        """A control whose deadline is ``seconds`` from now (None: no deadline)."""
        deadline = None if seconds is None else time.monotonic() + seconds
        return cls(deadline, on_progress)

    def cancel(self) -> None:
        """Ask the job to stop at its next check (thread-safe)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def stopped(self) -> JobStopped | None:
        """The :class:`JobCancelled` or :class:`JobTimedOut` to raise when the job must stop,
        else None."""
        if self.cancelled:
            return JobCancelled(f"cancelled during {self.progress.phase}")
        if self.timed_out:
            return JobTimedOut(f"ran past its deadline during {self.progress.phase}")
        return None

    def check(self) -> None:
        """Raise :class:`JobCancelled` or :class:`JobTimedOut` when the job must stop."""
        stop = self.stopped()
        if stop is not None:
            raise stop

    def report(self, progress: JobProgress) -> None:
        """Record ``progress`` and tell ``on_progress`` (without :meth:`check`: a photo in a
        batch goes on until the batch's attack ends)."""
        self.progress = progress
        if self.on_progress is not None:
            try:
                self.on_progress(progress)
            except Exception:  # a watcher's bug must not end the job
                logger.exception("progress callback failed")

    def enter(self, progress: JobProgress) -> None:
        """:meth:`report` ``progress``, then :meth:`check`."""
        self.report(progress)
        self.check()


@dataclass(frozen=True)
class JobError:
    """A job's failure as shown to a caller: a stable ``code`` and a ``message``."""

    code: str
    message: str


def job_error(exc: BaseException) -> JobError:
    """The stable code and a safe message for what a job raised.

    Messages never name files (the log does). Codes: ``cancelled``, ``timed_out``,
    ``too_many_pixels``, ``bad_image`` (not an image we read: truncated, unsupported), ``no_face``, ``models_missing``, ``weights``, ``bad_request`` (bad
    options), ``out_of_memory`` (the device ran out of memory), ``internal`` (a bug; the
    message names only the exception type, the log has the rest).
    """
    from lowkey.pool import ModelsMissing

    if isinstance(exc, JobTimedOut):
        return JobError("timed_out", str(exc))
    if isinstance(exc, JobCancelled):
        return JobError("cancelled", str(exc))
    if isinstance(exc, TooManyPixels):
        return JobError("too_many_pixels", str(exc))
    if isinstance(exc, ImageError):
        return JobError("bad_image", str(exc))
    if isinstance(exc, NoFaceError):
        return JobError("no_face", str(exc))
    if isinstance(exc, ModelsMissing):
        return JobError("models_missing", exc.summary)
    if isinstance(exc, WeightsError):
        return JobError("weights", "model weights failed to load or their check (run `lowkey "
                                   "models verify`; the log has the details)")
    if _is_out_of_memory(exc):
        return JobError("out_of_memory", "the device ran out of memory for this photo; try a "
                        "smaller photo or fewer jobs at once")
    if isinstance(exc, ValueError):
        return JobError("bad_request", str(exc))
    return JobError("internal", f"internal error ({type(exc).__name__}); see the daemon's log")


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


__all__ = ["MAX_SEED", "PHASES", "STATUSES", "JobCancelled", "JobControl", "JobError", "JobProgress",
           "JobStopped", "JobTimedOut", "Phase", "ProgressCallback", "ProtectOptions",
           "job_error"]
