/* Alyx realtime client: GET /api/realtime over WebSocket, reconnecting and resuming with `since`.
 *
 *   const rt = new AlyxRealtime("wss://host/api/realtime", { token: () => localStorage.token });
 *   const sub = rt.subscribe("posts", { filter: 'status == "published"' }, {
 *     snapshot(docs) {}, change(kind, docOrId) {}, error(err) {},
 *   });
 *   sub.docs  // Map id → doc, kept current;  sub.close();  rt.close();
 *
 * No build step, no dependencies: a plain script that defines window.AlyxRealtime (and works as a
 * CommonJS module too).
 */
(function (root) {
  "use strict";

  class Subscription {
    constructor(client, collection, options, handlers) {
      this.client = client;
      this.collection = collection;
      this.options = options || {};
      this.handlers = handlers || {};
      this.cursor = null;
      this.serverId = null;
      this.docs = new Map();
      this.closed = false;
    }

    payload() {
      const p = Object.assign({ collection: this.collection }, this.options);
      if (this.cursor !== null) p.since = this.cursor;
      return p;
    }

    onSnapshot(p) {
      this.serverId = p.subscription_id;
      this.cursor = p.cursor;
      if (p.resumed) return;
      this.docs = new Map(p.docs.map((d) => [d.id, d]));
      if (this.handlers.snapshot) this.handlers.snapshot(p.docs);
    }

    onDelta(p) {
      const emit = (kind, value) => this.handlers.change && this.handlers.change(kind, value);
      for (const d of p.changes.inserts || []) { this.docs.set(d.id, d); emit("insert", d); }
      for (const d of p.changes.updates || []) { this.docs.set(d.id, d); emit("update", d); }
      for (const id of p.changes.deletes || []) { this.docs.delete(id); emit("delete", id); }
      this.cursor = p.cursor;
    }

    close() {
      this.closed = true;
      this.client.unsubscribe(this);
    }
  }

  class AlyxRealtime {
    constructor(url, opts) {
      opts = opts || {};
      this.url = url;
      this.token = opts.token || null; // a string, or a function returning one (or null)
      this.maxBackoff = opts.maxBackoff || 10000;
      this.pingEvery = opts.pingEvery || 20000;
      this.subs = [];
      this.pending = new Map();
      this.nextId = 1;
      this.backoff = 100;
      this.closed = false;
      this.ws = null;
      this.open();
    }

    currentToken() {
      return typeof this.token === "function" ? this.token() : this.token;
    }

    open() {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onopen = () => {
        this.backoff = 100;
        const token = this.currentToken();
        if (token) this.send({ id: "auth", type: "auth", payload: { token } });
        this.pending.clear();
        for (const sub of this.subs) { sub.serverId = null; this.sendSubscribe(sub); }
        this.pinger = setInterval(() => this.send({ type: "ping" }), this.pingEvery);
      };
      ws.onmessage = (event) => {
        let frame;
        try { frame = JSON.parse(event.data); } catch (e) { return; }
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

    send(frame) {
      if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
    }

    sendSubscribe(sub) {
      const id = "sub" + this.nextId++;
      this.pending.set(id, sub);
      this.send({ id, type: "subscribe", payload: sub.payload() });
    }

    subscribe(collection, options, handlers) {
      const sub = new Subscription(this, collection, options, handlers);
      this.subs.push(sub);
      this.sendSubscribe(sub);
      return sub;
    }

    unsubscribe(sub) {
      this.subs = this.subs.filter((s) => s !== sub);
      if (sub.serverId) this.send({ type: "unsubscribe", payload: { subscription_id: sub.serverId } });
    }

    onFrame(frame) {
      const p = frame.payload || {};
      if (frame.type === "snapshot") {
        const sub = this.pending.get(frame.id);
        this.pending.delete(frame.id);
        if (sub && !sub.closed) sub.onSnapshot(p);
      } else if (frame.type === "delta") {
        for (const sub of this.subs) if (sub.serverId === p.subscription_id) sub.onDelta(p);
      } else if (frame.type === "error") {
        const sub = this.pending.get(frame.id);
        this.pending.delete(frame.id);
        if (sub && p.code === "cursor_expired") { sub.cursor = null; this.sendSubscribe(sub); return; }
        const targets = sub ? [sub] : this.subs.filter((s) => (p.subscription_ids || []).includes(s.serverId));
        if (p.code === "token_expired") {
          // Re-authenticate (the token function may return a refreshed token), then resume.
          const token = this.currentToken();
          if (token) this.send({ id: "auth", type: "auth", payload: { token } });
          for (const s of targets) { s.serverId = null; this.sendSubscribe(s); }
        }
        for (const s of targets) if (s.handlers.error) s.handlers.error(p);
      }
    }

    close() {
      this.closed = true;
      if (this.ws) this.ws.close();
    }
  }

  root.AlyxRealtime = AlyxRealtime;
  if (typeof module !== "undefined" && module.exports) module.exports = { AlyxRealtime };
})(typeof window !== "undefined" ? window : globalThis);
