// Executions: the log of function runs (filters, newest first) and one run's detail.
import { api, qs } from "../api.js";
import { clear, errorBox, h, text } from "../dom.js";

const STATUSES = ["", "success", "error", "timeout", "dead_letter"];
const TRIGGERS = ["", "http", "database", "webhook", "schedule", "event"];

export function executionsPage() {
  const fn = h("input#exec-function", { type: "search", placeholder: "function", "aria-label": "Function" });
  const status = h("select#exec-status", { "aria-label": "Status" }, STATUSES.map((s) => h("option", { value: s }, s || "any status")));
  const trigger = h("select#exec-trigger", { "aria-label": "Trigger" }, TRIGGERS.map((s) => h("option", { value: s }, s || "any trigger")));
  const list = h("div.card");
  let limit = 50;
  const more = h("button", { type: "button", on: { click: () => { limit += 50; load(); } } }, "Load more");
  const load = async () => {
    try {
      const { items } = await api("GET", "/api/executions" + qs({ function_id: fn.value.trim(), status: status.value, trigger_type: trigger.value, limit }));
      more.hidden = items.length < limit;
      clear(list, items.length ? h("table", h("thead", h("tr", ["Started", "Function", "Trigger", "Status", "Duration", ""].map((c) => h("th", c)))),
        h("tbody", items.map((x) => h("tr", { "data-execution": x.id, "data-status": x.status },
          h("td.mono", x.started_at), h("td", x.function_id), h("td", x.trigger_type),
          h("td", h("span.badge." + (x.status === "success" ? "ok" : "bad"), x.status)),
          h("td", x.duration_ms === null ? "" : `${x.duration_ms} ms`),
          h("td", h("a.open", { href: "#/executions/" + encodeURIComponent(x.id) }, "Open"))))))
        : h("p.muted.pad", "No executions match."));
    } catch (err) { clear(list, errorBox(err)); }
  };
  const el = h("section", h("header.bar", h("h1", "Executions")),
    h("form.filter", { on: { submit: (e) => { e.preventDefault(); load(); } } }, fn, status, trigger, h("button", { type: "submit" }, "Apply")),
    list, more);
  status.addEventListener("change", load);
  trigger.addEventListener("change", load);
  load();
  return { el };
}

export function executionPage(id) {
  const body = h("div", h("p.muted", "Loading…"));
  const el = h("section", h("header.bar", h("a", { href: "#/executions" }, "‹ Executions"), h("h1", "Execution ", h("span.mono", id))), body);
  api("GET", "/api/executions/" + encodeURIComponent(id)).then((x) => {
    const err = x.error;
    clear(body,
      h("div.card", h("dl.kv", [
        ["Function", x.function_id], ["Version", x.version], ["Trigger", x.trigger_type], ["Status", x.status],
        ["Started", x.started_at], ["Duration", x.duration_ms === null ? "" : `${x.duration_ms} ms`], ["Tier", x.tier],
      ].map(([k, v]) => [h("dt", k), h("dd", { "data-key": k }, text(v))]))),
      err ? h("div.card.failed", h("h2", "Error"), h("p#exec-error", `${err.code || "error"}: ${err.message || ""}`),
        err.stack || (err.details && err.details.traceback)
          ? h("pre.code#exec-stack", err.stack || err.details.traceback) : null,
        err.details ? h("pre.code", JSON.stringify(err.details, null, 2)) : null) : null,
      h("h2", "Timings"), h("pre.code", JSON.stringify(x.timings || {}, null, 2)),
      h("h2", "Input"), h("pre.code", JSON.stringify(x.input, null, 2)),
      h("h2", "Output"), h("pre.code", JSON.stringify(x.output, null, 2)),
      h("h2", "stdout"), h("pre.code#exec-stdout", x.logs.stdout || "(empty)"),
      h("h2", "stderr"), h("pre.code#exec-stderr", x.logs.stderr || "(empty)"));
  }).catch((e) => clear(body, errorBox(e)));
  return { el };
}
