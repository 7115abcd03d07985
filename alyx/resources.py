"""Where the folders shipped beside the package are (runtimes/, static/): in a checkout or an install.

In a checkout (and an editable install) they are the top-level folders next to `alyx/`; a built
wheel carries a copy inside the package, in `alyx/_resources/` (setup.py's build_py puts it there).
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
RESOURCES = ("runtimes", "static")


def resource_dir(name: str) -> Path:
    """The folder `name` (one of RESOURCES): the installed copy if there is one, else the checkout's."""
    if name not in RESOURCES:
        raise ValueError(f"unknown resource folder {name!r}; expected one of {', '.join(RESOURCES)}")
    installed = PACKAGE_DIR / "_resources" / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name
