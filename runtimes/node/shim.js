// The Alyx Node.js runtime shim: serves the runtime protocol (DESIGN.md §6) over a Unix socket.
// Loaded once per sandbox; user code (CommonJS or ESM) is loaded by POST /__rt/init, then every
// other request is an invocation of it, run inside its own context (sdk.js: getContext() and the `ctx`
// global). Node built-ins only: it runs inside minimal images.
'use strict';
// When the process started and when this file began to run (epoch seconds; docs/functions.md, "Where a start goes").
const BOOT = { process: performance.timeOrigin / 1000, main: (performance.timeOrigin + performance.now()) / 1000 };
const fs = require('fs');
const http = require('http');
const Module = require('module');
const path = require('path');
const { pathToFileURL } = require('url');
const sdk = require('./sdk.js');

BOOT.imported = (performance.timeOrigin + performance.now()) / 1000;

const SOCKET_PATH = process.env.ALYX_SOCKET || '/run/alyx/rt.sock';
const LISTEN_FD = process.env.ALYX_LISTEN_FD || '';  // a socket the server bound and listens on for us
// The per-sandbox secret: from the file the server wrote (never argv, never the environment).
const SECRET = Buffer.from(fs.readFileSync(process.env.ALYX_SECRET_FILE, 'utf8').trim());
if (!SECRET.length) { process.stderr.write('alyx shim: the secret file is empty\n'); process.exit(1); }
const API_SOCKET = process.env.ALYX_API_SOCKET || '';
const LIFELINE = process.env.ALYX_LIFELINE || '';
delete process.env.ALYX_SOCKET;
delete process.env.ALYX_SECRET_FILE;
delete process.env.ALYX_API_SOCKET;
delete process.env.ALYX_LIFELINE;
delete process.env.ALYX_LISTEN_FD;
const state = { handler: null, env: {}, fn: null };
const now = () => (performance.timeOrigin + performance.now()) / 1000;

// `./sdk` resolves to the runtime's sdk.js for a function without one: require() here, import through
// the ES module hook (module.register, Node >= 18.19). The user's folder is never written to.
const SDK_PATH = require.resolve('./sdk.js');
const SDK_REQUEST = /^\.\.?\/(?:\.\.\/)*sdk(?:\/index)?(?:\.[cm]?js)?$/;
const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  try {
    return resolveFilename.call(this, request, ...rest);
  } catch (err) {
    if (err && err.code === 'MODULE_NOT_FOUND' && SDK_REQUEST.test(request)) return SDK_PATH;
    throw err;
  }
};

const SDK_MENTION = /['"`]\.\.?\/(?:\.\.\/)*sdk(?:\/index)?(?:\.[cm]?js)?['"`]/;

// The ES module hook runs in a loader thread that costs ~40 ms of a cold start, so it is installed
// only for code that names './sdk' somewhere (node_modules aside; at most 500 files are read).
function mentionsSdk(dir) {
  const folders = [dir];
  let read = 0;
  while (folders.length && read < 500) {
    const folder = folders.pop();
    for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
      const file = path.join(folder, entry.name);
      if (entry.isDirectory() && entry.name !== 'node_modules') folders.push(file);
      else if (entry.isFile() && /\.[cm]?js$/.test(entry.name) && read++ < 500
               && SDK_MENTION.test(fs.readFileSync(file, 'utf8'))) return true;
    }
  }
  return false;
}

function provideSdkToImports(codeDir) {
  if (typeof Module.register !== 'function') return false;
  let mentioned = true;
  try { mentioned = mentionsSdk(codeDir); } catch (e) { /* unreadable: install the hook all the same */ }
  if (!mentioned) return false;
  Module.register('./sdk-resolve.mjs', pathToFileURL(__filename), { data: { sdkUrl: pathToFileURL(SDK_PATH).href } });
  return true;
}

// A plain function may use the `ctx` global: the very object getContext() returns (undefined outside a call).
Object.defineProperty(globalThis, 'ctx', { get: () => sdk.currentContext(), configurable: true });

// Compared in constant time, by hand: require('crypto') alone costs ~10 ms of every start.
function sameSecret(given) {
  const g = Buffer.from(given || '');
  if (g.length !== SECRET.length) return false;
  let diff = 0;
  for (let i = 0; i < g.length; i++) diff |= g[i] ^ SECRET[i];
  return diff === 0;
}

function reply(res, status, body, headers) {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const h = Object.assign({ 'Content-Type': 'application/json' }, headers || {});
  for (const k of Object.keys(h)) {
    if (['content-length', 'connection', 'transfer-encoding'].includes(k.toLowerCase())) delete h[k];
  }
  h['Content-Length'] = buf.length;
  res.writeHead(status, h);
  res.end(buf);
}

function describe(err) {
  if (err && err.name && err.message !== undefined) return `${err.name}: ${err.message}`;
  return String(err);
}

