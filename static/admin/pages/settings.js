// Settings: the effective configuration; secrets arrive masked (the server masks them).
import { api } from "../api.js";
import { clear, errorBox, h, text } from "../dom.js";

export function settingsPage() {
  const list = h("div.card");
  const el = h("section", h("header.bar", h("h1", "Settings")),
    h("p.muted", "Effective configuration (alyx.yaml and ALYX_* variables). Change it there and restart; secrets are masked by the server."),
    list);
  api("GET", "/api/settings").then((r) => {
    clear(list, h("p.muted", "Project: ", h("code", r.project_dir)),
      h("table", h("thead", h("tr", ["Key", "Value", "Default", "Variable"].map((c) => h("th", c)))),
        h("tbody", r.items.map((s) => h("tr", { "data-key": s.key, class: JSON.stringify(s.value) !== JSON.stringify(s.default) ? "changed" : null },
          h("td.mono", s.key), h("td.mono", text(s.value)), h("td.mono.muted", text(s.default)), h("td.mono.muted", s.env))))));
  }).catch((err) => clear(list, errorBox(err)));
  return { el };
}
