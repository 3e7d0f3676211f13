// TS SDK 1.32.2, Client + SSEClientTransport (legacy HTTP+SSE: GET /sse, POST /messages),
// without a token and with one.
//
// Headers in this SDK version: SSEClientTransport builds the headers of both the EventSource
// GET and every POST from `requestInit.headers` (see `_commonHeaders` in
// dist/esm/client/sse.js), and wraps any `eventSourceInit.fetch` with them, so
// `requestInit.headers` alone carries the token to both requests.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { SSEClientTransport, SseError } from '@modelcontextprotocol/sdk/client/sse.js';

import { CHECKS, TOKEN, checkHandshake, connect, startHttpServer } from './helpers.mjs';

for (const withToken of [false, true]) {
    describe(`ts-sdk sse${withToken ? ' +token' : ''}`, () => {
        let server;
        before(async () => {
            server = await startHttpServer({ token: withToken ? TOKEN : undefined });
        });
        after(() => server?.stop());

        const transport = () => new SSEClientTransport(new URL(`${server.base}/sse`), { requestInit: { headers: server.headers } });

        async function withClient(body) {
            const client = await connect(transport());
            try {
                await body(client);
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

        if (withToken) {
            it('without the token: the stream is refused with 401', async () => {
                const t = new SSEClientTransport(new URL(`${server.base}/sse`));
                await assert.rejects(connect(t), err => {
                    assert.ok(err instanceof SseError, `${err?.constructor?.name}: ${err}`);
                    assert.equal(err.code, 401);
                    return true;
                });
                await t.close();
            });

            it('a POST to /messages without the token is 401 even for a live session', async () => {
                // Learn a real session id from an authorized stream, then post without the token.
                const t = transport();
                const client = await connect(t);
                try {
                    const endpoint = t._endpoint;
                    assert.ok(endpoint instanceof URL && endpoint.searchParams.get('sessionId'), `endpoint: ${endpoint}`);
                    const res = await fetch(endpoint, {
                        method: 'POST',
                        headers: { 'content-type': 'application/json' },
                        body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'ping' }),
                    });
                    assert.equal(res.status, 401);
                    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
                } finally {
                    await client.close();
                }
            });
        }
    });
}
