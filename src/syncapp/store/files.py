"""Files the app keeps on disk are private to its user: directories 0700, files 0600.

The SQLite database (and with it SQLite's ``-wal`` and ``-shm`` files, which SQLite creates with
the database file's mode), its write lock, and the customer-data exports hold customer data or
credentials. They are created with owner-only modes whatever the process umask is, and an
existing database file that is readable by others is tightened when it is opened.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_dirs(path: Path) -> None:
    """Create ``path`` and missing parents with mode 0700 (existing ones are left alone)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        # mkdir's mode is filtered by the umask; this one must not be looser or tighter.
        os.chmod(directory, PRIVATE_DIR)


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it is missing; tighten it if others can read it."""
    private_dirs(path.parent)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, mode & 0o700)
        return
    os.close(descriptor)
