// The console's page logic: connect, list tools by family, build a form from each tool's
// input schema, call tools and show what they return (progress live, images inline), and
// show the server's health and metrics. Everything goes through MCP at the chosen endpoint.
// Text from the server is only ever set as text (never parsed as HTML).

import { McpClient, McpError } from './mcp.js';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'comfyui-agent-console.token';

const state = {
  client: null,
  tools: [],
  current: null,
  calling: null,
};

/** Creates an element; `attrs` keys starting with "on" become listeners, others attributes. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function pretty(value) {
  return JSON.stringify(value, null, 2);
}

function log(text, kind = 'info') {
  const time = new Date().toLocaleTimeString();
  $('log').prepend(el('li', { class: kind }, el('time', { text: time }), ' ', text));
}

function setStatus(text, kind) {
  const status = $('status');
  status.textContent = text;
  status.className = `pill ${kind ?? ''}`;
}

function showBanner(text) {
  const banner = $('banner');
  banner.textContent = text;
  banner.hidden = !text;
}

// --- families ------------------------------------------------------------------------------

/** Tool families, by name: the first rule that matches wins. */
const FAMILIES = [
  ['Vision', /^(analyze_image|compare_outputs|suggest_improvements|hash_compare_images)$/],
  ['Optimization', /^(profile_workflow|suggest_optimizations|check_tensorrt_status|apply_optimization)$/],
  ['Sub-tasks', /subtask/],
  ['ComfyUI & server', /^(get_all_nodes|get_node_info|get_history)$|comfyui|system|queue|gpu|health/],
  ['Install', /^(list_custom_nodes|list_models|get_models_summary|read_node_source|check_node_updates)$/],
  ['Memory', /plan|_step$|intent|iteration|outcome|learned|recommend|feedback|refine|demo|checkpoint$/],
  ['Discovery', /search|discover|download|install|civitai|hugging|registry|github|missing|trending|repo_releases/],
  ['Sessions', /session|^add_note$/],
  ['Images', /image_metadata|reconstruct_context/],
  ['Execution', /execut|output|upload_image|cancel|pipeline/],
  ['Workflows', /workflow|patch|_node|set_input|template|editable/],
  ['Models', /model|lora|checkpoint/],
];
/** The order families are listed in. */
const FAMILY_ORDER = ['ComfyUI & server', 'Install', 'Models', 'Workflows', 'Sessions', 'Memory', 'Execution', 'Images', 'Vision', 'Optimization', 'Sub-tasks', 'Discovery', 'Other'];

function familyOf(tool) {
  for (const [family, pattern] of FAMILIES) {
    if (pattern.test(tool.name)) return family;
  }
  return 'Other';
}

// --- connecting ----------------------------------------------------------------------------

