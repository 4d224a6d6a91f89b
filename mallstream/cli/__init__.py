"""The ``mallstream`` command: one module per command group, all on the group in ``base``.

``base`` holds the group and what the commands share; importing a module adds its commands.
"""

from __future__ import annotations

from ..dashboards.cli import dashboards
from . import desk, hub, reporting, simulate
from .base import main

main.add_command(dashboards)

__all__ = ["desk", "hub", "main", "reporting", "simulate"]
