"""``lowkey protect SRC -o DST --ray [ADDRESS]``: the same pipeline on a Ray cluster, with Ray Data.

Ray is an optional extra (``pip install 'lowkey[ray]'``) and is imported only here, only when
asked for. Nothing is scheduled by hand:

1. The driver plans: for each photo, the output :func:`~lowkey.output_files.output_path_for` names
   (as ``lowkey protect`` does) and, beside it, the photo's JSON report
   (:func:`report_path_for`: the output's name plus ``.json``). A photo whose report or output
   exists is *done*: it is reported ``skipped`` and nothing at all is done for it, so a re-run
   after a crash or a preemption does only what is left. A photo whose output cannot even be
   named (unreadable, not an image) fails right there, with the message ``lowkey protect`` gives.
2. What is left becomes a Ray dataset of paths (``ray.data.from_items``, one block per photo),
   and ``map_batches`` runs it through a pool of actors (:class:`PhotoActor`), one photo per batch
   on CPU actors and :data:`~lowkey.protect.BATCH_ON_GPU` on GPU actors (attacked together).
   Each actor builds one :class:`~lowkey.protect.Protector` with the command's settings and keeps
   it, so its models stay loaded (warm) for every photo it gets. An actor reads its photo from the
   storage, protects it with :meth:`~lowkey.protect.Protector.protect_files` (the single-machine
   code: same naming, same refusals, atomic writes), then writes the JSON report atomically
   *after* the output: the report marks the photo done. Reports are written for the final
   statuses, ``protected`` and ``no-face``; a ``failed`` photo gets none and is tried again by the
   next run.
3. The driver shows a progress bar over finished photos and hands each report to the caller as it
   arrives (the CLI prints it as a single-machine run does).

Actors: one per GPU (``num_gpus=1``) when the cluster has GPUs, otherwise CPU actors of
:data:`CPUS_PER_ACTOR` CPUs each, as many as the cluster's CPUs and memory allow
(:data:`ACTOR_MEMORY` each); never more than there are photos to do. On a cluster of several machines SRC and DST must be on storage that every node
sees at the same path (NFS, a cloud file system mounted everywhere): actors read the photos and
write the outputs where they run, and the driver checks what is done.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from lowkey.errors import ImageError, LowKeyError
from lowkey.measure import PhotoReport
from lowkey.output_files import output_path_for, report_path_for
from lowkey.presets import DEFAULT_PRESET
from lowkey.protect import BATCH_ON_GPU

logger = logging.getLogger(__name__)

#: What ``lowkey protect --ray`` means when no address is given: a new local Ray instance.
LOCAL = "local"
#: CPUs each CPU actor asks for (torch in the actor runs this many threads: Ray sets
#: ``OMP_NUM_THREADS`` from it).
CPUS_PER_ACTOR = 1.0
#: Memory each actor reserves (Ray's logical ``memory`` resource: it limits how many actors a
#: node takes, it caps nothing): a CPU actor with the default ensemble measured 1.5 GB resident
#: on small photos.
ACTOR_MEMORY = 2 * 1024**3
#: Statuses that are final: the photo gets a JSON report and a re-run skips it.
DONE_STATUSES = ("protected", "no-face")
INSTALL_HINT = "pip install 'lowkey[ray]'"


def import_ray() -> ModuleType:
    """``ray`` with Ray Data, or a :class:`LowKeyError` that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is the part we need
    except ImportError as exc:
        raise LowKeyError(f"--ray needs Ray with Ray Data, which is not installed ({exc}); "
                          f"install it with: {INSTALL_HINT}") from None
    return ray


@dataclass
class PlannedPhoto:
    """A photo that is still to be done: its place in the input list, the path as given (for the
    reports), the absolute path and output folder (for the actors) and its output as
    ``lowkey protect`` names it."""

    index: int
    source: str
    path: Path
    out_dir: Path | None
    output: Path


@dataclass
class Plan:
    """What a run has to do (``todo``) and what it reports without doing anything
    (``reports``: index -> a ``skipped`` photo, done before, or one that ``failed`` already
    at naming its output)."""

    todo: list[PlannedPhoto] = field(default_factory=list)
    reports: dict[int, PhotoReport] = field(default_factory=dict)


