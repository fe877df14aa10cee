"""quantizers/request_body.py: a large body read from gunicorn's socket, after what gunicorn read ahead: whole
(read_body) or streamed in pieces (stream_from_socket)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest
from django.core.handlers.wsgi import WSGIRequest
from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.unreader import SocketUnreader
from rest_framework.exceptions import ParseError

from quantizers.request_body import DIRECT_MIN_BYTES, read_body, stream_from_socket

LENGTH = DIRECT_MIN_BYTES + 123_457


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    server.settimeout(10)
    yield server, client
    server.close()
    client.close()


def send_later(sock: socket.socket, data: bytes, *, close: bool = False) -> threading.Thread:
    def run() -> None:
        sock.sendall(data)
        if close:
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def gunicorn_request(sock: socket.socket, ahead: bytes, length: int, content_type: str = "application/octet-stream"
                     ) -> tuple[WSGIRequest, Body]:
    """A Django request over a gunicorn body as gunicorn builds it, `ahead` read with the headers."""
    unreader = SocketUnreader(sock)
    unreader.unread(ahead)
    body = Body(LengthReader(unreader, length))
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "CONTENT_LENGTH": str(length), "wsgi.input": body,
               "gunicorn.socket": sock, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
               "CONTENT_TYPE": content_type}
    return WSGIRequest(environ), body


def not_through_wsgi_input(*args: object) -> bytes:
    raise AssertionError("read through wsgi.input")


def test_a_large_body_is_read_whole_after_what_gunicorn_read_ahead(pair, monkeypatch) -> None:
    server, client = pair
    payload = os.urandom(LENGTH)
    sender = send_later(client, payload[5000:] + b"NEXT REQUEST")
    monkeypatch.setattr(Body, "read", not_through_wsgi_input)  # (before Django's request takes Body.read)
    request, body = gunicorn_request(server, payload[:5000], LENGTH)
    got = read_body(request, request)
    sender.join()
    assert got == payload
    assert body.reader.length == 0  # gunicorn's reader knows the body is consumed
    assert request._read_started


def test_bytes_read_ahead_past_the_body_stay_with_gunicorn(pair, monkeypatch) -> None:
    server, _ = pair
    payload = os.urandom(LENGTH)
    monkeypatch.setattr(Body, "read", not_through_wsgi_input)
    request, body = gunicorn_request(server, payload + b"GET / HTTP/1.1\r\n", LENGTH)
    assert read_body(request, request) == payload
    assert body.reader.unreader.read() == b"GET / HTTP/1.1\r\n"


def test_a_body_shorter_than_its_content_length_is_a_parse_error(pair) -> None:
    server, client = pair
    sender = send_later(client, b"x" * (LENGTH - 10), close=True)
    request, _ = gunicorn_request(server, b"", LENGTH)
    with pytest.raises(ParseError, match=f"ended after {LENGTH - 10} of the {LENGTH} bytes"):
        read_body(request, request)
    sender.join()


def test_small_bodies_and_other_readers_go_through_wsgi_input(pair) -> None:
    server, _ = pair
    request, _ = gunicorn_request(server, b"small", 5)
    assert read_body(request, request) == b"small"
    unreader = SocketUnreader(server)
    unreader.unread(b"5\r\nhello\r\n0\r\n\r\n")
    chunked = WSGIRequest({"REQUEST_METHOD": "POST", "PATH_INFO": "/", "CONTENT_LENGTH": str(LENGTH),
                           "wsgi.input": Body(ChunkedReader(None, unreader)), "gunicorn.socket": server,
                           "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "wsgi.url_scheme": "http"})
    assert read_body(chunked, chunked) == b"hello"
    assert read_body(None, None) == b""


def test_a_non_blocking_socket_is_left_to_gunicorn(pair, monkeypatch) -> None:
    server, _ = pair
    server.setblocking(False)
    payload = os.urandom(LENGTH)
    read_through_gunicorn = []
    original = Body.read

    def counted(self: Body, size: int | None = None) -> bytes:
        read_through_gunicorn.append(size)
        return original(self, size)

    monkeypatch.setattr(Body, "read", counted)
    request, _ = gunicorn_request(server, payload, LENGTH)
    assert read_body(request, request) == payload
    assert read_through_gunicorn


def multipart(payload: bytes, boundary: str = "qs-boundary") -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"model.safetensors\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()


def test_a_streamed_multipart_body_is_parsed_from_the_socket(pair, monkeypatch, settings) -> None:
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # the file to a temporary file, as the jobs route's handler does
    server, client = pair
    payload = os.urandom(3 * LENGTH)
    body = multipart(payload)
    sender = send_later(client, body[7000:] + b"NEXT REQUEST")
    monkeypatch.setattr(Body, "read", not_through_wsgi_input)
    request, gunicorn_body = gunicorn_request(server, body[:7000], len(body),
                                              "multipart/form-data; boundary=qs-boundary")
    stream_from_socket(request)
    upload = request.FILES["file"]
    sender.join()
    assert upload.read() == payload
    assert gunicorn_body.reader.length == 0  # gunicorn's reader knows the body is consumed
    assert server.recv(64) == b"NEXT REQUEST"  # nothing past the body was read


def test_a_streamed_raw_body_reads_in_pieces_and_ends_where_the_body_ends(pair, monkeypatch) -> None:
    server, client = pair
    payload = os.urandom(LENGTH)
    sender = send_later(client, payload[3000:], close=True)
    monkeypatch.setattr(Body, "read", not_through_wsgi_input)
    request, _ = gunicorn_request(server, payload[:3000], LENGTH + 500)  # 500 bytes announced, never sent
    stream_from_socket(request)
    pieces = []
    while piece := request.read(1 << 16):
        assert len(piece) <= 1 << 16
        pieces.append(piece)
    sender.join()
    assert b"".join(pieces) == payload  # a short body ends the stream; the caller sees the short size


def test_small_or_chunked_bodies_stream_through_wsgi_input(pair) -> None:
    server, _ = pair
    request, _ = gunicorn_request(server, b"small", 5)
    stream_from_socket(request)
    assert request.read() == b"small"
    unreader = SocketUnreader(server)
    unreader.unread(b"5\r\nhello\r\n0\r\n\r\n")
    chunked = WSGIRequest({"REQUEST_METHOD": "POST", "PATH_INFO": "/", "CONTENT_LENGTH": str(LENGTH),
                           "wsgi.input": Body(ChunkedReader(None, unreader)), "gunicorn.socket": server,
                           "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "wsgi.url_scheme": "http"})
    stream_from_socket(chunked)
    assert chunked.read() == b"hello"
