// TS SDK 1.32.2, Client + StreamableHTTPClientTransport, against `comfyui-agent serve` at /mcp,
// without a token and with one (sent through requestInit.headers, which this SDK version
// adds to every POST, GET and DELETE it makes).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { CHECKS, TOKEN, checkHandshake, connect, startHttpServer } from './helpers.mjs';

for (const withToken of [false, true]) {
    describe(`ts-sdk streamable-http${withToken ? ' +token' : ''}`, () => {
        let server;
        before(async () => {
            server = await startHttpServer({ token: withToken ? TOKEN : undefined });
        });
        after(() => server?.stop());

        const transport = () =>
            new StreamableHTTPClientTransport(new URL(`${server.base}/mcp`), { requestInit: { headers: server.headers } });

        async function withClient(body) {
            const client = await connect(transport());
            try {
                await body(client);
            } finally {
                await client.close();
            }
        }

        it('initializes (2025-11-25) with a session id, answers ping, ends the session', async () => {
            const t = transport();
            const client = await connect(t);
            try {
                checkHandshake(client);
                assert.ok(t.sessionId, 'Mcp-Session-Id issued');
                await client.ping();
                await t.terminateSession();
                assert.equal(t.sessionId, undefined);
            } finally {
                await client.close();
            }
        });

        for (const [name, check] of Object.entries(CHECKS)) {
            it(name, () => withClient(check));
        }

        if (withToken) {
            it('without the token: 401 StreamableHTTPError', async () => {
                const t = new StreamableHTTPClientTransport(new URL(`${server.base}/mcp`));
                await assert.rejects(connect(t), err => {
                    assert.ok(err instanceof StreamableHTTPError, `${err?.constructor?.name}: ${err}`);
                    assert.equal(err.code, 401);
                    return true;
                });
                await t.close();
            });

            it('with a wrong token: 401 StreamableHTTPError', async () => {
                const t = new StreamableHTTPClientTransport(new URL(`${server.base}/mcp`), {
                    requestInit: { headers: { Authorization: 'Bearer not-the-token' } },
                });
                await assert.rejects(connect(t), err => {
                    assert.ok(err instanceof StreamableHTTPError, `${err?.constructor?.name}: ${err}`);
                    assert.equal(err.code, 401);
                    return true;
                });
                await t.close();
            });
        }
    });
}
