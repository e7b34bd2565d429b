"""rotator.adapters.http: SSE framing of upstream streams, whatever the reads look like."""

import asyncio

from rotator.adapters.http import sse_payload_batches


async def _reads(*chunks: bytes):
    for chunk in chunks:
        yield chunk


def _batches(*chunks: bytes) -> list[list[bytes]]:
    async def collect():
        return [batch async for batch in sse_payload_batches(_reads(*chunks))]

    return asyncio.run(collect())


def test_events_that_arrive_together_leave_together():
    assert _batches(b"data: 1\n\ndata: 2\n\n") == [[b"1", b"2"]]


def test_an_event_split_across_reads_waits_for_its_end():
    assert _batches(b'data: {"a"', b": 1}\n\n", b"data: 2\n\n") == [[b'{"a": 1}'], [b"2"]]


def test_crlf_framing_is_read_like_lf():
    assert _batches(b"data: 1\r\n\r\ndata: 2\r\n\r\n") == [[b"1", b"2"]]


def test_a_raw_json_tail_after_the_last_event_is_a_payload_of_its_own():
    # How Google sometimes appends an error to a 200 stream.
    tail = b'{"error": {"code": 503}}'
    assert _batches(b"data: 1\n\n", tail) == [[b"1"], [tail]]


def test_comments_and_other_fields_are_not_payloads():
    assert _batches(b": keep-alive\n\nevent: x\ndata: 1\n\n") == [[b"1"]]


def test_a_multi_line_event_joins_its_data_lines_and_one_line_events_keep_their_bytes():
    framed = b'data: {"a":\ndata:  1}\n\ndata:2\n\nid: 7\ndata: 3\n\ndata: {"b": 2}\n\n'
    assert _batches(framed) == [[b'{"a":\n1}', b"2", b"3", b'{"b": 2}']]
    # Many events in one read, the last one cut: the rest waits for the next read.
    many = b"".join(b"data: %d\n\n" % n for n in range(50)) + b"data: 5"
    assert _batches(many, b"0\n\n") == [[b"%d" % n for n in range(50)], [b"50"]]


def test_blank_lines_between_events_are_no_events():
    assert _batches(b"data: 1\n\n\n\ndata: 2\n\n\n") == [[b"1", b"2"]]
    assert _batches(b"data: 1\n\n\n", b"\ndata: 2\n\n") == [[b"1"], [b"2"]]
