"""A short soak: the daemon under churn answers nothing the kernel contradicts (`make soak` is the long one)."""

from __future__ import annotations

from bench.soak import soak


def test_a_short_soak() -> None:
    report = soak(seconds=5, rate=100, readers=4, interval=0.2)
    assert report.ok, str(report)
    assert report.made >= 300, str(report)
    assert report.reads > 0, str(report)
