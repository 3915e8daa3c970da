"""Run the sandbox in a background thread (tests, local end-to-end runs)."""

from __future__ import annotations

import os
import socket
import threading
import time
from types import TracebackType

import uvicorn

from crm_sandbox.app import create_app
from crm_sandbox.state import SandboxState


class SandboxServer:
    """A uvicorn server for the sandbox app on ``host:port`` (``port=0``: a free port).

    ``state_file`` is loaded at start (when it exists) and saved at :meth:`stop`.
    Use as a context manager, or call :meth:`start` / :meth:`stop`::

        with SandboxServer() as sandbox:
            requests.post(f"{sandbox.url}/_sandbox/accounts", json={...})
    """

    def __init__(
        self,
        port: int = 0,
        state_file: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        log_level: str = "warning",
    ) -> None:
        self.host = host
        self.port = port
        self.state = SandboxState.from_file(state_file)
        self.app = create_app(self.state)
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (HubSpot under ``/hubspot``, Salesforce ``/salesforce``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> SandboxServer:
        if self.running:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level=self._log_level, access_log=False, lifespan="off")
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"crm-sandbox-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError(f"CRM sandbox did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, *, save: bool = True, timeout: float = 10.0) -> None:
        """Stop serving; write the state file (if one was given) unless ``save`` is false."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
        self._server = self._thread = None
        if save and self.state.state_file is not None:
            self.state.save()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
