"""A large request body read straight from gunicorn's socket: whole into one buffer (`read_body`, the array
routes), or in pieces through one reused buffer (`stream_from_socket`, the model upload, streamed to a file).

gunicorn's `wsgi.input` reads the socket through its unreader: steps of at most 1 MiB, every received piece copied
into a BytesIO, out of it again and into the body's own buffer. Measured on loopback, 20 MB took ~35 ms of CPU and
~80 ms of wall time that way, ~11 ms and ~22 ms received with `recv_into` into one preallocated buffer, which is
what `read_body` does for a body of known length arriving at gunicorn's HTTP/1 reader: it takes the bytes gunicorn
has already read ahead with the headers, receives the rest into the same buffer, and marks gunicorn's reader
as consumed. Anything else -- a chunked body, a body already partly read, another server, Django's test client --
is read through `wsgi.input` as before.

The buffer is a bytearray (a copy into `bytes` would double the body's memory): orjson, `re`, numpy and bytes'
own methods take it as they take bytes.
"""

from __future__ import annotations

import io
from typing import Any

from django.http import HttpRequest
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader
from rest_framework.exceptions import ParseError

# The unreader's take_buffered() (what gunicorn read ahead, without reading more) is what makes this safe; a
# gunicorn without it keeps its own reads.
_SUPPORTED = hasattr(SocketUnreader, "take_buffered")

# Below this the unreader's copies cost next to nothing; a small request keeps the ordinary path.
DIRECT_MIN_BYTES = 1 << 20
# stream_from_socket's buffer (the multipart parser's lines); reads of more go straight to the socket.
STREAM_BUFFER = 64 * 1024
MSG_SHORT_BODY = "the request body ended after {received} of the {length} bytes its Content-Length announced"


def read_body(stream: Any, request: HttpRequest | None) -> bytes | bytearray:
    """The whole body of `request`, whose stream (DRF gives parsers the Django request itself) is `stream`."""
    if stream is None:
        return b""
    if request is not None and stream is request:
        direct = _from_gunicorn_socket(request)
        if direct is not None:
            return direct
    return stream.read()  # type: ignore[no-any-return]  # (Django's HttpRequest.read is untyped)


def _take_over_socket(request: HttpRequest) -> tuple[Any, bytes, int] | None:
    """For a body of known length (DIRECT_MIN_BYTES or more) arriving at gunicorn's HTTP/1 reader, untouched so
    far: gunicorn's socket, the body's bytes it already read ahead with the headers, and the body's length; its
    reader is told the body is consumed, so gunicorn reads (or drains) none of it again. Otherwise None."""
    environ = request.META
    body, sock = environ.get("wsgi.input"), environ.get("gunicorn.socket")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if (not _SUPPORTED or type(body) is not Body or type(body.reader) is not LengthReader or sock is None
            or type(body.reader.unreader) is not SocketUnreader or length < DIRECT_MIN_BYTES
            or request._read_started or body.reader.length != length or body.buf.tell()
            or sock.gettimeout() == 0.0):  # a non-blocking socket (an event loop's): gunicorn's own reads
        return None
    reader = body.reader
    ahead = reader.unreader.take_buffered()
    if len(ahead) > length:  # pipelined bytes of a next request: gunicorn's to keep
        reader.unreader.unread(ahead[length:])
        ahead = ahead[:length]
    reader.length = 0
    return sock, ahead, length


def _from_gunicorn_socket(request: HttpRequest) -> bytearray | None:
    taken = _take_over_socket(request)
    if taken is None:
        return None
    sock, ahead, length = taken
    request._read_started = True  # what HttpRequest.read() records: the stream is consumed
    buffer = bytearray(length)
    view = memoryview(buffer)
    view[: len(ahead)] = ahead
    received = len(ahead)
    try:
        while received < length:
            count = sock.recv_into(view[received:], length - received)
            if not count:
                break
            received += count
    except OSError:
        pass  # (a reset or a timeout) the body is short, as below
    finally:
        view.release()
    if received < length:
        raise ParseError(MSG_SHORT_BODY.format(received=received, length=length))
    return buffer


class _SocketBody(io.RawIOBase):
    """A body's bytes straight from gunicorn's socket (after those it read ahead), up to the body's length: a body
    that ends early ends here, as a closed connection does."""

    def __init__(self, sock: Any, ahead: bytes, length: int) -> None:
        self._sock = sock
        self._ahead = memoryview(ahead)
        self._remaining = length - len(ahead)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._ahead:
            count = min(len(buffer), len(self._ahead))
            buffer[:count] = self._ahead[:count]
            self._ahead = self._ahead[count:]
            return count
        want = min(len(buffer), self._remaining)
        if want <= 0:
            return 0
        try:
            count = self._sock.recv_into(buffer, want)
        except OSError:
            count = 0  # (a reset or a timeout) the body is short
        self._remaining = self._remaining - count if count else 0
        return count


def stream_from_socket(request: HttpRequest) -> None:
    """Make `request`'s body stream (Django reads the body through `_stream`) read straight from gunicorn's socket
    when it can (`_take_over_socket`), for the routes that stream a large body to a file (model checkpoints:
    Django's multipart parser, or a raw body's copy): each read is one `recv_into`, where gunicorn's reads gather
    each piece in a BytesIO and copy it twice. Measured, a 1 GiB upload's 1 MiB reads took the worker's resident
    set 7 MB up that way (the heap keeps the pieces' odd sizes), 2 MB this way, and the raw upload ran 2-2.5x
    faster. Otherwise it keeps `wsgi.input`."""
    taken = _take_over_socket(request)
    if taken is not None:
        request._stream = io.BufferedReader(_SocketBody(*taken), STREAM_BUFFER)  # type: ignore[attr-defined]
