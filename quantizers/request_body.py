"""A large request body read into one buffer, straight from gunicorn's socket.

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


def _from_gunicorn_socket(request: HttpRequest) -> bytearray | None:
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
    request._read_started = True  # what HttpRequest.read() records: the stream is consumed
    buffer = bytearray(length)
    view = memoryview(buffer)
    ahead = reader.unreader.take_buffered()
    if len(ahead) > length:  # pipelined bytes of a next request: gunicorn's to keep
        reader.unreader.unread(ahead[length:])
        ahead = ahead[:length]
    view[: len(ahead)] = ahead
    received = len(ahead)
    reader.length = 0  # gunicorn will not read (or drain) the body again
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