async function connect(event) {
  event.preventDefault();
  await disconnect();
  const url = $('url').value.trim();
  const token = $('token').value.trim();
  if ($('remember').checked && token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  showBanner('');
  setStatus('Connecting…', 'busy');
  $('connect').disabled = true;
  const client = new McpClient(url, token);
  try {
    const info = await client.connect();
    state.client = client;
    showServer(info);
    setStatus('Connected', 'ok');
    log(`Connected to ${url} (session ${client.sessionId ?? 'none'})`);
    $('main').hidden = false;
    $('connect').hidden = true;
    $('disconnect').hidden = false;
    state.tools = await client.listTools();
    renderTools();
    log(`${state.tools.length} tools listed`);
    refreshComfy();
  } catch (error) {
    state.client = null;
    const message = explain(error);
    setStatus(error.kind === 'auth' ? 'Token refused' : 'Not connected', 'error');
    showBanner(message);
    log(message, 'error');
  } finally {
    $('connect').disabled = false;
  }
}

function explain(error) {
  if (error instanceof McpError && error.kind === 'auth') {
    return `The server refused the token: ${error.message}`;
  }
  return error.message ?? String(error);
}

async function disconnect() {
  if (state.calling) state.calling.abort();
  const client = state.client;
  state.client = null;
  state.current = null;
  if (client) {
    await client.close();
    log('Disconnected');
  }
  $('main').hidden = true;
  $('connect').hidden = false;
  $('disconnect').hidden = true;
  setStatus('Not connected', '');
}

function showServer(info) {
  const server = info.serverInfo ?? {};
  const rows = [
    ['Name', server.name],
    ...(server.title ? [['Title', server.title]] : []),
    ['Version', server.version],
    ['Protocol', info.protocolVersion],
    ['Session', state.client?.sessionId ?? '(none)'],
  ];
  $('server-info').replaceChildren(
    ...rows.flatMap(([key, value]) => [el('dt', { text: key }), el('dd', { text: value ?? '' })]),
  );
  const instructions = info.instructions ?? '';
  $('instructions').textContent = instructions;
  $('instructions-box').hidden = !instructions;
}

async function refreshComfy() {
  const box = $('comfy-status');
  box.textContent = 'Checking…';
  box.className = 'muted';
  try {
    const result = await state.client.callTool('is_comfyui_running', {});
    const status = result.structuredContent ?? {};
    const rows = [];
    if (status.running) {
      rows.push(el('div', { class: 'ok' }, '● Running'));
      if (status.comfyui_version) rows.push(el('div', { text: `Version ${status.comfyui_version}` }));
      if (status.gpu) rows.push(el('div', { text: status.gpu }));
    } else {
      rows.push(el('div', { class: 'bad' }, '● Not reachable'));
      if (status.error) rows.push(el('div', { class: 'small', text: status.error }));
    }
    if (status.url) rows.push(el('div', { class: 'muted small', text: status.url }));
    box.className = '';
    box.replaceChildren(...rows);
  } catch (error) {
    box.className = 'bad small';
    box.textContent = explain(error);
  }
}

// --- the tool list -------------------------------------------------------------------------

function renderTools() {
  const filter = $('tool-filter').value.trim().toLowerCase();
  const groups = new Map();
  for (const tool of state.tools) {
    const text = `${tool.name} ${tool.title ?? ''} ${tool.description ?? ''}`.toLowerCase();
    if (filter && !text.includes(filter)) continue;
    const family = familyOf(tool);
    if (!groups.has(family)) groups.set(family, []);
    groups.get(family).push(tool);
  }
  $('tool-count').textContent = String(state.tools.length);
  const sections = FAMILY_ORDER
    .filter((family) => groups.has(family))
    .map((family) =>
      el(
        'section',
        { class: 'family' },
        el('h3', { text: `${family} (${groups.get(family).length})` }),
        el(
          'ul',
          {},
          groups.get(family).map((tool) =>
            el(
              'li',
              {},
              el(
                'button',
                {
                  type: 'button',
                  class: state.current?.name === tool.name ? 'tool selected' : 'tool',
                  'data-tool': tool.name,
                  title: tool.description ?? '',
                  onclick: () => selectTool(tool),
                },
                el('span', { class: 'tool-title', text: tool.title ?? tool.name }),
                el('code', { text: tool.name }),
              ),
            ),
          ),
        ),
      ),
    );
  $('tools').replaceChildren(
    ...(sections.length ? sections : [el('p', { class: 'muted', text: 'No tool matches.' })]),
  );
}

function selectTool(tool) {
  state.current = tool;
  for (const button of document.querySelectorAll('#tools button.tool')) {
    button.classList.toggle('selected', button.dataset.tool === tool.name);
  }
  showTab('panel-tool');
  $('tool-empty').hidden = true;
  $('tool-view').hidden = false;
  $('tool-title').textContent = tool.title ?? tool.name;
  $('tool-name').textContent = tool.name;
  $('tool-description').textContent = tool.description ?? '';
  const hints = tool.annotations ?? {};
  const badges = [];
  if (hints.readOnlyHint) badges.push(['read-only', 'ok']);
  if (hints.destructiveHint && !hints.readOnlyHint) badges.push(['destructive', 'bad']);
  if (hints.idempotentHint) badges.push(['idempotent', '']);
  if (hints.openWorldHint) badges.push(['reaches out', '']);
  $('tool-badges').replaceChildren(...badges.map(([text, kind]) => el('span', { class: `badge ${kind}`, text })));
  $('tool-schema').textContent = pretty(tool.inputSchema ?? {});
  $('fields').replaceChildren(...buildFields(tool.inputSchema ?? {}));
  $('raw-toggle').checked = false;
  $('raw-args').hidden = true;
  $('fields').hidden = false;
  $('result').hidden = true;
  $('progress').hidden = true;
}

// --- forms from JSON Schema ----------------------------------------------------------------

function resolve(schema, root) {
  let current = schema ?? {};
  for (let depth = 0; depth < 8 && current.$ref; depth++) {
    const path = current.$ref.replace(/^#\//, '').split('/');
    let target = root;
    for (const part of path) target = target?.[part];
    if (!target) break;
    current = { ...target, ...current, $ref: undefined };
  }
  return current;
}

/** What input a property gets: {kind, type, options, itemType}. */
function describe(schema, root) {
  const s = resolve(schema, root);
  const alternatives = s.anyOf ?? s.oneOf;
  if (alternatives) {
    const options = [];
    const others = [];
    const flatten = (list) => {
      for (const alt of list) {
        const a = resolve(alt, root);
        if (a.const !== undefined) options.push(a.const);
        else if (a.enum) options.push(...a.enum.filter((v) => v !== null));
        else if (a.anyOf || a.oneOf) flatten(a.anyOf ?? a.oneOf);
        else if (a.type !== 'null') others.push(a);
      }
    };
    flatten(alternatives);
    if (options.length && !others.length) return { kind: 'enum', options };
    if (!options.length && others.length === 1) return describe(others[0], root);
    return { kind: 'json' };
  }
  if (s.enum) return { kind: 'enum', options: s.enum.filter((v) => v !== null) };
  const types = (Array.isArray(s.type) ? s.type : [s.type]).filter((t) => t && t !== 'null');
  if (types.length !== 1) return { kind: 'json' };
  const [type] = types;
  if (type === 'string') return { kind: (s.maxLength ?? 0) > 2000 ? 'text' : 'string' };
  if (type === 'integer' || type === 'number') return { kind: 'number', type };
  if (type === 'boolean') return { kind: 'boolean' };
  if (type === 'array') {
    const items = describe(s.items ?? {}, root);
    if (items.kind === 'string' || items.kind === 'number' || items.kind === 'enum') {
      return { kind: 'list', itemType: items.type ?? 'string' };
    }
  }
  return { kind: 'json' };
}

function buildFields(schema) {
  const properties = schema.properties ?? {};
  const required = new Set(schema.required ?? []);
  const names = Object.keys(properties);
  if (!names.length) return [el('p', { class: 'muted', text: 'This tool takes no arguments.' })];
  // Required fields first, then the rest in schema order.
  names.sort((a, b) => Number(required.has(b)) - Number(required.has(a)));
  return names.map((name) => {
    const prop = resolve(properties[name], schema);
    const shape = describe(prop, schema);
    const id = `arg-${name}`;
    const common = { id, name, 'data-kind': shape.kind, 'data-type': shape.type ?? shape.itemType };
    let input;
    if (shape.kind === 'enum') {
      input = el(
        'select',
        common,
        el('option', { value: '', text: required.has(name) ? '(choose)' : '(default)' }),
        shape.options.map((option) => el('option', { value: JSON.stringify(option), text: String(option) })),
      );
    } else if (shape.kind === 'boolean') {
      input = el(
        'select',
        common,
        el('option', { value: '', text: '(default)' }),
        el('option', { value: 'true', text: 'true' }),
        el('option', { value: 'false', text: 'false' }),
      );
    } else if (shape.kind === 'number') {
      input = el('input', {
        ...common,
        type: 'number',
        step: shape.type === 'integer' ? '1' : 'any',
        min: prop.minimum,
        max: prop.maximum,
      });
    } else if (shape.kind === 'string') {
      input = el('input', { ...common, type: 'text', spellcheck: 'false' });
    } else if (shape.kind === 'text') {
      input = el('textarea', { ...common, rows: 3 });
    } else if (shape.kind === 'list') {
      input = el('textarea', { ...common, rows: 3, placeholder: 'One per line', spellcheck: 'false' });
    } else {
      input = el('textarea', { ...common, rows: 4, class: 'code', placeholder: 'JSON', spellcheck: 'false' });
    }
    const kindLabel = { json: 'JSON', list: 'list', text: 'text' }[shape.kind] ?? shape.type ?? shape.kind;
    return el(
      'div',
      { class: 'field' },
      el(
        'label',
        { for: id },
        el('code', { text: name }),
        required.has(name) ? el('span', { class: 'required', title: 'required', text: ' *' }) : null,
        el('span', { class: 'muted small', text: ` ${kindLabel}` }),
      ),
      input,
      prop.description ? el('p', { class: 'hint', text: prop.description }) : null,
    );
  });
}

/** The form's values as tool arguments; empty fields are left out. Throws on unreadable JSON. */
function collectArguments() {
  if ($('raw-toggle').checked) {
    const text = $('raw-args').value.trim();
    if (!text) return {};
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new Error(`The arguments are not valid JSON: ${error.message}`);
    }
  }
  const args = {};
  for (const input of $('fields').querySelectorAll('[data-kind]')) {
    const raw = input.value;
    if (raw.trim() === '') continue;
    const { kind, type } = input.dataset;
    if (kind === 'enum') args[input.name] = JSON.parse(raw);
    else if (kind === 'boolean') args[input.name] = raw === 'true';
    else if (kind === 'number') args[input.name] = Number(raw);
    else if (kind === 'list') {
      const items = raw.split('\n').map((line) => line.trim()).filter(Boolean);
      args[input.name] = type === 'integer' || type === 'number' ? items.map(Number) : items;
    } else if (kind === 'json') {
      try {
        args[input.name] = JSON.parse(raw);
      } catch (error) {
        throw new Error(`"${input.name}" is not valid JSON: ${error.message}`);
      }
    } else args[input.name] = raw;
  }
  return args;
}

function toggleRaw() {
  const raw = $('raw-toggle').checked;
  if (raw) {
    let args = {};
    try {
      $('raw-toggle').checked = false;
      args = collectArguments();
    } catch {
      // Start from an empty object when the form holds bad JSON.
    }
    $('raw-toggle').checked = true;
    $('raw-args').value = pretty(args);
  }
  $('raw-args').hidden = !raw;
  $('fields').hidden = raw;
}

// --- calling -------------------------------------------------------------------------------

async function callCurrent(event) {
  event.preventDefault();
  const tool = state.current;
  if (!tool || !state.client || state.calling) return;
  let args;
  try {
    args = collectArguments();
  } catch (error) {
    showResultError(error.message);
    return;
  }
  const controller = new AbortController();
  state.calling = controller;
  $('call').disabled = true;
  $('cancel').hidden = false;
  $('result').hidden = true;
  $('progress').hidden = false;
  $('progress-bar').removeAttribute('value');
  $('progress-text').textContent = 'Working…';
  log(`→ ${tool.name} ${JSON.stringify(args)}`);
  try {
    const result = await state.client.callTool(tool.name, args, {
      signal: controller.signal,
      onNotification: onCallNotification,
    });
    showResult(result);
    log(`← ${tool.name}${result.isError ? ' (error)' : ''}`, result.isError ? 'error' : 'info');
  } catch (error) {
    if (error.name === 'AbortError') {
      showResultError('Cancelled.');
    } else {
      showResultError(explain(error));
      log(`← ${tool.name} failed: ${explain(error)}`, 'error');
    }
  } finally {
    state.calling = null;
    $('call').disabled = false;
    $('cancel').hidden = true;
    $('progress').hidden = true;
  }
}

function onCallNotification(message) {
  const params = message.params ?? {};
  if (message.method === 'notifications/progress') {
    const bar = $('progress-bar');
    if (typeof params.total === 'number' && params.total > 0) {
      bar.max = params.total;
      bar.value = params.progress;
    } else {
      bar.removeAttribute('value');
    }
    const amount = params.total ? `${params.progress}/${params.total}` : `${params.progress ?? ''}`;
    $('progress-text').textContent = [amount, params.message].filter(Boolean).join(' · ');
  } else if (message.method === 'notifications/message') {
    const data = typeof params.data === 'string' ? params.data : JSON.stringify(params.data);
    log(`[${params.level ?? 'info'}] ${data}`, params.level === 'error' ? 'error' : 'info');
  }
}

function showResultError(message) {
  const box = $('result');
  box.hidden = false;
  box.className = 'result error';
  box.replaceChildren(el('h3', { text: 'Error' }), el('p', { class: 'error-text', text: message }));
}

function showResult(result) {
  const box = $('result');
  box.hidden = false;
  box.className = result.isError ? 'result error' : 'result';
  const parts = [el('h3', { text: result.isError ? 'The tool reported an error' : 'Result' })];
  for (const block of result.content ?? []) {
    if (block.type === 'text') {
      // The structured copy of a result is shown below; skip its JSON echo.
      if (result.structuredContent && looksLikeJson(block.text)) continue;
      parts.push(el('pre', { class: result.isError ? 'text error-text' : 'text', text: block.text }));
    } else if (block.type === 'image') {
      parts.push(
        el(
          'figure',
          {},
          el('img', { src: `data:${block.mimeType};base64,${block.data}`, alt: 'Image returned by the tool' }),
          el('figcaption', { class: 'muted small', text: block.mimeType }),
        ),
      );
    } else if (block.type === 'resource_link') {
      parts.push(el('p', {}, 'Resource: ', el('code', { text: block.uri }), block.name ? ` (${block.name})` : ''));
    } else if (block.type === 'resource') {
      const resource = block.resource ?? {};
      parts.push(el('pre', { class: 'text', text: resource.text ?? `${resource.uri} (${resource.mimeType ?? 'binary'})` }));
    } else {
      parts.push(el('pre', { class: 'text', text: pretty(block) }));
    }
  }
  if (result.structuredContent !== undefined) {
    parts.push(el('h4', { text: 'Structured content' }), el('pre', { class: 'json', text: pretty(result.structuredContent) }));
  }
  box.replaceChildren(...parts);
}

function looksLikeJson(text) {
  const trimmed = text.trim();
  if (!(trimmed.startsWith('{') || trimmed.startsWith('['))) return false;
  try {
    JSON.parse(trimmed);
    return true;
  } catch {
    return false;
  }
}

// --- health and metrics --------------------------------------------------------------------

let metricsText = '';

async function refreshHealth() {
  if (!state.client) return;
  const box = $('health');
  box.className = 'muted';
  box.textContent = 'Loading…';
  try {
    const result = await state.client.callTool('get_server_health', {});
    box.className = '';
    box.replaceChildren(el('pre', { class: 'json', text: pretty(result.structuredContent ?? result.content) }));
  } catch (error) {
    box.className = 'bad';
    box.textContent = explain(error);
  }
  const metrics = $('metrics');
  try {
    const url = new URL('/metrics', state.client.url);
    const headers = state.client.token ? { Authorization: `Bearer ${state.client.token}` } : {};
    const response = await fetch(url, { headers, cache: 'no-store' });
    if (!response.ok) throw new Error(`/metrics answered HTTP ${response.status}`);
    metricsText = await response.text();
    metrics.className = 'metrics';
    renderMetrics();
  } catch (error) {
    metricsText = '';
    metrics.className = 'metrics bad';
    metrics.textContent = `Metrics unavailable: ${error.message}`;
  }
}

function renderMetrics() {
  if (!metricsText) return;
  const filter = $('metrics-filter').value.trim().toLowerCase();
  const lines = metricsText
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .filter((line) => !filter || line.toLowerCase().includes(filter));
  $('metrics').textContent = lines.join('\n') || 'No metric matches.';
}

// --- tabs and start-up ---------------------------------------------------------------------

function showTab(panelId) {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const selected = tab.dataset.panel === panelId;
    tab.setAttribute('aria-selected', String(selected));
    $(tab.dataset.panel).hidden = !selected;
  }
  if (panelId === 'panel-health' && $('health').textContent === 'Not loaded yet.') refreshHealth();
}

function start() {
  $('url').value = `${location.origin}/mcp`;
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    $('token').value = saved;
    $('remember').checked = true;
  }
  $('connect-form').addEventListener('submit', connect);
  $('disconnect').addEventListener('click', () => disconnect());
  $('tool-filter').addEventListener('input', renderTools);
  $('tool-form').addEventListener('submit', callCurrent);
  $('raw-toggle').addEventListener('change', toggleRaw);
  $('cancel').addEventListener('click', () => state.calling?.abort());
  $('refresh-health').addEventListener('click', refreshHealth);
  $('metrics-filter').addEventListener('input', renderMetrics);
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    tab.addEventListener('click', () => showTab(tab.dataset.panel));
  }
  window.addEventListener('pagehide', () => state.client?.close());
  document.body.dataset.ready = 'true';
}

start();
