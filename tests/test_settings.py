"""A bad config names the file, the key and the problem, and the CLI exits 2."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mallstream import settings
from tests.conftest import EXAMPLE_CONFIG


def test_the_example_config_is_valid_and_maps_stores_to_malls():
    conf = settings.load(EXAMPLE_CONFIG)
    assert conf.mall_of_store()["S201"] == "sh-xujiahui"
    assert conf.rules.file == Path("config/rules.example.yaml")


def _broken(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    mutate(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "key", "problem"),
    [
        (lambda d: d["kafka"].update(partitions=0), "kafka.partitions", "greater than or equal to 1"),
        (lambda d: d["clickhouse"].update(mode="cloud"), "clickhouse.mode", "'embedded' or 'server'"),
        (lambda d: d["worker"].update(web_prot=1), "worker.web_prot", "Extra inputs"),
        (lambda d: d["malls"][0]["stores"].append({"id": "S101"}), "malls", "store id 'S101' appears twice"),
        (lambda d: d["rules"].update(point_value_cents="lots"), "rules.point_value_cents", "decimal"),
        (
            lambda d: d["malls"][0]["footfall"].update(staff_passages=["C-nowhere"]),
            "malls.0",
            "'C-nowhere' is not a people counter",
        ),
        (
            lambda d: d["malls"][0]["parking"].update(clear_share=0.95),
            "malls.0.parking",
            "clear_share must not exceed alert_share",
        ),
    ],
)
def test_bad_config_errors_name_file_key_and_problem(tmp_path, mutate, key, problem):
    path = _broken(tmp_path, mutate)
    with pytest.raises(settings.ConfigError) as caught:
        settings.load(path)
    assert caught.value.file == str(path) and caught.value.key == key
    assert problem in caught.value.problem


def test_the_cli_exits_2_with_the_message(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("malls: [\n")
    result = subprocess.run(
        [sys.executable, "-m", "mallstream.cli", "-c", str(path), "sql", "SELECT 1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert f"{path}: line" in result.stderr and "not valid YAML" in result.stderr


def test_a_missing_config_file_is_reported(tmp_path):
    with pytest.raises(settings.ConfigError, match="No such file"):
        settings.load(tmp_path / "nope.yaml")


def test_a_vip_worker_is_refused_unless_the_config_keeps_the_vip_agents_apart(tmp_path):
    """Otherwise the main workers and the VIP worker would both run the VIP agents: every alert twice."""
    path = tmp_path / "mall.yaml"
    path.write_text(EXAMPLE_CONFIG.read_text())
    result = subprocess.run(
        [sys.executable, "-m", "mallstream.cli", "-c", str(path), "worker", "--vip"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"{path}: worker.vip_worker.separate:" in result.stderr and "twice" in result.stderr
