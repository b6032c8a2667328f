"""Where a SQLite database file may live, checked before SQLite opens it (so it never writes to it).

- Not on a network filesystem: SQLite's WAL mode keeps its lock state in shared memory (the `-shm`
  file), which NFS, SMB, sshfs or 9p cannot share between machines, so concurrent raters could
  corrupt the database ("WAL does not work over a network filesystem", sqlite.org/wal.html).
  The filesystem type comes from /proc/self/mountinfo (Linux; elsewhere the check is skipped).
- Not a file of another kind (text, a zip) or a truncated header: refused, left unchanged.
- Not in a read-only folder or file: SQLite must write the database and its WAL there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from eval_core.errors import EvalCoreError

ENV_DATABASE_URL = "FTLENS_DATABASE_URL"
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs", "ceph",
                                 "fuse.glusterfs", "glusterfs", "lustre", "gpfs", "fuse.rclone", "davfs", "fuse.s3fs"})
SQLITE_MAGIC = b"SQLite format 3\x00"


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of each line of /proc/self/mountinfo.

    Example:
        >>> parse_mountinfo("36 35 98:0 / /mnt/data rw,noatime shared:1 - nfs4 srv:/x rw")
        [('/mnt/data', 'nfs4')]
    """
    out = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue  # not a mountinfo line
        sep = fields.index("-", 6)
        if len(fields) > sep + 1:
            # The kernel writes space, tab, newline and backslash in paths as octal escapes.
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            out.append((point, fields[sep + 1]))
    return out


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding `path` (e.g. ext4, nfs4), or None where unknown (not Linux)."""
    try:
        mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    target = str(Path(path).resolve())
    best = None
    for point, fstype in mounts:  # the last, longest mount point containing the path is the one in effect
        if (target == point or target.startswith(point.rstrip("/") + "/")) and (best is None or len(point) >= len(best[0])):
            best = (point, fstype)
    return best[1] if best else None


def check_sqlite_file(path: Path) -> None:
    """Refuse, before SQLite touches anything, a database that cannot be used safely.

    Raises:
        EvalCoreError: the folder is on a network filesystem, the folder or file is read-only, or
            the file is not a SQLite database (naming the file; the file is left unchanged).
    """
    fstype = filesystem_type(path.parent)
    if fstype in NETWORK_FILESYSTEMS:
        raise EvalCoreError(
            f"the SQLite database is on a network filesystem ({fstype}). SQLite's WAL mode does not work over a "
            "network filesystem and can corrupt the ratings; keep the workspace on a local disk, or set "
            f"[database] url in ftlens.toml (or {ENV_DATABASE_URL}) to a local SQLite path or a PostgreSQL server",
            path=path, field="database.url")
    if path.exists():
        try:
            with path.open("rb") as f:
                head = f.read(100)
        except OSError as exc:
            raise EvalCoreError(f"cannot read the database file: {exc.strerror}", path=path) from exc
        if head and not head.startswith(SQLITE_MAGIC):
            raise EvalCoreError(
                f"this is not a SQLite database (it starts with {head[:8]!r}); it was left unchanged. Move it away "
                f"or set [database] url (or {ENV_DATABASE_URL}) to the right database", path=path)
        if head and len(head) < 100:
            raise EvalCoreError("the SQLite database is truncated (shorter than its 100-byte header); it was left "
                                "unchanged. Restore it from a backup or move it away", path=path)
    for target in (path.parent, path):
        if target.exists() and not os.access(target, os.W_OK):
            raise EvalCoreError(f"{'the folder' if target == path.parent else 'the database file'} is read-only, and "
                                "SQLite must write there (ratings, its WAL file); make it writable or set "
                                f"[database] url (or {ENV_DATABASE_URL}) to a writable place", path=target)
