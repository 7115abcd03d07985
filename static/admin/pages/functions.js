// Functions: every function (or why it cannot load), and an invoke console with the run's logs.
import { api, send } from "../api.js";
import { clear, errorBox, h } from "../dom.js";

function triggers(f) {
  const hk = f.hooks || {};
  const out = [];
  if (hk.http) out.push("HTTP" + (f.invoke_rule ? ` (invoke: ${f.invoke_rule})` : ""));
  for (const d of hk.database || []) out.push(`database: ${d.collection} ${d.actions.join("/")} (${d.mode})`);
  if (hk.webhook) out.push(`webhook: ${hk.webhook.verification || "unverified"}${hk.webhook.header ? " " + hk.webhook.header : ""} (${hk.webhook.mode})`);
  for (const ev of hk.events || []) out.push(`event: ${ev.type}`);
  if (hk.run_as === "system") out.push("runs as system");
  if (hk.retries !== null && hk.retries !== undefined) out.push(`retries: ${hk.retries}`);
  return out;
}

function limits(l) {
  if (!l) return "";
  return [`${l.timeout} s`, `${l.memory} MB`, `${l.cpu} cpu`, `×${l.max_instances}`,
    l.concurrency > 1 ? `${l.concurrency} at once` : null, l.min_warm ? `${l.min_warm} warm` : null,
    l.network ? "network" : "no network"].filter(Boolean).join(" · ");
}

export function functionsPage() {
  const list = h("div.table-wrap");
  const consoleBox = h("div");
  const el = h("section", h("header.bar", h("h1", "Functions")), list, consoleBox);
  Promise.all([api("GET", "/api/functions"), api("GET", "/api/schedules").catch(() => ({ items: [] }))]).then(([fns, schedules]) => {
    const items = fns.items || [];
    const next = new Map((schedules.items || []).map((s) => [`${s.function}/${s.name}`, s.next_run_at]));
    if (!items.length) { clear(list, h("p.muted.pad", "No functions in functions/.")); return; }
    clear(list, h("table.functions", h("thead", h("tr", ["Name", "Status", "Runtime", "Tier", "Triggers", "Schedules", "Limits", "Version", ""].map((c) => h("th", c)))),
      h("tbody", items.map((f) => h("tr", { "data-function": f.name },
        h("td", f.name),
        h("td.wrap", f.status === "ok" ? h("span.badge.ok", "ok") : h("span.badge.bad", f.status), f.error ? h("div.error.small.load-error", f.error) : null),
        h("td", f.runtime || ""), h("td.tier", f.tier || ""),
        h("td.wrap.triggers", triggers(f).map((t) => h("div", t))),
        h("td.wrap.schedules", (f.schedules || []).map((s) => h("div", { title: `next: ${next.get(`${f.name}/${s.name}`) || "—"}` },
          `${s.name}: ${s.type} ${s.expression}${s.timezone && s.timezone !== "UTC" ? " " + s.timezone : ""}${s.enabled ? "" : " (off)"}`))),
        h("td.limits", limits(f.limits)),
        h("td.mono", f.version || ""),
        h("td", f.status === "ok" && (f.hooks || {}).http ? h("button.invoke", { type: "button", on: { click: () => clear(consoleBox, invokeConsole(f.name)) } }, "Invoke") : null))))));
  }).catch((err) => clear(list, errorBox(err)));
  return { el };
}

function parseHeaders(textValue) {
  const out = [];
  for (const line of textValue.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) out.push([line.slice(0, i).trim(), line.slice(i + 1).trim()]);
  }
  return out;
}

function invokeConsole(name) {
  const method = h("select#invoke-method", { "aria-label": "Method" }, ["POST", "GET", "PUT", "PATCH", "DELETE"].map((m) => h("option", m)));
  const path = h("input#invoke-path", { type: "text", placeholder: "/sub/path (optional)", "aria-label": "Path" });
  const query = h("input#invoke-query", { type: "text", placeholder: "a=1&b=2", "aria-label": "Query" });
  const headers = h("textarea#invoke-headers.code", { rows: 2, placeholder: "X-Name: value", "aria-label": "Headers" });
  const kind = h("select#invoke-kind", { "aria-label": "Body kind" }, h("option", { value: "json" }, "JSON"), h("option", { value: "raw" }, "Raw"));
  const body = h("textarea#invoke-body.code", { rows: 5, "aria-label": "Body" });
  body.value = "{}";
  const out = h("div#invoke-result");
  const run = h("button.primary#invoke-send", { type: "submit" }, "Send");
  const form = h("form.card.console", { on: { submit: async (e) => {
    e.preventDefault();
    const hdrs = parseHeaders(headers.value);
    if (kind.value === "json") {
      try { if (body.value.trim()) JSON.parse(body.value); } catch (err) { clear(out, errorBox(new Error("Body is not valid JSON: " + err.message))); return; }
      hdrs.push(["Content-Type", "application/json"]);
    }
    run.disabled = true;
    try {
      const target = `/api/functions/${encodeURIComponent(name)}${path.value.trim()}${query.value.trim() ? "?" + query.value.trim().replace(/^\?/, "") : ""}`;
      const r = await send(method.value, target, hdrs, body.value);
      const execId = (r.headers.find(([k]) => k.toLowerCase() === "x-alyx-execution-id") || [])[1];
      const logs = h("div");
      clear(out,
        h("dl.kv", h("dt", "Status"), h("dd#invoke-status", String(r.status)), h("dt", "Duration"), h("dd", `${r.duration} ms`),
          h("dt", "Execution"), h("dd", execId ? h("a", { href: "#/executions/" + encodeURIComponent(execId) }, execId) : "—")),
        h("h3", "Headers"), h("pre.code", r.headers.map(([k, v]) => `${k}: ${v}`).join("\n")),
        h("h3", "Body"), h("pre.code#invoke-body-out", r.body),
        h("h3", "Logs"), logs);
      if (execId) {
        const ex = await api("GET", "/api/executions/" + encodeURIComponent(execId));
        clear(logs, h("pre.code#invoke-logs", (ex.logs.stdout || "") + (ex.logs.stderr ? "\n[stderr]\n" + ex.logs.stderr : "") || "(no output)"));
      }
    } catch (err) {
      clear(out, errorBox(err));
    } finally {
      run.disabled = false;
    }
  } } },
  h("h2", `Invoke ${name}`),
  h("div.row", method, path, query), headers, h("div.row", kind), body, h("div.actions", run), out);
  setTimeout(() => method.focus(), 0);
  return form;
}
