"""Content fingerprints of checkpoints and datasets.

Later stages cache every computed number by the fingerprint of what it was computed from, so a
fingerprint must change when the content changes and only then: it hashes file bytes (never mtimes
or absolute paths), together with each file's path relative to the folder being fingerprinted.

Hashing a multi-GB checkpoint takes seconds, so digests are memoised in a small JSON cache keyed
by (absolute path, size, mtime_ns); a changed file misses the cache and is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

FINGERPRINT_ALGORITHM = "blake2b-128"
_CACHE_VERSION = 1


class DigestCache:
    """File digests memoised on disk by (path, size, mtime_ns).

    The cache is an optimisation only: an unreadable or unwritable cache file is ignored.

    Args:
        path: the JSON file to keep digests in; None keeps them in memory only.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, list] = {}
        self._dirty = False
        if path is not None:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("version") == _CACHE_VERSION and isinstance(data.get("entries"), dict):
                    self._entries = data["entries"]
            except (OSError, ValueError, AttributeError):
                pass

    def digest(self, file: Path) -> str:
        """The hex digest of `file`'s bytes, from the cache when size and mtime still match."""
        st = file.stat()
        key = str(file.resolve())
        hit = self._entries.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return str(hit[2])
        with file.open("rb") as fh:
            value = hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
        self._entries[key] = [st.st_size, st.st_mtime_ns, value]
        self._dirty = True
        return value

    def save(self) -> None:
        """Write the cache atomically; silently skip when the folder is read-only."""
        if self.path is None or not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".fingerprints-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": _CACHE_VERSION, "entries": self._entries}, fh)
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:
            pass


def fingerprint_files(base: Path, files: Iterable[Path], cache: DigestCache | None = None) -> str:
    """Fingerprint a set of files by their bytes and their paths relative to `base`.

    The result does not depend on where `base` lives, on file order, or on mtimes.

    Example:
        >>> fingerprint_files(Path("ckpt"), [Path("ckpt/config.json")])  # doctest: +SKIP
        'blake2b-128:5f0c...'
    """
    cache = cache or DigestCache(None)
    outer = hashlib.blake2b(digest_size=16)
    for file in sorted(files, key=lambda f: f.relative_to(base).as_posix()):
        outer.update(file.relative_to(base).as_posix().encode("utf-8") + b"\0")
        outer.update(cache.digest(file).encode("ascii") + b"\n")
    return f"{FINGERPRINT_ALGORITHM}:{outer.hexdigest()}"
