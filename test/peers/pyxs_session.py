#!/usr/bin/python3
"""A pyxs (python3-pyxs, Debian) session against one XenStore daemon.

usage: /usr/bin/python3 pyxs_session.py SOCKET

Prints one JSON object per line, {"step": ..., "result": ...}, so test/peers/pyxs.test.ts
can compare two daemons and check the semantics. Exits 0 when the session ran to the end
(whatever the daemon answered), non-zero on a crash or after 20 seconds.
"""
import json
import signal
import sys

from pyxs import Client, PyXSError

signal.alarm(20)
S = sys.argv[1]


def out(step, result):
    if isinstance(result, bytes):
        result = result.decode("latin-1")
    elif isinstance(result, (list, tuple)):
        result = [r.decode("latin-1") if isinstance(r, bytes) else r for r in result]
    print(json.dumps({"step": step, "result": result}), flush=True)


def attempt(step, fn):
    try:
        out(step, fn())
    except PyXSError as e:
        out(step, "PyXSError(%s)" % (e.args[0],))
    except ValueError as e:
        out(step, "ValueError")


with Client(unix_socket_path=S) as c, Client(unix_socket_path=S) as c2:
    # read / write / list / exists
    attempt("write /pyxs/foo", lambda: c.write(b"/pyxs/foo", b"bar"))
    attempt("read /pyxs/foo", lambda: c.read(b"/pyxs/foo"))
    attempt("write /pyxs/deep/er", lambda: c.write(b"/pyxs/deep/er", b"x"))
    attempt("read implicit parent /pyxs/deep", lambda: c.read(b"/pyxs/deep"))
    attempt("list /pyxs", lambda: c.list(b"/pyxs"))
    attempt("exists /pyxs/foo", lambda: c.exists(b"/pyxs/foo"))
    attempt("exists /pyxs/nope", lambda: c.exists(b"/pyxs/nope"))
    attempt("read missing", lambda: c.read(b"/pyxs/nope"))
    attempt("read missing with default", lambda: c.read(b"/pyxs/nope", b"dflt"))
    attempt("mkdir /pyxs/dir", lambda: c.mkdir(b"/pyxs/dir"))
    attempt("read /pyxs/dir", lambda: c.read(b"/pyxs/dir"))
    attempt("delete missing leaf", lambda: c.delete(b"/pyxs/nope"))
    attempt("delete missing parent", lambda: c.delete(b"/pyxs/nope/deeper"))
    attempt("get_domain_path 0", lambda: c.get_domain_path(0))
    attempt("get_domain_path 7", lambda: c.get_domain_path(7))
    attempt("is_domain_introduced 0", lambda: c.is_domain_introduced(0))
    attempt("is_domain_introduced 9", lambda: c.is_domain_introduced(9))

    # permissions
    attempt("get_perms /pyxs/foo", lambda: c.get_perms(b"/pyxs/foo"))
    attempt("set_perms /pyxs/foo n0 r3 w4 b5", lambda: c.set_perms(b"/pyxs/foo", [b"n0", b"r3", b"w4", b"b5"]))
    attempt("get_perms /pyxs/foo", lambda: c.get_perms(b"/pyxs/foo"))
    attempt("set_perms /pyxs n7 r0", lambda: c.set_perms(b"/pyxs", [b"n7", b"r0"]))
    attempt("write /pyxs/child", lambda: c.write(b"/pyxs/child", b"c"))
    attempt("get_perms inherited /pyxs/child", lambda: c.get_perms(b"/pyxs/child"))
    attempt("set_perms missing node", lambda: c.set_perms(b"/pyxs/nope", [b"n0"]))
    attempt("get_perms missing node", lambda: c.get_perms(b"/pyxs/nope"))

    # transactions
    attempt("transaction start", lambda: c.transaction() and None)
    attempt("write in tx", lambda: c.write(b"/pyxs/tx", b"1"))
    attempt("other connection reads outside tx", lambda: c2.read(b"/pyxs/tx", b"<missing>"))
    attempt("commit", lambda: c.commit())
    attempt("read after commit", lambda: c.read(b"/pyxs/tx"))
    attempt("transaction start", lambda: c.transaction() and None)
    attempt("read in tx", lambda: c.read(b"/pyxs/tx"))
    attempt("conflicting write on second connection", lambda: c2.write(b"/pyxs/tx", b"2"))
    attempt("write in tx", lambda: c.write(b"/pyxs/tx", b"3"))
    attempt("commit after conflict", lambda: c.commit())
    attempt("read after failed commit", lambda: c.read(b"/pyxs/tx"))
    attempt("transaction start", lambda: c.transaction() and None)
    attempt("write in tx", lambda: c.write(b"/pyxs/tx", b"4"))
    attempt("rollback", lambda: c.rollback())
    attempt("read after rollback", lambda: c.read(b"/pyxs/tx"))

    # watches
    m = c.monitor()
    attempt("watch /pyxs tok", lambda: m.watch(b"/pyxs", b"tok"))
    events = m.wait()
    attempt("initial event", lambda: list(next(events)))
    attempt("second connection writes /pyxs/foo", lambda: c2.write(b"/pyxs/foo", b"baz"))
    attempt("event", lambda: list(next(events)))
    attempt("second connection writes /pyxs/new/leaf", lambda: c2.write(b"/pyxs/new/leaf", b"1"))
    attempt("event", lambda: list(next(events)))
    attempt("second connection sets perms on /pyxs/foo", lambda: c2.set_perms(b"/pyxs/foo", [b"n0"]))
    attempt("event", lambda: list(next(events)))
    attempt("second connection deletes /pyxs/foo", lambda: c2.delete(b"/pyxs/foo"))
    attempt("event", lambda: list(next(events)))
    attempt("watch relative rel tok2", lambda: m.watch(b"rel", b"tok2"))
    attempt("initial event", lambda: list(next(events)))
    attempt("second connection writes /local/domain/0/rel/x", lambda: c2.write(b"/local/domain/0/rel/x", b"1"))
    attempt("event", lambda: list(next(events)))
    attempt("unwatch rel tok2", lambda: m.unwatch(b"rel", b"tok2"))
    attempt("unwatch /pyxs tok", lambda: m.unwatch(b"/pyxs", b"tok"))
    attempt("delete /pyxs", lambda: c.delete(b"/pyxs"))
    attempt("exists /pyxs", lambda: c.exists(b"/pyxs"))
