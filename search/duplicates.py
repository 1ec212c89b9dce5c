"""Near-duplicate photos: re-saves, resizes, small crops, light edits and burst shots.

Two photos are near-duplicates when the cosine of their vectors (the current model's, as
indexed) reaches the model's threshold (``threshold_for``). Three uses:

- ``find_groups``: every group in the library. Each photo's nearest neighbours come from
  the vector index (a k-NN search per photo, ``BATCH`` photos per call, ``NEIGHBOURS`` each),
  and the pairs at or above the threshold are joined with union-find, so the cost is
  N searches, never N² pairs. A group keeps the photo with the most pixels, then the
  largest file, then the earliest date (``keeper_key``).
- ``move_others`` / ``undo``: move every photo but the keeper out of the library into a
  folder, listing each move in a journal, and put them all back from that journal. Nothing
  is ever deleted.
- ``collapse``: a page of search results shows one result per group; ``Result.duplicates``
  lists the ids folded into it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search.errors import InputError
from search.files import atomic_write
from search.store import Photo, Store

if TYPE_CHECKING:
    from search.results import Result
    from search.vectors import VectorIndex

log = logging.getLogger(__name__)

# Cosine at or above which two photos are near-duplicates, per model id.
#
# The offline model's is calibrated by ``python benchmarks/duplicates.py calibrate``: 40
# real photos (the sample photos of scikit-image, scikit-learn, matplotlib and OpenCV's
# sample data, plus scikit-image's brick, grass and gravel textures), 7 real bursts or
# edits shipped beside them (motorcycle_right, aloeR, leuvenB, basketball2, rubberwhale2,
# right.jpg of stereo and motion pairs; ela_modified), and 9 copies of each photo made with
# Pillow (JPEG re-saves at quality 85 and 40, resizes to 1/2 and 1/3, a crop of 5 % a side,
# a crop of 12 % off one corner, brightness +25 % and -25 %, a "burst" shifted 3 % and
# turned 2 degrees): 407 files, indexed by ``pixseek index``, 1870 positive pairs (same
# original). Pair precision / recall of the groups (pairs linked directly or through
# others, as union-find links them):
#
#   threshold  0.900 0.910 0.915 0.920 0.925 0.930 0.935 0.940 0.950 0.960 0.970
#   precision  0.700 0.806 0.944 1.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000
#   recall     1.000 1.000 1.000 1.000 1.000 1.000 1.000 0.990 0.990 0.945 0.890
#
# 0.93 sits in the window where both are 1.000 (0.920 to 0.935; direct pairs alone: P 1.000,
# R 0.942). The closest different photos: 0.917 (copies of grocery_bag and
# textbooks_on_floor, two grey still lifes), 0.890 between originals (notebook_corner,
# toys_and_shells). The copy furthest from its group: a 1/3 resize (133 x 100 px). The
# margin below is about 0.013: the offline model's vectors are ImageNet class mixtures, so
# two different photos with the same classes can come close; raise --threshold if a
# library's groups mix distinct photos.
OFFLINE_THRESHOLD = 0.93
# Any other model (the CLIP family: CLIP, SigLIP, fine-tuned checkpoints): NOT calibrated
# here (no model hub on this machine). 0.95 is a common starting point for CLIP image
# embeddings' near-duplicates; ``pixseek duplicates --threshold`` overrides it, and
# ``benchmarks/duplicates.py calibrate --model M`` measures a model's own.
DEFAULT_THRESHOLD = 0.95

# Neighbours asked of the index per photo (itself included), and photos per index call.
# A group larger than NEIGHBOURS still forms: union-find joins the overlapping neighbourhoods.
NEIGHBOURS = 16
BATCH = 1024
# An approximate FAISS index (IVF, HNSW) is scanned at this depth (IVF cells probed; HNSW
# efSearch), not at the one tuned for text queries (hundreds of cells: a text query lies
# far from the photos it finds, a near-duplicate next to its twin), and from its codes:
# candidates whose approximate cosine is within SCAN_MARGIN of the threshold are scored
# exactly from the store's vectors. On 100k synthetic photos (IVF, 1265 cells, tuned depth
# 384) a batch of 1024 took 2.3 s through ``VectorIndex.search`` (1.35 s probing, 1 s
# re-ranking 160 candidates each from the store); see benchmarks/duplicates.py speed.
SCAN_DEPTH = 16
SCAN_MARGIN = 0.05
# A collapsing search looks further than the page it shows (see ``lookahead``): three
# times as far (a page of groups of four near-duplicates each fills), at least 60 results
# and at most 1000 more.
LOOKAHEAD_FACTOR, MIN_LOOKAHEAD, MAX_LOOKAHEAD = 3, 60, 1000
JOURNAL_PREFIX = "pixseek-duplicates-journal-"
JOURNAL_VERSION = 1


def thresholds() -> dict[str, float]:
    """The calibrated thresholds, by model id (the offline model's module imports torch,
    so it is imported when asked)."""
    from search.encoders.names import OFFLINE_MODEL_ID

    return {OFFLINE_MODEL_ID: OFFLINE_THRESHOLD}


def threshold_for(model_id: str) -> float:
    """The near-duplicate cosine threshold of a model: calibrated, else DEFAULT_THRESHOLD."""
    return thresholds().get(model_id, DEFAULT_THRESHOLD)


def calibrated(model_id: str) -> bool:
    return model_id in thresholds()


# -- groups ------------------------------------------------------------------------------


@dataclass
class Member:
    """One photo of a group (a content: its files are byte-identical)."""

    id: int
    path: str  # the first of ``paths`` in sort order
    paths: list[str]
    width: int | None
    height: int | None
    size: int  # bytes
    date: dt.datetime | None  # taken_at, else the oldest file modification time
    hash: str = ""
    similarity: float = 1.0  # cosine to the group's keeper

    @classmethod
    def of(cls, cid: int, photo: Photo) -> Member:
        return cls(cid, photo.paths[0], list(photo.paths), photo.width, photo.height,
                   photo.size, photo.date, photo.hash)

    @property
    def pixels(self) -> int:
        return (self.width or 0) * (self.height or 0)

    def as_dict(self, similarity: bool = True) -> dict:
        out = {"id": self.id, "path": self.path}
        if similarity:
            out["similarity"] = round(self.similarity, 6)
        out.update({
            "paths": self.paths, "width": self.width, "height": self.height, "size": self.size,
            "date": self.date.isoformat() if self.date else None,
        })
        return out


@dataclass
class Group:
    keep: Member
    others: list[Member] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"keep": self.keep.as_dict(similarity=False),
                "others": [m.as_dict() for m in self.others]}


def keeper_key(member: Member) -> tuple:
    """Sort key, best keeper first: most pixels, then largest file, then earliest date
    (capture time, else file time), then path (so the choice never depends on order)."""
    when = member.date or dt.datetime.max
    return (-member.pixels, -member.size, when, member.path)


class _UnionFind:
    """Disjoint sets over the content ids that appear in a pair (a dict: sparse)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = parent.setdefault(x, x)
        while root != parent[root]:
            parent[root] = parent[parent[root]]  # path halving
            root = parent[root]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def sets(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return [sorted(members) for members in out.values()]


def similar_pairs(
    store: Store,
    index: VectorIndex,
    model_id: str,
    threshold: float,
    *,
    k: int = NEIGHBOURS,
    batch: int = BATCH,
    lock: AbstractContextManager | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(ids, neighbour ids, cosines) of every pair at or above ``threshold``, batch by
    batch: each stored vector of ``model_id`` is a query to ``index`` (k nearest). A pair
    shows up from both sides when each is among the other's k nearest. ``lock`` is held
    around each index call (a server shares its index between threads)."""
    guard = lock if lock is not None else nullcontext()
    done = 0
    for _emb_ids, ids, vectors in store.iter_embeddings(model_id, chunk=batch):
        with guard:
            count = index.count
            if count < 2:
                return
            scan = index.scan(vectors, min(k, count), SCAN_DEPTH)
            if scan is None:  # an exact kind, Milvus: the index's own search
                scores, found = index.search(vectors, min(k, count))
        if scan is not None:
            scores, found = _rescore(store, model_id, ids, vectors, *scan, threshold)
        keep = (scores >= threshold) & (found >= 0) & (found != ids[:, None])
        rows, cols = np.nonzero(keep)
        if len(rows):
            yield ids[rows], found[rows, cols], scores[rows, cols]
        done += len(ids)
        if progress is not None:
            progress(done)


def _rescore(
    store: Store, model_id: str, ids: np.ndarray, queries: np.ndarray, scores: np.ndarray,
    found: np.ndarray, threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosines for the candidates whose approximate one may reach ``threshold``
    (the others keep theirs, below it): their vectors from this batch or the store."""
    maybe = (scores >= threshold - SCAN_MARGIN) & (found >= 0) & (found != ids[:, None])
    if not maybe.any():
        return scores, found
    in_batch = {int(cid): row for row, cid in enumerate(ids.tolist())}
    wanted = {int(c) for c in found[maybe].tolist()} - in_batch.keys()
    stored = store.vectors(model_id, sorted(wanted)) if wanted else {}
    exact = scores.copy()
    for row, col in zip(*np.nonzero(maybe), strict=True):
        cid = int(found[row, col])
        vector = queries[in_batch[cid]] if cid in in_batch else stored.get(cid)
        # A vector the store no longer holds was removed meanwhile: not a pair.
        exact[row, col] = float(vector @ queries[row]) if vector is not None else -1.0
    return exact, found


def find_groups(
    store: Store,
    index: VectorIndex,
    model_id: str,
    threshold: float | None = None,
    *,
    k: int = NEIGHBOURS,
    batch: int = BATCH,
    lock: AbstractContextManager | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Group]:
    """Groups of near-duplicate photos among those indexed with ``model_id``, each with
    its keeper first; the others by similarity to it, best first. Groups are sorted by the
    keeper's path. Photos whose files are all gone are left out."""
    threshold = threshold_for(model_id) if threshold is None else threshold
    sets = _UnionFind()
    for a, b, _scores in similar_pairs(store, index, model_id, threshold, k=k, batch=batch,
                                       lock=lock, progress=progress):
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            sets.union(x, y)
    components = [c for c in sets.sets() if len(c) > 1]
    groups: list[Group] = []
    for start in range(0, len(components), 256):  # bounded reads, whatever the count
        part = components[start:start + 256]
        ids = [cid for c in part for cid in c]
        photos = store.photos(ids)
        vectors = store.vectors(model_id, ids)
        for members in part:
            live = [Member.of(cid, photos[cid]) for cid in members
                    if cid in photos and cid in vectors]
            if len(live) < 2:
                continue
            live.sort(key=keeper_key)
            keep, others = live[0], live[1:]
            for m in others:
                m.similarity = float(vectors[m.id] @ vectors[keep.id])
            others.sort(key=lambda m: (-m.similarity, m.path))
            groups.append(Group(keep, others))
    groups.sort(key=lambda g: g.keep.path)
    return groups


# -- collapsing search results -----------------------------------------------------------


def lookahead(shown: int) -> int:
    """How many more ranked results a collapsing search fetches past the ``shown`` it
    needs (the page's end, plus one to tell whether a next page exists). Folded
    near-duplicates leave room on the page that these fill; a page whose look-ahead all
    folded away is shorter, and says that more follow."""
    return min(max(LOOKAHEAD_FACTOR * shown, MIN_LOOKAHEAD), MAX_LOOKAHEAD)


def collapse(
    ranked: list[Result], store: Store, model_id: str, end: int,
    threshold: float | None = None,
) -> tuple[list[Result], bool]:
    """Fold each near-duplicate into the best-ranked result of its group.

    ``ranked`` is the whole ranked list a search fetched (the page's ``end`` plus one, plus
    ``lookahead`` of that). Results whose cosine reaches the threshold are linked, and a
    group is everything linked, directly or through others (as ``find_groups``' union-find:
    copies of one photo may each differ more from one another than from the original).
    A group shows as its best-ranked result; the others' ids go into its ``duplicates``,
    best-ranked first. A result found by its text (OCR) is never folded, nor holds others:
    two receipts or two photos of a sign look alike and say different things.

    Only the first ``end + 1`` groups are shown; results of later groups stay as they are
    (past the page, they only tell that more follow). Returns the folded list and whether
    results may follow ``end``: also true when the whole fetch folded into fewer results
    than that, since the index holds more past it. One read of the store's vectors, one
    matrix product, and a walk of the links.
    """
    if not ranked:
        return ranked, False
    threshold = threshold_for(model_id) if threshold is None else threshold
    n = len(ranked)
    stored = store.vectors(model_id, [r.content_id for r in ranked])
    dim = len(next(iter(stored.values()))) if stored else 0
    vectors = np.zeros((n, max(dim, 1)), np.float32)  # no vector: a zero row links nothing
    for i, r in enumerate(ranked):
        v = stored.get(r.content_id)
        if v is not None:
            vectors[i] = v
    by_image = np.asarray(["text" not in r.matched for r in ranked])
    linked = (vectors @ vectors.T >= threshold) & by_image[:, None] & by_image[None, :]
    # Each result's group, named by its best-ranked member (a walk from each in rank order).
    first = np.full(n, -1)
    for start in range(n):
        if first[start] >= 0:
            continue
        first[start] = start
        stack = [start]
        while stack:
            found = np.nonzero(linked[stack.pop()] & (first < 0))[0]
            first[found] = start
            stack.extend(found.tolist())
    shown: dict[int, Result] = {}
    kept: list[Result] = []
    rest: list[Result] = []
    for i, r in enumerate(ranked):
        r.duplicates = []
        if first[i] != i:
            if int(first[i]) in shown:
                shown[int(first[i])].duplicates.append(r.content_id)
            continue  # a group past the page: not shown, nothing to count
        if len(kept) <= end:
            shown[i] = r
            kept.append(r)
        else:
            rest.append(r)
    full = n >= end + 1 + lookahead(end + 1)
    folded = kept + rest
    return folded, len(folded) > end or full


# -- moving out and back -----------------------------------------------------------------


def common_folder(store: Store) -> Path | None:
    """The deepest folder holding every indexed file: the common part of the smallest and
    the largest path (two seeks on the paths' unique index, whatever the library size)."""
    low, high = store.path_range()
    if low is None:
        return None
    common = Path(os.path.commonpath([low, high]))
    return common.parent if common == Path(low) else common


def library_roots(config_roots: Iterable[Path | str], store: Store) -> list[Path]:
    """The folders a moved photo's path is kept relative to: ``library.roots`` from the
    configuration, then the common folder of every indexed path (the folder given to
    ``pixseek index`` when there was one)."""
    roots = [Path(r).expanduser().resolve() for r in config_roots]
    common = common_folder(store)
    if common is not None and common not in roots:
        roots.append(common)
    return roots


def relative_path(path: str | Path, roots: list[Path]) -> Path:
    """``path`` relative to the deepest of ``roots`` holding it, else to its own anchor."""
    path = Path(path)
    holding = [r for r in roots if path.is_relative_to(r) and path != r]
    if holding:
        return path.relative_to(max(holding, key=lambda r: len(r.parts)))
    return path.relative_to(path.anchor)


def _free_name(target: Path, taken: set[Path]) -> Path:
    """``target``, or ``name-2.ext``, ``name-3.ext``... when that exists or is planned."""
    candidate, n = target, 1
    while candidate in taken or os.path.lexists(candidate):
        n += 1
        candidate = target.with_name(f"{target.stem}-{n}{target.suffix}")
    return candidate


def _move(src: Path, dst: Path) -> None:
    """Move one file without ever overwriting: a rename, else (another file system) a
    copy beside the target, renamed into place, then the source unlinked."""
    if os.path.lexists(dst):
        raise FileExistsError(f"{dst} exists")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
        return
    except OSError as exc:
        import errno

        if exc.errno != errno.EXDEV:
            raise
    partial = dst.with_name(f".{dst.name}.pixseek-partial")
    shutil.copy2(src, partial)
    if os.path.getsize(partial) != os.path.getsize(src):
        os.unlink(partial)
        raise OSError(f"copying {src} to {dst} came out short")
    os.rename(partial, dst)
    os.unlink(src)


def _journal_path(dest: Path, now: dt.datetime) -> Path:
    stamp = now.strftime("%Y%m%d-%H%M%S")
    return _free_name(dest / f"{JOURNAL_PREFIX}{stamp}.json", set())


def _write_journal(path: Path, journal: dict) -> None:
    with atomic_write(path, "w", fsync=True) as fh:
        json.dump(journal, fh, indent=1)
        fh.write("\n")


def move_others(
    groups: list[Group], dest: str | Path, roots: list[Path], *, model_id: str = "",
    threshold: float | None = None, now: dt.datetime | None = None,
) -> tuple[Path, dict]:
    """Move every file of every group's others into ``dest``, at its path relative to its
    library root (``relative_path``). The journal (``dest/pixseek-duplicates-journal-
    <time>.json``) lists every planned move before the first one, and is rewritten with
    the outcome after the last; ``undo`` reads it. A group whose keeper has no file on
    disk moves nothing; a file missing or changed since it was indexed (another size) is
    skipped. Returns the journal's path and a summary."""
    dest = Path(dest).expanduser().resolve()
    now = now or dt.datetime.now()
    moves: list[dict] = []
    skipped: list[dict] = []
    taken: set[Path] = set()
    for group in groups:
        if not any(os.path.isfile(p) for p in group.keep.paths):
            skipped += [{"path": p, "reason": f"the photo to keep ({group.keep.path}) is "
                                              "not on disk"}
                        for m in group.others for p in m.paths]
            continue
        for member in group.others:
            for path in member.paths:
                try:
                    size = os.stat(path).st_size
                except OSError:
                    skipped.append({"path": path, "reason": "not on disk"})
                    continue
                if size != member.size:
                    skipped.append({"path": path, "reason": "changed since it was indexed"})
                    continue
                if Path(path).is_relative_to(dest):
                    skipped.append({"path": path, "reason": "already in the folder"})
                    continue
                target = _free_name(dest / relative_path(path, roots), taken)
                taken.add(target)
                moves.append({"from": path, "to": str(target), "size": size, "id": member.id,
                              "similarity": round(member.similarity, 6),
                              "keep": group.keep.path, "moved": False})
    journal = {
        "pixseek": "duplicates journal", "version": JOURNAL_VERSION,
        "created": now.isoformat(timespec="seconds"), "dest": str(dest),
        "roots": [str(r) for r in roots], "model": model_id, "threshold": threshold,
        "state": "moving", "moves": moves, "skipped": skipped,
    }
    dest.mkdir(parents=True, exist_ok=True)
    path = _journal_path(dest, now)
    _write_journal(path, journal)  # before the first move: a crash leaves a usable journal
    failed = 0
    for move in moves:
        try:
            _move(Path(move["from"]), Path(move["to"]))
            move["moved"] = True
        except OSError as exc:
            failed += 1
            move["error"] = str(exc)
            log.warning("could not move %s: %s", move["from"], exc)
    journal["state"] = "moved"
    _write_journal(path, journal)
    summary = {"journal": str(path), "dest": str(dest),
               "moved": sum(m["moved"] for m in moves), "failed": failed,
               "skipped": skipped, "groups": len(groups)}
    return path, summary


def read_journal(path: str | Path) -> dict:
    path = Path(path).expanduser()
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise InputError(f"cannot read the journal {path}: {reason}") from None
    if not isinstance(journal, dict) or journal.get("pixseek") != "duplicates journal":
        raise InputError(f"{path} is not a journal of pixseek duplicates --move-to")
    if journal.get("version") != JOURNAL_VERSION:
        raise InputError(f"{path}: journal version {journal.get('version')} is not "
                         f"{JOURNAL_VERSION}, the one this pixseek reads")
    return journal


def undo(path: str | Path) -> dict:
    """Put every file a journal moved back where it was. A file already back is left; a
    file whose old place is taken again is left where it is (nothing is overwritten or
    deleted) and reported. Folders the move created and left empty are removed. Safe to
    run twice, and after a move that stopped half way (it reads the disk, not the flags)."""
    path = Path(path).expanduser().resolve()
    journal = read_journal(path)
    dest = Path(journal["dest"])
    restored, already, conflicts, missing = 0, 0, [], []
    for move in reversed(journal["moves"]):
        src, dst = Path(move["from"]), Path(move["to"])
        here, there = os.path.lexists(dst), os.path.lexists(src)
        if there and not here:
            already += 1
        elif there and here:
            conflicts.append({"path": str(src), "moved_to": str(dst),
                              "reason": "a file is at its old place again"})
        elif not here:
            missing.append({"path": str(src), "moved_to": str(dst),
                            "reason": "not in the folder any more"})
        else:
            try:
                _move(dst, src)
                restored += 1
                move["moved"] = False
                _prune(dst.parent, dest)
            except OSError as exc:
                conflicts.append({"path": str(src), "moved_to": str(dst), "reason": str(exc)})
    journal["state"] = "undone" if not conflicts and not missing else "partly undone"
    journal["undone"] = dt.datetime.now().isoformat(timespec="seconds")
    _write_journal(path, journal)
    return {"journal": str(path), "restored": restored, "already_back": already,
            "conflicts": conflicts, "missing": missing}


def _prune(folder: Path, top: Path) -> None:
    """Remove empty folders from ``folder`` up to (not including) ``top``."""
    while folder != top and folder.is_relative_to(top):
        try:
            folder.rmdir()  # only ever an empty folder
        except OSError:
            return
        folder = folder.parent
