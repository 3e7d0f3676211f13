// TS SDK 1.32.2, Client + StdioClientTransport, against `comfyui-agent mcp`.

import { after, before, describe, it } from 'node:test';
import { rmSync } from 'node:fs';

import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

import { CHECKS, checkHandshake, connect, scratch, stdioParams } from './helpers.mjs';

describe('ts-sdk stdio', () => {
    let dir;
    before(() => {
        dir = scratch('stdio');
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    /** Runs `body` with a client on a fresh server process; shows its stderr on failure. */
    async function withClient(body) {
        const transport = new StdioClientTransport(await stdioParams(dir));
        const stderr = [];
        transport.stderr?.on('data', chunk => stderr.push(chunk));
        const client = await connect(transport);
        try {
            await body(client);
        } catch (error) {
            error.message += `\n--- server stderr ---\n${Buffer.concat(stderr).toString()}`;
            throw error;
        } finally {
            await client.close();
        }
    }

    it('initializes (2025-11-25) and answers ping', () =>
        withClient(async client => {
            checkHandshake(client);
            await client.ping();
        }));

    for (const [name, check] of Object.entries(CHECKS)) {
        it(name, () => withClient(check));
    }
});
