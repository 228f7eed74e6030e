"""A short soak: the daemon under churn answers nothing the kernel contradicts (`make soak` is the long one)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.support.waiting import SLOWDOWN, run


def figure(report: str, label: str) -> int:
    match = re.search(rf"^{label}\s+(\d+)", report, re.MULTILINE)
    assert match is not None, report
    return int(match.group(1))


@pytest.mark.parametrize("daemons", [1, 2])
def test_a_short_soak(daemons: int) -> None:
    argv = [sys.executable, "-m", "bench.soak", "--seconds", "5", "--rate", "100", "--readers", "4"]
    argv += ["--interval", "0.2", "--daemons", str(daemons)]
    soak = run(argv, timeout=300, cwd=Path(__file__).parents[1])
    assert soak.returncode == 0, soak.stdout + soak.stderr
    assert re.search(r"^verdict\s+ok$", soak.stdout, re.MULTILINE), soak.stdout
    # 100 a second for 5 s, less what the machine cannot keep up with; a guest under emulation
    # (SLOWDOWN) makes fewer, and still must churn.
    assert figure(soak.stdout, "namespaces made and destroyed") >= 300 / SLOWDOWN, soak.stdout
    assert figure(soak.stdout, "entries checked") > 0, soak.stdout
