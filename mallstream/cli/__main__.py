"""``python -m mallstream.cli``: the ``mallstream`` command."""

from . import main

main()
