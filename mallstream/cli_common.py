"""What `mallstream` and its `dashboards` group share: the config, the mall picked and how times are typed.

A module of its own, so `mallstream.dashboards.cli` need not import `mallstream.cli`, which adds
the dashboards group to itself at import.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .settings import ConfigError, Mall, Settings, load

#: How `--from` / `--to` may be written.
LOCAL_TIMES = ["%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]


def load_settings(path: str) -> Settings:
    """The config, or a one-line error and exit 2 when it is not valid."""
    try:
        return load(path)
    except ConfigError as exc:
        click.echo(f"mallstream: bad config: {exc}", err=True)
        if not Path(path).exists():
            click.echo("mallstream: `mallstream init` writes the commented example config to config/", err=True)
        sys.exit(2)


def pick_mall(settings: Settings, mall_id: str | None) -> Mall:
    """The mall ``--mall`` names, by default the first in the config."""
    mall = next((m for m in settings.malls if m.id == (mall_id or settings.malls[0].id)), None)
    if mall is None:
        raise click.BadParameter(f"no mall {mall_id!r} in {settings.source}", param_hint="--mall")
    return mall
