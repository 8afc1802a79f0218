"""Protecting the users' gallery photos once, and reusing them across runs.

A protected photo is exactly what :meth:`lowkey.protect.Protector.protect_file` writes for
``protect_file(src, OUT/protected/<tag>/<identity>)``, i.e.
``OUT/protected/<tag>/<identity>/<stem>_lowkey.<ext>``, where ``<tag>`` is
``<preset>-<penalty>-s<strength>-seed<seed>-<fingerprint>`` for the preset's ensemble,
``<preset>-<model>-<penalty>-...`` for a single-model attack and
``<preset>-without-<model>-<penalty>-...`` for the ensemble less one model;
``<penalty>`` is the preset's perceptual penalty (``1-ssim``, ``lpips-alex``) and
``<fingerprint>`` :meth:`lowkey.presets.Preset.fingerprint`, so photos protected under another
penalty or other attack settings are never reused. Beside it,
``<stem>_lowkey.<ext>.json`` keeps its :class:`~lowkey.measure.PhotoReport` (plus file sizes),
so quality and time figures survive a resumed run. An output that exists is never protected
again and never rewritten; when it has no report beside it (made by another job), its quality
(face region and whole photo) and sizes are measured from the two files and the time is
recorded as unknown.

A photo in which the protector finds no face is left as it is (as LowKey would leave it): the
judges then see the original. Its report (``status: "no-face"``) is kept so it is not tried again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from lowkey.errors import LowKeyError
from lowkey.files import write_atomic
from lowkey.output_files import output_path_for, report_path_for

if TYPE_CHECKING:
    from lowkey.measure import PhotoMeasurer
    from lowkey.protect import Protector

logger = logging.getLogger(__name__)


#: What an :class:`Attack` is: the preset's whole ensemble, one of its models alone, or the
#: ensemble without one model (that model then judges as an unseen, black-box recogniser).
ATTACK_KINDS = ("ensemble", "single", "leave-one-out")


@dataclass(frozen=True)
class Attack:
    """One way of protecting the gallery. ``name``: "ensemble", the single model's name, or
    "without-<model>" for the ensemble less that model."""

    name: str
    preset: str
    models: tuple[str, ...]
    strength: int
    seed: int
    kind: str = "ensemble"

    def __post_init__(self) -> None:
        if self.kind not in ATTACK_KINDS:
            raise ValueError(f"unknown attack kind {self.kind!r}")

    @property
    def penalty(self) -> str:
        """The perceptual penalty of the preset (``lowkey.presets.PRESETS[preset].penalty``)."""
        from lowkey.presets import get_preset

        return get_preset(self.preset).penalty

    @property
    def tag(self) -> str:
        """The folder name under ``OUT/protected``: preset, attack, penalty, strength, seed and
        the preset's fingerprint."""
        from lowkey.presets import get_preset

        name = "" if self.kind == "ensemble" else f"-{self.name}"
        return (f"{self.preset}{name}-{self.penalty}-s{self.strength}-seed{self.seed}"
                f"-{get_preset(self.preset).fingerprint()}")

    @property
    def label(self) -> str:
        if self.kind == "single":
            return f"{self.name} only"
        if self.kind == "leave-one-out":
            return f"{self.name.replace('-', ' ')} ({'+'.join(self.models)})"
        return f"ensemble ({'+'.join(self.models)})"


@dataclass
class ProtectedPhoto:
    """A user's gallery photo under one attack: ``used`` is the file the judges see (the
    protected output, or the original when ``status`` is "no-face" or "failed")."""

    source: Path
    identity: str
    used: Path
    status: str
    report: dict = field(default_factory=dict)


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=1).encode())


def _recovered_report(source: Path, output: Path, attack: Attack,
                      measurer: PhotoMeasurer) -> dict:
    """Quality of an output someone else wrote (no report beside it): whole-photo and
    face-region figures from ``measurer`` (its detector finds the faces in the source)."""
    from lowkey.image_decode import load_photo
    from lowkey.measure import PhotoReport

    original, protected = load_photo(source), load_photo(output)
    report = PhotoReport(source=str(source), status="protected", output=str(output),
                         size=list(original.size), format=original.format, seconds=None,
                         preset=attack.preset, penalty=attack.penalty)
    if original.pixels.shape == protected.pixels.shape:
        measurer.measure(original, protected, report)
    return report.to_json() | {"measured": "recovered"}


