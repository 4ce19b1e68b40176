from __future__ import annotations

import pytest

from proxy.sse import EventSplitter, event_data

STREAM = b'data: {"a":1}\n\ndata: {"b":2}\n\n: comment\n\ndata: [DONE]\n\n'


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_events_are_exact_bytes_whatever_the_chunking(size: int):
    split = EventSplitter()
    events = []
    for i in range(0, len(STREAM), size):
        events += split.feed(STREAM[i : i + size])
    assert b"".join(events) == STREAM
    assert [event_data(e) for e in events] == [b'{"a":1}', b'{"b":2}', b"", b"[DONE]"]
    assert split.pending == b""


def test_crlf_and_pending_tail():
    split = EventSplitter()
    assert split.feed(b"data: x\r\n\r\ndata: y") == [b"data: x\r\n\r\n"]
    assert split.pending == b"data: y"
    assert split.feed(b"\r\n\r\n") == [b"data: y\r\n\r\n"]


def test_multiline_data():
    assert event_data(b"event: e\ndata: a\ndata:b\n\n") == b"a\nb"
