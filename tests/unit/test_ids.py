"""Request ids and slot holders: unique within a process and across forks."""

from __future__ import annotations

import os
import re

from service.ids import new_id


def test_ids_look_like_uuid4_hex_and_never_repeat() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", each) for each in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_worker_makes_ids_its_parent_does_not() -> None:
    before = new_id()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: as a gunicorn worker forked from the master
        os.write(writer, new_id().encode())
        os._exit(0)
    os.close(writer)
    child = os.read(reader, 64).decode()
    os.waitpid(pid, 0)
    os.close(reader)
    parent = new_id()
    assert len({before[:16], child[:16]}) == 2  # its own random part
    assert child != parent
