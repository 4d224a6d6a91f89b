"""Dashboards checked against Grafana's published schema: the `@grafana/schema` types, compiled by `tsc`.

Each panel becomes its own TypeScript file typed as the schema's panel, with its ``options``
and ``fieldConfig.defaults.custom`` typed by its panel plugin's own schema, so an error names
its dashboard and panel. Object literals get TypeScript's excess-property check, so a
misspelt key is an error. The schema's string enums are compared by value (JSON has no enums).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCHEMA_CHECK = Path(__file__).resolve().parent / "schema-check"
SCHEMA = "node_modules/@grafana/schema/dist/esm/raw"
TSC = SCHEMA_CHECK / "node_modules" / "typescript" / "bin" / "tsc"

#: A type as JSON can write it: string enums become their values.
JSON_OF = """
export type Json<T> = T extends string ? `${T}` : T extends ReadonlyArray<infer U> ? Array<Json<U>>
  : T extends object ? { [K in keyof T]: Json<T[K]> } : T;
"""
_ERROR = re.compile(r"^(?P<file>[^(\s]+)\(\d+,\d+\): error (?P<message>TS\d+: .*)$")


@dataclass(frozen=True)
class Problem:
    """Something wrong with a dashboard, or one of its panels ("" for the dashboard itself)."""

    dashboard: str
    panel: str
    message: str


class SchemaCheckMissing(RuntimeError):
    """npm packages of schema-check/ are not installed."""


def _panel_source(panel: dict) -> str:
    """The panel as a TypeScript constant of the schema's panel type and its plugin's option types."""
    schema = f"../../{SCHEMA}"
    lines = [
        f'import type * as dashboard from "{schema}/dashboard/x/dashboard_types.gen";',
        'import type { Json } from "../json";',
    ]
    kind = str(panel.get("type", ""))
    plugin_types = sorted((SCHEMA_CHECK / SCHEMA / "composable" / kind / "panelcfg" / "x").glob("*_types.gen.d.ts"))
    if panel.get("type") != "row" and not plugin_types:
        return "\n".join([*lines, f'const unknownPanelType: "no panel plugin of this type" = {json.dumps(kind)};'])
    if panel.get("type") == "row":
        return "\n".join([*lines, f"const panel: Json<dashboard.RowPanel> = {json.dumps(panel, indent=1)};"])
    module = plugin_types[0].name.removesuffix(".d.ts")
    lines.append(f'import type * as plugin from "{schema}/composable/{kind}/panelcfg/x/{module}";')
    source = (SCHEMA_CHECK / SCHEMA / "composable" / kind / "panelcfg" / "x" / plugin_types[0].name).read_text()
    options = "Json<plugin.Options>" if "interface Options" in source else "Record<string, unknown>"
    custom = "Json<plugin.FieldConfig>" if "interface FieldConfig" in source else "Record<string, unknown>"
    lines.append(f"""type Checked = Omit<Json<dashboard.Panel>, "options" | "fieldConfig"> & {{
  options?: {options};
  fieldConfig?: Omit<Json<dashboard.FieldConfigSource>, "defaults"> & {{
    defaults: Omit<Json<dashboard.FieldConfig>, "custom"> & {{ custom?: {custom} }};
  }};
}};
const panel: Checked = {json.dumps(panel, indent=1)};""")
    return "\n".join(lines)


def validate(dashboards: list[dict]) -> list[Problem]:
    """Every place where a dashboard or one of its panels breaks Grafana's schema."""
    if not TSC.exists():
        raise SchemaCheckMissing(
            f"run `npm ci` in {SCHEMA_CHECK} (scripts/setup.sh does) to get @grafana/schema and tsc"
        )
    with tempfile.TemporaryDirectory(dir=SCHEMA_CHECK, prefix=".check-") as work:
        root = Path(work)
        (root / "json.ts").write_text(JSON_OF)
        owners: dict[str, tuple[str, str]] = {}
        for number, board in enumerate(dashboards):
            title = str(board.get("title", f"dashboard {number}"))
            folder = root / f"d{number}"
            folder.mkdir()
            whole = {key: value for key, value in board.items() if key != "panels"}
            (folder / "dashboard.ts").write_text(
                f'import type * as dashboard from "../../{SCHEMA}/dashboard/x/dashboard_types.gen";\n'
                f'import type {{ Json }} from "../json";\n'
                f'const board: Omit<Json<dashboard.Dashboard>, "panels"> = {json.dumps(whole, indent=1)};\n'
            )
            owners[f"d{number}/dashboard.ts"] = (title, "")
            for index, panel in enumerate(board.get("panels", [])):
                (folder / f"p{index}.ts").write_text(_panel_source(panel))
                owners[f"d{number}/p{index}.ts"] = (title, str(panel.get("title", f"panel {index}")))
        (root / "tsconfig.json").write_text(
            json.dumps(
                {
                    "compilerOptions": {
                        "strict": True,
                        "noEmit": True,
                        "noUnusedLocals": False,
                        "skipLibCheck": True,
                        "module": "esnext",
                        "moduleResolution": "bundler",
                        "target": "es2022",
                        "types": [],
                    },
                    "include": ["**/*.ts"],
                }
            )
        )
        result = subprocess.run(
            ["node", str(TSC), "-p", str(root), "--pretty", "false"],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=300,
            check=False,
        )
    errors: list[Problem] = []
    for line in result.stdout.splitlines():
        match = _ERROR.match(line)
        if match:
            errors.append(Problem(*owners.get(match["file"], ("?", "")), match["message"]))
        elif errors and line.startswith(" "):  # tsc goes on about the last error on indented lines
            last = errors.pop()
            errors.append(Problem(last.dashboard, last.panel, f"{last.message} {line.strip()}"))
    if result.returncode and not errors:
        errors.append(Problem("?", "", (result.stdout + result.stderr).strip()[-2000:]))
    return errors