def plan_photos(files: Sequence[Path], out_dir: Path | None) -> Plan:
    """Sort ``files`` into the done (their report or output exists: ``skipped``), the unnameable
    (``failed``, with ``lowkey protect``'s message) and the rest (``todo``). Reads the first
    bytes of each photo (its format names the output) and nothing else."""
    plan = Plan()
    planned: dict[Path, str] = {}
    absolute_out = Path(out_dir).absolute() if out_dir is not None else None
    for index, path in enumerate(files):
        source = str(path)
        try:
            output = output_path_for(Path(path), out_dir)
        except (LowKeyError, ValueError, OSError) as exc:
            logger.warning("%s failed: %s", source, exc)
            plan.reports[index] = PhotoReport(source=source, status="failed", error=str(exc))
            continue
        report_file = report_path_for(output)
        if report_file.exists() or output.exists():
            done = report_file if report_file.exists() else output
            logger.info("%s: %s exists already: skipped", source, done)
            plan.reports[index] = PhotoReport(
                source=source, status="skipped",
                output=str(output) if output.exists() else None,
                error=f"done before: {done} exists (delete it, and "
                      f"{output.name if done == report_file else report_file.name} if there, "
                      "to protect the photo again)")
            continue
        key = output.absolute()
        if key in planned:
            plan.reports[index] = PhotoReport(
                source=source, status="skipped",
                error=f"{output} is also the output of {planned[key]}, earlier in this run")
            continue
        planned[key] = source
        plan.todo.append(PlannedPhoto(index, source, Path(path).absolute(), absolute_out,
                                      output))
    return plan