function locate(err) {
  // A syntax error's stack starts with "file:line" on its first line.
  const m = /^(.*?):(\d+)\s*$/m.exec(String((err && err.stack) || ''));
  return m ? { file: path.basename(m[1]), line: Number(m[2]) } : {};
}

// The module's handler: its default export, or the export the manifest names. The pool warm-up runs it too.
async function importHandler(dir, entry, name) {
  const mod = await import(pathToFileURL(path.join(dir, entry)).href);
  for (const c of [mod.default, mod[name], mod.default && mod.default[name], mod.default && mod.default.default]) {
    if (typeof c === 'function') return c;
  }
  throw new TypeError(`${entry} exports no handler (export default a function, or export ${name})`);
}

// The answer carries load_ms and the bind's marks (epoch seconds: the request in, the import begun and
// done), which the server turns into phases (docs/functions.md, "Where a start goes").
async function load(body, received) {
  if (state.fn !== null) return [409, { error: { code: 'already_initialized', message: 'this sandbox is bound already' } }];
  const env = body.env || {};
  Object.assign(process.env, env);
  state.env = env;
  const began = performance.now();
  try {
    process.chdir(body.code_dir);
    const hooked = provideSdkToImports(body.code_dir);
    const esm = performance.now() - began;
    const importing = now();
    const fn = await importHandler(body.code_dir, body.entry, body.handler || 'handler');
    const imported = now();
    state.handler = fn;
    state.fn = body.function || body.entry;
    const marks = { received, importing, imported, bound: now() };
    return [200, { ok: true, load_ms: performance.now() - began, esm_ms: hooked ? esm : 0, marks }];
  } catch (err) {
    process.stderr.write(`${(err && err.stack) || describe(err)}\n`);
    const details = Object.assign({ traceback: String((err && err.stack) || err) }, err instanceof SyntaxError ? locate(err) : {});
    return [422, { error: { code: 'function_load_error', message: describe(err), details } }];
  }
}

class Res {
  constructor() { this.statusCode = 200; this.headers = {}; this.body = Buffer.alloc(0); this.sent = false; }
  status(code) { this.statusCode = Number(code); return this; }
  header(name, value) { this.headers[String(name)] = String(value); return this; }
  setHeader(name, value) { return this.header(name, value); }
  set(name, value) { return this.header(name, value); }
  finish(body, type, status) {
    if (status !== undefined && status !== null) this.statusCode = Number(status);
    if (!Object.keys(this.headers).some((k) => k.toLowerCase() === 'content-type')) this.headers['Content-Type'] = type;
    this.body = body; this.sent = true; return this;
  }
  json(data, status) { return this.finish(Buffer.from(JSON.stringify(data === undefined ? null : data)), 'application/json', status); }
  text(text, status) { return this.finish(Buffer.from(String(text)), 'text/plain; charset=utf-8', status); }
  send(body, status) {
    if (Buffer.isBuffer(body)) return this.finish(body, 'application/octet-stream', status);
    if (body !== null && typeof body === 'object') return this.json(body, status);
    return this.finish(Buffer.from(body === undefined ? '' : String(body)), 'text/html; charset=utf-8', status);
  }
  redirect(url, status) { this.headers.Location = url; return this.finish(Buffer.alloc(0), 'text/plain; charset=utf-8', status || 302); }
  end(body) { return this.send(body === undefined ? '' : body); }
}

// The end mark goes through the same streams as console.log: into a full pipe (Docker's, under load)
// Node queues console output in the stream, and a direct write(2) would overtake what is queued.
process.stdout.on('error', () => {});  // a closed stdout or stderr must not fail the call
process.stderr.on('error', () => {});
function markEnd(id) {
  const mark = `\x1eALYX-END ${id}\x1e\n`;
  for (const stream of [process.stdout, process.stderr]) {
    try { stream.write(mark); } catch (e) { /* same */ }
  }
}

// The server percent-encodes the request path once (UTF-8); req.path is it decoded once.
function decodePath(pathname) {
  try { return decodeURIComponent(pathname); } catch (e) { return unescape(pathname); }
}

