"""Jobs behind a bounded queue, one worker per device, the heavy work in that device's thread.

A worker takes the oldest queued job and, up to its batch size (``DaemonConfig.batch``; by
default :data:`~lowkey.protect.BATCH_ON_GPU` on a GPU, 1 on a CPU), the next queued jobs with the
same attack options (:attr:`~lowkey.jobs.ProtectOptions.batch_key`), and protects them with one
attack (:func:`~lowkey.protect.protect_bytes_batch`): each job finishes as soon as its own photo
is encoded and measured.

A job is queued, then running, then one of ``done``, ``failed``, ``cancelled`` or ``timed out``.
Cancellation takes effect on the job's status at once, a deadline within :data:`SWEEP_S` (the
queue's own, on :attr:`JobQueue.clock`); either frees the job's slot in the queue, and the worker
thread stops at its next phase boundary or attack step (in a batch, the attack goes on while any
of its jobs still runs) and the result, if any, is dropped. Finished
jobs keep their result for ``result_ttl`` seconds, and the oldest are deleted first when the
results together exceed ``result_max_bytes``.

Before a worker decodes its jobs it reserves their memory in the decode budget shared by every
worker (:mod:`lowkey_daemon.budget`), waiting while it does not fit. A full queue's
``Retry-After`` is estimated from how long recent jobs took (:class:`RunTimes`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lowkey.jobs import (
    JobControl,
    JobError,
    JobStopped,
    ProtectOptions,
    job_error,
)
from lowkey.pool import ModelPool, ModelsMissing
from lowkey.protect import BATCH_ON_GPU, Protector, ProtectOutcome, protect_bytes_batch
from lowkey_daemon.budget import DecodeBudget
from lowkey_daemon.config import DaemonConfig
from lowkey_daemon.errors import ApiError

logger = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
#: At most this many finished jobs are remembered, whatever their results weigh.
MAX_FINISHED = 1000
#: How often deadlines and retention are checked, in seconds.
SWEEP_S = 0.25
#: ``Retry-After`` of a full queue: from the run times of this many recent jobs, at least 1 s,
#: at most :data:`MAX_RETRY_AFTER_S`; :data:`FIRST_RETRY_AFTER_S` before any job has finished.
RECENT_JOBS = 20
MAX_RETRY_AFTER_S = 120
FIRST_RETRY_AFTER_S = 5


class RunTimes:
    """How long the last :data:`RECENT_JOBS` jobs that ended ``done`` ran (from the moment a
    worker took them to their result). Cancelled, failed and timed-out jobs are not counted:
    a job stopped early or a bad photo says nothing of how soon the next slot is free."""

    def __init__(self, size: int = RECENT_JOBS) -> None:
        self._seconds: deque[float] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._seconds)

    def add(self, seconds: float) -> None:
        self._seconds.append(max(0.0, seconds))

    def retry_after(self, workers: int) -> int:
        """Seconds until a slot of a full queue is likely free: one of the jobs ahead ends about
        every median run time / workers. Whole seconds in [1, :data:`MAX_RETRY_AFTER_S`]."""
        per_job = statistics.median(self._seconds) if self._seconds else FIRST_RETRY_AFTER_S
        return min(MAX_RETRY_AFTER_S, max(1, math.ceil(per_job / max(1, workers))))


@dataclass(eq=False)
class Job:
    """One protection request and what became of it."""

    id: str
    options: ProtectOptions
    data: bytes | None
    control: JobControl
    #: bytes of the decode budget the job holds while it is worked on (:mod:`lowkey_daemon.budget`)
    cost: int = 0
    created: float = field(default_factory=time.time)
    #: when it must be finished, by :attr:`clock` (None: never)
    deadline: float | None = None
    #: the queue's clock (:attr:`JobQueue.clock`)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    #: when a worker took it, by :attr:`clock`
    started: float | None = None
    status: str = "queued"
    outcome: ProtectOutcome | None = None
    error: JobError | None = None
    finished_at: float | None = None
    device: str | None = None
    version: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def result_bytes(self) -> int:
        return len(self.outcome.output or b"") if self.outcome is not None else 0

    def touch(self) -> None:
        """Something changed: wake whoever waits in :meth:`wait_change`."""
        self.version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_change(self, timeout: float) -> None:
        """Return when the job changes, or after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    def finish(self, status: str, error: JobError | None = None,
               outcome: ProtectOutcome | None = None) -> bool:
        """Move to a final status (once; later calls are ignored). True when it moved."""
        if not self.active:
            return False
        self.status, self.error, self.outcome = status, error, outcome
        self.finished_at = self.clock()
        self.data = None
        self.control.cancel()  # whatever still runs for it stops at its next check
        self.finished.set()
        self.touch()
        return True

    def to_json(self) -> dict:
        progress = self.control.progress
        out: dict = {"id": self.id, "status": self.status, "phase": progress.phase,
                     "percent": 100.0 if self.status == "done" else progress.percent,
                     "step": progress.step, "steps": progress.steps,
                     "created": round(self.created, 3), "options": self.options.to_json()}
        if self.error is not None:
            out["error"] = {"code": self.error.code, "message": self.error.message}
        if self.outcome is not None:
            out["report"] = self.outcome.report.to_json()
            out["measured"] = self.outcome.measured
            out["result_bytes"] = self.result_bytes
        return out


