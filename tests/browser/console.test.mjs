// The web console and CORS in a real browser: headless Chromium (the system's, never a
// downloaded one) driven by playwright-core, against `comfyui-agent serve` on loopback with a
// token. ComfyUI is absent: tools that need it answer with friendly errors, which is fine.
//
// Two more origins come from one small node HTTP server, reached through names Chromium maps
// to 127.0.0.1: studio.test (on the agent's allow-list) and evil.test (not on it). Loopback
// names (localhost, 127.0.0.1) are allowed by default, so the refused page needs another name.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, rmSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(here, '..', '..');
const BIN = path.resolve(process.env.COMFYUI_AGENT_BIN || path.join(REPO, 'target', 'debug', 'comfyui-agent'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(here, 'artifacts');
const TOKEN = 'browser-test-token-8d2f6a';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** `comfyui-agent serve` on a free loopback port, in a scratch dir with no .env. */
async function startAgent(extraEnv) {
  const dir = mkdtempSync(path.join(tmpdir(), 'browser-agent-'));
  mkdirSync(path.join(dir, 'data'));
  const logPath = path.join(dir, 'server.log');
  const base = {};
  for (const key of ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TMPDIR']) {
    if (process.env[key] !== undefined) base[key] = process.env[key];
  }
  let lastError = 'never started';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const env = {
      ...base,
      COMFYUI_AGENT_DATA_DIR: path.join(dir, 'data'),
      COMFYUI_URL: `http://127.0.0.1:${await freePort()}`,
      COMFYUI_AGENT_OFFLINE: '1',
      RUST_LOG: process.env.BROWSER_RUST_LOG || 'warn',
      ...extraEnv,
    };
    const log = openSync(logPath, 'a');
    const child = spawn(BIN, ['serve', '--bind', `127.0.0.1:${port}`], { env, cwd: dir, stdio: ['ignore', log, log] });
    closeSync(log);
    let exited = null;
    child.on('exit', (code) => {
      exited = code ?? -1;
    });
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && exited === null) {
      try {
        const response = await fetch(`${url}/healthz`);
        if (response.ok) {
          return {
            url,
            logPath,
            async stop() {
              if (exited === null) {
                const gone = new Promise((resolve) => child.once('exit', resolve));
                child.kill('SIGTERM');
                const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
                await gone;
                clearTimeout(timer);
              }
              rmSync(dir, { recursive: true, force: true });
            },
          };
        }
      } catch (error) {
        lastError = String(error);
      }
      await sleep(50);
    }
    if (exited !== null) lastError = `exited with ${exited}: ${readFileSync(logPath, 'utf8').slice(-2000)}`;
    if (exited === null) child.kill('SIGKILL');
  }
  throw new Error(`the agent did not start: ${lastError}`);
}

/** A plain page for the other origins; the tests run their fetches in its context. */
async function startPageServer() {
  const server = createHttpServer((request, response) => {
    response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    response.end('<!doctype html><title>another site</title><p>another site</p>');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: server.address().port, close: () => new Promise((resolve) => server.close(resolve)) };
}

/** initialize + tools/list without a browser: what the console must show. */
async function toolsFromServer(url) {
  const headers = {
    Authorization: `Bearer ${TOKEN}`,
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
  };
  const init = await fetch(`${url}/mcp`, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'browser-test', version: '0' } },
    }),
  });
  assert.equal(init.status, 200);
  const session = init.headers.get('mcp-session-id');
  await init.text();
  const sessionHeaders = { ...headers, 'Mcp-Session-Id': session, 'MCP-Protocol-Version': '2025-06-18' };
  const initialized = await fetch(`${url}/mcp`, {
    method: 'POST',
    headers: sessionHeaders,
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  });
  await initialized.text();
  const list = await fetch(`${url}/mcp`, {
    method: 'POST',
    headers: sessionHeaders,
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} }),
  });
  const text = await list.text();
  const data = text
    .split('\n')
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).trim())
    .filter(Boolean);
  const reply = JSON.parse(data.length ? data.at(-1) : text);
  await fetch(`${url}/mcp`, { method: 'DELETE', headers: sessionHeaders });
  return reply.result.tools;
}

let agent;
let pages;
let browser;
let studioOrigin;
let evilOrigin;

before(async () => {
  pages = await startPageServer();
  studioOrigin = `http://studio.test:${pages.port}`;
  evilOrigin = `http://evil.test:${pages.port}`;
  agent = await startAgent({ COMFYUI_AGENT_TOKEN: TOKEN, COMFYUI_AGENT_ALLOWED_ORIGINS: studioOrigin });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--host-resolver-rules=MAP studio.test 127.0.0.1, MAP evil.test 127.0.0.1', '--no-proxy-server'],
  });
});