def _finish(report: dict, source: Path, output: Path | None, attack: Attack) -> dict:
    report["attack_models"] = list(attack.models)
    report["strength"] = attack.strength
    report["original_bytes"] = source.stat().st_size
    report["protected_bytes"] = output.stat().st_size if output is not None else None
    return report


class GalleryProtector:
    """Protects photos for one :class:`Attack` into ``root/<tag>``, loading the models only
    when a photo actually needs protecting. ``protected_now`` counts the photos it protected."""

    def __init__(self, attack: Attack, root: Path, device: str | None = None,
                 progress: bool = False) -> None:
        self.attack = attack
        self.folder = Path(root) / attack.tag
        self.device = device
        self.progress = progress
        self._protector = None
        self._measurer = None
        self.protected_now = 0

    def _get_protector(self) -> Protector:
        if self._protector is None:
            from lowkey.protect import Protector

            self._protector = Protector(
                preset=self.attack.preset, strength=self.attack.strength, seed=self.attack.seed,
                device=self.device, judge=False, progress=self.progress,
                models=list(self.attack.models))
        return self._protector

    def _get_measurer(self) -> PhotoMeasurer:
        """A detector-only measurer (quality figures) for outputs made elsewhere."""
        if self._measurer is None:
            from lowkey.faces import FaceDetector
            from lowkey.measure import PhotoMeasurer

            self._measurer = PhotoMeasurer(FaceDetector(device=self.device or "cpu"))
        return self._measurer

    def protect(self, source: Path, identity: str) -> ProtectedPhoto:
        """The protected version of ``source`` (a photo of ``identity``): reused or made now."""
        out_dir = self.folder / identity
        try:
            output = output_path_for(source, out_dir)
        except (LowKeyError, ValueError) as exc:
            logger.warning("cannot protect %s (%s): the judges see it as it is", source, exc)
            return ProtectedPhoto(source, identity, source, "failed", {"error": str(exc)})
        sidecar = report_path_for(output)
        report = None
        if sidecar.exists():
            try:
                report = json.loads(sidecar.read_text())
            except (OSError, ValueError) as exc:
                logger.warning("unreadable report %s (%s): measuring again", sidecar, exc)
        if output.exists():
            if report is None or report.get("status") != "protected":
                report = _finish(_recovered_report(source, output, self.attack,
                                                   self._get_measurer()),
                                 source, output, self.attack)
                _write_json(sidecar, report)
            return ProtectedPhoto(source, identity, output, "protected", report)
        if report is not None and report.get("status") == "no-face":
            return ProtectedPhoto(source, identity, source, "no-face", report)
        protector = self._get_protector()
        with tqdm(total=protector.settings.steps, desc=f"protect {source.name}"[:30],
                  unit="step", leave=False, disable=not self.progress) as bar:
            def on_step(step: int, total: int, terms: dict) -> bool:
                bar.update(1)
                return True

            result = protector.protect_file(source, out_dir, on_step=on_step)
        self.protected_now += 1
        if result.status == "failed":
            logger.warning("protecting %s failed (%s): the judges see the original",
                           source, result.error)
            return ProtectedPhoto(source, identity, source, "failed", result.to_json())
        made = Path(result.output) if result.output else None
        report = _finish(result.to_json() | {"measured": "protect_file"}, source, made,
                         self.attack)
        _write_json(sidecar, report)
        if result.status != "protected" or made is None:
            return ProtectedPhoto(source, identity, source, result.status, report)
        return ProtectedPhoto(source, identity, made, "protected", report)


def protect_gallery(items: Sequence[tuple[Path, str]], attack: Attack, root: Path,
                    device: str | None = None,
                    progress: bool = False) -> tuple[list[ProtectedPhoto], int]:
    """Protect (or reuse) every ``(source, identity)``; returns the photos and how many were
    protected now (0 when everything was cached)."""
    worker = GalleryProtector(attack, root, device, progress)
    photos = [worker.protect(source, identity) for source, identity in
              tqdm(items, desc=f"protect: {attack.label}", unit="photo", disable=not progress)]
    return photos, worker.protected_now
