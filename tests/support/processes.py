"""What is left running after `mallstream up` stopped: every part it starts names its folder on its command line.

The broker's data directory and Mosquitto's config are absolute paths under the state directory,
and the workers run the interpreter `up` itself runs.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from mallstream.services import port_open


def processes_naming(directory: Path) -> dict[int, str]:
    """Live processes (not zombies) whose command line names ``directory``: every part `up` starts does."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            zombie = "\nState:\tZ" in (proc / "status").read_text()
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError, PermissionError):
            continue
        if proc.name.isdigit() and str(directory) in cmdline and not zombie:
            found[int(proc.name)] = cmdline
    return found


def children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid`` and their command lines."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f"\nPPid:\t{pid}\n" in (proc / "status").read_text():
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def assert_nothing_left(directory: Path, ports: list[int], output: str) -> None:
    """No process naming ``directory`` is left (any found is killed, then the test fails) and no port answers."""
    left = processes_naming(directory)
    for pid in left:  # so that a failing run leaves nothing behind either
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running after up exited: {left}\n{output}"
    assert not [port for port in ports if port_open("127.0.0.1", port)], output