after(async () => {
  await browser?.close();
  await agent?.stop();
  await pages?.close();
});

/** A fresh page that fails the test on any script error or CSP violation. */
async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !/401|Unauthorized|Failed to load resource/.test(message.text())) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  return { page, context, problems };
}

async function connectConsole(page, token) {
  await page.goto(`${agent.url}/`);
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.inputValue('#url'), `${agent.url}/mcp`, 'the URL defaults to this server');
  await page.fill('#token', token);
  await page.click('#connect');
}

test('the console page is served with a strict security policy', async () => {
  const response = await fetch(`${agent.url}/`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /text\/html/);
  const policy = response.headers.get('content-security-policy');
  assert.match(policy, /default-src 'self'/);
  assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval/);
  assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
  const script = await fetch(`${agent.url}/console/app.js`);
  assert.match(script.headers.get('content-type'), /javascript/);
});

test('connects with the token, shows the server and lists every tool', async () => {
  const expected = await toolsFromServer(agent.url);
  assert.ok(expected.length > 10, `tools/list gave ${expected.length} tools`);
  const { page, context, problems } = await openPage();
  try {
    await connectConsole(page, TOKEN);
    await page.waitForSelector('#status.ok');
    assert.match(await page.textContent('#status'), /Connected/);
    await page.waitForFunction((n) => document.querySelectorAll('#tools button.tool').length === n, expected.length);
    assert.equal(await page.textContent('#tool-count'), String(expected.length));
    const shown = await page.$$eval('#tools button.tool', (buttons) => buttons.map((b) => b.dataset.tool));
    assert.deepEqual([...shown].sort(), expected.map((t) => t.name).sort());
    assert.match(await page.textContent('#server-info'), /comfyui-agent/);
    // ComfyUI is absent here: the status card says so instead of failing.
    await page.waitForFunction(() => !/Checking/.test(document.getElementById('comfy-status').textContent));
    assert.match(await page.textContent('#comfy-status'), /Not reachable/);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('calls a tool from its form and shows the result, then a screenshot', async () => {
  const { page, context, problems } = await openPage();
  try {
    await connectConsole(page, TOKEN);
    await page.click('#tools button[data-tool="identify_model_family"]');
    await page.fill('#arg-model_name', 'sdxl_base_1.0.safetensors');
    await page.click('#call');
    await page.waitForSelector('#result:not([hidden])');
    const result = await page.textContent('#result');
    assert.match(result, /"family": "sdxl"/);
    assert.equal(await page.getAttribute('#result', 'class'), 'result');
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(ARTIFACTS, 'console.png') });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-dark.png') });
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('bad input shows an error: a missing required field, then a wrong type', async () => {
  const { page, context, problems } = await openPage();
  try {
    await connectConsole(page, TOKEN);
    await page.click('#tools button[data-tool="identify_model_family"]');
    await page.click('#call');
    await page.waitForSelector('#result.error');
    assert.match(await page.textContent('#result'), /model_name/);

    await page.check('#raw-toggle');
    await page.fill('#raw-args', '{"model_name": 42}');
    await page.click('#call');
    await page.waitForFunction(() => /42|type|string/i.test(document.getElementById('result').textContent));
    assert.equal(await page.getAttribute('#result', 'class'), 'result error');

    await page.fill('#raw-args', '{"model_name": ');
    await page.click('#call');
    await page.waitForFunction(() => /not valid JSON/.test(document.getElementById('result').textContent));
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

// ComfyUI is absent, so the test answers this one tools/call itself, the way the server
// streams it: progress notifications for the call's progress token, then a result with an image.
test('progress streams live and images show inline (a replayed execute_with_progress answer)', async () => {
  const png =
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';
  const { page, context, problems } = await openPage();
  try {
    await page.route(`${agent.url}/mcp`, async (route) => {
      const request = route.request();
      const message = request.method() === 'POST' ? request.postDataJSON() : null;
      if (message?.method !== 'tools/call' || message.params?.name !== 'execute_with_progress') {
        return route.continue();
      }
      const token = message.params._meta?.progressToken;
      assert.ok(token, 'the console asks for progress');
      const event = (payload) => `event: message\ndata: ${JSON.stringify(payload)}\n\n`;
      const progress = (n, text) =>
        event({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: n, total: 30, message: text } });
      const result = {
        content: [{ type: 'image', data: png, mimeType: 'image/png' }],
        structuredContent: { status: 'complete', prompt_id: 'p-1' },
        isError: false,
      };
      await route.fulfill({
        status: 200,
        headers: { 'Content-Type': 'text/event-stream' },
        body: progress(12, 'KSampler: step 12/30') + progress(30, 'KSampler: step 30/30') + event({ jsonrpc: '2.0', id: message.id, result }),
      });
    });
    await connectConsole(page, TOKEN);
    await page.click('#tools button[data-tool="execute_with_progress"]');
    await page.evaluate(() => {
      window.progressSeen = [];
      new MutationObserver(() => window.progressSeen.push(document.getElementById('progress-text').textContent)).observe(
        document.getElementById('progress-text'),
        { childList: true, characterData: true, subtree: true },
      );
    });
    await page.click('#call');
    await page.waitForSelector('#result img');
    const seen = await page.evaluate(() => window.progressSeen);
    assert.ok(seen.some((text) => text.includes('12/30') && text.includes('KSampler: step 12/30')), JSON.stringify(seen));
    const src = await page.getAttribute('#result img', 'src');
    assert.equal(src, `data:image/png;base64,${png}`);
    assert.equal(await page.evaluate(() => document.querySelector('#result img').naturalWidth), 1, 'the image decoded');
    assert.match(await page.textContent('#result'), /"status": "complete"/);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('the health tab shows get_server_health and the metrics, fetched with the token', async () => {
  const { page, context, problems } = await openPage();
  try {
    await connectConsole(page, TOKEN);
    await page.waitForSelector('#status.ok');
    await page.click('#tab-health');
    await page.waitForSelector('#health pre');
    assert.match(await page.textContent('#health'), /uptime|tools|calls/i);
    await page.waitForFunction(() => !/Not loaded|Loading/.test(document.getElementById('metrics').textContent));
    const metrics = await page.textContent('#metrics');
    assert.doesNotMatch(metrics, /unavailable/, metrics);
    assert.match(metrics, /comfyui_agent_/);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('a wrong token is refused with a visible message', async () => {
  const { page, context } = await openPage();
  try {
    await connectConsole(page, 'not-the-token');
    await page.waitForSelector('#banner:not([hidden])');
    assert.match(await page.textContent('#banner'), /refused the token/);
    assert.match(await page.textContent('#status'), /Token refused/);
    assert.equal(await page.isHidden('#main'), true);
  } finally {
    await context.close();
  }
});

/** Runs a fetch to the agent's /mcp from a page at `origin`; reports what the page saw. */
async function fetchFrom(origin) {
  const { page, context } = await openPage();
  try {
    await page.goto(`${origin}/`);
    return await page.evaluate(
      async ({ url, token }) => {
        try {
          const response = await fetch(url, {
            method: 'POST',
            headers: {
              Authorization: `Bearer ${token}`,
              'Content-Type': 'application/json',
              Accept: 'application/json, text/event-stream',
            },
            body: JSON.stringify({
              jsonrpc: '2.0',
              id: 1,
              method: 'initialize',
              params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'page', version: '0' } },
            }),
          });
          const body = await response.text();
          return { ok: true, status: response.status, session: response.headers.get('Mcp-Session-Id'), body };
        } catch (error) {
          return { ok: false, error: String(error) };
        }
      },
      { url: `${agent.url}/mcp`, token: TOKEN },
    );
  } finally {
    await context.close();
  }
}

test('a page from an origin not on the allow-list is refused', async () => {
  const seen = await fetchFrom(evilOrigin);
  assert.equal(seen.ok, false, `the browser let the page read the answer: ${JSON.stringify(seen)}`);
  assert.match(seen.error, /Failed to fetch|TypeError/);
  // What the browser's preflight got: 403 and no CORS permission.
  const preflight = await fetch(`${agent.url}/mcp`, {
    method: 'OPTIONS',
    headers: { Origin: evilOrigin, 'Access-Control-Request-Method': 'POST' },
  });
  assert.equal(preflight.status, 403);
  assert.equal(preflight.headers.get('access-control-allow-origin'), null);
});

test('a page from an allowed origin connects and reads the session id', async () => {
  const seen = await fetchFrom(studioOrigin);
  assert.equal(seen.ok, true, JSON.stringify(seen));
  assert.equal(seen.status, 200);
  assert.ok(seen.session, 'Mcp-Session-Id is exposed to the page');
  assert.match(seen.body, /comfyui-agent/);
});
