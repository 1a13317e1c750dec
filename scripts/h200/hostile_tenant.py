#!/usr/bin/env python3
"""A local user trying to get another tenant's channels gated: connects to vgpud as tenant
`mallory` and names the victim's (client, channel) pairs (read from vgpud's state file), once
with its own /dev/nvidiactl passed for the victim's client, once with no file, once with
/dev/null. Prints what it sent; vgpud's log says what it did with it.
Usage: hostile_tenant.py SOCKET STATE_FILE"""
import os, socket, sys, time

sock_path, state = sys.argv[1], sys.argv[2]
pairs = [l.strip() for l in open(state) if ":" in l]
if not pairs:
    sys.exit("no victim channels in the state file")
clients = sorted({p.split(":")[0] for p in pairs})
print(f"victim pairs: {len(pairs)}, clients: {clients}")

def attempt(label, file_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall(f"HELLO mallory {os.getpid()}\n".encode())
    fd = os.open(file_path, os.O_RDWR) if file_path else None
    for c in clients:
        line = f"CLIENT {c}\n".encode()
        if fd is None:
            s.sendall(line)
        else:
            socket.send_fds(s, [line], [fd])
    s.sendall(("CHANNELS " + " ".join(pairs) + "\n").encode())
    time.sleep(1.0)
    print(f"ATTEMPT {label}: sent {len(pairs)} pairs")
    s.close()
    if fd is not None:
        os.close(fd)

attempt("own-nvidiactl", "/dev/nvidiactl")
attempt("no-file", None)
attempt("dev-null", "/dev/null")
