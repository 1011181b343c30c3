"""The environment of a process a test starts: only what a Python process needs to run, the
coverage measurement's own variables, and the ``SYNCAPP_*`` settings the test names.

Never ``os.environ`` as a whole: an ambient ``SYNCAPP_DATABASE_URL`` or ``SYNCAPP_ENV`` would
point the child at another database or mode than the test checks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# A Python interpreter, pg_dump and a shell need no more than these.
PASSED = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "USER"})
# coverage's subprocess measurement (``[tool.coverage.run] patch = ["subprocess"]``).
PASSED_PREFIXES = ("COVERAGE_",)


def child_env(settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables for a child: the passed-through few plus ``settings`` (full names)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name in PASSED or name.startswith(PASSED_PREFIXES)
    }
    env.update(settings or {})
    return env
