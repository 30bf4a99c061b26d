import os
import threading
import uuid

from xbus.core.envelope import Op, change_event
from xbus.core.event_ids import BATCH, new_event_id


def test_event_ids_are_random_uuids_in_canonical_form() -> None:
    ids = [new_event_id() for _ in range(3 * BATCH)]  # across several draws
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # Every hex digit outside the version and variant takes each value.
    assert {text[0] for text in ids} == set("0123456789abcdef")
    assert {text[19] for text in ids} == set("89ab")


def test_threads_drawing_at_once_never_share_an_id() -> None:
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        into.extend(new_event_id() for _ in range(2 * BATCH))

    threads = [threading.Thread(target=draw, args=(d,)) for d in drawn]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for d in drawn for i in d]
    assert len(set(everything)) == len(everything) == 8 * BATCH


def test_a_forked_child_draws_ids_its_parent_does_not() -> None:
    new_event_id()  # the parent holds a batch of ids not handed out yet
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, ",".join(new_event_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        from_child = pipe.read().split(",")
    os.waitpid(child, 0)
    from_parent = [new_event_id() for _ in range(BATCH)]
    assert len(from_child) == 10 and not set(from_child) & set(from_parent)


def test_a_change_event_gets_a_fresh_id_unless_given_one() -> None:
    made = change_event(department="d", dataset="s", op=Op.CREATE, after={}, system="x")
    assert uuid.UUID(made["event_id"]).version == 4
    given = change_event(
        department="d", dataset="s", op=Op.CREATE, after={}, system="x", event_id="mine"
    )
    assert given["event_id"] == "mine"
