// Overview: collections with their record counts, the server's health (the admin part of /api/health:
// database, sandbox tier, runtime images, realtime broker, workers) and migrations waiting for a command.
import { api } from "../api.js";
import { collections } from "../app.js";
import { clear, errorBox, h, text } from "../dom.js";

function images(fn) {
  if (!fn.images) return `not used (${fn.sandbox || "no"} tier)`;
  return h("div", fn.images.map((i) => h("div", { "data-image": i.runtime },
    h("span.badge." + (i.present ? "ok" : "bad"), i.present ? "present" : "missing"), " ", h("span.mono", i.image))));
}

function migrationsCard(m) {
  if (!m) return h("p.muted", "Unknown.");
  if (!m.pending.length) return h("p.muted#migrations-none", "None: the database matches schema.yaml.");
  return h("div#migrations",
    h("ul.steps", m.pending.map((s) => h("li" + (s.destructive ? ".destructive" : ""),
      h("strong", s.destructive ? "destructive" : "safe"), ` ${s.collection}: ${s.detail}`))),
    m.command ? h("div.command", h("span", "Review with"), h("code#migrate-review", m.review),
      h("span", "then apply with"), h("code#migrate-command", m.command)) :
      h("p.muted", "Safe steps are applied when the server next starts."));
}

export function overviewPage() {
  const cols = h("div.grid");
  const health = h("dl.kv#health");
  const migrations = h("div.card", h("p.muted", "Loading…"));
  const el = h("section",
    h("header.bar", h("h1", "Overview")),
    h("h2", "Collections"), cols,
    h("h2", "Health"), h("div.card", health),
    h("h2", "Pending migrations"), migrations);
  collections(true).then((items) => {
    clear(cols, items.map((c) => h("a.card.stat", { href: "#/collections/" + encodeURIComponent(c.name) },
      h("div.stat-label", c.name, c.auth ? h("span.badge", "auth") : null),
      h("div.stat-value", String(c.count)),
      h("div.muted", `${c.fields.length} fields`))));
  }).catch((err) => clear(cols, errorBox(err)));
  api("GET", "/api/health").then((hl) => {
    const fn = hl.functions || {};
    const rt = hl.realtime || {};
    const w = hl.workers || {};
    const rows = [
      ["Status", hl.status], ["Version", hl.version], ["Database", hl.database],
      ["Sandbox tier", fn.sandbox], ["Sandbox setting", fn.setting],
      ["Runtime images", images(fn)],
      ["Realtime broker", rt.broker ? (rt.broker === "none" ? "none (each worker polls the change feed)" : `${rt.broker} ${rt.url || ""}`) : ""],
      ["Workers", w.configured === undefined ? "" : `${w.configured} configured` +
        (w.running === null || w.running === undefined ? "" : `, ${w.running} running on this host`) + ` (this one: pid ${w.pid})`],
      ["Function problems", (fn.problems || []).length ? fn.problems.map((p) => h("div.error.small", `${p.function}: ${p.message}`)) : "none"],
    ];
    clear(health, rows.map(([k, v]) => [h("dt", k), h("dd", { "data-key": k }, v instanceof Node || Array.isArray(v) ? v : text(v))]));
    clear(migrations, migrationsCard(hl.migrations));
  }).catch((err) => { clear(health, errorBox(err)); clear(migrations); });
  return { el };
}
