"""Bearer-token protection as the Python SDK meets it (the token server runs `--token`).

The positive paths (the right token over Streamable HTTP, SSE and `mcp.Client`) are the
`+token` targets in test_sdk_python.py; this file pins the refusals.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import httpx2
import pytest
from mcp import Client, ClientSession, MCPError
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from conftest import exception_chain

pytestmark = pytest.mark.anyio

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "interop-raw", "version": "0"},
    },
}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def raw(method: str, url: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            # Streams (SSE) stay open: read just the status and headers.
            return resp.status, dict(resp.headers), b""
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def assert_unauthorized(status: int, headers: dict, body: bytes) -> None:
    assert status == 401, (status, body)
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered.get("www-authenticate", "").startswith("Bearer"), headers
    error = json.loads(body)["error"]
    assert "Bearer" in error["message"], error


def saw_401(exc: BaseException) -> bool:
    for e in exception_chain(exc):
        if isinstance(e, httpx2.HTTPStatusError) and e.response.status_code == 401:
            return True
        if isinstance(e, MCPError) and "Unauthorized" in str(e):
            return True
    return False


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic aW50ZXJvcA=="], ids=["none", "wrong", "basic"])
def test_http_post_without_valid_token_is_401(token_server, auth: str | None) -> None:
    headers = dict(MCP_HEADERS)
    if auth:
        headers["Authorization"] = auth
    assert_unauthorized(*raw("POST", f"{token_server.base}/mcp", headers, json.dumps(INIT).encode()))


def test_sse_get_without_token_is_401(token_server) -> None:
    assert_unauthorized(*raw("GET", f"{token_server.base}/sse", {"Accept": "text/event-stream"}))


def test_messages_post_without_token_is_401(token_server) -> None:
    assert_unauthorized(*raw("POST", f"{token_server.base}/messages?sessionId=x", MCP_HEADERS, b"{}"))


def test_health_needs_no_token(token_server) -> None:
    for path in ("/healthz", "/readyz"):
        status, _, _ = raw("GET", f"{token_server.base}{path}", {})
        assert status == 200, path


def test_http_post_with_token_initializes(token_server) -> None:
    headers = dict(MCP_HEADERS, **token_server.auth_headers)
    status, resp_headers, _ = raw("POST", f"{token_server.base}/mcp", headers, json.dumps(INIT).encode())
    assert status == 200
    assert any(k.lower() == "mcp-session-id" for k in resp_headers), resp_headers


async def test_sdk_streamable_http_without_token_fails(token_server) -> None:
    with pytest.raises(BaseException) as caught:
        async with streamable_http_client(f"{token_server.base}/mcp") as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
    assert saw_401(caught.value), repr(caught.value)


async def test_sdk_streamable_http_with_wrong_token_fails(token_server) -> None:
    with pytest.raises(BaseException) as caught:
        async with httpx2.AsyncClient(headers={"Authorization": "Bearer nope"}) as http:
            async with streamable_http_client(f"{token_server.base}/mcp", http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
    assert saw_401(caught.value), repr(caught.value)


async def test_sdk_sse_without_token_fails(token_server) -> None:
    with pytest.raises(BaseException) as caught:
        async with sse_client(f"{token_server.base}/sse") as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
    assert saw_401(caught.value), repr(caught.value)


async def test_sdk_client_without_token_fails(token_server) -> None:
    with pytest.raises(BaseException) as caught:
        async with Client(f"{token_server.base}/mcp"):
            pass
    assert saw_401(caught.value), repr(caught.value)
