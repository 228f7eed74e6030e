"""Which Debian image `make test-kernel KERNEL=X` takes (scripts/test-kernel --choose): the newest
plain one of the series, whatever its naming, from the machine's own release first. The lines are
names, versions and suites Debian's lists held, as `apt-cache madison` gives them."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "test-kernel"
RELEASES = ("bookworm", "bullseye", "trixie")

LISTS = """\
linux-image-5.10.0-30-amd64 5.10.218-1 bullseye
linux-image-5.10.0-45-amd64 5.10.244-1 bullseye-security
linux-image-5.10.0-46-amd64 5.10.262-1 bullseye-security
linux-image-5.10.0-46-cloud-amd64 5.10.262-1 bullseye-security
linux-image-5.10.0-46-rt-amd64 5.10.262-1 bullseye-security
linux-image-5.10.0-46-amd64-dbg 5.10.262-1 bullseye-security
linux-image-5.10.0-46-amd64-unsigned 5.10.262-1 bullseye-security
linux-image-6.1-amd64 6.1.192-3 bookworm-security
linux-image-6.1-amd64-signed-template 6.1.192-3 bookworm-security
linux-image-6.1.0-0.deb11.52-amd64 6.1.195-1~deb11u1 bullseye-security
linux-image-6.1.0-9-amd64 6.1.27-1 bookworm
linux-image-6.1.0-56-amd64 6.1.190-1 bookworm-security
linux-image-6.1.0-57-amd64 6.1.192-3 bookworm-security
linux-image-6.12-amd64 6.12.118-1~deb12u1 bookworm-security
linux-image-6.12.90+deb12.1-amd64 6.12.90-2~bpo12+1 bookworm-backports
linux-image-6.12.118+deb12-amd64 6.12.118-1~deb12u1 bookworm-security
linux-image-6.12.118+deb13-amd64 6.12.118-1 trixie-security
linux-image-6.16.12+deb13-amd64 6.16.12-1~bpo13+1 trixie-backports
linux-image-7.2.12+deb13-amd64 7.2.12-1~bpo13+1 trixie-backports
linux-image-7.3.4+deb13-amd64 7.3.4-1~bpo13+1 trixie-backports
linux-image-7.3.10+deb13-amd64 7.3.10-1~bpo13+1 trixie-backports
linux-image-7.3.10+deb13-cloud-amd64 7.3.10-1~bpo13+1 trixie-backports
linux-binary-7.3.10+deb13-amd64 7.3.10-1~bpo13+1 trixie-backports
"""


def choose(series: str, lines: str = LISTS, releases: tuple[str, ...] = RELEASES) -> str:
    done = subprocess.run(
        ["bash", str(SCRIPT), "--choose", series, *releases], input=lines, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_each_naming_gives_its_newest_plain_image() -> None:
    assert choose("5.10") == "linux-image-5.10.0-46-amd64 5.10.262-1 bullseye-security"
    assert choose("6.12") == "linux-image-6.12.118+deb12-amd64 6.12.118-1~deb12u1 bookworm-security"
    assert choose("7.3") == "linux-image-7.3.10+deb13-amd64 7.3.10-1~bpo13+1 trixie-backports"


def test_the_machines_own_release_comes_first() -> None:
    assert choose("6.1") == "linux-image-6.1.0-57-amd64 6.1.192-3 bookworm-security"
    assert choose("6.1", releases=("bullseye", "bookworm")) == (
        "linux-image-6.1.0-0.deb11.52-amd64 6.1.195-1~deb11u1 bullseye-security"
    )


def test_debians_version_order_not_the_names() -> None:
    lines = (
        "linux-image-6.12.90+deb12.1-amd64 6.12.90-2~bpo12+1 bookworm-backports\n"
        "linux-image-6.12.9+deb12-amd64 6.12.9-1~bpo12+1 bookworm-backports\n"
    )
    assert choose("6.12", lines) == "linux-image-6.12.90+deb12.1-amd64 6.12.90-2~bpo12+1 bookworm-backports"


def test_a_series_is_not_a_prefix_of_another() -> None:
    assert choose("6.1", "linux-image-6.12.118+deb12-amd64 6.12.118-1~deb12u1 bookworm-security\n") == ""
    assert choose("7.1") == ""
    assert choose("4.19") == ""
