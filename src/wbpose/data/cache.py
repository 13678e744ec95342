"""Parsed-file cache: each annotation / detection json is parsed once per node into numpy arrays on disk, and every
rank and loader worker memory-maps them (read-only, shared through the page cache).

Layout of a cache folder (``data.cache_dir``; any local folder)::

    <stem>.<key>/meta.json  *.npy        one entry per source json (CocoArrays / DetectionArrays fields)
    derived/<name>.<key>/meta.json *.npy  arrays computed from entries (e.g. the filtered InstanceTable)

An entry's folder ``key`` hashes the source's real path, size, ``mtime_ns`` and :data:`FORMAT`; its ``meta.json``
(written last: an entry without it is incomplete) stores those, the source's sha256 (the content hash), a quick
hash (head, tail and 14 spread 64 KiB blocks), and each array's dtype, shape, byte size and crc32. A derived
entry's key hashes its name and the content hashes of its sources.

Checks: every load (each rank, each process) compares the source's size, mtime and quick hash and each array's
header and file size with ``meta.json`` (milliseconds); :func:`prepare` (``prepare_data``, once per node) also
re-hashes the whole source and every array. Whatever fails is rebuilt, with a warning naming the reason: a bad or
stale cache is never used. Builds run under an exclusive ``flock`` on the entry, so processes that start together
(8 ranks of a node, several runs) parse a file once; the others wait, then map the result. Entries are written
into a temporary folder and renamed into place.

Memory: a memory-mapped array is shared by all processes that map it; a forked loader worker starts with no page
of it mapped, so :func:`prefault` (called by the DataModule's ``worker_init_fn``) maps every page up front and
the worker's memory (PSS) stays flat over the epoch instead of growing as samples touch new rows.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from wbpose.data.coco_files import CocoArrays, parse_annotation_file
from wbpose.data.detection_files import DetectionArrays, parse_detection_file

logger = logging.getLogger(__name__)

#: Version of the on-disk format and of the parsers' output; a change invalidates every entry.
FORMAT = 1
_QUICK_BLOCK = 1 << 16
_QUICK_EDGE = 1 << 20
_QUICK_SPREAD = 14
_DEFAULT_DIR: str | None = None


class CacheError(RuntimeError):
    """A cache entry is missing, stale or damaged (the message says which and why)."""


# ------------------------------------------------------------------------------------------------ cache folder
def set_cache_dir(path: str | os.PathLike | None) -> None:
    """Set the process-wide default cache folder (``None``: no cache unless one is passed explicitly)."""
    global _DEFAULT_DIR
    _DEFAULT_DIR = None if path is None else str(path)


@contextlib.contextmanager
def use_cache_dir(path: str | os.PathLike | None) -> Iterator[None]:
    """Use ``path`` as the default cache folder inside the ``with`` block."""
    previous = _DEFAULT_DIR
    set_cache_dir(path)
    try:
        yield
    finally:
        set_cache_dir(previous)


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> str | None:
    """``cache_dir`` if given, else the default set by :func:`set_cache_dir` / :func:`use_cache_dir`."""
    return str(cache_dir) if cache_dir is not None else _DEFAULT_DIR


# ------------------------------------------------------------------------------------------------ fingerprints
def content_hash(path: str | os.PathLike) -> str:
    """sha256 of the whole file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def quick_hash(path: str | os.PathLike, size: int) -> str:
    """sha256 of the file's first and last MiB and of 14 evenly spread 64 KiB blocks (cheap on any size)."""
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(_QUICK_EDGE))
        if size > 2 * _QUICK_EDGE:
            for i in range(1, _QUICK_SPREAD + 1):
                f.seek(size * i // (_QUICK_SPREAD + 1))
                digest.update(f.read(_QUICK_BLOCK))
            f.seek(max(size - _QUICK_EDGE, 0))
            digest.update(f.read(_QUICK_EDGE))
    return digest.hexdigest()


def _stat(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _entry_dir(cache_dir: str, source: str) -> Path:
    real = os.path.realpath(source)
    st = _stat(real)
    key = hashlib.sha256(f"{real}\0{st['size']}\0{st['mtime_ns']}\0{FORMAT}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{Path(real).stem}.{key}"


# ------------------------------------------------------------------------------------------------ arrays on disk
def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


def _write_entry(folder: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write arrays + meta.json into a temporary sibling folder, then rename it to ``folder`` (atomic)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        described = {}
        for name, array in arrays.items():
            path = tmp / f"{name}.npy"
            np.save(path, np.ascontiguousarray(array), allow_pickle=False)
            described[name] = {
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "bytes": path.stat().st_size,
                "crc32": _crc32(path),
            }
        (tmp / "meta.json").write_text(json.dumps({**meta, "format": FORMAT, "arrays": described}))
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except FileNotFoundError as e:
        raise CacheError(f"{folder}: no entry") from e
    except (OSError, ValueError) as e:
        raise CacheError(f"{folder}: unreadable meta.json ({e})") from e
    if meta.get("format") != FORMAT:
        raise CacheError(f"{folder}: format {meta.get('format')} != {FORMAT}")
    return meta


def _map_arrays(folder: Path, meta: dict[str, Any], full: bool) -> dict[str, np.ndarray]:
    """Memory-map the entry's arrays, checking headers and sizes (and the crc32 of every file when ``full``)."""
    arrays = {}
    for name, desc in meta["arrays"].items():
        path = folder / f"{name}.npy"
        try:
            if path.stat().st_size != desc["bytes"]:
                raise CacheError(f"{path}: {path.stat().st_size} bytes, expected {desc['bytes']}")
            empty = 0 in desc["shape"]  # a zero-size array cannot be memory-mapped
            array = np.load(path, mmap_mode=None if empty else "r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CacheError(f"{path}: unreadable ({e})") from e
        if array.dtype.str != desc["dtype"] or list(array.shape) != desc["shape"]:
            raise CacheError(f"{path}: {array.dtype.str} {list(array.shape)}, expected {desc['dtype']} {desc['shape']}")
        if full and _crc32(path) != desc["crc32"]:
            raise CacheError(f"{path}: checksum mismatch (damaged file)")
        arrays[name] = array
    return arrays


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``<folder>.lock`` (processes on one node building the same entry wait)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{folder}.lock", "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
                break
            except OSError as e:  # pragma: no cover - interrupted system call
                if e.errno != errno.EINTR:
                    raise
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------------ source entries
def _check_source(folder: Path, source: str, full: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    meta = _read_meta(folder)
    st = _stat(source)
    if (meta.get("size"), meta.get("mtime_ns")) != (st["size"], st["mtime_ns"]):
        raise CacheError(f"{folder}: {source} changed (size or mtime)")
    if meta.get("quick_hash") != quick_hash(source, st["size"]):
        raise CacheError(f"{folder}: {source} changed (quick hash)")
    if full and meta.get("content_hash") != content_hash(source):
        raise CacheError(f"{folder}: {source} changed (content hash)")
    return meta, _map_arrays(folder, meta, full)


def _source_entry(
    cache_dir: str, source: str, parse: Callable[[str], Any], full: bool = False
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, memory-mapped arrays) of ``source``'s entry, built first if missing, stale or damaged."""
    source = str(source)
    if not os.path.isfile(source):
        parse(source)  # raises the parser's DataError ("... not found")
    folder = _entry_dir(cache_dir, source)
    try:
        return _check_source(folder, source, full)
    except CacheError:
        with _locked(folder):
            try:  # another process may have built it while this one waited for the lock
                return _check_source(folder, source, full)
            except CacheError as reason:
                if "no entry" not in str(reason):
                    warnings.warn(f"rebuilding the annotation cache: {reason}", stacklevel=3)
                st = _stat(source)
                digest = content_hash(source)
                parsed = parse(source)
                arrays = {f.name: getattr(parsed, f.name) for f in fields(parsed) if f.name != "source"}
                meta = {"source": os.path.realpath(source), **st, "content_hash": digest}
                meta["quick_hash"] = quick_hash(source, st["size"])
                _write_entry(folder, arrays, meta)
                logger.info("cached %s in %s", source, folder)
                return _check_source(folder, source, False)


def _parse_annotations(path: str) -> CocoArrays:
    return parse_annotation_file(path, allow_empty=True)


def annotation_arrays(ann_file: str | os.PathLike, cache_dir: str | os.PathLike, full: bool = False) -> CocoArrays:
    """The parsed annotation file (:class:`CocoArrays` of read-only memory maps), from the cache."""
    _, arrays = _source_entry(str(cache_dir), str(ann_file), _parse_annotations, full)
    return CocoArrays(**arrays, source=str(ann_file))


def detection_arrays(det_file: str | os.PathLike, cache_dir: str | os.PathLike, full: bool = False) -> DetectionArrays:
    """The parsed detection file (:class:`DetectionArrays` of read-only memory maps), from the cache."""
    _, arrays = _source_entry(str(cache_dir), str(det_file), parse_detection_file, full)
    return DetectionArrays(**arrays, source=str(det_file))


def source_content_hash(source: str | os.PathLike, cache_dir: str | os.PathLike, kind: str) -> str:
    """The content hash recorded for ``source``'s (checked) entry; builds the entry if needed."""
    parse = parse_detection_file if kind == "det" else _parse_annotations
    meta, _ = _source_entry(str(cache_dir), str(source), parse)
    return meta["content_hash"]


# ------------------------------------------------------------------------------------------------ derived entries
def derived_arrays(
    cache_dir: str | os.PathLike,
    name: str,
    sources: Sequence[str | os.PathLike],
    build: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]],
    kinds: Sequence[str] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays computed from source files (``build() -> (arrays, extra json)``), cached under a key of ``name`` and
    the sources' content hashes. ``kinds``: "ann" or "det" per source (default: the first is "ann", others "det").

    ``None`` arrays returned by ``build`` are stored as absent and come back as missing keys.
    """
    cache_dir = str(cache_dir)
    kinds = list(kinds) if kinds is not None else ["ann"] + ["det"] * (len(sources) - 1)
    hashes = [source_content_hash(s, cache_dir, k) for s, k in zip(sources, kinds)]
    key = hashlib.sha256("\0".join([name, str(FORMAT), *hashes]).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / "derived" / f"{name}.{key}"

    def check() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        meta = _read_meta(folder)
        if meta.get("sources") != hashes:
            raise CacheError(f"{folder}: built from other source contents")
        return _map_arrays(folder, meta, False), meta.get("extra", {})

    try:
        return check()
    except CacheError:
        with _locked(folder):
            try:
                return check()
            except CacheError as reason:
                if "no entry" not in str(reason):
                    warnings.warn(f"rebuilding the annotation cache: {reason}", stacklevel=2)
                arrays, extra = build()
                kept = {k: v for k, v in arrays.items() if v is not None}
                _write_entry(folder, kept, {"sources": hashes, "extra": extra, "name": name})
                return check()


# ------------------------------------------------------------------------------------------------ node-level entry
def prepare(
    cache_dir: str | os.PathLike, ann_files: Sequence[str | os.PathLike] = (), det_files: Sequence[str] = ()
) -> None:
    """Build (or fully verify: content hash + array checksums) the entries of these files; for ``prepare_data``."""
    for ann in ann_files:
        annotation_arrays(ann, cache_dir, full=True)
    for det in det_files:
        detection_arrays(det, cache_dir, full=True)


def prefault(*arrays: np.ndarray | None) -> int:
    """Map every page of these (memory-mapped) arrays into this process now; returns the bytes touched.

    A forked loader worker inherits the parent's mappings but none of their pages; touching them once here keeps
    its memory flat over the epoch. Plain in-memory arrays are skipped.
    """
    touched = 0
    for array in arrays:
        if not isinstance(array, np.memmap) and not isinstance(getattr(array, "base", None), np.memmap):
            continue
        flat = np.asarray(array).reshape(-1).view(np.uint8) if array.flags.c_contiguous else None
        if flat is None or flat.size == 0:
            continue
        int(flat[::4096].sum())  # one byte per page
        touched += flat.size
    return touched
