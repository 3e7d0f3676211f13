"""Shared helpers for the Python-SDK interop tests.

Every server these tests talk to is the product binary (``$COMFYUI_AGENT_BIN``), started
with a private data dir, a working directory with no ``.env``, and a ComfyUI address where
nothing listens, so nothing here depends on a real ComfyUI or on the caller's settings.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import httpx2
import pytest
from mcp import Client, ClientSession, StdioServerParameters, stdio_client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

REPO = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("COMFYUI_AGENT_BIN") or REPO / "target" / "debug" / "comfyui-agent").resolve()
TOKEN = "interop-token-py-7f3a"

# Both tools the product offers today; the lists may grow, so tests check inclusion.
TOOLS = {"identify_model_family", "check_model_compatibility"}

HEALTH_TIMEOUT_S = 15.0


def free_port() -> int:
    """A loopback port that was free a moment ago (the server is retried on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A port nobody listens on, for COMFYUI_URL: any ComfyUI call fails fast."""
    return free_port()


def server_env(data_dir: Path) -> dict[str, str]:
    """A minimal environment: none of the caller's COMFYUI_* / token settings leak in."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
    env.update(
        COMFYUI_AGENT_DATA_DIR=str(data_dir),
        COMFYUI_URL=f"http://127.0.0.1:{closed_port()}",
        RUST_LOG=os.environ.get("INTEROP_RUST_LOG", "warn"),
    )
    return env


class HttpServer:
    """`comfyui-agent serve` on a free loopback port, started and stopped by a fixture."""

    def __init__(self, workdir: Path, token: str | None) -> None:
        self.workdir = workdir
        self.token = token
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self) -> "HttpServer":
        data_dir = self.workdir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = server_env(data_dir)
        last_error = "never started"
        for _ in range(5):
            self.port = free_port()
            args = [str(BIN), "serve", "--bind", f"127.0.0.1:{self.port}"]
            if self.token:
                args += ["--token", self.token]
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                args, env=env, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
            log.close()
            ok, last_error = self._wait_healthy()
            if ok:
                return self
            self.stop()
        raise RuntimeError(f"server did not become healthy: {last_error}; log: {self.log_path}")

    def _wait_healthy(self) -> tuple[bool, str]:
        assert self.proc is not None
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        error = "timed out"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False, f"exited with {self.proc.returncode} (port {self.port} taken?)"
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1) as resp:
                    if resp.status == 200 and json.load(resp).get("status") == "ok":
                        return True, ""
            except (OSError, urllib.error.URLError, ValueError) as e:
                error = repr(e)
            time.sleep(0.05)
        return False, error

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def open_server(tmp_path_factory: pytest.TempPathFactory):
    server = HttpServer(tmp_path_factory.mktemp("http-open"), token=None).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory):
    server = HttpServer(tmp_path_factory.mktemp("http-token"), token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def stdio_params(tmp_path: Path) -> StdioServerParameters:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return StdioServerParameters(command=str(BIN), args=["mcp"], env=server_env(data_dir), cwd=str(tmp_path))


# --- connections -------------------------------------------------------------------------

# Low-level `ClientSession` targets (initialize handshake, legacy era) and high-level
# `mcp.Client` targets (server/discover, 2026-07-28 against rmcp).
LOWLEVEL = ["stdio", "http", "sse", "http+token", "sse+token"]
HIGHLEVEL = ["stdio", "http", "http+token"]


@asynccontextmanager
async def lowlevel_session(target: str, request: pytest.FixtureRequest) -> AsyncIterator[tuple[ClientSession, Any]]:
    """An initialized low-level session over `target`; yields (session, InitializeResult)."""
    transport, _, auth = target.partition("+")
    if transport == "stdio":
        params: StdioServerParameters = request.getfixturevalue("stdio_params")
        with open(Path(params.cwd) / "stdio-server.log", "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    yield session, await session.initialize()
        return
    server: HttpServer = request.getfixturevalue("token_server" if auth else "open_server")
    if transport == "http":
        async with httpx2.AsyncClient(headers=server.auth_headers, timeout=30) as http:
            async with streamable_http_client(f"{server.base}/mcp", http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    yield session, await session.initialize()
    elif transport == "sse":
        async with sse_client(f"{server.base}/sse", headers=server.auth_headers) as (read, write):
            async with ClientSession(read, write) as session:
                yield session, await session.initialize()
    else:
        raise ValueError(target)


@asynccontextmanager
async def high_client(target: str, request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    """A connected high-level `mcp.Client` over `target` (mode auto: discover first)."""
    transport, _, auth = target.partition("+")
    if transport == "stdio":
        params: StdioServerParameters = request.getfixturevalue("stdio_params")
        with open(Path(params.cwd) / "stdio-server.log", "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                yield client
        return
    server: HttpServer = request.getfixturevalue("token_server" if auth else "open_server")
    if not auth:
        # The plain URL form, as a user would write it.
        async with Client(f"{server.base}/mcp") as client:
            yield client
        return
    async with httpx2.AsyncClient(headers=server.auth_headers, timeout=30) as http:
        async with Client(streamable_http_client(f"{server.base}/mcp", http_client=http)) as client:
            yield client


def exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc`, its causes/contexts and the members of any exception groups, flattened."""
    seen: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        stack.extend(getattr(e, "exceptions", ()) or ())
        stack.extend([e.__cause__, e.__context__])
    return seen


def text_of(result: Any) -> str:
    """All text blocks of a CallToolResult, joined."""
    return "\n".join(block.text for block in result.content if getattr(block, "type", None) == "text")
