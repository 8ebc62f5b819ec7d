"""The blob store on its own (real files in tmp_path) and the rules for file names."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from switchboard.daemon.filenames import check_name, mime_of, safe_name
from switchboard.errors import StoreError, UserError
from switchboard.store.blobs import CHUNK_SIZE, BlobStore, decode_manifest, encode_manifest


def made(tmp: Path, data: bytes, name: str = "f.bin") -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE - 1])
def test_blobs_import_cuts_on_chunk_boundaries_and_reads_back(tmp_path: Path, size: int) -> None:
    """A file is cut into ceil(size / CHUNK_SIZE) chunks whose bytes read back whole."""
    data = os.urandom(size)
    store = BlobStore(tmp_path / "blobs")
    blob, manifest = store.import_file(made(tmp_path, data), max_size=1 << 30)
    assert blob == hashlib.sha256(data).hexdigest()
    assert manifest.count == -(-size // CHUNK_SIZE) and manifest.size == size
    assert b"".join(store.chunks(blob)) == data
    assert decode_manifest(encode_manifest(manifest)) == manifest
    manifest.check(size, manifest.root)
    with pytest.raises(StoreError):
        manifest.check(size + 1, manifest.root)


def test_blobs_identical_content_is_stored_once(tmp_path: Path) -> None:
    """Two files with the same bytes make one blob; GC drops what nothing refers to."""
    store = BlobStore(tmp_path / "blobs")
    data = os.urandom(CHUNK_SIZE + 10)
    first, _ = store.import_file(made(tmp_path, data, "a"), max_size=1 << 30)
    second, _ = store.import_file(made(tmp_path, data, "b"), max_size=1 << 30)
    assert first == second and len(store.blobs()) == 1
    assert store.used_bytes() == len(data)
    done = store.gc(set(), max_bytes=1 << 30)
    assert done.removed == [first] and store.blobs() == []


def test_blobs_fetch_resumes_and_refuses_bad_chunks(tmp_path: Path) -> None:
    """A fetching store writes only chunks whose hash matches, says which are missing (also
    from a new store object, as after a restart), and verifies the whole."""
    data = os.urandom(3 * CHUNK_SIZE)
    source = BlobStore(tmp_path / "source")
    blob, manifest = source.import_file(made(tmp_path, data), max_size=1 << 30)
    sink = BlobStore(tmp_path / "sink")
    sink.save_manifest(blob, manifest, len(data), manifest.root)
    pieces = list(source.chunks(blob))
    assert not sink.write_chunk(blob, manifest, 1, pieces[1][:-1] + b"!")
    assert sink.write_chunk(blob, manifest, 1, pieces[1])
    assert not sink.write_chunk(blob, manifest, 7, pieces[0])
    assert BlobStore(tmp_path / "sink").missing(blob, manifest) == [0, 2]
    assert sink.verify(blob) == [0, 2] and not sink.is_complete(blob)
    for n in (0, 2):
        sink.write_chunk(blob, manifest, n, pieces[n])
    assert sink.verify(blob) == [] and sink.is_complete(blob)
    with open(sink.data_path(blob), "r+b") as stored:
        stored.seek(2 * CHUNK_SIZE)
        stored.write(b"rot")
    with pytest.raises(StoreError, match="damaged"):
        b"".join(sink.chunks(blob))
    assert not sink.is_complete(blob) and sink.missing(blob, manifest) == [2]


def test_blobs_whole_hash_is_kept_as_chunks_arrive_in_order(tmp_path: Path) -> None:
    """Chunks written in order need no second pass to verify (the whole file's hash was kept
    as they came); out of order, or after a restart, verify reads the data file once; a data
    file whose bytes do not add up (a hole a power loss left) is found chunk by chunk."""
    data = os.urandom(3 * CHUNK_SIZE + 7)
    source = BlobStore(tmp_path / "source")
    blob, manifest = source.import_file(made(tmp_path, data), max_size=1 << 30)
    pieces = list(source.chunks(blob))
    for order, name in (([0, 1, 2, 3], "inorder"), ([3, 1, 0, 2], "shuffled")):
        sink = BlobStore(tmp_path / name)
        sink.save_manifest(blob, manifest, len(data), manifest.root)
        for n in order:
            assert sink.write_chunk(blob, manifest, n, pieces[n])
        assert sink.verify(blob, recheck=False) == []
        out = tmp_path / f"{name}.out"
        assert sink.copy_out(blob, out, force=False, check=False)
        assert out.read_bytes() == data
    sink = BlobStore(tmp_path / "hole")
    sink.save_manifest(blob, manifest, len(data), manifest.root)
    for n in range(manifest.count):
        sink.write_chunk(blob, manifest, n, pieces[n])
    with open(sink.data_path(blob), "r+b") as stored:
        stored.seek(CHUNK_SIZE)
        stored.write(bytes(100))  # as if the page never reached the disk
    restarted = BlobStore(tmp_path / "hole")  # the whole hash kept in memory died with it
    assert restarted.verify(blob, recheck=False) == [1] and sink.missing(blob, manifest) == [1]


def test_blobs_migrates_the_chunk_file_layout(tmp_path: Path) -> None:
    """A blob stored one file per chunk (earlier versions) moves into the data file and the
    held record at start, whole or in part; its chunk files are gone."""
    data = os.urandom(3 * CHUNK_SIZE)
    store = BlobStore(tmp_path / "blobs")
    blob, manifest = store.import_file(made(tmp_path, data), max_size=1 << 30)
    pieces = list(store.chunks(blob))
    folder = store.folder(blob)
    for name in ("data", "held", "complete"):
        (folder / name).unlink()
    for n in (0, 2):
        (folder / str(n)).write_bytes(pieces[n])
    assert store.migrate() == 1 and store.migrate() == 0
    assert store.missing(blob, manifest) == [1] and not any(
        p.name.isdigit() for p in folder.iterdir()
    )
    store.write_chunk(blob, manifest, 1, pieces[1])
    assert store.verify(blob) == [] and b"".join(store.chunks(blob)) == data


def test_blobs_copy_out_never_overwrites_without_force(tmp_path: Path) -> None:
    """copy_out leaves a file of other content alone unless forced; the same bytes are fine."""
    store = BlobStore(tmp_path / "blobs")
    blob, _ = store.import_file(made(tmp_path, b"hello"), max_size=100)
    dest = tmp_path / "out" / "hello.txt"
    assert store.copy_out(blob, dest, force=False) and dest.read_bytes() == b"hello"
    assert not store.copy_out(blob, dest, force=False)
    dest.write_bytes(b"other")
    with pytest.raises(UserError, match="--force"):
        store.copy_out(blob, dest, force=False)
    assert store.copy_out(blob, dest, force=True) and dest.read_bytes() == b"hello"
    with pytest.raises(UserError, match="exceeds the limit of 3 bytes"):
        store.import_file(made(tmp_path, b"four"), max_size=3)


def test_blobs_gc_keeps_at_most_the_bound_least_recent_first(tmp_path: Path) -> None:
    """Over the bound, GC drops the least recently used blobs first and keeps busy ones."""
    store = BlobStore(tmp_path / "blobs")
    names = []
    for n in range(3):
        blob, _ = store.import_file(made(tmp_path, os.urandom(1000), f"{n}"), max_size=1 << 20)
        os.utime(store.folder(blob), (1000 + n, 1000 + n))
        names.append(blob)
    done = store.gc(set(names), max_bytes=2000, busy={names[0]}, now=2000)
    assert done.removed == [names[1]] and done.kept_bytes == 2000


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("/abs/path", "path"),
        ("C:\\Windows\\con", "_con"),
        ("con.txt", "_con.txt"),
        ("two\nlines", "two_lines"),
        ("esc\x1b[31m", "esc_[31m"),
        ("...", "fallback"),
        ("a<b>:c?.txt", "a_b__c_.txt"),
        ("ok.pdf", "ok.pdf"),
    ],
)
def test_filenames_received_names_are_made_safe(name: str, safe: str) -> None:
    """A received name keeps only its last part, without control or reserved characters."""
    assert safe_name(name, "fallback") == safe
    if name != safe:
        with pytest.raises(UserError):
            check_name(name)


def test_filenames_types_come_from_the_extension() -> None:
    """The declared type is the extension's, or octet-stream."""
    assert mime_of("report.pdf") == "application/pdf"
    assert mime_of("noext") == "application/octet-stream"
    assert check_name("résumé v2.txt") == "résumé v2.txt"
