// ---- runtime (the same in every generated TypeScript client) ----

/** Every failed call: the server's `{"error": {code, message, details}}` and the HTTP status (0: no response). */
export class AlyxError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: Record<string, string[]>;

  constructor(code: string, message: string, status: number, details: Record<string, string[]> = {}) {
    super(message);
    this.name = "AlyxError";
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

/** What /api/auth/register, /login, /refresh and the OAuth callback return. */
export interface Tokens {
  access_token: string;
  refresh_token: string;
  token_type: "Bearer";
  expires_in: number;
  user: UsersRecord;
}

/** Where the client keeps its tokens (memory by default; pass one backed by localStorage, a file, ...). */
export interface TokenStore {
  get(): Tokens | null;
  set(tokens: Tokens | null): void;
}

export class MemoryTokenStore implements TokenStore {
  private tokens: Tokens | null = null;
  get(): Tokens | null { return this.tokens; }
  set(tokens: Tokens | null): void { this.tokens = tokens; }
}

/** A TokenStore in `localStorage` (browsers) under `key`. */
export class LocalStorageTokenStore implements TokenStore {
  constructor(private readonly key: string = "alyx.tokens") {}
  get(): Tokens | null {
    const raw = globalThis.localStorage?.getItem(this.key);
    return raw ? (JSON.parse(raw) as Tokens) : null;
  }
  set(tokens: Tokens | null): void {
    if (tokens === null) globalThis.localStorage?.removeItem(this.key);
    else globalThis.localStorage?.setItem(this.key, JSON.stringify(tokens));
  }
}

/** The WebSocket constructor (browsers' and Node 22's global one, or e.g. the `ws` package's on Node 20). */
export type WebSocketConstructor = new (url: string) => WebSocket;

export interface ClientOptions {
  /** e.g. "https://api.example.com" (no trailing /api). */
  baseUrl: string;
  fetch?: typeof fetch;
  WebSocket?: WebSocketConstructor;
  tokenStore?: TokenStore;
}

export type Scalar = string | number | boolean;

/** GET /api/collections/<c> parameters; `where` is bare `?field=value` equality (ANDed). */
export interface ListParams<F extends string, E extends string> {
  filter?: string;
  sort?: string;
  page?: number;
  perPage?: number;
  fields?: readonly F[];
  expand?: readonly E[];
  skipTotal?: boolean;
  where?: Partial<Record<F, Scalar>>;
}

export interface ViewParams<F extends string, E extends string> {
  fields?: readonly F[];
  expand?: readonly E[];
}

/** The list envelope; `totalItems` and `totalPages` are -1 with `skipTotal`. */
//#include list_result.ts

type Query = Record<string, string | undefined>;

/** A file to upload: a `File` (its name is kept), or any Blob/bytes with the name to give it. */
export type FileUpload = Blob | { name: string; data: BlobPart; type?: string };
type Uploads = FileUpload | FileUpload[];

/** An update's file changes, by file field: `set` replaces a field's files, `add` adds to a multiple
 * field, `remove` drops stored names. Sent as multipart/form-data parts `field`, `field+`, `field-`. */
export interface FileChanges<P> {
  set?: P;
  add?: P;
  remove?: { [K in keyof P]?: string | string[] };
}

/** POST /api/files/token: a short-lived token for protected files (`?token=` on their URLs). */
export interface FileToken {
  token: string;
  expires_in: number;
}

/** Query parameters of a file URL: `thumb` (one of the field's `thumbs`, e.g. "100x100") and `token`. */
export interface FileUrlOptions {
  thumb?: string;
  token?: string;
}

function fileBlob(upload: FileUpload): [Blob, string] {
  if (upload instanceof Blob) {
    const name = (upload as { name?: unknown }).name;
    return [upload, typeof name === "string" && name ? name : "blob"];
  }
  const data = upload.data instanceof Blob ? upload.data : new Blob([upload.data], { type: upload.type ?? "" });
  return [data, upload.name];
}

/** The multipart/form-data body of a write with files: the JSON input as the `@json` part, then one part per file. */
function formBody(input: unknown, parts: [string, Uploads | undefined][],
                  removals: [string, string | string[] | undefined][] = []): FormData {
  const form = new FormData();
  form.append("@json", new Blob([JSON.stringify(input ?? {})], { type: "application/json" }), "@json.json");
  for (const [field, uploads] of parts) {
    for (const upload of uploads === undefined ? [] : Array.isArray(uploads) ? uploads : [uploads]) {
      const [blob, name] = fileBlob(upload);
      form.append(field, blob, name);
    }
  }
  for (const [field, names] of removals) {
    for (const name of names === undefined ? [] : Array.isArray(names) ? names : [names]) form.append(`${field}-`, name);
  }
  return form;
}

function listQuery(params: ListParams<string, string> | ViewParams<string, string> = {}): Query {
  const out: Query = {};
  if ("where" in params && params.where) {
    for (const [k, v] of Object.entries(params.where)) if (v !== undefined) out[k] = String(v);
  }
  if ("filter" in params && params.filter !== undefined) out.filter = params.filter;
  if ("sort" in params && params.sort !== undefined) out.sort = params.sort;
  if ("page" in params && params.page !== undefined) out.page = String(params.page);
  if ("perPage" in params && params.perPage !== undefined) out.perPage = String(params.perPage);
  if ("skipTotal" in params && params.skipTotal) out.skipTotal = "1";
  if (params.fields?.length) out.fields = params.fields.join(",");
  if (params.expand?.length) out.expand = params.expand.join(",");
  return out;
}

interface RequestOptions {
  query?: Query;
  body?: unknown;
  form?: FormData;
  auth?: boolean;
}

/** The HTTP part: tokens on every call, one refresh-and-retry when the access token has expired. */
export class Transport {
  readonly baseUrl: string;
  readonly tokens: TokenStore;
  private readonly fetchImpl: typeof fetch;
  private refreshing: Promise<Tokens> | null = null;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.tokens = options.tokenStore ?? new MemoryTokenStore();
    const f = options.fetch ?? globalThis.fetch;
    if (!f) throw new Error("no fetch: pass ClientOptions.fetch");
    this.fetchImpl = f.bind(globalThis);
  }

  url(path: string, query: Query = {}): string {
    const qs = Object.entries(query)
      .filter((kv): kv is [string, string] => kv[1] !== undefined)
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
      .join("&");
    return this.baseUrl + path + (qs ? `?${qs}` : "");
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.send(method, path, options);
    if (response.status === 401 && options.auth !== false && this.tokens.get()?.refresh_token) {
      const problem = await AlyxErrorFrom(response.clone());
      if (problem.code === "token_expired") {
        await this.refresh();
        return this.decode<T>(await this.send(method, path, options));
      }
    }
    return this.decode<T>(response);
  }

  /** Rotate the refresh token (concurrent callers share one refresh). */
  refresh(): Promise<Tokens> {
    if (!this.refreshing) {
      const current = this.tokens.get();
      this.refreshing = (async () => {
        if (!current) throw new AlyxError("unauthorized", "Not signed in.", 401);
        const tokens = await this.request<Tokens>("POST", "/api/auth/refresh",
          { body: { refresh_token: current.refresh_token }, auth: false });
        this.tokens.set(tokens);
        return tokens;
      })().finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  private async send(method: string, path: string, options: RequestOptions): Promise<Response> {
    const headers: Record<string, string> = { Accept: "application/json" };
    const token = this.tokens.get()?.access_token;
    if (token && options.auth !== false) headers.Authorization = `Bearer ${token}`;
    let body: string | FormData | undefined;
    if (options.form !== undefined) {
      body = options.form;  // fetch sets the multipart Content-Type with its boundary
    } else if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    try {
      return await this.fetchImpl(this.url(path, options.query), { method, headers, body });
    } catch (exc) {
      throw new AlyxError("network_error", exc instanceof Error ? exc.message : String(exc), 0);
    }
  }

  private async decode<T>(response: Response): Promise<T> {
    if (!response.ok) throw await AlyxErrorFrom(response);
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }
}

async function AlyxErrorFrom(response: Response): Promise<AlyxError> {
  const text = await response.text();
  try {
    const parsed = JSON.parse(text) as { error?: { code?: string; message?: string; details?: Record<string, string[]> } };
    if (parsed.error && typeof parsed.error.code === "string") {
      return new AlyxError(parsed.error.code, parsed.error.message ?? "", response.status, parsed.error.details ?? {});
    }
  } catch {
    // not JSON: a proxy's page, say
  }
  return new AlyxError("http_error", text.slice(0, 200) || response.statusText, response.status);
}

/** A change to a subscription's result: inserted or updated records, deleted ids. */
export type Change<R> = { kind: "insert" | "update"; record: R } | { kind: "delete"; id: string };

export interface SubscribeOptions {
  filter?: string;
  sort?: string;
  limit?: number;
}

export interface SubscriptionHandlers<R> {
  snapshot?(records: R[]): void;
  change?(change: Change<R>): void;
  error?(error: AlyxError): void;
}

interface Frame {
  id?: string;
  type: string;
  payload?: Record<string, unknown>;
}

/** One live query; after a reconnect it is re-sent with `since` (its last cursor), so no change is missed. */
export class Subscription<R extends { id: string }> {
  cursor: number | null = null;
  serverId: string | null = null;
  docs = new Map<string, R>();
  closed = false;

  constructor(private readonly realtime: Realtime, readonly collection: string,
              private readonly options: SubscribeOptions, private readonly handlers: SubscriptionHandlers<R>) {}

  payload(): Record<string, unknown> {
    const p: Record<string, unknown> = { collection: this.collection, ...this.options };
    if (this.cursor !== null) p.since = this.cursor;
    return p;
  }

  onSnapshot(p: Record<string, unknown>): void {
    this.serverId = String(p.subscription_id);
    this.cursor = Number(p.cursor);
    if (p.resumed) return;
    const docs = p.docs as R[];
    this.docs = new Map(docs.map((d) => [d.id, d]));
    this.handlers.snapshot?.(docs);
  }

  onDelta(p: Record<string, unknown>): void {
    const changes = p.changes as { inserts?: R[]; updates?: R[]; deletes?: string[] };
    for (const record of changes.inserts ?? []) { this.docs.set(record.id, record); this.handlers.change?.({ kind: "insert", record }); }
    for (const record of changes.updates ?? []) { this.docs.set(record.id, record); this.handlers.change?.({ kind: "update", record }); }
    for (const id of changes.deletes ?? []) { this.docs.delete(id); this.handlers.change?.({ kind: "delete", id }); }
    this.cursor = Number(p.cursor);
  }

  onError(error: AlyxError): void { this.handlers.error?.(error); }

  close(): void {
    this.closed = true;
    this.realtime.unsubscribe(this);
  }
}

/** GET /api/realtime: one WebSocket, reconnecting with backoff, signing in with the current access token. */
export class Realtime {
  private subs: Subscription<{ id: string }>[] = [];
  private pending = new Map<string, Subscription<{ id: string }>>();
  private nextId = 1;
  private backoff = 100;
  private closed = false;
  private ws: WebSocket | null = null;
  private pinger: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly transport: Transport, private readonly Socket: WebSocketConstructor,
              private readonly maxBackoff = 10000, private readonly pingEvery = 20000) {
    this.open();
  }

  subscribe<R extends { id: string }>(collection: string, options: SubscribeOptions,
                                      handlers: SubscriptionHandlers<R>): Subscription<R> {
    const sub = new Subscription<R>(this, collection, options, handlers);
    this.subs.push(sub as unknown as Subscription<{ id: string }>);
    this.sendSubscribe(sub as unknown as Subscription<{ id: string }>);
    return sub;
  }

  unsubscribe(sub: { serverId: string | null }): void {
    this.subs = this.subs.filter((s) => s !== sub);
    if (sub.serverId) this.send({ type: "unsubscribe", payload: { subscription_id: sub.serverId } });
  }

  close(): void {
    this.closed = true;
    clearInterval(this.pinger);
    this.ws?.close();
  }

  private open(): void {
    const url = this.transport.baseUrl.replace(/^http/, "ws") + "/api/realtime";
    const ws = new this.Socket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 100;
      this.authenticate();
      this.pending.clear();
      for (const sub of this.subs) { sub.serverId = null; this.sendSubscribe(sub); }
      this.pinger = setInterval(() => this.send({ type: "ping" }), this.pingEvery);
    };
    ws.onmessage = (event: MessageEvent) => {
      let frame: Frame;
      try { frame = JSON.parse(String(event.data)) as Frame; } catch { return; }
      this.onFrame(frame);
    };
    ws.onclose = () => {
      clearInterval(this.pinger);
      if (this.ws === ws) this.ws = null;
      if (this.closed) return;
      setTimeout(() => this.open(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, this.maxBackoff);
    };
  }

  private authenticate(): void {
    const token = this.transport.tokens.get()?.access_token;
    if (token) this.send({ id: "auth", type: "auth", payload: { token } });
  }

  private send(frame: Frame): void {
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
  }

  private sendSubscribe(sub: Subscription<{ id: string }>): void {
    const id = `sub${this.nextId++}`;
    this.pending.set(id, sub);
    this.send({ id, type: "subscribe", payload: sub.payload() });
  }

  private onFrame(frame: Frame): void {
    const p = frame.payload ?? {};
    if (frame.type === "snapshot") {
      const sub = frame.id !== undefined ? this.pending.get(frame.id) : undefined;
      if (frame.id !== undefined) this.pending.delete(frame.id);
      if (sub && !sub.closed) sub.onSnapshot(p);
    } else if (frame.type === "delta") {
      for (const sub of this.subs) if (sub.serverId === p.subscription_id) sub.onDelta(p);
    } else if (frame.type === "error") {
      const sub = frame.id !== undefined ? this.pending.get(frame.id) : undefined;
      if (frame.id !== undefined) this.pending.delete(frame.id);
      if (sub && p.code === "cursor_expired") { sub.cursor = null; this.sendSubscribe(sub); return; }
      const ended = (p.subscription_ids as string[] | undefined) ?? [];
      const targets = sub ? [sub] : this.subs.filter((s) => s.serverId !== null && ended.includes(s.serverId));
      if (p.code === "token_expired") {
        void this.transport.refresh().catch(() => undefined).then(() => {
          this.authenticate();
          for (const s of targets) { s.serverId = null; this.sendSubscribe(s); }
        });
      }
      const error = new AlyxError(String(p.code), String(p.message ?? ""), 0);
      for (const s of targets) s.onError(error);
    }
  }
}

/** Typed calls on one collection: R record, C create input, U update input, F field names, E expandable
 * relations, P the files its file fields take. */
export class CollectionClient<R extends { id: string }, C, U, F extends string, E extends string, P = Record<string, never>> {
  constructor(private readonly client: BaseClient, readonly name: string) {}

  private path(id?: string): string {
    return `/api/collections/${this.name}` + (id === undefined ? "" : `/${encodeURIComponent(id)}`);
  }

  list(params: ListParams<F, E> = {}): Promise<ListResult<R>> {
    return this.client.transport.request("GET", this.path(), { query: listQuery(params) });
  }

  view(id: string, params: ViewParams<F, E> = {}): Promise<R> {
    return this.client.transport.request("GET", this.path(id), { query: listQuery(params) });
  }

  /** With `files`, sent as multipart/form-data (the input as its `@json` part). */
  create(input: C, files?: P): Promise<R> {
    if (files === undefined) return this.client.transport.request("POST", this.path(), { body: input });
    return this.client.transport.request("POST", this.path(), { form: formBody(input, entries<Uploads>(files)) });
  }

  /** With `files`, sent as multipart/form-data: `set` replaces a field's files, `add` adds, `remove` drops names. */
  update(id: string, input: U, files?: FileChanges<P>): Promise<R> {
    if (files === undefined) return this.client.transport.request("PATCH", this.path(id), { body: input });
    const added = entries<Uploads>(files.add).map(([k, v]): [string, Uploads | undefined] => [`${k}+`, v]);
    const parts = [...entries<Uploads>(files.set), ...added];
    return this.client.transport.request("PATCH", this.path(id),
      { form: formBody(input, parts, entries<string | string[]>(files.remove)) });
  }

  /** The URL of one of a record's files (`options.thumb` for a thumbnail, `options.token` for a protected file). */
  fileUrl(record: { id: string } | string, name: string, options: FileUrlOptions = {}): string {
    return this.client.files.url(this.name, typeof record === "string" ? record : record.id, name, options);
  }

  async delete(id: string): Promise<void> {
    await this.client.transport.request<undefined>("DELETE", this.path(id));
  }

  subscribe(options: SubscribeOptions, handlers: SubscriptionHandlers<R>): Subscription<R> {
    return this.client.realtime().subscribe<R>(this.name, options, handlers);
  }
}

function entries<V>(values: unknown): [string, V | undefined][] {
  return Object.entries((values ?? {}) as object) as [string, V | undefined][];
}

/** /api/files: download URLs and tokens for protected files. */
export class FilesClient {
  constructor(private readonly transport: Transport) {}

  /** GET /api/files/<collection>/<id>/<name>, with `?thumb=` and `?token=` when given. */
  url(collection: string, recordId: string, name: string, options: FileUrlOptions = {}): string {
    const path = `/api/files/${encodeURIComponent(collection)}/${encodeURIComponent(recordId)}/${encodeURIComponent(name)}`;
    return this.transport.url(path, { thumb: options.thumb, token: options.token });
  }

  /** A short-lived token for protected files, bound to the signed-in user. */
  token(): Promise<FileToken> { return this.transport.request<FileToken>("POST", "/api/files/token"); }
}

/** /api/auth/*: sign-up, sign-in, refresh, sign-out, the current user, OAuth. Tokens go to the TokenStore. */
export class AuthClient {
  constructor(private readonly transport: Transport) {}

  async register(input: UsersRegister): Promise<Tokens> {
    const tokens = await this.transport.request<Tokens>("POST", "/api/auth/register", { body: input, auth: false });
    this.transport.tokens.set(tokens);
    return tokens;
  }

  async login(email: string, password: string): Promise<Tokens> {
    const tokens = await this.transport.request<Tokens>("POST", "/api/auth/login",
      { body: { email, password }, auth: false });
    this.transport.tokens.set(tokens);
    return tokens;
  }

  refresh(): Promise<Tokens> { return this.transport.refresh(); }

  async logout(): Promise<void> {
    const current = this.transport.tokens.get();
    this.transport.tokens.set(null);
    if (current) {
      await this.transport.request<undefined>("POST", "/api/auth/logout",
        { body: { refresh_token: current.refresh_token }, auth: false });
    }
  }

  me(): Promise<UsersRecord> { return this.transport.request("GET", "/api/auth/me"); }

  /** Where to send the browser to sign in with `provider`; the callback answers with Tokens (store them with `useTokens`). */
  oauthUrl(provider: string): string { return this.transport.url(`/api/auth/oauth/${encodeURIComponent(provider)}`); }

  async providers(): Promise<string[]> {
    return (await this.transport.request<{ providers: string[] }>("GET", "/api/auth/providers")).providers;
  }

  useTokens(tokens: Tokens | null): void { this.transport.tokens.set(tokens); }

  get tokens(): Tokens | null { return this.transport.tokens.get(); }
}

/** /api/functions/<name>: any method; JSON in, JSON out. */
export class FunctionsClient {
  constructor(private readonly transport: Transport) {}

  invoke<T = unknown>(name: string, input?: unknown, method: string = "POST"): Promise<T> {
    return this.transport.request<T>(method, `/api/functions/${encodeURIComponent(name)}`, { body: input });
  }
}

export class BaseClient {
  readonly transport: Transport;
  readonly auth: AuthClient;
  readonly functions: FunctionsClient;
  readonly files: FilesClient;
  private readonly Socket: WebSocketConstructor | undefined;
  private live: Realtime | null = null;

  constructor(options: ClientOptions) {
    this.transport = new Transport(options);
    this.auth = new AuthClient(this.transport);
    this.functions = new FunctionsClient(this.transport);
    this.files = new FilesClient(this.transport);
    this.Socket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  }

  /** The realtime connection, opened on first use. */
  realtime(): Realtime {
    if (!this.live) {
      if (!this.Socket) throw new Error("no WebSocket: pass ClientOptions.WebSocket");
      this.live = new Realtime(this.transport, this.Socket);
    }
    return this.live;
  }

  close(): void {
    this.live?.close();
    this.live = null;
  }
}
