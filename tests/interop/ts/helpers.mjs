// Shared helpers for the TypeScript-SDK interop tests (run by ../run.sh with `node --test`).
//
// Every server is the product binary ($COMFYUI_AGENT_BIN) with a private data dir, a working
// directory with no .env, and a ComfyUI address where nothing listens.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, openSync, closeSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..', '..');
export const BIN = path.resolve(process.env.COMFYUI_AGENT_BIN || path.join(REPO, 'target', 'debug', 'comfyui-agent'));
export const TOKEN = 'interop-token-ts-51c9';
export const TOOLS = ['identify_model_family', 'check_model_compatibility'];
export const INVALID_PARAMS = -32602;

/** A loopback port that was free a moment ago (servers are retried on a clash). */
export function freePort() {
    return new Promise((resolve, reject) => {
        const srv = createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

/** A fresh scratch dir with an empty data/ inside; the caller removes it. */
export function scratch(prefix) {
    const dir = mkdtempSync(path.join(tmpdir(), `interop-ts-${prefix}-`));
    mkdirSync(path.join(dir, 'data'));
    return dir;
}

/** A minimal environment for the server: none of the caller's COMFYUI_* settings leak in. */
export async function serverEnv(dir, extra = {}) {
    const env = {};
    for (const key of ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TMPDIR']) {
        if (process.env[key] !== undefined) env[key] = process.env[key];
    }
    return {
        ...env,
        COMFYUI_AGENT_DATA_DIR: path.join(dir, 'data'),
        COMFYUI_URL: `http://127.0.0.1:${await freePort()}`,
        RUST_LOG: process.env.INTEROP_RUST_LOG || 'warn',
        ...extra,
    };
}

/** Stdio transport options for the product binary (stderr drained into `log`). */
export async function stdioParams(dir) {
    return { command: BIN, args: ['mcp'], env: await serverEnv(dir), cwd: dir, stderr: 'pipe' };
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

/**
 * Starts `comfyui-agent serve` on a free port; the token (if any) goes in through
 * COMFYUI_AGENT_TOKEN (the Python tests use the --token flag). Waits for /healthz.
 */
export async function startHttpServer({ token } = {}) {
    const dir = scratch(token ? 'http-token' : 'http');
    const logPath = path.join(dir, 'server.log');
    let lastError = 'never started';
    for (let attempt = 0; attempt < 5; attempt++) {
        const port = await freePort();
        const env = await serverEnv(dir, token ? { COMFYUI_AGENT_TOKEN: token } : {});
        const log = openSync(logPath, 'a');
        const child = spawn(BIN, ['serve', '--bind', `127.0.0.1:${port}`], {
            env,
            cwd: dir,
            stdio: ['ignore', log, log],
        });
        closeSync(log);
        let exited = null;
        child.on('exit', code => {
            exited = code ?? -1;
        });
        const base = `http://127.0.0.1:${port}`;
        const deadline = Date.now() + 15_000;
        while (Date.now() < deadline && exited === null) {
            try {
                const res = await fetch(`${base}/healthz`);
                if (res.ok && (await res.json()).status === 'ok') {
                    return {
                        base,
                        port,
                        token,
                        logPath,
                        headers: token ? { Authorization: `Bearer ${token}` } : {},
                        async stop() {
                            await stopChild(child, () => exited !== null);
                            rmSync(dir, { recursive: true, force: true });
                        },
                    };
                }
            } catch (e) {
                lastError = String(e);
            }
            await sleep(50);
        }
        if (exited !== null) lastError = `exited with ${exited} (port ${port} taken?)`;
        await stopChild(child, () => exited !== null);
    }
    throw new Error(`server did not become healthy: ${lastError}; log: ${logPath}`);
}

async function stopChild(child, hasExited) {
    if (hasExited()) return;
    const gone = new Promise(r => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
}

/**
 * Connects a fresh SDK client over `transport`. The negotiated protocol version (which the
 * Client hands to the transport after initialize) is kept in `client.negotiatedVersion`.
 */
export async function connect(transport) {
    const client = new Client({ name: 'comfyui-agent-interop-ts', version: '0.0.0' });
    const setVersion = transport.setProtocolVersion?.bind(transport);
    transport.setProtocolVersion = version => {
        client.negotiatedVersion = version;
        setVersion?.(version);
    };
    await client.connect(transport);
    return client;
}

/** Text of all text blocks of a tool result. */
export function textOf(result) {
    return result.content.filter(b => b.type === 'text').map(b => b.text).join('\n');
}

// --- the checks every transport runs --------------------------------------------------------

export function checkHandshake(client) {
    assert.equal(client.negotiatedVersion, '2025-11-25');
    const info = client.getServerVersion();
    assert.equal(info?.name, 'comfyui-agent');
    assert.ok(client.getServerCapabilities()?.tools, 'tools capability advertised');
}

export async function checkToolsListed(client) {
    const { tools } = await client.listTools();
    const byName = new Map(tools.map(t => [t.name, t]));
    for (const name of TOOLS) {
        const tool = byName.get(name);
        assert.ok(tool, `tool ${name} listed`);
        assert.equal(tool.inputSchema.type, 'object');
        assert.equal(tool.inputSchema.additionalProperties, false, `${name}: additionalProperties`);
    }
    const identify = byName.get('identify_model_family');
    assert.deepEqual(identify.inputSchema.required, ['model_name']);
    assert.equal(identify.inputSchema.properties.model_name.type, 'string');
    assert.equal(identify.outputSchema?.type, 'object');
    const check = byName.get('check_model_compatibility');
    for (const p of ['models', 'workflow_path', 'workflow']) assert.ok(p in check.inputSchema.properties, p);
}

export async function checkIdentifySdxl(client) {
    // Listing first gives the SDK the output schema; callTool then validates
    // structuredContent against it (and throws if it doesn't fit).
    await client.listTools();
    assert.equal(typeof client.getToolOutputValidator?.('identify_model_family'), 'function',
        'the SDK compiled a validator for the output schema');
    const result = await client.callTool({ name: 'identify_model_family', arguments: { model_name: 'sdxl_base.safetensors' } });
    assert.notEqual(result.isError, true, textOf(result));
    assert.equal(result.structuredContent.family, 'sdxl');
    assert.deepEqual(JSON.parse(textOf(result)), result.structuredContent);
}

export async function checkBadArguments(client) {
    await client.listTools();
    const result = await client.callTool({ name: 'identify_model_family', arguments: { model_name: 5, bogus_key: true } });
    assert.equal(result.isError, true);
    const text = textOf(result);
    assert.match(text, /model_name/);
    assert.match(text, /string/);
    assert.match(text, /bogus_key/);
}

export async function checkNothingToCheck(client) {
    await client.listTools();
    const result = await client.callTool({ name: 'check_model_compatibility', arguments: {} });
    assert.equal(result.isError, true);
    assert.match(textOf(result), /No models to check\./);
}

export async function checkUnknownTool(client) {
    await assert.rejects(
        client.callTool({ name: 'no_such_tool', arguments: {} }),
        err => {
            assert.ok(err instanceof McpError, `McpError, got ${err?.constructor?.name}: ${err}`);
            assert.equal(err.code, INVALID_PARAMS);
            assert.match(err.message, /no_such_tool/);
            return true;
        },
    );
}

export async function checkResourcesPromptsCompletion(client) {
    const { resources } = await client.listResources();
    assert.ok(resources.some(r => r.uri === 'comfyui://knowledge/recipes'), JSON.stringify(resources));
    const page = await client.readResource({ uri: 'comfyui://knowledge/recipes' });
    assert.equal(page.contents[0].mimeType, 'text/markdown');
    const { resourceTemplates } = await client.listResourceTemplates();
    assert.ok(resourceTemplates.some(t => t.uriTemplate === 'comfyui://session/{session}/diff'));
    await assert.rejects(client.readResource({ uri: 'comfyui://nowhere' }), err => {
        assert.equal(err.code, -32002);
        return true;
    });
    const { prompts } = await client.listPrompts();
    assert.ok(prompts.some(p => p.name === 'debug_workflow'));
    const prompt = await client.getPrompt({ name: 'find_model_or_node', arguments: { need: 'a depth ControlNet' } });
    assert.match(prompt.messages[0].content.text, /a depth ControlNet/);
    const completed = await client.complete({
        ref: { type: 'ref/prompt', name: 'explain_workflow' },
        argument: { name: 'audience', value: 'b' },
    });
    assert.deepEqual(completed.completion.values, ['beginner']);
}

export const CHECKS = {
    'resources, prompts and completion': checkResourcesPromptsCompletion,
    'lists both tools with closed input schemas': checkToolsListed,
    'identify_model_family(sdxl_base.safetensors) is sdxl, output schema validated': checkIdentifySdxl,
    'bad arguments give isError listing every problem': checkBadArguments,
    'check_model_compatibility with nothing gives isError': checkNothingToCheck,
    'unknown tool is a -32602 McpError': checkUnknownTool,
};
