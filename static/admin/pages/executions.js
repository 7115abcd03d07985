// Executions: the log of function runs (filters, newest first) and one run's detail.
import { api, qs } from "../api.js";
import { clear, errorBox, h, text } from "../dom.js";

const STATUSES = ["", "success", "error", "timeout", "crashed", "memory_limit", "load_error", "denied"];
const TRIGGERS = ["", "http", "database", "webhook", "schedule", "event"];

const PAGE_SIZES = [20, 50, 100];

export function executionsPage() {
  const fn = h("input#exec-function", { type: "search", placeholder: "function", "aria-label": "Function" });
  const status = h("select#exec-status", { "aria-label": "Status" }, STATUSES.map((s) => h("option", { value: s }, s || "any status")));
  const trigger = h("select#exec-trigger", { "aria-label": "Trigger" }, TRIGGERS.map((s) => h("option", { value: s }, s || "any trigger")));
  const size = h("select#exec-per-page", { "aria-label": "Executions per page" },
    PAGE_SIZES.map((n) => h("option", { value: String(n), selected: n === 50 }, `${n} per page`)));
  const list = h("div.card");
  const pager = h("div.pager");
  // Keyset paging: the API's `next` is the `before` of the next (older) page; the stack goes back.
  let cursors = [null];
  let next = null;
  let latest = 0; // only the newest load renders: answers can arrive out of order
  const load = async () => {
    const mine = ++latest;
    try {
      const r = await api("GET", "/api/executions" + qs({ function_id: fn.value.trim(), status: status.value,
        trigger_type: trigger.value, limit: size.value, before: cursors[cursors.length - 1] }));
      if (mine !== latest) return;
      next = r.next;
      clear(list, r.items.length ? h("table", h("thead", h("tr", ["Started", "Function", "Trigger", "Status", "Duration", ""].map((c) => h("th", c)))),
        h("tbody", r.items.map((x) => h("tr", { "data-execution": x.id, "data-status": x.status },
          h("td.mono", x.started_at), h("td", x.function_id), h("td", x.trigger_type),
          h("td", h("span.badge." + (x.status === "success" ? "ok" : "bad"), x.status)),
          h("td", x.duration_ms === null ? "" : `${x.duration_ms} ms`),
          h("td", h("a.open", { href: "#/executions/" + encodeURIComponent(x.id) }, "Open"))))))
        : h("p.muted.pad", "No executions match."));
      clear(pager,
        h("button#exec-newer", { type: "button", disabled: cursors.length <= 1, on: { click: () => { cursors.pop(); load(); } } }, "‹ Newer"),
        h("span#exec-page", `Page ${cursors.length}`),
        h("button#exec-older", { type: "button", disabled: !next, on: { click: () => { cursors.push(next); load(); } } }, "Older ›"),
        size);
    } catch (err) { if (mine === latest) clear(list, errorBox(err)); }
  };
  const restart = () => { cursors = [null]; load(); };
  const el = h("section", h("header.bar", h("h1", "Executions"), h("span.muted", "newest first")),
    h("form.filter", { on: { submit: (e) => { e.preventDefault(); restart(); } } }, fn, status, trigger, h("button", { type: "submit" }, "Apply")),
    list, pager);
  status.addEventListener("change", restart);
  trigger.addEventListener("change", restart);
  size.addEventListener("change", restart);
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
