"""``mallstream init``: the commented example config and rule file, copied where a hub is to run.

They are the checkout's ``config/`` folder, which the wheel carries as ``mallstream/config``; the
example config names the rule file as ``config/rules.example.yaml`` relative to the working
directory, and the ``mallstream`` command reads ``config/mall.example.yaml`` by default, so a
folder ``init`` wrote into runs ``mallstream up --demo`` as it is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: The folder, relative to the one initialised, that the example files go to.
CONFIG_FOLDER = Path("config")
EXAMPLE_NAMES = ("mall.example.yaml", "rules.example.yaml")


def examples_source() -> Path:
    """Where the example files are: ``mallstream/config`` in an installed wheel, ``config/`` in a checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "config"
    return installed if installed.is_dir() else package.parent / "config"


def write_examples(directory: Path, force: bool = False) -> list[Path]:
    """Copy the example files into ``directory``/config; the paths written.

    Raises :class:`FileExistsError` naming every file already there, before writing any, unless ``force``.
    """
    targets = [directory / CONFIG_FOLDER / name for name in EXAMPLE_NAMES]
    existing = [str(target) for target in targets if target.exists()]
    if existing and not force:
        raise FileExistsError(f"already there: {', '.join(existing)} (--force overwrites)")
    source = examples_source()
    (directory / CONFIG_FOLDER).mkdir(parents=True, exist_ok=True)
    for target in targets:
        shutil.copyfile(source / target.name, target)
    return targets
