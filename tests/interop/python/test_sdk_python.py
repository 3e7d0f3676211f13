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
RESOURCE_NOT_FOUND = -32002


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


async def check_resources(api: Any) -> None:
    listed = await api.list_resources()
    uris = {str(resource.uri) for resource in listed.resources}
    assert "comfyui://knowledge/comfyui-basics" in uris, uris
    assert "comfyui://outputs/recent" in uris, uris
    page = await api.read_resource("comfyui://knowledge/model-families")
    assert page.contents[0].mime_type == "text/markdown"
    assert page.contents[0].text.startswith("# ")
    templates = await api.list_resource_templates()
    assert "comfyui://nodes/{class}" in {t.uri_template for t in templates.resource_templates}
    with pytest.raises(MCPError) as caught:
        await api.read_resource("comfyui://nowhere")
    # -32002 on sessions from initialize; -32602 from 2026-07-28 on.
    assert caught.value.code in (RESOURCE_NOT_FOUND, INVALID_PARAMS), caught.value


async def check_prompts(api: Any) -> None:
    listed = await api.list_prompts()
    names = [prompt.name for prompt in listed.prompts]
    assert names[:2] == ["generate_image", "debug_workflow"], names
    got = await api.get_prompt("generate_image", {"description": "a lighthouse at dusk"})
    text = got.messages[0].content.text
    assert "a lighthouse at dusk" in text and "validate_workflow" in text, text
    with pytest.raises(MCPError) as caught:
        await api.get_prompt("generate_image", {})
    assert caught.value.code == INVALID_PARAMS


async def check_completion(api: Any) -> None:
    from mcp.types import PromptReference, ResourceTemplateReference

    goal = await api.complete(PromptReference(type="ref/prompt", name="optimize_for_gpu"), {"name": "goal", "value": "spe"})
    assert goal.completion.values == ["speed"], goal
    topics = await api.complete(
        ResourceTemplateReference(type="ref/resource", uri="comfyui://knowledge/{topic}"), {"name": "topic", "value": "trou"}
    )
    assert topics.completion.values == ["troubleshooting"], topics


CHECKS = {
    "list_tools": check_tools_listed,
    "resources": check_resources,
    "prompts": check_prompts,
    "completion": check_completion,
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


# --- consent through elicitation ------------------------------------------------------------


def tiny_png() -> bytes:
    """A valid 1x1 PNG, for upload_image to read."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def allowed_png(stdio_params: Any) -> Any:
    """A PNG in a folder the stdio server may read (added to its allowed roots)."""
    from pathlib import Path

    images = Path(stdio_params.cwd) / "images"
    images.mkdir()
    image = images / "fox.png"
    image.write_bytes(tiny_png())
    stdio_params.env["COMFYUI_AGENT_ALLOWED_ROOTS"] = str(images)
    return image


def answering(accept: bool, asked: list[str]):
    from mcp.types import ElicitResult

    async def callback(context: Any, params: Any) -> Any:
        asked.append(params.message)
        if accept:
            return ElicitResult(action="accept", content={"confirm": True})
        return ElicitResult(action="decline")

    return callback


@pytest.mark.parametrize("level", ["lowlevel", "client"])
@pytest.mark.parametrize("accept", [False, True])
async def test_consent_is_asked_through_elicitation(level: str, accept: bool, stdio_params) -> None:
    """Replacing an upload asks the user first: the low-level session answers a server
    request (2025-11-25); the high-level client answers an input_required result
    (2026-07-28) and retries. ComfyUI is not running, so a yes ends at "isn't answering"."""
    from mcp import ClientSession, Client, stdio_client

    image = allowed_png(stdio_params)
    asked: list[str] = []
    arguments = {"path": str(image), "overwrite": True}
    callback = answering(accept, asked)
    if level == "lowlevel":
        async with stdio_client(stdio_params) as (read, write):
            async with ClientSession(read, write, elicitation_callback=callback) as session:
                await session.initialize()
                result = await session.call_tool("upload_image", arguments)
    else:
        async with Client(stdio_client(stdio_params), elicitation_callback=callback) as client:
            assert client.protocol_version == "2026-07-28"
            result = await client.call_tool("upload_image", arguments)
    assert len(asked) == 1 and "Replace fox.png" in asked[0], (asked, text_of(result))
    assert result.is_error is True
    text = text_of(result)
    if accept:
        assert "You said no" not in text and "ComfyUI" in text, text
    else:
        assert "You said no" in text, text


# --- vision through the client's own model (sampling) ---------------------------------------

ANALYSIS = (
    '{"quality_score": 0.7, "artifacts": [], "composition": "balanced", '
    '"prompt_adherence": null, "strengths": ["colour"], "suggestions": ["more steps"]}'
)


@pytest.mark.parametrize("level", ["lowlevel", "client"])
async def test_vision_asks_the_clients_model(level: str, stdio_params) -> None:
    """analyze_image samples the client's model: a server request on 2025-11-25 (low level),
    an input_required result answered by mcp.Client on 2026-07-28 (high level)."""
    from mcp import ClientSession, Client, stdio_client
    from mcp.types import CreateMessageResult, TextContent

    image = allowed_png(stdio_params)
    seen: list[Any] = []

    async def sample(context: Any, params: Any) -> Any:
        seen.append(params)
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text=ANALYSIS), model="py-vision"
        )

    arguments = {"image_path": str(image)}
    if level == "lowlevel":
        async with stdio_client(stdio_params) as (read, write):
            async with ClientSession(read, write, sampling_callback=sample) as session:
                await session.initialize()
                result = await session.call_tool("analyze_image", arguments)
    else:
        async with Client(stdio_client(stdio_params), sampling_callback=sample) as client:
            assert client.protocol_version == "2026-07-28"
            result = await client.call_tool("analyze_image", arguments)
    assert result.is_error is not True, text_of(result)
    assert result.structured_content["via"] == "client_sampling"
    assert result.structured_content["model"] == "py-vision"
    assert result.structured_content["answer"]["quality_score"] == 0.7
    assert len(seen) == 1
    assert seen[0].messages[0].content[0].type == "image"
