"""alyx.sandbox.capture: chunks that do not align with lines become per-invocation text, cut at the
end marks the runtimes write, capped, and released when the stream closes."""
from __future__ import annotations

import threading
import time

from alyx.sandbox.capture import END_PREFIX, END_SUFFIX, CappedBuffer, StreamCapture


def end(invocation: str) -> bytes:
    return END_PREFIX + invocation.encode() + END_SUFFIX + b"\n"


def test_output_between_begin_and_the_end_mark_belongs_to_the_invocation() -> None:
    capture = StreamCapture()
    capture.feed(b"before anyone listens\n")
    capture.begin("a")
    stream = b"first line\nsecond " + b"line\n" + end("a")
    for i in range(0, len(stream), 3):  # chunks split lines and the mark itself
        capture.feed(stream[i:i + 3])
    assert capture.finish("a", wait=1) == "first line\nsecond line\n"
    capture.feed(b"after\n")
    assert capture.finish("a", wait=0) == ""  # taken once
    assert "after" in capture.tail_text() and "before anyone listens" in capture.tail_text()


def test_text_without_a_newline_before_the_mark_is_kept() -> None:
    capture = StreamCapture()
    capture.begin("a")
    capture.feed(b"no newline" + end("a"))
    assert capture.finish("a", wait=1) == "no newline"


def test_concurrent_invocations_each_see_the_stream_until_their_own_mark() -> None:
    capture = StreamCapture()
    capture.begin("a")
    capture.begin("b")
    capture.feed(b"shared\n" + end("a") + b"only b\n" + end("b"))
    assert capture.finish("a", wait=1) == "shared\nonly b\n"  # a's sink lives until finish
    assert capture.finish("b", wait=1) == "shared\nonly b\n"
    assert capture.finish("unknown", wait=0) == ""


def test_finish_waits_for_a_mark_that_arrives_later() -> None:
    capture = StreamCapture()
    capture.begin("a")

    def later() -> None:
        time.sleep(0.2)
        capture.feed(b"late line\n" + end("a"))

    threading.Thread(target=later).start()
    started = time.monotonic()
    assert capture.finish("a", wait=5) == "late line\n"
    assert 0.15 < time.monotonic() - started < 4


def test_without_a_mark_finish_returns_at_the_wait_with_the_unterminated_line() -> None:
    capture = StreamCapture()
    capture.begin("a")
    capture.feed(b"complete\npartial")
    started = time.monotonic()
    assert capture.finish("a", wait=0.2) == "complete\npartial"
    assert time.monotonic() - started >= 0.15


def test_close_releases_waiters_and_flushes_the_partial_line() -> None:
    capture = StreamCapture()
    capture.begin("a")
    capture.feed(b"dying words")
    capture.close()
    started = time.monotonic()
    assert capture.finish("a", wait=5) == "dying words"
    assert time.monotonic() - started < 1
    capture.begin("b")  # a stream that is already closed never makes a caller wait
    assert capture.finish("b", wait=5) == ""
    assert time.monotonic() - started < 1


def test_output_over_the_cap_is_truncated_with_a_count() -> None:
    capture = StreamCapture(cap=10)
    capture.begin("a")
    capture.feed(b"0123456789abcdef\n" + end("a"))
    assert capture.finish("a", wait=1) == "0123456789\n[... 7 more bytes truncated]"


def test_capped_buffer_counts_what_it_drops() -> None:
    buffer = CappedBuffer(4)
    buffer.append(b"ab")
    buffer.append(b"cdef")
    buffer.append(b"gh")
    assert (buffer.size, buffer.dropped) == (4, 4)
    assert buffer.text() == "abcd\n[... 4 more bytes truncated]"
    assert CappedBuffer(4).text() == ""


def test_a_long_line_without_newline_is_delivered_once_over_the_cap() -> None:
    capture = StreamCapture(cap=8)
    capture.begin("a")
    capture.feed(b"x" * 20)  # more than the cap without a newline: delivered, not held forever
    capture.feed(end("a"))
    assert capture.finish("a", wait=1).startswith("xxxxxxxx\n[... 12 more bytes truncated]")
