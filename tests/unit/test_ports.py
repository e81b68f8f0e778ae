"""The tests' port helper: a server whose port is taken between the pick and its bind starts again on another
port; any other failure is not retried."""

from __future__ import annotations

import socket

import pytest

from support.ports import PortTakenError, free_port, start_on_free_port


def test_a_port_taken_before_the_server_binds_it_is_replaced() -> None:
    tried: list[int] = []
    with socket.socket() as thief:

        def start(port: int) -> socket.socket:
            tried.append(port)
            if len(tried) == 1:  # someone else binds it first
                thief.bind(("127.0.0.1", port))
                thief.listen()
            server = socket.socket()
            try:
                server.bind(("127.0.0.1", port))
            except OSError:
                server.close()
                raise
            return server

        with start_on_free_port(start) as server:
            assert len(tried) == 2 and tried[0] != tried[1]
            assert server.getsockname()[1] == tried[1]


def test_a_server_that_says_its_port_was_taken_is_retried_until_the_attempts_run_out() -> None:
    tried: list[int] = []

    def start(port: int) -> int:
        tried.append(port)
        raise PortTakenError(f"port {port}")

    with pytest.raises(PortTakenError, match="port "):
        start_on_free_port(start, attempts=3)
    assert len(tried) == len(set(tried)) == 3


def test_any_other_failure_is_not_retried() -> None:
    tried: list[int] = []

    def start(port: int) -> int:
        tried.append(port)
        raise OSError(13, "Permission denied")

    with pytest.raises(OSError, match="Permission denied"):
        start_on_free_port(start)
    assert len(tried) == 1


def test_no_port_is_handed_out_twice() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