async function invoke(req, res, body, handler = state.handler) {
  const id = req.headers['x-alyx-invocation-id'] || '';
  if (!handler) return reply(res, 409, { error: { code: 'not_initialized', message: 'no function bound' } });
  const raw = req.headers['x-alyx-context'];
  const context = raw ? JSON.parse(Buffer.from(raw, 'base64').toString('utf8')) : {};
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) if (!k.startsWith('x-alyx-')) headers[k] = v;
  const url = new URL(req.url, 'http://sandbox');
  const query = {};
  for (const [k, v] of url.searchParams) if (!(k in query)) query[k] = v;
  let json = null;
  if (body.length && (headers['content-type'] || '').includes('json')) {
    try { json = JSON.parse(body.toString('utf8')); } catch (e) { json = null; }
  }
  const trigger = context.trigger || 'http';
  let input = context.input === undefined ? null : context.input;
  if (input === null && trigger === 'http') input = json;  // a JSON call (alyx.functions.invoke too) carries its input as the body
  const alyx = sdk.createClient(context.callback_token, API_SOCKET);
  const auth = context.auth === undefined ? null : context.auth;
  const env = Object.assign({}, state.env);
  const request = {
    method: req.method, path: decodePath(url.pathname), headers, query, body: body.toString('utf8'), rawBody: body,
    json, input, auth, trigger, env, alyx,
  };
  let out = new Res();
  let extra = { 'x-alyx-outcome': 'ok' };
  try {
    const result = await sdk.runInContext({ alyx, auth, env, input, trigger }, () => handler(request, out));
    if (!out.sent) {
      if (result instanceof Res) out = result;
      else if (result === undefined) out.status(204);
      else out.send(result);
    }
  } catch (err) {
    process.stderr.write(`${(err && err.stack) || describe(err)}\n`);
    const oom = err instanceof RangeError && /allocation|memory/i.test(String(err.message));
    out = new Res().json({ error: { code: oom ? 'memory_limit_exceeded' : 'function_error', message: describe(err) } }, 500);
    extra = oom ? { 'x-alyx-outcome': 'memory_limit_exceeded', 'x-alyx-retire': '1' } : { 'x-alyx-outcome': 'function_error' };
  }
  if (!Number.isInteger(out.statusCode) || out.statusCode < 200 || out.statusCode > 599) {
    // HTTP has no such final status: the server answers 502.
    const message = `The function answered with HTTP status ${out.statusCode}; expected 200-599.`;
    out = new Res().json({ error: { code: 'function_bad_response', message } }, 502);
    extra = { 'x-alyx-outcome': 'function_error' };
  }
  markEnd(id);
  reply(res, out.statusCode, out.body, Object.assign({}, out.headers, extra));
}

const server = http.createServer((req, res) => {
  const received = now();
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const body = Buffer.concat(chunks);
    if (!sameSecret(req.headers['x-alyx-secret'])) return reply(res, 401, { error: { code: 'unauthorized', message: 'bad runtime secret' } });
    if (req.url === '/__rt/health') return reply(res, 200, { ok: true, runtime: 'node', pid: process.pid, function: state.fn, boot: BOOT });
    if (req.url === '/__rt/init') {
      const [status, payload] = await load(JSON.parse(body.toString('utf8')), received);
      markEnd('init');
      return reply(res, status, payload);
    }
    return invoke(req, res, body);
  });
});
server.keepAliveTimeout = 0;
server.headersTimeout = 0;
server.requestTimeout = 0;
process.on('unhandledRejection', (err) => process.stderr.write(`unhandled rejection: ${(err && err.stack) || err}\n`));
// Once listening, what can wait does: the lifeline, and warming up what the first bind and call use:
// the ES module loader (~20 ms of the first import()) and the bind's own code (the './sdk' scan, the
// handler lookup) on a module of the runtime's, then one call of its handler through invoke() itself
// (~1 ms of a first call: its code compiled on first use, URL, base64, AsyncLocalStorage, the SDK
// client). Its end mark names no invocation the server waits for. A pooled sandbox does it while
// idle, so a call that takes it finds it done; the sandbox stays generic (nothing is bound).
async function afterListening() {
  BOOT.listening = now();
  if (LIFELINE === 'stdin') {
    // The server holds the other end of stdin: EOF means it is gone, so this sandbox goes too.
    process.stdin.on('end', () => process.exit(0));
    process.stdin.on('error', () => process.exit(0));
    process.stdin.resume();
  }
  try {
    const dir = path.join(__dirname, 'warm');
    mentionsSdk(dir);
    const handler = await importHandler(dir, 'warm.js', 'handler');
    const context = Buffer.from(JSON.stringify({ auth: null, input: null, trigger: 'http' })).toString('base64');
    const req = { method: 'POST', url: '/__rt/warm?a=1', headers: { 'x-alyx-invocation-id': 'warm-up', 'x-alyx-context': context, 'content-type': 'application/json' } };
    await invoke(req, { writeHead() {}, end() {} }, Buffer.from('{"a":1}'), handler);
  } catch (e) { /* only a warm-up */ }
  BOOT.warm = now();
}
if (LISTEN_FD) {
  server.listen({ fd: Number(LISTEN_FD) }, afterListening);  // bound by the server: callers queue already
} else {
  try { fs.unlinkSync(SOCKET_PATH); } catch (e) { /* not there */ }
  server.listen(SOCKET_PATH, () => { fs.chmodSync(SOCKET_PATH, 0o666); afterListening(); });
}
