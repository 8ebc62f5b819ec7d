"""``BlobStore``: this device's content-addressed store of shared files, one data file a blob.

Theory of operation
-------------------
A blob is named by the SHA-256 of its bytes (hex) and cut into chunks of ``CHUNK_SIZE``
bytes (the last one shorter). Its **manifest** is its size, the chunk size and each chunk's
SHA-256; the **root** is the SHA-256 of the chunk hashes one after the other, and is what the
``file_shared`` event carries, so a manifest fetched from any device is checked against the
log before one chunk is asked for. Identical content has one name, so it is stored once.

On disk, under ``<home>/blobs/``::

    <hash[:2]>/<hash>/manifest      msgpack [size, chunk_size, [digest, ...]]
    <hash[:2]>/<hash>/data          the bytes: chunk n at offset n * chunk_size (sparse while
                                    a fetch runs)
    <hash[:2]>/<hash>/held          the chunks held: 4-byte big-endian numbers, appended as
                                    each chunk is written whole with its hash checked
    <hash[:2]>/<hash>/complete      every chunk and the whole file verified
    tmp/                            imports in progress

A chunk counts as held only once its bytes are in the data file and its number is in the held
record (``write_chunk``), so the chunks a fetch already holds survive a cut link or a
``kill -9`` and are never fetched again. Nothing is offered (served to another device or
copied out to a downloads directory) before ``verify`` has checked the whole file's hash (a
fetch computes it as the chunks arrive in order, so a fetched blob needs no second pass), and
a chunk read to be served is checked again (``read_chunk``): a chunk that rotted on disk is
dropped from the held record and fetched again. A hole a power loss left behind (a number
recorded whose bytes never reached the disk) fails the whole file's hash, and ``verify``
then finds the chunk. Earlier versions kept one file per chunk; ``migrate`` moves those.

The store is plain files, not a table: chunks are written at link speed by the fetch while the
log's single writer keeps committing events, and the log must hold no file bytes (only the
small ``file_shared`` event). One data file a blob (not a file a chunk) costs one ``pwrite``
per chunk instead of a create, a write and a rename, and lets ``copy_out`` copy in the kernel
(``copy_file_range``). This module does blocking file I/O: the daemon calls it in a worker
thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import msgspec

from switchboard.errors import StoreError, UserError

# One chunk: the largest body the directed channel carries in one message (proto.calls.MAX_BODY,
# 256 KiB). Fewer, larger chunks amortise what each message costs (a signature and its check,
# encoding, a broker round trip, a thread hop: about 1.2 ms of CPU in all, docs/files.md);
# bench/files.py --chunk compares sizes.
# A resumed transfer re-fetches at most one partial chunk's worth per cut.
CHUNK_SIZE: Final = 256 * 1024
# The most chunks a manifest lists: with 256 KiB chunks, files of up to 1.7 GiB, and a manifest
# of at most 238 kB (34 bytes a chunk), so it travels in one directed-channel reply.
MAX_CHUNKS: Final = 7000
# A partial blob nobody touched for this long is dropped by GC (its fetch was abandoned).
DEFAULT_MAX_PARTIAL_AGE: Final = 24 * 3600.0

HEX: Final = frozenset("0123456789abcdef")
DATA: Final = "data"  # a blob's bytes
HELD: Final = "held"  # the chunks held, as 4-byte numbers
RECORD: Final = 4
COPY_BUFFER: Final = 1 << 20  # copy_out without copy_file_range


class Manifest(msgspec.Struct, frozen=True, array_like=True):
    """A blob's size, chunk size and chunk hashes (32-byte SHA-256 digests)."""

    size: int
    chunk_size: int
    hashes: list[bytes]

    @property
    def root(self) -> str:
        """The SHA-256 (hex) of the chunk hashes in order: what ``file_shared`` names."""
        return hashlib.sha256(b"".join(self.hashes)).hexdigest()

    @property
    def count(self) -> int:
        return len(self.hashes)

    def chunk_length(self, n: int) -> int:
        """How many bytes chunk ``n`` holds."""
        return min(self.chunk_size, self.size - n * self.chunk_size)

    def check(self, size: int, root: str) -> None:
        """Raise ``StoreError`` unless this manifest fits a file of ``size`` with ``root``."""
        expected = -(-size // self.chunk_size) if self.chunk_size > 0 else -1
        if (
            self.size != size
            or not 0 < self.chunk_size <= CHUNK_SIZE
            or len(self.hashes) != expected
            or len(self.hashes) > MAX_CHUNKS
            or any(len(h) != 32 for h in self.hashes)
            or self.root != root
        ):
            raise StoreError("the chunk list does not match the shared file's size and root")


def encode_manifest(manifest: Manifest) -> bytes:
    return msgspec.msgpack.encode(manifest)


def decode_manifest(data: bytes) -> Manifest:
    """Raises ``StoreError`` for bytes that are no manifest."""
    try:
        return msgspec.msgpack.decode(data, type=Manifest)
    except msgspec.DecodeError as exc:
        raise StoreError(f"malformed chunk list: {str(exc)[:80]}") from None


def check_hash(text: str) -> str:
    """A blob name (64 lower-case hex digits), or ``UserError``."""
    if len(text) != 64 or not set(text) <= HEX:
        raise UserError(f"not a SHA-256 (64 hex digits): {text[:70]!r}")
    return text


@dataclass(frozen=True)
class BlobInfo:
    """One blob as the store holds it."""

    hash: str
    size: int
    held: int  # chunks held
    count: int  # chunks in all (0 before the manifest is known)
    complete: bool
    stored_bytes: int
    touched: float  # last time a chunk was written or the blob was used


@dataclass(frozen=True)
class Collected:
    """What a GC pass removed and kept."""

    removed: list[str]
    freed_bytes: int
    kept_bytes: int


class BlobStore:
    """The blobs of one device, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Fetches under way: the whole file's hash over the chunks written in order so far,
        # and the next chunk it waits for (a fetch then needs no second pass to verify).
        self._running: dict[str, tuple[Any, int]] = {}

    # -- paths ------------------------------------------------------------------------------

    def folder(self, blob: str) -> Path:
        return self.root / blob[:2] / blob

    def data_path(self, blob: str) -> Path:
        """The file that holds a blob's bytes (chunk ``n`` at ``n * chunk_size``)."""
        return self.folder(blob) / DATA

    # -- importing a local file -------------------------------------------------------------

    def import_file(
        self, path: Path, *, max_size: int, chunk_size: int = CHUNK_SIZE
    ) -> tuple[str, Manifest]:
        """Copy a file into the store (hashing each chunk and the whole as it is read, once);
        return its hash and manifest.

        Raises:
            UserError: the file cannot be read, is not a regular file, or is over ``max_size``.
        """
        assert 0 < chunk_size <= CHUNK_SIZE
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed below, after the fstat
        except OSError as exc:
            raise UserError(f"cannot read {path.name[:80]!r}: {exc.strerror}") from None
        with file:
            info = os.fstat(file.fileno())
            if not _is_regular(info.st_mode):
                raise UserError(f"{path.name[:80]!r} is not a regular file")
            if info.st_size > max_size:
                raise UserError(
                    f"file of {info.st_size} bytes exceeds the limit of {max_size} bytes"
                )
            staging = self.root / "tmp" / uuid.uuid4().hex
            staging.mkdir(parents=True, mode=0o700)
            try:
                whole, hashes, size = hashlib.sha256(), [], 0
                with open(staging / DATA, "wb") as out:
                    for piece in _pieces(file, chunk_size):
                        size += len(piece)
                        if size > max_size:
                            raise UserError(f"file grew past the limit of {max_size} bytes")
                        whole.update(piece)
                        hashes.append(hashlib.sha256(piece).digest())
                        if len(hashes) > MAX_CHUNKS:
                            raise UserError(
                                f"file of more than {MAX_CHUNKS} chunks of {chunk_size} bytes"
                            )
                        out.write(piece)
                blob = whole.hexdigest()
                manifest = Manifest(size, chunk_size, hashes)
                (staging / "manifest").write_bytes(encode_manifest(manifest))
                (staging / HELD).write_bytes(_records(range(manifest.count)))
                (staging / "complete").touch()
                self._install(blob, staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return blob, manifest

    def _install(self, blob: str, staging: Path) -> None:
        final = self.folder(blob)
        if self.is_complete(blob):  # identical content: stored once
            _touch(final)
            return
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if final.exists():  # a partial fetch of the same bytes: the import supersedes it
            shutil.rmtree(final, ignore_errors=True)
        self._running.pop(blob, None)
        os.replace(staging, final)

    # -- manifests and chunks ---------------------------------------------------------------

    def manifest(self, blob: str) -> Manifest | None:
        try:
            return decode_manifest((self.folder(blob) / "manifest").read_bytes())
        except (OSError, StoreError):
            return None

    def save_manifest(self, blob: str, manifest: Manifest, size: int, root: str) -> None:
        """Keep the manifest of a blob about to be fetched, once it matches the log."""
        manifest.check(size, root)
        folder = self.folder(blob)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(
            os.open(folder / DATA, os.O_WRONLY | os.O_CREAT, 0o600)
        )  # an empty file has it too
        _write_atomic(folder / "manifest", encode_manifest(manifest))

    def held(self, blob: str) -> set[int]:
        """The chunks of a blob held here (written whole, their hash checked)."""
        try:
            record = (self.folder(blob) / HELD).read_bytes()
        except OSError:
            return set()
        whole = len(record) - len(record) % RECORD  # a record cut short by a crash: not held
        return {int.from_bytes(record[i : i + RECORD], "big") for i in range(0, whole, RECORD)}

    def missing(self, blob: str, manifest: Manifest) -> list[int]:
        """The chunks not held yet, in order."""
        held = self.held(blob)
        return [n for n in range(manifest.count) if n not in held]

    def write_chunk(self, blob: str, manifest: Manifest, n: int, data: bytes) -> bool:
        """Keep chunk ``n`` if its hash matches the manifest; ``False`` (nothing written) if
        not.

        The bytes go to their place in the blob's data file, then ``n`` is appended to its
        held record: a chunk counts as held only once it is all written (``kill -9`` leaves
        both in the page cache; after a power loss the whole file's hash finds a hole).
        """
        if not 0 <= n < manifest.count or len(data) != manifest.chunk_length(n):
            return False
        if hashlib.sha256(data).digest() != manifest.hashes[n]:
            return False
        folder = self.folder(blob)
        fd = os.open(folder / DATA, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, n * manifest.chunk_size)
        finally:
            os.close(fd)
        with open(folder / HELD, "ab") as record:
            record.write(n.to_bytes(RECORD, "big"))
        digest, following = self._running.get(blob, (None, 0))
        if n == 0:
            digest, following = hashlib.sha256(), 0
        if digest is not None and n == following:
            digest.update(data)
            self._running[blob] = (digest, following + 1)
        return True

    def read_chunk(self, blob: str, manifest: Manifest, n: int) -> bytes | None:
        """Chunk ``n`` if held and intact; a chunk whose hash no longer matches is dropped
        (and the blob is no longer complete), and ``None`` is returned."""
        data = self._read(blob, manifest, n)
        if data is None:
            return None
        if hashlib.sha256(data).digest() != manifest.hashes[n]:
            self._drop(blob, n)
            return None
        return data

    def _read(self, blob: str, manifest: Manifest, n: int) -> bytes | None:
        length = manifest.chunk_length(n)
        try:
            fd = os.open(self.data_path(blob), os.O_RDONLY)
        except OSError:
            return None
        try:
            data = os.pread(fd, length, n * manifest.chunk_size)
        finally:
            os.close(fd)
        return data if len(data) == length else None

    def _drop(self, blob: str, n: int) -> None:
        """Forget a chunk found bad: it is fetched again."""
        folder = self.folder(blob)
        with contextlib.suppress(OSError):
            (folder / "complete").unlink()
        held = self.held(blob)
        held.discard(n)
        with contextlib.suppress(OSError):
            _write_atomic(folder / HELD, _records(sorted(held)))
        self._running.pop(blob, None)

    def is_complete(self, blob: str) -> bool:
        return (self.folder(blob) / "complete").exists()

    def verify(self, blob: str, *, recheck: bool = True) -> list[int]:
        """Check the whole file's hash (and with ``recheck`` every chunk's); mark the blob
        complete when all is well. Returns the chunks missing or bad (dropped), ``[]`` when
        the blob is complete.

        Without ``recheck`` (right after a fetch wrote each chunk with its hash checked) the
        whole file's hash is the one the fetch computed as the chunks came in order (or one
        pass over the data file, after a restart); if it does not match, every chunk is
        checked after all, to find the one that went bad.

        Raises:
            StoreError: every chunk matched its hash but the whole did not (a bad manifest).
        """
        manifest = self.manifest(blob)
        if manifest is None:
            raise StoreError(f"no chunk list for {blob[:12]}")
        missing = self.missing(blob, manifest)
        if missing:
            return missing
        digest, following = self._running.pop(blob, (None, 0))
        bad: list[int] = []
        if recheck or digest is None or following != manifest.count:
            digest = hashlib.sha256()
            for n in range(manifest.count):
                data = self.read_chunk(blob, manifest, n) if recheck else (
                    self._read(blob, manifest, n)
                )  # fmt: skip
                if data is None:
                    bad.append(n)
                    self._drop(blob, n)
                elif not bad:
                    digest.update(data)
        if bad:
            return bad
        if digest.hexdigest() != blob:
            if not recheck:
                return self.verify(blob, recheck=True)
            shutil.rmtree(self.folder(blob), ignore_errors=True)
            raise StoreError(f"the chunks of {blob[:12]} do not add up to its hash")
        (self.folder(blob) / "complete").touch()
        _touch(self.folder(blob))
        return []

    def chunks(self, blob: str, *, check: bool = True) -> Iterator[bytes]:
        """The verified bytes of a complete blob, chunk by chunk (each checked against its
        hash again unless ``check`` is off: just verified).

        Raises:
            StoreError: a chunk went bad since it was verified (it is dropped: fetch again).
        """
        manifest = self.manifest(blob)
        if manifest is None or not self.is_complete(blob):
            raise StoreError(f"blob {blob[:12]} is not held whole here")
        for n in range(manifest.count):
            data = self.read_chunk(blob, manifest, n) if check else self._read(blob, manifest, n)
            if data is None:
                raise StoreError(f"chunk {n} of {blob[:12]} is damaged: it will be fetched again")
            yield data

    def copy_out(self, blob: str, dest: Path, *, force: bool, check: bool = True) -> bool:
        """Write a complete blob's bytes to ``dest`` (a temporary name, then renamed): ``False``
        when ``dest`` already holds exactly these bytes. Unless ``check`` (each chunk's hash
        again), the kernel copies the data file (``copy_file_range``).

        Raises:
            UserError: ``dest`` exists with other bytes and ``force`` is not set, or is no
                regular file.
            StoreError: a chunk went bad (see ``chunks``).
        """
        if dest.is_symlink() or (dest.exists() and not dest.is_file()):
            raise UserError(f"{dest} exists and is not a regular file")
        if dest.exists():
            if sha256_of(dest) == blob:
                return False
            if not force:
                raise UserError(f"{dest} exists with other content: use --force to replace it")
        manifest = self.manifest(blob)
        if manifest is None or not self.is_complete(blob):
            raise StoreError(f"blob {blob[:12]} is not held whole here")
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = dest.with_name(f".{dest.name[:200]}.{uuid.uuid4().hex[:8]}.part")
        try:
            with open(temp, "xb") as out:
                if check:
                    for data in self.chunks(blob):
                        out.write(data)
                elif manifest.size:
                    try:
                        data_file = open(self.data_path(blob), "rb")  # noqa: SIM115 - with below
                    except OSError as exc:
                        raise StoreError(f"blob {blob[:12]} has lost its data file") from exc
                    with data_file:
                        _copy(data_file, out, manifest.size)
            os.replace(temp, dest)
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()
        _touch(self.folder(blob))
        return True

    # -- the layout of earlier versions -----------------------------------------------------

    def migrate(self) -> int:
        """Move blobs kept one file per chunk (``<folder>/<n>``, before the data file) into
        the data file and held record; return how many were moved. Safe to run again after
        a crash part way (the chunk files go last)."""
        moved = 0
        for folder in self._folders():
            numbered = sorted(int(name) for name in os.listdir(folder) if name.isdigit())
            manifest = self.manifest(folder.name)
            if not numbered or manifest is None:
                continue
            held = self.held(folder.name)
            fd = os.open(folder / DATA, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                for n in numbered:
                    if n < manifest.count:
                        os.pwrite(fd, (folder / str(n)).read_bytes(), n * manifest.chunk_size)
                        held.add(n)
            finally:
                os.close(fd)
            _write_atomic(folder / HELD, _records(sorted(held)))
            for n in numbered:
                with contextlib.suppress(OSError):
                    (folder / str(n)).unlink()
            moved += 1
        return moved

    # -- accounting and GC ------------------------------------------------------------------

    def _folders(self) -> list[Path]:
        try:
            shards = [p for p in self.root.iterdir() if len(p.name) == 2]
        except OSError:
            return []
        return [f for shard in shards for f in shard.iterdir() if len(f.name) == 64]

    def blobs(self) -> list[BlobInfo]:
        """Every blob held, whole or in part."""
        found = []
        for folder in self._folders():
            manifest = self.manifest(folder.name)
            held = self.held(folder.name)
            if manifest is not None:
                held = {n for n in held if n < manifest.count}
            stored = sum(manifest.chunk_length(n) for n in held) if manifest else 0
            found.append(
                BlobInfo(
                    hash=folder.name,
                    size=manifest.size if manifest else 0,
                    held=len(held),
                    count=manifest.count if manifest else 0,
                    complete=(folder / "complete").exists(),
                    stored_bytes=stored,
                    touched=folder.stat().st_mtime,
                )
            )
        return found

    def used_bytes(self) -> int:
        return sum(info.stored_bytes for info in self.blobs())

    def remove(self, blob: str) -> None:
        self._running.pop(blob, None)
        shutil.rmtree(self.folder(blob), ignore_errors=True)

    def gc(
        self,
        referenced: set[str],
        *,
        max_bytes: int,
        busy: set[str] | frozenset[str] = frozenset(),
        max_partial_age: float = DEFAULT_MAX_PARTIAL_AGE,
        now: float | None = None,
    ) -> Collected:
        """Drop blobs the log no longer refers to, partial blobs abandoned for
        ``max_partial_age``, then the least recently used until at most ``max_bytes`` remain
        (the bound on what GC keeps). Blobs in ``busy`` (fetches running) are kept."""
        now = time.time() if now is None else now
        shutil.rmtree(self.root / "tmp", ignore_errors=True)
        removed, freed = [], 0
        kept = []
        for info in self.blobs():
            stale = not info.complete and now - info.touched > max_partial_age
            if info.hash not in busy and (info.hash not in referenced or stale):
                self.remove(info.hash)
                removed.append(info.hash)
                freed += info.stored_bytes
            else:
                kept.append(info)
        total = sum(info.stored_bytes for info in kept)
        for info in sorted(kept, key=lambda i: i.touched):
            if total <= max_bytes:
                break
            if info.hash in busy:
                continue
            self.remove(info.hash)
            removed.append(info.hash)
            freed += info.stored_bytes
            total -= info.stored_bytes
        return Collected(removed=removed, freed_bytes=freed, kept_bytes=total)


def _pieces(file: BinaryIO, size: int) -> Iterator[bytes]:
    """A file's bytes in pieces of ``size`` (the last one shorter)."""
    while piece := file.read(size):
        yield piece


def _records(numbers: Iterable[int]) -> bytes:
    return b"".join(n.to_bytes(RECORD, "big") for n in numbers)


def _copy(source: BinaryIO, dest: BinaryIO, size: int) -> None:
    """Copy ``size`` bytes from one file to another, in the kernel where it can."""
    done = 0
    try:
        while done < size:
            step = os.copy_file_range(source.fileno(), dest.fileno(), size - done)
            if step == 0:
                break
            done += step
    except OSError:  # no copy_file_range between these files: by hand
        source.seek(done)
        dest.seek(done)
        shutil.copyfileobj(source, dest, COPY_BUFFER)
        return
    if done != size:
        raise StoreError(f"the data file ended {size - done} bytes short")


def _is_regular(mode: int) -> bool:
    import stat  # noqa: PLC0415 - only when a file is imported

    return stat.S_ISREG(mode)


def _write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    temp.write_bytes(data)
    os.replace(temp, path)


def _touch(folder: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(folder)


def sha256_of(path: Path) -> str:
    """The SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while piece := file.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()
