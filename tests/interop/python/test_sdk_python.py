"""The official Python MCP SDK (mcp 2.3.0) against the product binary.

Low level: `ClientSession` + `initialize()` over stdio, Streamable HTTP and legacy HTTP+SSE
(negotiates 2025-11-25). High level: `mcp.Client`, which probes `server/discover` and talks
2026-07-28 to rmcp, over stdio and Streamable HTTP. Every target runs the same checks.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import MCPError

from conftest import HIGHLEVEL, LOWLEVEL, TOOLS, high_client, lowlevel_session, text_of

pytestmark = pytest.mark.anyio

INVALID_PARAMS = -32602


# --- checks shared by both client levels -------------------------------------------------


async def check_tools_listed(api: Any) -> None:
    listed = await api.list_tools()
    tools = {tool.name: tool for tool in listed.tools}
    assert TOOLS <= tools.keys(), f"missing tools: {TOOLS - tools.keys()}"
    for name in TOOLS:
        schema = tools[name].input_schema
        assert schema.get("type") == "object", (name, schema)
        assert schema.get("additionalProperties") is False, (name, schema)
    identify = tools["identify_model_family"]
    assert identify.input_schema.get("required") == ["model_name"]
    assert identify.input_schema["properties"]["model_name"]["type"] == "string"
    assert identify.output_schema is not None and identify.output_schema.get("type") == "object"
    check = tools["check_model_compatibility"]
    assert {"models", "workflow_path", "workflow"} <= set(check.input_schema["properties"])
    assert not check.input_schema.get("required")


async def check_identify_sdxl(api: Any) -> None:
    await api.list_tools()  # so the SDK knows the output schema and validates against it
    result = await api.call_tool("identify_model_family", {"model_name": "sdxl_base.safetensors"})
    assert result.is_error is not True, text_of(result)
    assert isinstance(result.structured_content, dict)
    assert result.structured_content["family"] == "sdxl"
    # The same JSON as a text block, for clients that ignore structuredContent.
    assert json.loads(text_of(result)) == result.structured_content


async def check_bad_arguments(api: Any) -> None:
    result = await api.call_tool("identify_model_family", {"model_name": 5, "bogus_key": True})
    assert result.is_error is True
    text = text_of(result)
    # Both problems at once, so a model can fix them in one go.
    assert "model_name" in text and "string" in text, text
    assert "bogus_key" in text, text


async def check_nothing_to_check(api: Any) -> None:
    result = await api.call_tool("check_model_compatibility", {})
    assert result.is_error is True
    assert "No models to check." in text_of(result)


async def check_unknown_tool(api: Any) -> None:
    with pytest.raises(MCPError) as caught:
        await api.call_tool("no_such_tool", {})
    assert caught.value.code == INVALID_PARAMS, caught.value
    assert "no_such_tool" in str(caught.value)


CHECKS = {
    "list_tools": check_tools_listed,
    "identify_sdxl": check_identify_sdxl,
    "bad_arguments": check_bad_arguments,
    "nothing_to_check": check_nothing_to_check,
    "unknown_tool": check_unknown_tool,
}


# --- low level: ClientSession --------------------------------------------------------------


@pytest.mark.parametrize("target", LOWLEVEL)
async def test_lowlevel_initialize(target: str, request: pytest.FixtureRequest) -> None:
    async with lowlevel_session(target, request) as (session, init):
        assert init.protocol_version == "2025-11-25"
        assert init.server_info.name == "comfyui-agent"
        assert init.capabilities.tools is not None
        await session.send_ping()


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("target", LOWLEVEL)
async def test_lowlevel(target: str, check: str, request: pytest.FixtureRequest) -> None:
    async with lowlevel_session(target, request) as (session, _):
        await CHECKS[check](session)


# --- high level: mcp.Client ---------------------------------------------------------------


@pytest.mark.parametrize("target", HIGHLEVEL)
async def test_client_discover(target: str, request: pytest.FixtureRequest) -> None:
    async with high_client(target, request) as client:
        assert client.protocol_version == "2026-07-28"
        assert client.server_info is not None and client.server_info.name == "comfyui-agent"
        assert client.server_capabilities.tools is not None


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("target", HIGHLEVEL)
async def test_client(target: str, check: str, request: pytest.FixtureRequest) -> None:
    async with high_client(target, request) as client:
        await CHECKS[check](client)


async def test_client_legacy_mode_over_http(request: pytest.FixtureRequest, open_server) -> None:
    """`mode="legacy"` forces the initialize handshake on the high-level client too."""
    from mcp import Client

    async with Client(f"{open_server.base}/mcp", mode="legacy") as client:
        assert client.protocol_version == "2025-11-25"
        await check_identify_sdxl(client)
