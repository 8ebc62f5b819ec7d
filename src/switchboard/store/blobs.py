"""``BlobStore``: this device's content-addressed store of shared files, in chunks on disk.

Theory of operation
-------------------
A blob is named by the SHA-256 of its bytes (hex) and cut into chunks of ``CHUNK_SIZE``
bytes (the last one shorter). Its **manifest** is its size, the chunk size and each chunk's
SHA-256; the **root** is the SHA-256 of the chunk hashes one after the other, and is what the
``file_shared`` event carries, so a manifest fetched from any device is checked against the
log before one chunk is asked for. Identical content has one name, so it is stored once.

On disk, under ``<home>/blobs/``::

    <hash[:2]>/<hash>/manifest      msgpack [size, chunk_size, [digest, ...]]
    <hash[:2]>/<hash>/<n>           chunk n (decimal), written to a temporary name and renamed
    <hash[:2]>/<hash>/complete      every chunk and the whole file verified
    tmp/                            imports in progress

A chunk file exists only whole and only if its hash matched (``write_chunk``), so the chunks a
fetch already holds survive a cut link or a ``kill -9`` and are never fetched again. Nothing
is offered (served to another device or copied out to a downloads directory) before
``verify`` has checked every chunk and the whole file's hash, and a chunk read to be served is
checked again (``read_chunk``): a chunk that rotted on disk is deleted and fetched again.

The store is plain files, not a table: chunks are written at link speed by the fetch while the
log's single writer keeps committing events, and the log must hold no file bytes (only the
small ``file_shared`` event). This module does blocking file I/O: the daemon calls it in a
worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from switchboard.errors import StoreError, UserError

# One chunk: the largest body the directed channel carries in one message (proto.calls.MAX_BODY,
# 256 KiB). Fewer, larger chunks amortise what each message costs (a seal, a signature check, a
# broker round trip, a file, a hash check); bench/files.py measures 64 KiB against 256 KiB.
# A resumed transfer re-fetches at most one partial chunk's worth per cut.
CHUNK_SIZE: Final = 256 * 1024
# The most chunks a manifest lists: with 256 KiB chunks, files of up to 1.7 GiB, and a manifest
# of at most 238 kB (34 bytes a chunk), so it travels in one directed-channel reply.
MAX_CHUNKS: Final = 7000
# A partial blob nobody touched for this long is dropped by GC (its fetch was abandoned).
DEFAULT_MAX_PARTIAL_AGE: Final = 24 * 3600.0

HEX: Final = frozenset("0123456789abcdef")


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

    # -- paths ------------------------------------------------------------------------------

    def folder(self, blob: str) -> Path:
        return self.root / blob[:2] / blob

    def _chunk(self, blob: str, n: int) -> Path:
        return self.folder(blob) / str(n)

    # -- importing a local file -------------------------------------------------------------

    def import_file(
        self, path: Path, *, max_size: int, chunk_size: int = CHUNK_SIZE
    ) -> tuple[str, Manifest]:
        """Copy a file into the store in chunks; return its hash and manifest.

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
                while piece := file.read(chunk_size):
                    size += len(piece)
                    if size > max_size:
                        raise UserError(f"file grew past the limit of {max_size} bytes")
                    whole.update(piece)
                    hashes.append(hashlib.sha256(piece).digest())
                    if len(hashes) > MAX_CHUNKS:
                        raise UserError(
                            f"file of more than {MAX_CHUNKS} chunks of {chunk_size} bytes"
                        )
                    (staging / str(len(hashes) - 1)).write_bytes(piece)
                blob = whole.hexdigest()
                manifest = Manifest(size, chunk_size, hashes)
                (staging / "manifest").write_bytes(encode_manifest(manifest))
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
        _write_atomic(folder / "manifest", encode_manifest(manifest))

    def missing(self, blob: str, manifest: Manifest) -> list[int]:
        """The chunks not held yet, in order."""
        folder = self.folder(blob)
        try:
            held = {name for name in os.listdir(folder) if name.isdigit()}
        except OSError:
            held = set()
        return [n for n in range(manifest.count) if str(n) not in held]

    def write_chunk(self, blob: str, manifest: Manifest, n: int, data: bytes) -> bool:
        """Keep chunk ``n`` if its hash matches the manifest; ``False`` (nothing written) if
        not."""
        if not 0 <= n < manifest.count or hashlib.sha256(data).digest() != manifest.hashes[n]:
            return False
        if len(data) != manifest.chunk_length(n):
            return False
        _write_atomic(self._chunk(blob, n), data)
        return True

    def read_chunk(self, blob: str, manifest: Manifest, n: int) -> bytes | None:
        """Chunk ``n`` if held and intact; a chunk whose hash no longer matches is deleted
        (and the blob is no longer complete), and ``None`` is returned."""
        path = self._chunk(blob, n)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).digest() != manifest.hashes[n]:
            with contextlib.suppress(OSError):
                (self.folder(blob) / "complete").unlink()
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return data

    def is_complete(self, blob: str) -> bool:
        return (self.folder(blob) / "complete").exists()

    def verify(self, blob: str, *, recheck: bool = True) -> list[int]:
        """Check the whole file's hash (and with ``recheck`` every chunk's); mark the blob
        complete when all is well. Returns the chunks missing or bad (deleted), ``[]`` when
        the blob is complete.

        Without ``recheck`` (right after a fetch wrote each chunk with its hash checked) only
        the whole is hashed, one pass; if it does not match, every chunk is checked after all,
        to find the one that went bad.

        Raises:
            StoreError: every chunk matched its hash but the whole did not (a bad manifest).
        """
        manifest = self.manifest(blob)
        if manifest is None:
            raise StoreError(f"no chunk list for {blob[:12]}")
        whole, bad = hashlib.sha256(), []
        for n in range(manifest.count):
            data = self.read_chunk(blob, manifest, n) if recheck else self._read(blob, n)
            if data is None:
                bad.append(n)
            elif not bad:
                whole.update(data)
        if bad:
            return bad
        if whole.hexdigest() != blob:
            if not recheck:
                return self.verify(blob, recheck=True)
            shutil.rmtree(self.folder(blob), ignore_errors=True)
            raise StoreError(f"the chunks of {blob[:12]} do not add up to its hash")
        (self.folder(blob) / "complete").touch()
        _touch(self.folder(blob))
        return []

    def _read(self, blob: str, n: int) -> bytes | None:
        try:
            return self._chunk(blob, n).read_bytes()
        except OSError:
            return None

    def chunks(self, blob: str, *, check: bool = True) -> Iterator[bytes]:
        """The verified bytes of a complete blob, chunk by chunk (each checked against its
        hash again unless ``check`` is off: just verified).

        Raises:
            StoreError: a chunk went bad since it was verified (it is deleted: fetch again).
        """
        manifest = self.manifest(blob)
        if manifest is None or not self.is_complete(blob):
            raise StoreError(f"blob {blob[:12]} is not held whole here")
        for n in range(manifest.count):
            data = self.read_chunk(blob, manifest, n) if check else self._read(blob, n)
            if data is None:
                raise StoreError(f"chunk {n} of {blob[:12]} is damaged: it will be fetched again")
            yield data

    def copy_out(self, blob: str, dest: Path, *, force: bool, check: bool = True) -> bool:
        """Write a complete blob's bytes to ``dest`` (a temporary name, then renamed): ``False``
        when ``dest`` already holds exactly these bytes.

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
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = dest.with_name(f".{dest.name[:200]}.{uuid.uuid4().hex[:8]}.part")
        try:
            with open(temp, "xb") as out:
                for data in self.chunks(blob, check=check):
                    out.write(data)
            os.replace(temp, dest)
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()
        _touch(self.folder(blob))
        return True

    # -- accounting and GC ------------------------------------------------------------------

    def blobs(self) -> list[BlobInfo]:
        """Every blob held, whole or in part."""
        found = []
        try:
            shards = [p for p in self.root.iterdir() if len(p.name) == 2]
        except OSError:
            return []
        for shard in shards:
            for folder in shard.iterdir():
                if len(folder.name) != 64:
                    continue
                manifest = self.manifest(folder.name)
                held, stored = 0, 0
                for entry in os.scandir(folder):
                    if entry.name.isdigit():
                        held += 1
                        stored += entry.stat().st_size
                found.append(
                    BlobInfo(
                        hash=folder.name,
                        size=manifest.size if manifest else 0,
                        held=held,
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
