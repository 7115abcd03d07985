// Overview: collections with their record counts, and the server's health.
import { api } from "../api.js";
import { collections } from "../app.js";
import { clear, errorBox, h, text } from "../dom.js";

export function overviewPage() {
  const cols = h("div.grid");
  const health = h("dl.kv");
  const el = h("section",
    h("header.bar", h("h1", "Overview")),
    h("h2", "Collections"), cols,
    h("h2", "Health"), h("div.card", health));
  collections(true).then((items) => {
    clear(cols, items.map((c) => h("a.card.stat", { href: "#/collections/" + encodeURIComponent(c.name) },
      h("div.stat-label", c.name, c.auth ? h("span.badge", "auth") : null),
      h("div.stat-value", String(c.count)),
      h("div.muted", `${c.fields.length} fields`))));
  }).catch((err) => clear(cols, errorBox(err)));
  api("GET", "/api/health").then((hl) => {
    const fn = hl.functions || {};
    const rows = [
      ["Status", hl.status], ["Version", hl.version], ["Database", hl.database],
      ["Sandbox tier", fn.sandbox ? text(fn.sandbox) : ""], ["Sandbox setting", fn.setting],
      ["Function problems", (fn.problems || []).length ? text(fn.problems) : "none"],
    ];
    for (const [k, v] of Object.entries(hl)) {
      if (!["status", "version", "database", "functions", "collections"].includes(k)) rows.push([k, text(v)]);
    }
    clear(health, rows.map(([k, v]) => [h("dt", k), h("dd", text(v))]));
  }).catch((err) => clear(health, errorBox(err)));
  return { el };
}
