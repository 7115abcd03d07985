// Schedules (next/last run, run now) and the job queue (pending, failed, dead letters with retry).
import { api, qs } from "../api.js";
import { clear, errorBox, h, text, toast } from "../dom.js";

export function jobsPage() {
  const schedules = h("div.card");
  const counts = h("div.muted");
  const jobs = h("div.card");
  const status = h("select#job-status", { "aria-label": "Job status" },
    ["", "pending", "running", "failed", "dead", "done"].map((s) => h("option", { value: s }, s || "any status")));
  const el = h("section", h("header.bar", h("h1", "Schedules & jobs")),
    h("h2", "Schedules"), schedules,
    h("h2", "Jobs"), h("div.filter", status, counts), jobs);

  const loadSchedules = () => api("GET", "/api/schedules").then((r) => {
    const items = r.items || [];
    clear(schedules, items.length ? h("table", h("thead", h("tr", ["Function", "Name", "When", "Next run", "Last run", "Last status", ""].map((c) => h("th", c)))),
      h("tbody", items.map((s) => h("tr", { "data-schedule": s.key },
        h("td", s.function), h("td", s.name), h("td.mono", `${s.type} ${text(s.expression)}`),
        h("td.mono", s.next_run_at || "—"), h("td.mono", s.last_run_at || "—"), h("td", s.last_status || "—"),
        h("td", h("button.run-now", { type: "button", on: { click: async () => {
          try { await api("POST", `/api/schedules/${encodeURIComponent(s.function)}/${encodeURIComponent(s.name)}/run`); toast(`Queued ${s.function}/${s.name}.`); loadJobs(); }
          catch (err) { toast(err.message, "bad"); }
        } } }, "Run now"))))))
      : h("p.muted.pad", "No schedules."),
      (r.errors || []).map((e) => h("div.error", `${e.function}: ${e.message}`)));
  }).catch((err) => clear(schedules, errorBox(err)));

  const loadJobs = () => api("GET", "/api/jobs" + qs({ status: status.value })).then((r) => {
    counts.textContent = Object.entries(r.counts || {}).map(([k, v]) => `${k}: ${v}`).join(" · ");
    clear(jobs, r.items.length ? h("table", h("thead", h("tr", ["Id", "Trigger", "Target", "Status", "Attempts", "Last error", ""].map((c) => h("th", c)))),
      h("tbody", r.items.map((j) => h("tr", { "data-job": String(j.id), "data-status": j.status },
        h("td", String(j.id)), h("td", j.trigger_type), h("td", text(j.target)),
        h("td", h("span.badge." + (j.status === "done" ? "ok" : j.status === "dead" ? "bad" : "warn"), j.status)),
        h("td", `${j.attempts}/${j.max_attempts}`),
        h("td", j.last_error ? text(j.last_error.message || j.last_error) : ""),
        h("td", j.last_execution_id ? h("a", { href: "#/executions/" + encodeURIComponent(j.last_execution_id) }, "Execution") : null,
          j.status === "dead" ? h("button.retry", { type: "button", on: { click: async () => {
            try { await api("POST", `/api/jobs/${j.id}/retry`); toast(`Job ${j.id} queued again.`); loadJobs(); }
            catch (err) { toast(err.message, "bad"); }
          } } }, "Retry") : null)))))
      : h("p.muted.pad", "No jobs."));
  }).catch((err) => clear(jobs, errorBox(err)));

  status.addEventListener("change", loadJobs);
  loadSchedules();
  loadJobs();
  return { el };
}
