"""The control worker's vantage point on a server: does its postmaster answer, within a bound.

Why not libpq's ``PQping``: its connect timeout cannot go under 2 s, and the failure detector
must judge a frozen server within a fraction of a second. A frozen host's kernel still
completes the TCP handshake, so a connect alone proves nothing; the postmaster itself must
answer. The probe sends PostgreSQL's ``SSLRequest`` (8 bytes, defined by the protocol for
exactly this opening exchange) and waits for the one-byte answer (``S`` or ``N``): no
authentication, no backend forked, nothing logged by the server.
"""

from __future__ import annotations

import socket
import struct

PROBE_TIMEOUT_S = 0.5
"""Longest wait for the answer: a live postmaster answers in well under a millisecond on a
quiet host and in tens of milliseconds on a busy one."""
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
"""Length 8, then the SSLRequest code (1234 << 16 | 5679)."""


def postmaster_answers(address: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the PostgreSQL postmaster at ``address:port`` answers an ``SSLRequest`` within
    ``timeout_s`` (a refused, reset or silent connection is ``False``)."""
    try:
        with socket.create_connection((address, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(_SSL_REQUEST)
            answer = sock.recv(1)
    except OSError:
        return False
    return answer in (b"S", b"N")
