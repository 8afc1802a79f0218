"""The evaluation data set: one folder per identity, optional distractors, and a seeded split.

Layout: ``root/<identity>/<photo>``; photos are found by extension, and hidden files and LowKey
outputs (``*_lowkey.*``) are ignored (:func:`lowkey.output_files.is_photo_file`). Distractors are
every photo under their own folder (any depth) and belong to no identity.

The split follows the paper (section 4): per identity, a tenth of the photos (at least one) are
probes and the rest gallery; the gallery photos of the selected *users* are protected. As in the
paper (100 protected users among FaceScrub's 530 identities), the default protects a few users
among clean identities: :data:`DEFAULT_USER_FRACTION` (a fifth) of the identities with a gallery
photo, at least one; ``users=N`` protects N, ``users="all"`` everybody. All random choices come
from one ``numpy.random.Generator(seed)`` in a fixed order, so a seed gives the same split and
users on every machine.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lowkey.output_files import is_photo_file

logger = logging.getLogger(__name__)

#: Share of the eligible identities protected by default (the paper: 100 of 530 FaceScrub
#: identities, about a fifth).
DEFAULT_USER_FRACTION = 0.2

#: How many users to protect: a number, "all", or None for the default share.
Users = int | Literal["all"] | None


@dataclass(frozen=True)
class Dataset:
    """Photos per identity (sorted names and paths) and distractor photos (no identity)."""

    root: Path
    identities: dict[str, tuple[Path, ...]]
    distractors: tuple[Path, ...] = ()

    @property
    def n_photos(self) -> int:
        return sum(len(p) for p in self.identities.values())


def _photos_under(folder: Path) -> tuple[Path, ...]:
    """Every photo file under ``folder``, sorted, following symbolic links to folders (a subset
    made of links is a common way to build a distractor set; each real folder is read once, so
    a link loop ends)."""
    seen: set[str] = set()
    found = []
    for path, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(path)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        found += [p for p in (Path(path) / name for name in files) if is_photo_file(p)]
    return tuple(sorted(found))


def scan_dataset(root: Path, distractors: Path | None = None) -> Dataset:
    """Read ``root/<identity>/<photo>`` (and every photo under ``distractors``).

    Identities without a photo are left out. Raises ``ValueError`` when ``root`` is not a folder
    or holds no identity folder with photos, or ``distractors`` is not a folder or holds no photo
    (symbolic links to folders are followed there).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    identities = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if distractors is not None and folder.resolve() == Path(distractors).resolve():
            continue
        photos = tuple(sorted(p for p in folder.iterdir() if is_photo_file(p)))
        if photos:
            identities[folder.name] = photos
    if not identities:
        raise ValueError(f"{root} holds no identity folders with photos (root/<identity>/<photo>)")
    extra: tuple[Path, ...] = ()
    if distractors is not None:
        if not Path(distractors).is_dir():
            raise ValueError(f"distractors: {distractors} is not a folder")
        extra = _photos_under(Path(distractors))
        if not extra:
            raise ValueError(f"distractors: {distractors} holds no photos")
    logger.info("data set %s: %d identities, %d photos, %d distractors", root,
                len(identities), sum(len(p) for p in identities.values()), len(extra))
    return Dataset(root, identities, extra)


@dataclass(frozen=True)
class Split:
    """Who is probe, who is gallery, who is a user (protected); all paths in sorted order.

    ``probes`` and ``gallery`` map identity -> photos; every identity has >= 1 probe and, when it
    has >= 2 photos, >= 1 gallery photo. ``users`` are identities whose gallery is protected;
    only their probes are identification trials. ``distractors`` join the gallery, clean.
    """

    seed: int
    probes: dict[str, tuple[Path, ...]]
    gallery: dict[str, tuple[Path, ...]]
    users: tuple[str, ...]
    distractors: tuple[Path, ...] = ()

    def gallery_items(self) -> list[tuple[Path, str | None]]:
        """Every gallery photo with its identity (None for a distractor), in a fixed order."""
        items: list[tuple[Path, str | None]] = [
            (path, identity) for identity, paths in self.gallery.items() for path in paths]
        return items + [(path, None) for path in self.distractors]

    def probe_items(self) -> list[tuple[Path, str]]:
        """Every probe photo with its identity (users and non-users), in a fixed order."""
        return [(path, identity) for identity, paths in self.probes.items() for path in paths]

    def user_gallery(self) -> list[tuple[Path, str]]:
        """The gallery photos that are protected: those of the users."""
        return [(path, user) for user in self.users for path in self.gallery[user]]


def probe_count(n_photos: int, fraction: float = 0.1) -> int:
    """How many of an identity's ``n_photos`` are probes: a tenth, rounded, at least one, and
    at most ``n_photos - 1`` when there are two or more."""
    if n_photos < 1:
        raise ValueError("an identity needs at least one photo")
    count = max(1, int(n_photos * fraction + 0.5))
    return min(count, max(1, n_photos - 1))


def default_user_count(n_eligible: int) -> int:
    """Users protected by default among ``n_eligible`` identities: a fifth, rounded, at least 1."""
    if n_eligible < 1:
        raise ValueError("no eligible identity")
    return max(1, int(n_eligible * DEFAULT_USER_FRACTION + 0.5))


def split_dataset(dataset: Dataset, seed: int = 0, users: Users = None,
                  probe_fraction: float = 0.1) -> Split:
    """Seeded probe/gallery split and user selection (see the module docstring).

    ``users``: how many identities are protected, drawn at random among those with a gallery
    photo; None (the default): :func:`default_user_count` of them (a fifth, as in the paper);
    ``"all"``: every one. Identities with a single photo have a probe but no gallery photo and
    can never be users (their trial could not succeed even unprotected).
    """
    if isinstance(users, str) and users != "all":
        raise ValueError(f"users must be a number or 'all', not {users!r}")
    if isinstance(users, int) and users < 1:
        raise ValueError("users must be at least 1")
    rng = np.random.default_rng(seed)
    probes, gallery = {}, {}
    for identity, photos in dataset.identities.items():
        order = rng.permutation(len(photos))
        n_probe = probe_count(len(photos), probe_fraction)
        probes[identity] = tuple(sorted(photos[i] for i in order[:n_probe]))
        gallery[identity] = tuple(sorted(photos[i] for i in order[n_probe:]))
    eligible = [identity for identity, photos in gallery.items() if photos]
    if not eligible:
        raise ValueError("no identity has two or more photos: nothing to evaluate")
    count = (len(eligible) if users == "all" else default_user_count(len(eligible))
             if users is None else users)
    if count > len(eligible):
        logger.warning("--users %d, but only %d identities have gallery photos: using all",
                       count, len(eligible))
    if count >= len(eligible):
        chosen = tuple(eligible)
    else:
        picked = rng.choice(len(eligible), size=count, replace=False)
        chosen = tuple(sorted(eligible[i] for i in picked))
    logger.info("users: %d of %d eligible identities", len(chosen), len(eligible))
    return Split(seed, probes, gallery, chosen, dataset.distractors)
