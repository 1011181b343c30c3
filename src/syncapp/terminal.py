"""The consoles every command prints with (rich), so all commands size their tables alike."""

from __future__ import annotations

import sys

from rich.console import Console

err = Console(stderr=True, soft_wrap=True)
# Not a terminal (a pipe, a file, a test's capture): wide enough that table rows are never cut
# at 80 columns, where a shop domain would end in an ellipsis.
out = Console(width=None if sys.stdout.isatty() else 200)
