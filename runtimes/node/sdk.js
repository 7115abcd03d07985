// The function SDK the runtime provides: getContext() → { alyx, auth, env } of the current invocation
// (AsyncLocalStorage: calls that overlap in one sandbox each see their own), and the Alyx client behind
// it and req.alyx, which calls the REST API back through the API socket as the invocation's caller.
// `import { getContext } from './sdk'` (or require('./sdk')) resolves here when a function has no sdk
// of its own (shim.js installs the resolution; sdk-resolve.mjs is the ES module side). Node built-ins only.
'use strict';
const http = require('http');
const { AsyncLocalStorage } = require('async_hooks');

const storage = new AsyncLocalStorage();

class AlyxApiError extends Error {
  constructor(status, error) {
    super(`${status} ${error.code}: ${error.message}`);
    this.name = 'AlyxApiError';
    this.status = status;
    this.error = error;
  }
}

// A list parameter as text: fields/expand lists joined by commas, dates in RFC 3339, filter objects as JSON.
function queryValue(value) {
  if (Array.isArray(value)) return value.map(String).join(',');
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

// The Alyx REST API over the API socket, as the holder of `token` (one invocation's caller).
function createClient(token, socketPath) {
  function request(method, path, body, query) {
    if (!socketPath || !token) return Promise.reject(new Error('the Alyx API is not available to this function'));
    const params = Object.entries(query || {}).filter(([, v]) => v !== undefined && v !== null)
      .map(([k, v]) => [k, queryValue(v)]);
    if (params.length) path += '?' + new URLSearchParams(params).toString();
    const payload = body === undefined || body === null ? null : Buffer.from(JSON.stringify(body));
    const headers = { 'X-Alyx-Callback-Token': token };
    if (payload) { headers['Content-Type'] = 'application/json'; headers['Content-Length'] = payload.length; }
    return new Promise((resolve, reject) => {
      const r = http.request({ socketPath, method, path, headers }, (resp) => {
        const chunks = [];
        resp.on('data', (c) => chunks.push(c));
        resp.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
          if (resp.statusCode >= 400) reject(new AlyxApiError(resp.statusCode, (data && data.error) || {}));
          else resolve(data);
        });
      });
      r.on('error', reject);
      if (payload) r.write(payload);
      r.end();
    });
  }
  const collection = (name) => {
    const base = `/api/collections/${encodeURIComponent(name)}`;
    const one = (id) => `${base}/${encodeURIComponent(id)}`;
    return {
      list: (params) => request('GET', base, null, params),  // params.filter: CEL text or a filter object
      get: (id, query) => request('GET', one(id), null, query),
      create: (data) => request('POST', base, data),
      update: (id, data) => request('PATCH', one(id), data),
      delete: (id) => request('DELETE', one(id)),
      deleteMany: (filter) => request('DELETE', `${base}/bulk`, { filter }),  // → { count }
      updateMany: (filter, changes) => request('PATCH', `${base}/bulk`, { filter, changes }),  // → { count }
    };
  };
  // alyx.collections.<name>; `then` and symbols are not collections (so awaiting it is harmless).
  const collections = new Proxy({}, {
    get: (_, name) => (typeof name === 'string' && name !== 'then' ? collection(name) : undefined),
  });
  const functions = {
    invoke: (name, input) => request('POST', `/api/functions/${encodeURIComponent(name)}`, input === undefined ? {} : input),
  };
  const events = { publish: (event) => request('POST', '/api/events', event) };
  return { request, collection, collections, functions, events };
}

// The context of the invocation this code runs for; throws outside one (e.g. at module load).
function getContext() {
  const current = storage.getStore();
  if (!current) throw new Error('getContext() is only available while a function handles a call');
  return current;
}

// Runs fn with `context` as what getContext() (and the ctx global) return, through all its awaits.
function runInContext(context, fn) {
  return storage.run(context, fn);
}

function currentContext() {
  return storage.getStore();
}

exports.getContext = getContext;
exports.AlyxApiError = AlyxApiError;
exports.createClient = createClient;
exports.runInContext = runInContext;
exports.currentContext = currentContext;
