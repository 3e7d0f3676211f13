// A small MCP client over Streamable HTTP, built on fetch: requests are POSTed to one
// endpoint, answers come back as JSON or as a server-sent event stream read from the fetch
// body (EventSource can't send an Authorization header, so it is never used). The token
// travels only in the Authorization header, never in a URL.

export const PROTOCOL_VERSION = '2025-11-25';

/** A failure with what the user should know: an HTTP refusal, a JSON-RPC error, or no answer. */
export class McpError extends Error {
  constructor(message, { status = 0, code = null, data = null, kind = 'protocol' } = {}) {
    super(message);
    this.name = 'McpError';
    this.status = status;
    this.code = code;
    this.data = data;
    this.kind = kind;
  }
}

/** Splits a server-sent event stream into events; yields each event's joined data lines. */
export async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  const take = function* (final) {
    for (;;) {
      const match = /\r\n\r\n|\n\n|\r\r/.exec(buffer);
      if (!match) break;
      const block = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      const data = parseBlock(block);
      if (data !== null) yield data;
    }
    if (final && buffer.trim() !== '') {
      const data = parseBlock(buffer);
      buffer = '';
      if (data !== null) yield data;
    }
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      yield* take(false);
    }
    buffer += decoder.decode();
    yield* take(true);
  } finally {
    reader.releaseLock();
  }
}

function parseBlock(block) {
  const data = [];
  for (const line of block.split(/\r\n|\n|\r/)) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
  }
  const joined = data.join('\n');
  return joined.trim() === '' ? null : joined;
}

export class McpClient {
  /**
   * @param {string} url the MCP endpoint, e.g. http://127.0.0.1:8765/mcp
   * @param {string} token the bearer token, or '' for none
   */
  constructor(url, token) {
    this.url = url;
    this.token = token;
    this.sessionId = null;
    this.protocolVersion = null;
    this.nextId = 1;
  }

  headers() {
    const headers = {
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
    };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (this.sessionId) headers['Mcp-Session-Id'] = this.sessionId;
    if (this.protocolVersion) headers['MCP-Protocol-Version'] = this.protocolVersion;
    return headers;
  }

  async post(message, signal) {
    let response;
    try {
      response = await fetch(this.url, {
        method: 'POST',
        headers: this.headers(),
        body: JSON.stringify(message),
        signal,
        cache: 'no-store',
      });
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      throw new McpError(
        `Could not reach ${this.url} (${error.message}). Is the server running there, and ` +
          `does it allow this page's origin (${location.origin})? Other origins must be listed ` +
          'in COMFYUI_AGENT_ALLOWED_ORIGINS.',
        { kind: 'network' },
      );
    }
    const session = response.headers.get('Mcp-Session-Id');
    if (session) this.sessionId = session;
    if (!response.ok) {
      let message = '';
      try {
        const body = await response.json();
        message = body?.error?.message ?? '';
      } catch {
        // Not JSON: the status says enough.
      }
      if (!message && response.status === 404 && this.sessionId) {
        message = 'The server no longer knows this session (it restarted, or the session expired). Connect again.';
      }
      throw new McpError(message || `The server answered HTTP ${response.status}.`, {
        status: response.status,
        kind: response.status === 401 ? 'auth' : 'http',
      });
    }
    return response;
  }

  /**
   * Sends a request and waits for its answer. Notifications that arrive on the answer's
   * stream (progress, log messages) go to `onNotification` as they come.
   */
  async request(method, params, { onNotification = () => {}, signal } = {}) {
    const id = this.nextId++;
    const message = { jsonrpc: '2.0', id, method };
    if (params !== undefined) message.params = params;
    const response = await this.post(message, signal);
    const type = response.headers.get('Content-Type') ?? '';
    let reply = null;
    if (type.includes('text/event-stream')) {
      for await (const data of sseEvents(response.body)) {
        let parsed;
        try {
          parsed = JSON.parse(data);
        } catch {
          continue;
        }
        for (const item of Array.isArray(parsed) ? parsed : [parsed]) {
          if (item.id === id && ('result' in item || 'error' in item)) {
            reply = item;
          } else if (item.method && item.id === undefined) {
            onNotification(item);
          }
        }
        if (reply) break;
      }
    } else {
      reply = await response.json();
    }
    if (!reply) {
      throw new McpError(`The server closed the stream before answering ${method}.`);
    }
    if (reply.error) {
      throw new McpError(reply.error.message ?? `${method} failed`, {
        code: reply.error.code,
        data: reply.error.data ?? null,
      });
    }
    return reply.result;
  }

  async notify(method, params) {
    const message = { jsonrpc: '2.0', method };
    if (params !== undefined) message.params = params;
    const response = await this.post(message);
    // 202 Accepted has no body; drain anything else so the connection is reused.
    await response.body?.cancel();
  }

  /** initialize + notifications/initialized; returns the server's initialize result. */
  async connect() {
    const result = await this.request('initialize', {
      protocolVersion: PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: { name: 'comfyui-agent-console', version: '1' },
    });
    this.protocolVersion = result.protocolVersion;
    await this.notify('notifications/initialized');
    return result;
  }

  async listTools() {
    const tools = [];
    let cursor;
    do {
      const page = await this.request('tools/list', cursor ? { cursor } : {});
      tools.push(...(page.tools ?? []));
      cursor = page.nextCursor;
    } while (cursor);
    return tools;
  }

  /**
   * Calls a tool with a progress token, reporting `notifications/progress` for it (and any
   * other notification) through `onNotification`. Abort `signal` to cancel the call.
   */
  async callTool(name, args, { onNotification, signal } = {}) {
    const progressToken = `console-${this.nextId}`;
    const id = this.nextId;
    const cancel = () => {
      this.notify('notifications/cancelled', {
        requestId: id,
        reason: 'Cancelled from the console',
      }).catch(() => {});
    };
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      return await this.request(
        'tools/call',
        { name, arguments: args, _meta: { progressToken } },
        { onNotification, signal },
      );
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
  }

  /** Ends the session on the server (best effort). */
  async close() {
    if (!this.sessionId) return;
    const headers = this.headers();
    this.sessionId = null;
    try {
      await fetch(this.url, { method: 'DELETE', headers, keepalive: true });
    } catch {
      // The server may already be gone.
    }
  }
}
