"""A loopback TCP proxy that can be taken down and brought back on the same port.

Models an outage as a client sees it: while down, new connections are refused and open ones (watch
streams, uploads) are cut; once up again, the same address answers. Point a kubeconfig (or
``AWS_ENDPOINT_URL``) at ``proxy.url`` instead of the server's. ``cut_after``/``down_after`` make it
happen in the middle of a transfer: once the bytes sent upstream pass a mark, the open connections are
cut (once, still listening) or the proxy goes down.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from types import TracebackType
from typing import Self


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.bytes_up = 0
        """Bytes forwarded from clients to the server so far."""
        self.cuts = 0
        """How many times :meth:`cut_after` cut the open connections."""
        self._cut_at: int | None = None
        self._down_at: int | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        self.up()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def up(self) -> None:
        """Listen again (on the same port)."""
        self._call(self._start())

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._call(self._stop())

    def cut_after(self, nbytes: int) -> None:
        """Once ``bytes_up`` reaches ``nbytes``: cut every open connection once, keep listening."""
        self._cut_at = nbytes

    def down_after(self, nbytes: int) -> None:
        """Once ``bytes_up`` reaches ``nbytes``: go down (until :meth:`up`)."""
        self._down_at = nbytes

    async def _sent(self, count: int) -> None:
        self.bytes_up += count
        if self._cut_at is not None and self.bytes_up >= self._cut_at:
            self._cut_at = None
            self.cuts += 1
            for writer in list(self._writers):
                writer.close()
            self._writers.clear()
        if self._down_at is not None and self.bytes_up >= self._down_at:
            self._down_at = None
            await self._stop()

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if dst.is_closing():
                        break
                    dst.write(data)
                    await dst.drain()
                    if upstream:
                        await self._sent(len(data))
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self._writers -= {writer, up_writer}