def actor_resources(cluster: dict[str, float], photos: int, device: str | None,
                    cpus_per_actor: float = CPUS_PER_ACTOR) -> dict[str, Any]:
    """The actor pool for ``photos`` photos on a cluster with ``cluster`` resources
    (``ray.cluster_resources()``): ``{"concurrency", "num_gpus", "num_cpus", "memory",
    "device"}``.

    GPU actors (one GPU each, device ``cuda``: Ray sets ``CUDA_VISIBLE_DEVICES``) when the
    cluster has GPUs and ``device`` is not ``cpu``; CPU actors otherwise, as many as the CPUs
    and the memory (:data:`ACTOR_MEMORY` each) allow. Raises ``ValueError`` when ``device``
    asks for CUDA on a cluster without GPUs.
    """
    gpus = int(cluster.get("GPU", 0))
    cpus = float(cluster.get("CPU", 0))
    memory = float(cluster.get("memory", 0))
    # a cluster that reports too little memory for one actor gets no memory reservation at all
    # (a reservation no node can meet would leave every actor waiting forever)
    reserve = ACTOR_MEMORY if memory >= ACTOR_MEMORY else 0
    wants_cuda = device is not None and device.startswith("cuda")
    if device is not None and not wants_cuda and device != "cpu":
        raise ValueError(f"--device {device} is not for a Ray cluster: use cuda or cpu")
    if wants_cuda and gpus < 1:
        raise ValueError("--device cuda: the Ray cluster has no GPU")
    if wants_cuda and device != "cuda":
        logger.warning("--device %s on Ray: each actor uses the GPU Ray gives it", device)
    if gpus >= 1 and device != "cpu":
        return {"concurrency": max(1, min(photos, gpus)), "num_gpus": 1,
                "num_cpus": min(cpus_per_actor, max(cpus / gpus, 0.0)), "memory": 0,
                "device": "cuda"}
    by_memory = int(memory // reserve) if reserve else photos
    return {"concurrency": max(1, min(photos, int(cpus // cpus_per_actor), by_memory)),
            "num_gpus": 0, "num_cpus": cpus_per_actor, "memory": reserve, "device": "cpu"}


class PhotoActor:
    """One actor of the pool: a :class:`~lowkey.protect.Protector` built once (its models stay
    loaded), then one photo per batch. Never raises for a photo: whatever goes wrong with one
    (even an unexpected error) is that photo's ``failed`` report, and the run goes on."""

    def __init__(self, options: dict[str, Any], keep_location: bool = False) -> None:
        from lowkey.protect import Protector

        start = time.perf_counter()
        self.protector = Protector(**options, progress=False)
        self.keep_location = keep_location
        self.describe = self.protector.describe()
        self.settings = json.dumps(self.describe)
        logger.info("actor ready on %s in %.1f s", self.protector.device,
                    time.perf_counter() - start)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        paths = [Path(p) for p in batch["path"]]
        out_dir = Path(batch["out_dir"][0]) if batch["out_dir"][0] else None  # one per run
        reports = self.protect(paths, out_dir)
        return {"index": [int(i) for i in batch["index"]],
                "report": [json.dumps(r.to_json()) for r in reports],
                "settings": [self.settings] * len(reports)}

    def protect(self, paths: list[Path], out_dir: Path | None) -> list[PhotoReport]:
        """Protect ``paths`` into ``out_dir`` as ``lowkey protect`` does (attacked together:
        :meth:`~lowkey.protect.Protector.protect_files`), then write each report (for a final
        status) beside its output, atomically and after it."""
        from lowkey.files import write_atomic

        try:
            reports = self.protector.protect_files(paths, out_dir,
                                                   keep_location=self.keep_location)
        except Exception as exc:  # noqa: BLE001 - one batch must not stop a whole archive
            logger.exception("%s failed", ", ".join(map(str, paths)))
            return [PhotoReport(source=str(p), status="failed",
                                error=f"{type(exc).__name__}: {exc}") for p in paths]
        for path, report in zip(paths, reports, strict=True):
            if report.status not in DONE_STATUSES:
                continue
            try:
                output = (Path(report.output) if report.output is not None
                          else output_path_for(path, out_dir))
                write_atomic(report_path_for(output), json.dumps(
                    report.to_json() | {"settings": self.describe}, indent=2).encode())
            except (ImageError, ValueError, OSError) as exc:
                logger.warning("%s: its report could not be written: %s", path, exc)
                report.status = "failed"
                report.error = (f"{report.output or 'no output (no face)'}, but its report could "
                                f"not be written: {exc}")
        return reports


@dataclass
class RayRun:
    """What :func:`protect_on_ray` did: every photo's report in input order, the protector's
    settings (from an actor; None when no actor ran) and the actor pool
    (:func:`actor_resources` plus the cluster's address; empty when nothing was left to do)."""

    reports: list[PhotoReport]
    settings: dict | None = None
    pool: dict[str, Any] = field(default_factory=dict)


def protect_on_ray(files: Sequence[Path], out_dir: Path | None = None, *,
                   address: str | None = LOCAL, preset: str = DEFAULT_PRESET,
                   strength: int | None = None, seed: int = 0, faces: str = "all",
                   device: str | None = None, keep_location: bool = False,
                   progress: bool = True, cpus_per_actor: float = CPUS_PER_ACTOR,
                   on_start: Callable[[dict[str, Any]], None] | None = None,
                   on_report: Callable[[PhotoReport], None] | None = None) -> RayRun:
    """Protect ``files`` into ``out_dir`` (None: beside each photo) on a Ray cluster.

    ``address``: what ``ray.init`` takes (``local``, the default: a new local instance;
    ``auto``: the cluster this machine belongs to; ``HOST:6379`` or ``ray://HOST:10001``); when
    Ray is initialised already (by the caller) that connection is used and left open.
    ``preset``, ``strength``, ``seed``, ``faces``, ``device``, ``keep_location``: as for
    ``lowkey protect``. ``on_start`` gets the actor pool before the work starts; ``on_report``
    gets each photo's report as it is known (done photos first, then in the order they finish);
    ``progress`` shows a bar over finished photos on stderr.
    """
    from tqdm.auto import tqdm

    from lowkey.presets import get_preset

    get_preset(preset).settings(strength, seed)  # a bad strength fails here, not in every actor
    ray = import_ray()
    plan = plan_photos(files, out_dir)
    reports: dict[int, PhotoReport] = dict(plan.reports)

    def report_planned() -> None:
        for index in sorted(plan.reports):
            if on_report is not None:
                on_report(plan.reports[index])

    if not plan.todo:
        logger.info("nothing left to do: Ray not started")
        report_planned()
        return RayRun([reports[i] for i in sorted(reports)])

    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address,
                     logging_level=logging.INFO if logger.isEnabledFor(logging.INFO)
                     else logging.WARNING,
                     **({"include_dashboard": False} if address == LOCAL else {}))
        except Exception as exc:  # ConnectionError, RuntimeError, ...: Ray's own, unwrapped
            what = "start a local Ray" if address == LOCAL else f"reach the Ray cluster {address}"
            raise LowKeyError(f"could not {what}: {type(exc).__name__}: {exc}") from exc
    settings: dict | None = None
    try:
        pool = actor_resources(ray.cluster_resources(), len(plan.todo), device, cpus_per_actor)
        pool["address"] = address if started_here else "(connected before)"
        logger.info("Ray: %d photos on %d %s actors", len(plan.todo), pool["concurrency"],
                    pool["device"])
        if on_start is not None:
            on_start(dict(pool, photos=len(plan.todo), done_before=sum(
                r.status == "skipped" for r in plan.reports.values())))
        report_planned()
        context = ray.data.DataContext.get_current()
        for name in ("enable_progress_bars", "enable_operator_progress_bars",
                     "print_on_execution_start"):  # ours counts photos; Ray's would draw over it
            if hasattr(context, name):
                setattr(context, name, False)
        dataset = ray.data.from_items(
            [{"index": p.index, "path": str(p.path), "out_dir": str(p.out_dir or "")}
             for p in plan.todo], override_num_blocks=len(plan.todo))
        options = {"preset": preset, "strength": strength, "seed": seed, "faces": faces,
                   "device": pool["device"]}
        dataset = dataset.map_batches(
            _actor_class(options, keep_location), batch_format="numpy",
            batch_size=BATCH_ON_GPU if pool["device"] == "cuda" else 1,
            compute=ray.data.ActorPoolStrategy(size=pool["concurrency"],
                                               max_tasks_in_flight_per_actor=1),
            num_gpus=pool["num_gpus"], num_cpus=pool["num_cpus"],
            **({"memory": pool["memory"]} if pool["memory"] else {}))
        by_index = {p.index: p for p in plan.todo}
        with tqdm(total=len(plan.todo), desc="photos", unit="photo",
                  disable=not progress) as bar:
            for row in dataset.iter_rows():
                index = int(row["index"])
                report = _as_given(PhotoReport(**json.loads(row["report"])), by_index[index])
                settings = settings or json.loads(row["settings"])
                reports[index] = report
                bar.update(1)
                if on_report is not None:
                    on_report(report)
    finally:
        if started_here:
            ray.shutdown()
    return RayRun([reports[i] for i in sorted(reports)], settings, pool)


def _actor_class(options: dict[str, Any], keep_location: bool) -> type[PhotoActor]:
    """:class:`PhotoActor` with its settings built in: Ray ships the class itself to the
    nodes, with no constructor arguments left in the object store (an actor that Ray restarts
    after a crash could not get those back)."""

    class ConfiguredPhotoActor(PhotoActor):
        def __init__(self) -> None:
            super().__init__(options, keep_location)

    return ConfiguredPhotoActor


def _as_given(report: PhotoReport, planned: PlannedPhoto) -> PhotoReport:
    """``report`` (from an actor, with absolute paths and faces as dicts) with the photo and its
    output named as the caller named them, as ``lowkey protect`` reports them."""
    from lowkey.measure import FaceReport

    report.faces = [FaceReport(**f) if isinstance(f, dict) else f for f in report.faces]
    report.source = planned.source
    if report.output is not None:
        report.output = str(planned.output)
    return report


__all__ = ["CPUS_PER_ACTOR", "DONE_STATUSES", "LOCAL", "Plan", "PhotoActor", "PlannedPhoto",
           "RayRun", "actor_resources", "import_ray", "plan_photos", "protect_on_ray"]
