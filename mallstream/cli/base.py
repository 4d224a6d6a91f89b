"""The ``mallstream`` group and what its commands share: the config, start-up errors, the local worker."""

from __future__ import annotations

import logging
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..auth import NO_KEY_HINT
from ..cli_common import load_settings
from ..settings import ConfigError, Settings

DEFAULT_CONFIG = "config/mall.example.yaml"


@click.group()
@click.option(
    "-c",
    "--config",
    "config_path",
    envvar="MALLSTREAM_CONFIG",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="YAML config file (env MALLSTREAM_CONFIG)",
)
@click.option("-v", "--verbose", is_flag=True, help="log at INFO level")
@click.pass_context
def main(ctx: click.Context, config_path: str, verbose: bool) -> None:
    """mallstream: POS, RFID, footfall and parking in one stream."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = config_path
    ctx.meta["loglevel"] = "info" if verbose else "warning"


def settings_of(ctx: click.Context) -> Settings:
    return load_settings(ctx.obj)


def run_service(function, *args, **kwargs) -> None:
    """Start-up problems a user can fix are one line on stderr and exit 2, not a traceback."""
    from ..services import ServiceError
    from ..streams.framework_patches import FrameworkVersionError
    from ..streams.topics import TopicLayoutError

    try:
        function(*args, **kwargs)
    except ConfigError as exc:  # e.g. a loyalty rule file that was never valid
        click.echo(f"mallstream: bad config: {exc}", err=True)
        sys.exit(2)
    except (ServiceError, TopicLayoutError, FrameworkVersionError) as exc:
        click.echo(f"mallstream: {exc}", err=True)
        sys.exit(2)


@contextmanager
def exit_on_broker_error() -> Iterator[None]:
    """A broker that stayed away (or refused a record) is one line on stderr and exit 1, not a hang or a traceback."""
    from ..sending import BrokerError

    try:
        yield
    except BrokerError as exc:
        click.echo(f"mallstream: {exc}", err=True)
        sys.exit(1)


def worker_url(settings: Settings, path: str) -> str:
    return f"http://127.0.0.1:{settings.worker.web_port}{path}"


def post_to_worker(settings: Settings, path: str, params: dict[str, object]) -> dict:
    """POST to the local worker (which forwards to the member's owner); prints errors and exits 1."""
    import json

    from ..auth import command_headers

    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    request = urllib.request.Request(
        worker_url(settings, f"{path}?{query}"), data=b"", method="POST", headers=command_headers(settings)
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.rules.answer_timeout_s + 10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        click.echo(exc.read().decode(), err=True)
        if exc.code == 401:
            click.echo(NO_KEY_HINT, err=True)
    except urllib.error.URLError:
        click.echo(f"mallstream: no worker answers on port {settings.worker.web_port}; start `mallstream up`", err=True)
    sys.exit(1)