class JobQueue:
    """The bounded queue, its workers (one per pool, i.e. per device) and the finished jobs.

    ``state``: ``loading`` (models being loaded and warmed), ``ready``, ``models missing``,
    ``error`` (loading failed otherwise) or ``stopping``. ``clock``: the monotonic time of
    deadlines, run times and result retention (tests set one they move themselves).
    """

    def __init__(self, config: DaemonConfig, pools: list[ModelPool],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.pools = pools
        self.state = "loading"
        self.state_message = "loading and warming up the models"
        self.paused = False
        self.counts: Counter[str] = Counter()
        self._pending: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._wake = asyncio.Event()
        self._executors = [ThreadPoolExecutor(1, thread_name_prefix=f"lowkey-{p.device}")
                           for p in pools]
        self._tasks: list[asyncio.Task] = []
        self.run_times = RunTimes()
        self.budget = DecodeBudget(config.decode_budget_bytes)
        #: the settings of the preset loaded at start (models, device, penalty, ...)
        self.describe: dict = {}

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers, the sweeper, and loading the models (in the background)."""
        self._tasks = [asyncio.create_task(self._worker(i), name=f"worker-{i}")
                       for i in range(len(self.pools))]
        self._tasks.append(asyncio.create_task(self._sweeper(), name="sweeper"))
        self._tasks.append(asyncio.create_task(self._load(), name="load"))

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        options = ProtectOptions(preset=self.config.preset, strength=1, models=self.config.models)

        def load(pool: ModelPool) -> dict:
            protector = Protector.for_options(options, pool)
            if self.config.warm_up:
                protector.warm_up()
            return protector.describe()

        try:
            for pool, executor in zip(self.pools, self._executors, strict=True):
                self.describe = await loop.run_in_executor(executor, load, pool)
        except ModelsMissing as exc:
            self.state, self.state_message = "models missing", exc.summary
            logger.error("%s", exc)
            return
        except Exception as exc:
            self.state = "error"
            self.state_message = f"loading the models failed ({type(exc).__name__})"
            logger.exception("loading the models failed")
            return
        if self.state == "loading":
            self.state, self.state_message = "ready", "ready"
            logger.info("ready: %s on %s", ", ".join(self.describe.get("models", [])),
                        ", ".join(str(p.device) for p in self.pools))
            self._wake.set()

    async def close(self, grace: float = 30.0) -> None:
        """Graceful shutdown: refuse new jobs, cancel every queued and running one, wait (up to
        ``grace`` seconds) for the workers to let go, then stop."""
        self.state, self.state_message = "stopping", "the daemon is shutting down"
        for job in list(self._jobs.values()):
            if job.finish("cancelled", JobError("cancelled", "the daemon is shutting down")):
                self.counts["cancelled"] += 1
        self._pending.clear()
        self._wake.set()
        loop = asyncio.get_running_loop()
        done = [loop.run_in_executor(None, ex.shutdown, True) for ex in self._executors]
        try:
            await asyncio.wait_for(asyncio.gather(*done), grace)
        except TimeoutError:
            logger.warning("a worker did not stop within %.0f s", grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- jobs -----------------------------------------------------------------------------

    def check_accepting(self) -> None:
        """Raise the :class:`ApiError` that a new job would get now, if any."""
        if self.state == "loading":
            raise ApiError("loading", self.state_message, {"Retry-After": "5"})
        if self.state == "models missing":
            raise ApiError("models_missing", self.state_message)
        if self.state == "error":
            raise ApiError("internal", self.state_message)
        if self.state == "stopping":
            raise ApiError("shutting_down", self.state_message)
        if self.paused:
            raise ApiError("paused", "protection is paused on this machine (POST /v1/resume "
                                     "to resume)")
        if self.active_count >= self.config.queue_size:
            raise ApiError("queue_full", f"{self.active_count} jobs are queued or running, the "
                           f"most this daemon takes; try again shortly",
                           {"Retry-After": str(self._retry_after())})

    def submit(self, data: bytes, options: ProtectOptions, timeout: float | None = None,
               cost: int = 0) -> Job:
        """Queue a job (see :meth:`check_accepting` for why it may be refused); ``cost``: the
        bytes of the decode budget it will hold (:func:`lowkey_daemon.budget.decode_cost`, checked
        against the budget by the caller)."""
        self.check_accepting()
        seconds = min(timeout or self.config.job_timeout, self.config.job_timeout)
        # the deadline is the queue's (on its clock): the sweeper times the job out and cancels
        # its control, which stops the work at its next check
        job = Job(secrets.token_urlsafe(16), options, data, JobControl(), cost,
                  deadline=self.clock() + seconds, clock=self.clock)
        self._jobs[job.id] = job
        self._pending.append(job)
        self.counts["submitted"] += 1
        self._wake.set()
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise ApiError("job_not_found", "no such job (unknown id, or its result was "
                                            "deleted)")
        return job

    def cancel(self, job: Job, message: str = "cancelled by the caller") -> None:
        """Cancel a queued or running job at once (its slot is free now)."""
        if job.finish("cancelled", JobError("cancelled", message)):
            self.counts["cancelled"] += 1
            logger.info("job %s cancelled", job.id[:8])

    def forget(self, job: Job) -> None:
        """Delete a finished job and its result."""
        self._jobs.pop(job.id, None)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._wake.set()

    @property
    def active_count(self) -> int:
        return sum(job.active for job in self._jobs.values())

    @property
    def queued_count(self) -> int:
        return sum(job.status == "queued" for job in self._jobs.values())

    @property
    def running_count(self) -> int:
        return sum(job.status == "running" for job in self._jobs.values())

    def _retry_after(self) -> int:
        return self.run_times.retry_after(len(self.pools))

    # -- workers --------------------------------------------------------------------------

    def batch_size(self, pool: ModelPool) -> int:
        """The most jobs the worker of ``pool`` attacks at once."""
        if self.config.batch is not None:
            return self.config.batch
        return BATCH_ON_GPU if pool.device.type == "cuda" else 1

    def _take(self, limit: int) -> list[Job]:
        """The oldest queued job and, up to ``limit`` in all, the next queued jobs that can
        share its attack (the others keep their places)."""
        if self.state != "ready" or self.paused:
            return []
        taken: list[Job] = []
        kept: deque[Job] = deque()
        while self._pending:
            job = self._pending.popleft()
            if job.status != "queued":
                continue
            if not taken or (len(taken) < limit
                             and job.options.batch_key == taken[0].options.batch_key):
                taken.append(job)
            else:
                kept.append(job)
        self._pending = kept
        return taken

    async def _worker(self, index: int) -> None:
        pool, executor = self.pools[index], self._executors[index]
        loop = asyncio.get_running_loop()
        while True:
            jobs = self._take(self.batch_size(pool))
            if not jobs:
                if self.state == "stopping":
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                async with self.budget.reserve(sum(job.cost for job in jobs)):
                    jobs = [job for job in jobs if job.active]  # stopped while it waited
                    if jobs:
                        await self._run(jobs, pool, executor, loop)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let a job take the worker (or the daemon) down
                logger.exception("worker %d: unexpected error around jobs %s", index,
                                 ", ".join(job.id[:8] for job in jobs))
                for job in jobs:
                    if job.finish("failed", JobError("internal", "internal error")):
                        self.counts["failed"] += 1

    async def _run(self, jobs: list[Job], pool: ModelPool, executor: ThreadPoolExecutor,
                   loop: asyncio.AbstractEventLoop) -> None:
        """Protect ``jobs`` (one attack) in the pool's thread; each finishes as its result
        comes."""
        work = []
        for job in jobs:
            job.status, job.device = "running", str(pool.device)
            job.started = self.clock()
            job.control.on_progress = lambda _, job=job: loop.call_soon_threadsafe(job.touch)
            job.touch()
            work.append((job.data, job.options, job.control))
        config = self.config
        if len(jobs) > 1:
            logger.info("jobs %s: one attack on %s", ", ".join(j.id[:8] for j in jobs),
                        pool.device)

        def run() -> None:
            for i, result in protect_bytes_batch(work, pool, max_pixels=config.max_pixels,
                                                 max_bytes=config.max_body_bytes):
                loop.call_soon_threadsafe(self._complete, jobs[i], result)

        try:
            await loop.run_in_executor(executor, run)
        except Exception as exc:  # the batch as a whole failed: each job still running has it
            for job in jobs:
                self._complete(job, exc)
        self._retain()

    def _complete(self, job: Job, result: ProtectOutcome | Exception) -> None:
        """Give ``job`` its outcome, or the error it raised (nothing if it has finished)."""
        if not job.active:
            return
        if isinstance(result, JobStopped):
            if job.finish(result.status, job_error(result)):
                self.counts[result.status] += 1
            return
        if isinstance(result, Exception):
            error = job_error(result)
            if error.code == "internal":
                logger.error("job %s failed", job.id[:8], exc_info=result)
            else:
                logger.info("job %s: %s", job.id[:8], error.message)
            if job.finish("failed", error):
                self.counts["failed"] += 1
            return
        if result.output is None:
            report = result.report
            error = JobError("no_face", f"no face found (looked for faces down to "
                                        f"{report.smallest_face_px} px): nothing was protected")
            if job.finish("failed", error, result):
                self.counts["failed"] += 1
            return
        if job.finish("done", None, result):
            self.counts["done"] += 1
            now = self.clock()
            self.run_times.add(now - (job.started or now))
            logger.info("job %s done in %.2f s on %s", job.id[:8], result.report.seconds,
                        job.device)

    # -- deadlines and retention ----------------------------------------------------------

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                self.sweep()
            except Exception:
                logger.exception("sweeping jobs failed")

    def sweep(self) -> None:
        """Time out the jobs past their deadline and delete expired results, now (the sweeper
        does this every :data:`SWEEP_S`)."""
        for job in list(self._jobs.values()):
            if job.active and job.deadline is not None and self.clock() >= job.deadline:
                if job.finish("timed out", JobError("timed_out", "the job ran past its "
                                                    f"deadline during {job.control.progress.phase}")):
                    self.counts["timed out"] += 1
        self._retain()

    def _retain(self) -> None:
        now = self.clock()
        finished = sorted((j for j in self._jobs.values() if not j.active),
                          key=lambda j: j.finished_at or 0.0)
        total = sum(j.result_bytes for j in finished)
        for i, job in enumerate(finished):
            expired = now - (job.finished_at or now) > self.config.result_ttl
            if expired or total > self.config.result_max_bytes or len(finished) - i > MAX_FINISHED:
                total -= job.result_bytes
                self._jobs.pop(job.id, None)


__all__ = ["Job", "JobQueue"]
