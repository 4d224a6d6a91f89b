"""Getting the dashboards into Grafana: provisioning files on disk, or `push` over Grafana's HTTP API."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import requests
import yaml
from grafana_api.grafana_api import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError
from grafana_api.grafana_face import GrafanaFace

from mallstream.settings import ConfigError, Settings

from .boards import FOLDER_TITLE, FOLDER_UID
from .clickhouse import DATASOURCE_UID, PLUGIN

PROVISIONING = Path(__file__).resolve().parent / "provisioning"
#: Where the exported dashboards sit inside the provisioning folder.
DASHBOARDS_DIR = Path("dashboards") / "mallstream"
DATASOURCE_NAME = "mallstream ClickHouse"


class PushError(RuntimeError):
    """Grafana could not be reached, refused the token, or refused a request; the message says which."""


#: Where Grafana finds the API key it queries the worker's ClickHouse endpoint with (embedded engine): an analyst key,
#: ``mallstream keys create --role analyst --name grafana``.
GRAFANA_KEY_ENV = "MALLSTREAM_GRAFANA_KEY"
#: The user name Grafana gives the endpoint (it goes by the key; the name only shows in its log and errors).
GRAFANA_USER = "grafana"


def password_env(settings: Settings) -> str:
    """The environment variable holding the datasource's password: the Grafana key, or the ClickHouse server's."""
    return GRAFANA_KEY_ENV if settings.clickhouse.mode == "embedded" else settings.clickhouse.password_env


def datasource(settings: Settings, password: str) -> dict:
    """The ClickHouse datasource as Grafana's API and provisioning both take it.

    Embedded, Grafana queries the worker's read-only endpoint (``clickhouse.http_port``) with an analyst key;
    otherwise the ClickHouse server, as the hub's own user.
    """
    clickhouse = settings.clickhouse
    if clickhouse.mode == "embedded":
        if clickhouse.http_port is None:
            raise ConfigError(
                settings.source,
                "clickhouse.http_port",
                "null, so Grafana has no ClickHouse to query: "
                "set the port the worker serves the embedded engine on (8123)",
            )
        host = "127.0.0.1" if clickhouse.http_host in ("0.0.0.0", "::", "") else clickhouse.http_host
        address = {"host": host, "port": clickhouse.http_port, "secure": False, "username": GRAFANA_USER}
    else:
        address = {
            "host": clickhouse.host,
            "port": clickhouse.port,
            "secure": clickhouse.secure,
            "username": clickhouse.username,
        }
    source = {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": PLUGIN,
        "access": "proxy",
        "isDefault": True,
        "jsonData": {
            "host": address["host"],
            "port": address["port"],
            "protocol": "http",
            "secure": address["secure"],
            "username": address["username"],
            "defaultDatabase": clickhouse.database,
        },
        "secureJsonData": {"password": password},
    }
    if clickhouse.secure and not clickhouse.verify:
        source["jsonData"]["tlsSkipVerify"] = True
    if clickhouse.secure and clickhouse.ca_file:  # a CA certificate is public: it may stand in the file
        source["jsonData"]["tlsAuthWithCACert"] = True
        source["secureJsonData"]["tlsCACert"] = settings.resolve(clickhouse.ca_file).read_text()
    return source


def write_provisioning(settings: Settings, boards: list[dict], root: Path) -> list[Path]:
    """Datasource, dashboard provider and dashboards, laid out for a Grafana whose provisioning path is ``root``."""
    # Grafana puts the environment variable's value in when it reads the file
    source = datasource(settings, f"${{{password_env(settings)}}}")
    files = {
        root / "datasources" / "clickhouse.yaml": yaml.safe_dump(
            {"apiVersion": 1, "datasources": [source]}, sort_keys=False
        ),
        root / "dashboards" / "mallstream.yaml": yaml.safe_dump(
            {
                "apiVersion": 1,
                "providers": [
                    {
                        "name": "mallstream",
                        "folder": FOLDER_TITLE,
                        "folderUid": FOLDER_UID,
                        "type": "file",
                        "disableDeletion": False,
                        "allowUiUpdates": False,
                        "updateIntervalSeconds": 30,
                        "options": {"path": f"${{GF_PATHS_PROVISIONING}}/{DASHBOARDS_DIR}"},
                    }
                ],
            },
            sort_keys=False,
        ),
    }
    files |= {
        root / DASHBOARDS_DIR / f"{board['uid']}.json": json.dumps(board, indent=2, ensure_ascii=False) + "\n"
        for board in boards
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sorted(files)


def read_boards(root: Path) -> list[dict]:
    """The dashboards a Grafana provisioned from ``root`` would load."""
    return [json.loads(path.read_text()) for path in sorted((root / DASHBOARDS_DIR).glob("*.json"))]


def push(url: str, token: str, source: dict, boards: list[dict], timeout: float = 10.0) -> list[str]:
    """Create or update the folder, the datasource and every dashboard (overwriting); what was done, line by line."""
    address = urllib.parse.urlsplit(url)
    if address.scheme not in ("http", "https") or not address.hostname:
        raise PushError(f"{url!r} is not a Grafana URL (http://host:port)")
    grafana = GrafanaFace(
        token,
        host=address.hostname,
        port=address.port,
        protocol=address.scheme,
        url_path_prefix=address.path.strip("/") + "/" if address.path.strip("/") else "",
        timeout=timeout,
    )
    try:
        return [_folder(grafana), _datasource(grafana, source)] + [_dashboard(grafana, board) for board in boards]
    except requests.RequestException as exc:
        raise PushError(f"cannot reach Grafana at {url}: {exc.__class__.__name__}") from None
    except GrafanaUnauthorizedError:
        raise PushError(f"Grafana at {url} refused the token (401): check --token") from None
    except GrafanaException as exc:
        raise PushError(f"Grafana at {url} refused a request: {exc}") from None


def _exists(lookup) -> bool:
    try:
        lookup()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return False
        raise
    return True


def _folder(grafana: GrafanaFace) -> str:
    if _exists(lambda: grafana.folder.get_folder(FOLDER_UID)):
        return f"folder {FOLDER_UID} exists"
    grafana.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
    return f"folder {FOLDER_UID} created"


def _datasource(grafana: GrafanaFace, source: dict) -> str:
    path = f"/datasources/uid/{source['uid']}"
    if _exists(lambda: grafana.api.GET(path)):
        grafana.api.PUT(path, json=source)
        return f"datasource {source['uid']} updated"
    grafana.datasource.create_datasource(source)
    return f"datasource {source['uid']} created"


def _dashboard(grafana: GrafanaFace, board: dict) -> str:
    answer = grafana.dashboard.update_dashboard(
        {
            "dashboard": {**board, "id": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "pushed by mallstream dashboards push",
        }
    )
    return f"dashboard {board['uid']} {answer.get('status', 'saved')} (version {answer.get('version', '?')})"
