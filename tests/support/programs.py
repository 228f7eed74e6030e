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
