"""The mount among the programs around it: lsnsfs against lsns, the picture through Graphviz,
namespaces followed as they come and go, Prometheus metrics, the systemd unit, the DaemonSet."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import LSNSFS, NSFS, Daemon, netns_added, running_daemon
from tests.support.lsns import lsns_json
from tests.support.oracles import all_process_namespaces, ns_of
from tests.support.procs import Procs, kill_with_watchdog
from tests.support.waiting import PATIENCE, SLOWDOWN, is_mounted, run, wait_until

ROOT = Path(__file__).parent.parent
NS_LINKS = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def lsnsfs(nsfs: Daemon, *args: str, prefix: tuple[str, ...] = ()) -> str:
    done = run([*prefix, LSNSFS, "-m", str(nsfs.mountpoint), *args])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def as_json(nsfs: Daemon, *args: str) -> dict[int, dict[str, Any]]:
    return {row["ns"]: row for row in json.loads(lsnsfs(nsfs, "-J", *args))["namespaces"]}


def lsns(*args: str) -> dict[int, dict[str, Any]]:
    done = run(["lsns", "-J", *args])
    assert done.returncode == 0, done.stderr
    return {row["ns"]: row for row in json.loads(done.stdout)["namespaces"]}


def piped(argv: list[str], text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=text, capture_output=True, text=True, check=False, timeout=60 * SLOWDOWN)


def inode(name: str) -> int:
    return int(name.split("[")[1].rstrip("]"))


# -- lsnsfs -------------------------------------------------------------------


def test_lsnsfs_shows_what_lsns_shows_for_the_namespaces_lsns_finds(nsfs: Daemon, procs: Procs) -> None:
    first = procs.wait_for_sleep(procs.start("unshare", "--net", "--uts", *AS_NOBODY, "sleep", "600"))
    second = procs.wait_for_sleep(procs.start("nsenter", f"--target={first}", "--net", "--uts", "sleep", "600"))
    made = {inode(ns_of(first, "net")), inode(ns_of(first, "uts"))}
    lsns_fields = ("ns", "type", "nprocs", "pid", "user", "command")

    def agree() -> bool:
        ours, theirs = as_json(nsfs), lsns()
        mine = {ns: {k: ours[ns][k] for k in lsns_fields} for ns in made if ns in ours}
        return mine == {ns: theirs[ns] for ns in made}

    wait_until(agree, "lsnsfs -J and lsns -J to agree on the new namespaces")
    row = as_json(nsfs)[inode(ns_of(first, "net"))]
    assert (row["nprocs"], row["pid"], row["user"], row["command"]) == (2, min(first, second), "nobody", "sleep 600")
    # Every namespace lsns finds is listed (lsns sees processes only; the mount sees more), but
    # for those only nsfs daemons' helpers are in, which hold nothing, and those no process is
    # in any more: lsns read them a moment ago.
    found = set(lsns())
    wait_until(
        lambda: found & {inode(name) for name in all_process_namespaces()} <= set(as_json(nsfs)),
        "every namespace lsns finds to be listed",
    )
    # With -t net both add the id our network namespace gives it and its bind mounts here.
    net = inode(ns_of(first, "net"))
    attached = run(["ip", "netns", "attach", "nsfs-test-agree", str(first)])
    assert attached.returncode == 0, attached.stderr
    try:
        assert run(["ip", "netns", "set", "nsfs-test-agree", "8"]).returncode == 0
        wait_until(lambda: "mount " in " ".join(as_json(nsfs, "-t", "net")[net]["holders"]), "the bind mount")
        theirs = lsns("-t", "net")[net]
        assert (theirs["netnsid"], theirs["nsfs"]) == ("8", "/run/netns/nsfs-test-agree")
        ours = as_json(nsfs, "-t", "net")[net]
        assert list(ours) == [*theirs, "holders", "container"]  # lsns -J -t net's fields, in its order
        assert {k: ours[k] for k in theirs} == theirs
    finally:
        run(["ip", "netns", "del", "nsfs-test-agree"])


# lsns's row, without a heading: columns apart by spaces, the command line after one.
LSNS_ROW = re.compile(r" *(\d+) +(\S+) +(\d+) +(\d+) +(\S+) (.*)")


def test_an_odd_command_line_is_one_row_as_lsns_prints_it(nsfs: Daemon, procs: Procs) -> None:
    """A process whose arguments hold a newline, a tab, an escape, bytes that are not UTF-8 and
    backslashes (one before an x, one at the end): lsnsfs shows its row as lsns does, in the
    table and -J, and --dot is a picture whose label shows that text (tests/unit/test_odd_text.py
    draws any such text)."""
    odd = [b"a\nb", b"t\tb", b"\x1b", b"\xff", b"\\x41", b"e\\"]
    shell = procs.start("unshare", "--uts", "sh", "-c", "sleep 600;:", *map(os.fsdecode, odd))
    procs.wait_for_sleep(shell)
    uts = ns_of(shell.pid, "uts")
    wait_until(lambda: uts in nsfs.names(), "the shell's namespace")
    wait_until(lambda: nsfs.read(uts, "holders").count("process ") == 2, "the shell and its sleep in it")
    chosen = ("-t", "uts", "-p", str(shell.pid))
    lsns_env = {**os.environ, "LC_ALL": "C.UTF-8"}
    theirs = run(["lsns", "-n", *chosen], env=lsns_env)
    assert theirs.returncode == 0, theirs.stderr
    (their_line,) = theirs.stdout.splitlines()
    assert their_line.endswith(" sh -c sleep 600;: a\\x0ab t\\x09b \\x1b \\xff \\x5cx41 e\\")
    (our_line,) = lsnsfs(nsfs, "-n", *chosen).splitlines()
    ours = re.fullmatch(r"(\d+) (\S+) (\d+) (\d+) (\S+) (\S+) (\S+) (.*)", our_line)
    assert ours is not None, our_line
    lsns_row = LSNS_ROW.fullmatch(their_line)
    assert lsns_row is not None, their_line
    assert ours.group(1, 2, 3, 4, 5, 8) == lsns_row.groups()
    assert ours.group(6, 7) == ("process:2", "-")  # the shell and its sleep; no container
    # -J: lsns -J's fields and values, its bytes that are not UTF-8 as lsns's table shows them.
    their_json = subprocess.run(["lsns", "-J", *chosen], capture_output=True, env=lsns_env, check=True)
    (their_row,) = lsns_json(their_json.stdout)["namespaces"]
    (our_row,) = json.loads(lsnsfs(nsfs, "-J", *chosen))["namespaces"]
    assert {key: our_row[key] for key in their_row} == their_row
    assert our_row["command"] == "sh -c sleep 600;: a\nb t\tb \x1b \\xff \\x41 e\\"
    # --dot: dot reads it, and the label's process line is the table's command.
    drawn = piped(["dot", "-Tjson"], lsnsfs(nsfs, "--dot", *chosen))
    assert (drawn.returncode, drawn.stderr) == (0, ""), drawn.stderr
    (label,) = [obj["label"] for obj in json.loads(drawn.stdout)["objects"] if obj["name"] == f"uts_{inode(uts)}"]
    shown = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), label)  # \\ and \n
    assert shown.split("\n") == [uts, "process:2", f"{shell.pid} {lsns_row.group(6)}"]


def test_lsnsfs_lists_a_namespace_lsns_misses_with_what_holds_it(nsfs: Daemon) -> None:
    with netns_added("nsfs-test-eco") as net:
        assert run(["ip", "netns", "set", "nsfs-test-eco", "7"]).returncode == 0  # its id in ours
        wait_until(lambda: net in nsfs.names(), "the bind-mounted namespace")
        mount = f"mount /run/netns/nsfs-test-eco {ns_of(os.getpid(), 'mnt')}"
        assert as_json(nsfs, "-t", "net")[inode(net)] == {
            "ns": inode(net),
            "type": "net",
            "nprocs": 0,
            "pid": None,
            "user": None,
            "netnsid": "7",  # asked through the bind mount, which anyone may open
            "nsfs": "/run/netns/nsfs-test-eco",
            "command": None,
            "holders": [mount],
            "container": None,
        }
        assert inode(net) not in lsns("-t", "net")
        line = next(x for x in lsnsfs(nsfs, "-n", "-t", "net").splitlines() if x.startswith(f"{inode(net)} "))
        path = "/run/netns/nsfs-test-eco"
        assert line.split() == [str(inode(net)), "net", "0", "-", "-", "7", path, f"mount:{path}", "-", "-"]
        # Without -t net, the columns of plain lsns.
        line = next(x for x in lsnsfs(nsfs, "-n").splitlines() if x.startswith(f"{inode(net)} "))
        assert line.split() == [str(inode(net)), "net", "0", "-", "-", f"mount:{path}", "-", "-"]


def test_lsnsfs_p_and_t_choose_as_lsns_does(nsfs: Daemon, procs: Procs) -> None:
    pid = procs.sleeper("--net", "--ipc")
    wait_until(lambda: ns_of(pid, "ipc") in nsfs.names(), "the sleeper's namespaces")
    chosen = {(row["type"], ns) for ns, row in as_json(nsfs, "-p", str(pid)).items()}
    assert chosen == {(t, inode(ns_of(pid, t))) for t in NS_LINKS}
    assert chosen == {(row["type"], ns) for ns, row in lsns("-p", str(pid)).items()}
    nets = as_json(nsfs, "-p", str(pid), "-t", "net", "-t", "ipc")
    assert {(row["type"], ns) for ns, row in nets.items()} == {(t, inode(ns_of(pid, t))) for t in ("net", "ipc")}


def test_lsnsfs_in_a_container_lists_what_its_ls_lists(nsfs: Daemon) -> None:
    """In a user namespace of its own, with no privilege over the host's: what the mount shows
    it. (Root's uid is mapped, so that it can run this checkout's interpreter, under /root.)"""
    mount = str(nsfs.mountpoint)
    script = f"ls {mount}; echo --; {LSNSFS} -n -m {mount}; echo --; readlink /proc/self/ns/net"
    done = run(["unshare", "--user", "--map-root-user", "--net", "sh", "-c", script])
    assert done.returncode == 0, done.stderr
    listed, table, own_net = done.stdout.split("--\n")
    names = set(listed.split())
    assert {f"{line.split()[1]}:[{line.split()[0]}]" for line in table.splitlines()} == names
    assert own_net.strip() in names
    assert len(names) < len(nsfs.names())  # the host's own are hidden from it


def test_bad_input_to_lsnsfs_is_one_line_and_a_status(nsfs: Daemon, public_dir: Path) -> None:
    cases = [
        (["-t", "nett", "-m", str(nsfs.mountpoint)], 2, "lsnsfs: unknown namespace type: nett\n"),
        (["-p", "1x", "-m", str(nsfs.mountpoint)], 2, "lsnsfs: argument -p/--task: invalid PID argument: '1x'\n"),
        (
            ["-m", str(public_dir)],
            1,
            f"lsnsfs: {public_dir}: not an nsfs mount (mount one with: mount -t fuse nsfs {public_dir})\n",
        ),
        (
            ["--watch", "--events", str(public_dir / "none")],
            1,
            f"lsnsfs: cannot follow events at {public_dir / 'none'}: No such file or directory (is nsfs mounted?)\n",
        ),
    ]
    for argv, status, message in cases:
        done = run([LSNSFS, *argv])
        assert (done.returncode, done.stdout, done.stderr) == (status, "", message)


# -- the picture ----------------------------------------------------------------


def test_the_tree_puts_a_containers_namespaces_under_its_user_namespace(nsfs: Daemon, procs: Procs) -> None:
    pid = procs.sleeper("--user", "--map-root-user", "--net")
    user, net = ns_of(pid, "user"), ns_of(pid, "net")
    wait_until(lambda: net in nsfs.names(), "the container's namespaces")
    tree = json.loads(lsnsfs(nsfs, "-T", "-J"))["namespaces"]
    (top,) = [node for node in tree if node["type"] == "user" and node["ns"] == inode(ns_of(os.getpid(), "user"))]
    (child,) = [node for node in top["children"] if node["ns"] == inode(user)]
    assert [(node["type"], node["ns"], "children" in node) for node in child["children"]] == [
        ("net", inode(net), False)
    ]
    lines = lsnsfs(nsfs, "-T", "-n").splitlines()
    at = next(i for i, line in enumerate(lines) if re.match(rf"^[├└]─{inode(user)} +user ", line))
    assert re.match(rf"^[│ ] └─{inode(net)} +net +1 +{pid} +root +process:1 +- +sleep 600$", lines[at + 1])


def test_the_dot_picture_is_graphviz_s_and_has_every_namespace_and_owner(nsfs: Daemon, procs: Procs) -> None:
    pid = procs.sleeper("--user", "--map-root-user", "--net", "--pid", "--fork")
    wait_until(lambda: ns_of(pid, "pid") in nsfs.names(), "the container's namespaces")
    source = lsnsfs(nsfs, "--dot")
    drawn = piped(["dot", "-Tjson"], source)
    assert drawn.returncode == 0, drawn.stderr
    graph = json.loads(drawn.stdout)
    ids = {obj["_gvid"]: obj["name"] for obj in graph["objects"]}
    edges = {(ids[e["tail"]], ids[e["head"]], e.get("style", "solid")) for e in graph["edges"]}
    listed = [name for name in os.listdir(nsfs.mountpoint) if ":[" in name]

    def node(name: str) -> str:
        return name.replace(":[", "_").rstrip("]")

    expected = set()
    for name in listed:
        for link, style in (("owner", "solid"), ("parent", "dashed")):
            if link == "parent" and not name.startswith("pid:"):
                continue
            try:
                target = os.readlink(nsfs.path(name, link)).removeprefix("../")
            except FileNotFoundError:
                continue
            expected.add((node(target), node(name), style))
    assert set(ids.values()) == {node(name) for name in listed}
    assert edges == expected
    assert (node(ns_of(pid, "user")), node(ns_of(pid, "net")), "solid") in edges
    assert (node(ns_of(os.getpid(), "pid")), node(ns_of(pid, "pid")), "dashed") in edges
    svg = piped(["dot", "-Tsvg"], source)
    assert svg.returncode == 0 and "<svg" in svg.stdout, svg.stderr


# -- events -------------------------------------------------------------------


class Watcher:
    """`lsnsfs --watch` (under `prefix`), its lines read as they come."""

    def __init__(self, procs: Procs, nsfs: Daemon, *args: str, prefix: tuple[str, ...] = ()) -> None:
        argv = [*prefix, LSNSFS, "--watch", "-m", str(nsfs.mountpoint), *args]
        self.proc = procs.start(*argv, stdout=subprocess.PIPE)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.decode().rstrip("\n"))

    def next(self) -> str:
        return self.lines.get(timeout=PATIENCE * SLOWDOWN)

    def until(self, line: str) -> list[str]:
        """The lines up to and including `line`."""
        seen = [self.next()]
        while seen[-1] != line:
            seen.append(self.next())
        return seen

    def nothing_more(self) -> list[str]:
        found = []
        while not self.lines.empty():
            found.append(self.lines.get())
        return found


def test_watch_prints_a_network_namespace_as_it_comes_and_goes(nsfs: Daemon, procs: Procs) -> None:
    watcher = Watcher(procs, nsfs, "--existing", "-t", "net")
    own = ns_of(os.getpid(), "net")
    watcher.until(f"= {own}")
    with netns_added("nsfs-test-watch") as net:
        # The rest of what exists (this machine may have more network namespaces), then the new one.
        *existing, _ = watcher.until(f"+ {net}")
        assert all(line.startswith("= net:[") for line in existing), existing
    assert watcher.next() == f"- {net}"
    assert watcher.nothing_more() == []


def test_watch_tells_each_client_only_what_it_may_see(nsfs: Daemon, procs: Procs) -> None:
    """A client in a user namespace of its own hears of what that namespace owns, and of nothing
    the host makes."""
    watcher = Watcher(procs, nsfs, "--existing", "-t", "net", prefix=("unshare", "--user", "--map-root-user"))
    assert watcher.next() == f"= {ns_of(os.getpid(), 'net')}"  # it is in the host's: it sees that one
    with netns_added("nsfs-test-hidden") as hidden:
        wait_until(lambda: hidden in nsfs.names(), "the host's new namespace listed")
        pid = procs.sleeper("--net", prefix=("nsenter", f"--target={watcher.proc.pid}", "--user"))
        net = ns_of(pid, "net")
        assert watcher.next() == f"+ {net}"
        procs.end(pid)
        assert watcher.next() == f"- {net}"
    wait_until(lambda: hidden not in nsfs.names(), "the host's namespace gone")
    assert watcher.nothing_more() == []


def test_a_client_that_leaves_at_once_is_not_an_error(public_dir: Path, procs: Procs) -> None:
    """A client gone before the daemon wrote to it (its first send fails with EPIPE) is normal:
    no error in the log, and the next client is served."""
    socket_path = public_dir / "events"
    with running_daemon(public_dir / "mnt", f"events={socket_path}") as daemon:
        for _ in range(20):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(str(socket_path))
        watcher = Watcher(procs, daemon, "--existing", "-t", "net", "--events", str(socket_path))
        own = ns_of(os.getpid(), "net")
        assert f"= {own}" in watcher.until(f"= {own}")
        log = daemon.log.read_text()
    assert "ERROR" not in log and "Traceback" not in log, log


def test_the_events_socket_goes_with_the_daemon(public_dir: Path) -> None:
    socket_path = public_dir / "events"
    with running_daemon(public_dir / "mnt", f"events={socket_path}"):
        assert socket_path.is_socket()
        assert socket_path.stat().st_mode & 0o777 == 0o666
    assert not socket_path.exists()


# -- metrics ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_are_served_and_written_as_prometheus_reads_them(public_dir: Path) -> None:
    port, path = free_port(), public_dir / "nsfs.prom"
    with running_daemon(public_dir / "mnt", f"metrics=127.0.0.1:{port}", f"metrics_file={path}") as nsfs:

        def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=PATIENCE * SLOWDOWN) as reply:
                return samples(reply.read().decode())

        def nets() -> int:
            return sum(1 for name in nsfs.names() if name.startswith("net:"))

        leaks = scrape()[("nsfs_leak_candidates", (("type", "net"),))]
        with netns_added("nsfs-test-leak") as net:
            wait_until(lambda: net in nsfs.names(), "the bind-mounted namespace")
            wait_until(
                lambda: scrape()[("nsfs_leak_candidates", (("type", "net"),))] == leaks + 1,
                "a namespace held only by a bind mount to count as a leak candidate",
            )
            found = scrape()
            assert found[("nsfs_namespaces", (("type", "net"),))] == nets()
            assert found[("nsfs_namespaces_held", (("kind", "mount"), ("type", "net")))] >= 1
            assert found[("nsfs_process_events_followed", ())] == 1
            # Every entry pinned (one being probed has its pin let go for a moment), and every
            # fd the kernel shows, with the scrape's own connection.
            wait_until(lambda: scrape()[("nsfs_pins", ())] == len(nsfs.names()), "a pin per entry")
            wait_until(lambda: scrape()[("nsfs_open_fds", ())] == nsfs.fd_count() + 1, "the fds the kernel shows")
        wait_until(path.exists, "the metrics file")
        written = samples(path.read_text())
        assert set(name for name, _ in written) == set(name for name, _ in found)


def test_a_metrics_port_in_use_stops_the_mount_with_one_line(public_dir: Path) -> None:
    mountpoint = public_dir / "mnt"
    mountpoint.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run([*NSFS, str(mountpoint), "-o", f"metrics=127.0.0.1:{port}"])
    assert (done.returncode, done.stdout) == (1, "")
    assert (
        done.stderr
        == f"nsfs: cannot mount {mountpoint}: metrics cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )
    assert not is_mounted(mountpoint)


# -- systemd ------------------------------------------------------------------

UNIT = ROOT / "systemd" / "nsfs.service"


def unit_lines(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(f"{key}=")]


def test_the_unit_passes_systemd_analyze_verify() -> None:
    done = run(["systemd-analyze", "verify", str(UNIT)])
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert unit_lines("ExecStart") == ["/usr/local/sbin/nsfs -f /run/namespaces"]
    assert unit_lines("Type") == ["notify"]


def unit_command(key: str, mountpoint: Path) -> list[str]:
    """The unit's one `key=` command, on this test's mountpoint."""
    (command,) = unit_lines(key)
    return [word.replace("/run/namespaces", str(mountpoint)) for word in shlex.split(command)]


def test_the_unit_clears_a_dead_mount_before_it_starts(public_dir: Path) -> None:
    mountpoint = public_dir / "mnt"
    prepare = unit_command("ExecStartPre", mountpoint)
    assert (run(prepare).returncode, mountpoint.is_dir()) == (0, True)  # no directory yet: made
    daemon = subprocess.Popen([*NSFS, str(mountpoint), "-f"], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: is_mounted(mountpoint) and os.listdir(mountpoint), "the daemon to serve")
    finally:
        kill_with_watchdog(daemon)  # the OOM killer's kill of the daemon alone leaves no dead mount
    assert "Transport endpoint is not connected" in run(["ls", str(mountpoint)]).stderr
    prepared = run(prepare)
    assert (prepared.returncode, prepared.stderr) == (0, "")
    assert not is_mounted(mountpoint)
    with running_daemon(mountpoint) as again:  # it starts there again
        assert again.names()
        # A live mount is left alone: the daemon then refuses, saying so.
        assert (run(prepare).returncode, is_mounted(mountpoint)) == (0, True)


def test_the_daemon_tells_systemd_when_it_serves_and_when_it_stops(public_dir: Path) -> None:
    mountpoint, address = public_dir / "mnt", str(public_dir / "notify")
    mountpoint.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(address)
        notify.settimeout(PATIENCE * SLOWDOWN)
        proc = subprocess.Popen(
            [*NSFS, str(mountpoint), "-f"], env={**os.environ, "NOTIFY_SOCKET": address}, stderr=subprocess.PIPE
        )
        try:
            assert notify.recv(4096) == b"READY=1"
            assert os.listdir(mountpoint)  # served by then
            proc.send_signal(signal.SIGTERM)
            assert notify.recv(4096) == b"STOPPING=1"
            _, err = proc.communicate(timeout=PATIENCE * SLOWDOWN)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0
    assert not is_mounted(mountpoint)
    # Under systemd the log goes to the journal through stderr.
    assert err.decode().splitlines()[-1] == f"nsfs: INFO: exiting: {mountpoint} unmounted, every pin closed"


def test_under_systemd_each_log_line_carries_its_priority_for_the_journal(public_dir: Path) -> None:
    """systemd names the journal's stream in $JOURNAL_STREAM; lines written to it begin with
    their syslog priority, so `journalctl -p warning` finds the warnings. Elsewhere stderr
    stays plain (the test above)."""
    mountpoint, journal = public_dir / "mnt", public_dir / "journal"
    mountpoint.mkdir()
    with journal.open("w") as stream:
        stat = os.fstat(stream.fileno())
        env = {
            **os.environ,
            "JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}",
            "NOTIFY_SOCKET": str(public_dir / "nobody-listens"),  # a warning, to see its priority
        }
        proc = subprocess.Popen([*NSFS, str(mountpoint), "-f"], env=env, stderr=stream)
        try:
            wait_until(lambda: "serving" in journal.read_text(), "the daemon to serve")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=PATIENCE * SLOWDOWN) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    lines = journal.read_text().splitlines()
    assert f"<6>nsfs: INFO: serving {mountpoint}" in lines
    warning = f"<4>nsfs: WARNING: cannot notify the service manager at {public_dir}/nobody-listens: "
    assert [line for line in lines if line.startswith("<4>")] == [warning + "No such file or directory"] * 2
    assert all(re.match(r"<[2-7]>nsfs: ", line) for line in lines), lines
    assert f"<6>nsfs: INFO: exiting: {mountpoint} unmounted, every pin closed" in lines
    with journal.open("w") as stream:  # the same file, so still the journal's stream
        failed = subprocess.run([*NSFS, str(public_dir / "nowhere"), "-f"], env=env, stderr=stream, check=False)
    assert (failed.returncode, journal.read_text()) == (1, f"<3>nsfs: mountpoint {public_dir}/nowhere does not exist\n")


# -- Kubernetes ---------------------------------------------------------------


def test_the_daemonsets_command_clears_a_dead_mount_as_the_unit_does() -> None:
    """deploy/nsfs.yaml (tests/unit/test_manifest.py checks it against Kubernetes' schema)."""
    manifest = (ROOT / "deploy" / "nsfs.yaml").read_text()
    (daemonset,) = [doc for doc in yaml.safe_load_all(manifest) if doc["kind"] == "DaemonSet"]
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["hostPID"] is True
    (container,) = spec["containers"]
    assert container["securityContext"]["privileged"] is True
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/run/namespaces"]
    assert mount["mountPropagation"] == "Bidirectional"
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["hostPath"] == {"path": "/run/namespaces", "type": "DirectoryOrCreate"}
    # The container first takes away a dead mount, exactly as the unit's ExecStartPre does (the
    # test above runs that on a real dead mount), then becomes the daemon.
    shell, script = container["command"][:2], container["command"][2]
    clear, start = script.split("; exec ")
    (unit_prepare,) = unit_lines("ExecStartPre")
    assert (shell, clear) == (["sh", "-c"], shlex.split(unit_prepare)[2].split("; ")[0])
    command = shlex.split(start)
    assert command[:3] == ["nsfs", "-f", "/run/namespaces"]
    (port,) = container["ports"]
    annotations = daemonset["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert command[3:] == ["-o", f"metrics={port['containerPort']}"]
    assert "initContainers" not in spec and "lifecycle" not in container  # a preStop would unmount a live daemon
    assert (
        daemonset["spec"]["selector"]["matchLabels"].items()
        <= daemonset["spec"]["template"]["metadata"]["labels"].items()
    )
