"""Small programs that hold a namespace one particular way (a thread, a socket alone, ...)."""

from __future__ import annotations

# A thread unshares its network namespace alone; prints "TID net:[N]".
THREAD = """
import ctypes, os, threading, time
libc = ctypes.CDLL(None, use_errno=True)
def worker():
    assert libc.unshare(0x40000000) == 0
    print(threading.get_native_id(), os.readlink(f"/proc/self/task/{threading.get_native_id()}/ns/net"), flush=True)
    time.sleep(600)
threading.Thread(target=worker, name="worker", daemon=True).start()
time.sleep(600)
"""


# A socket made in a new network namespace, after which the process goes home:
# only the socket holds the namespace. Prints "net:[N] FD".
SOCKET_ONLY = """
import ctypes, os, socket, time
libc = ctypes.CDLL(None, use_errno=True)
home = os.open("/proc/self/ns/net", os.O_RDONLY)
assert libc.unshare(0x40000000) == 0
net = os.readlink("/proc/self/ns/net")
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
assert libc.setns(home, 0x40000000) == 0
os.close(home)
print(net, sock.fileno(), flush=True)
time.sleep(600)
"""


# unshare(CLONE_NEWTIME) without exec: the namespace is only the children's. Prints "time:[N]".
UNSHARE_TIME_NO_EXEC = """
import ctypes, os, time
assert ctypes.CDLL(None, use_errno=True).unshare(0x80) == 0
print(os.readlink("/proc/self/ns/time_for_children"), flush=True)
time.sleep(600)
"""


# Waits for a line on standard input; then, in its one thread and with no fork, exec, thread or
# fd, makes a user namespace, a network namespace in it, and a time namespace for its children:
# nothing a process event, a follow-up read or an fd count can tell. Prints
# "net:[N] user:[M] time:[T]", then sleeps in them.
UNSHARE_WHEN_TOLD = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
sys.stdin.readline()
assert libc.unshare(0x10000000 | 0x40000000 | 0x80) == 0
print(*(os.readlink(f"/proc/self/ns/{link}") for link in ("net", "user", "time_for_children")), flush=True)
time.sleep(600)
"""


# A child makes a user namespace and a network namespace in it, sends an fd of the network
# namespace over a unix socket whose other end nobody reads, and exits at once: from then on
# only that fd in flight holds the network namespace, and the network namespace its owner.
# No process is ever read in them (the child lives for a few system calls). Prints
# "net:[N] user:[M]", then sleeps holding both ends.
IN_FLIGHT_ONLY = """
import ctypes, os, socket, time
libc = ctypes.CDLL(None, use_errno=True)
sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
report_r, report_w = os.pipe()
child = os.fork()
if child == 0:
    assert libc.unshare(0x10000000 | 0x40000000) == 0
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    socket.send_fds(sender, [b"x"], [fd])
    os.write(report_w, f"{os.readlink('/proc/self/ns/net')} {os.readlink('/proc/self/ns/user')}\\n".encode())
    os._exit(0)
os.waitpid(child, 0)
os.close(report_w)
print(os.read(report_r, 200).decode().strip(), flush=True)
time.sleep(600)
"""


# Runs argv[1:] under a seccomp filter (libseccomp's own Python binding, Debian's
# python3-seccomp, hence the system's python3) that answers pidfd_open and pidfd_getfd with
# ENOSYS, as a kernel before 5.3 / 5.6 does (RHEL 8's 4.18): the filter outlives the exec.
WITHOUT_PIDFD = """
import errno, os, sys, seccomp
rules = seccomp.SyscallFilter(seccomp.ALLOW)
for call in ("pidfd_open", "pidfd_getfd"):
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), call)
rules.load()
os.execvp(sys.argv[1], sys.argv[1:])
"""

# In a network namespace of its own (run under `unshare --net`), a socket, kept through an exec
# of `sleep`: every read after the exec meets the socket. Prints "net:[N] FD".
WITH_A_SOCKET = """
import os, socket
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
os.set_inheritable(sock.fileno(), True)
print(os.readlink("/proc/self/ns/net"), sock.fileno(), flush=True)
os.execv("/bin/sleep", ["sleep", "600"])
"""
