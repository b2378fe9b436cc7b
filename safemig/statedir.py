"""``.safemig/``: the project's local state (lint cache, deploy records, the demo's clusters).

Every directory safemig keeps there is made by :func:`make_dir`, the one place that creates
``.safemig`` and, as pytest does for ``.pytest_cache``, puts a ``.gitignore`` holding ``*`` in
it: nothing under it shows up in ``git status`` or is committed by accident. The file is written
whenever it is missing (not only when ``.safemig`` is new), so a project that ran an older
safemig gets it too; to keep something there under version control, edit the file rather than
deleting it.
"""

from __future__ import annotations

from pathlib import Path

STATE_DIR = ".safemig"
GITIGNORE = "# Created by safemig automatically.\n*\n"


def make_dir(path: Path) -> Path:
    """Create ``path`` (and its parents); a ``.safemig`` directory on the way gets its ``.gitignore``."""
    path.mkdir(parents=True, exist_ok=True)
    for directory in (path, *path.parents):
        if directory.name == STATE_DIR:
            ignore = directory / ".gitignore"
            if not ignore.exists():
                try:
                    with ignore.open("x", encoding="utf-8") as fh:  # "x": parallel lint workers write it once
                        fh.write(GITIGNORE)
                except FileExistsError:
                    pass
            break
    return path
