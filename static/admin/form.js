// Record forms generated from the schema: one widget per field type (the field registry's `widget`,
// sent by GET /api/collections), API validation errors shown beside their fields.
import { api } from "./api.js";
import { h, text } from "./dom.js";

const pad = (n) => String(n).padStart(2, "0");

function localDatetime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Each widget: build(field, value, id) → {el, input, read() → value | throws Error(message)} */
const WIDGETS = {
  text: (f, v, id) => simple(f, v, id, "text"),
  email: (f, v, id) => simple(f, v, id, "email"),
  url: (f, v, id) => simple(f, v, id, "url"),
  textarea: (f, v, id) => {
    const input = h("textarea", { id, name: f.name, rows: 4 });
    input.value = v ?? "";
    if (f.max !== null) input.maxLength = f.max;
    return { el: input, input, read: () => (input.value === "" ? null : input.value) };
  },
  integer: (f, v, id) => numeric(f, v, id, "1", (s) => {
    if (!/^-?\d+$/.test(s)) throw new Error("Enter a whole number.");
    return Number(s);
  }),
  number: (f, v, id) => numeric(f, v, id, "any", (s) => {
    const n = Number(s);
    if (!isFinite(n)) throw new Error("Enter a number.");
    return n;
  }),
  toggle: (f, v, id) => {
    const input = h("input", { id, name: f.name, type: "checkbox", role: "switch" });
    input.checked = Boolean(v ?? f.default);
    return { el: h("span.switch", input), input, read: () => input.checked };
  },
  date: (f, v, id) => {
    const input = h("input", { id, name: f.name, type: "date" });
    input.value = v ? String(v).slice(0, 10) : "";
    return { el: input, input, read: () => input.value || null };
  },
  datetime: (f, v, id) => {
    const input = h("input", { id, name: f.name, type: "datetime-local", step: "1" });
    input.value = localDatetime(v);
    return { el: input, input, read: () => (input.value ? new Date(input.value).toISOString() : null) };
  },
  select: (f, v, id) => {
    const input = h("select", { id, name: f.name },
      f.required ? null : h("option", { value: "" }, "—"),
      f.values.map((value) => h("option", { value }, value)));
    input.value = v ?? f.default ?? (f.required ? f.values[0] : "");
    return { el: input, input, read: () => input.value || null };
  },
  relation: (f, v, id) => relationPicker(f, v, id),
  json: (f, v, id) => {
    const input = h("textarea.code", { id, name: f.name, rows: 4, spellcheck: "false" });
    input.value = v === null || v === undefined ? "" : JSON.stringify(v, null, 2);
    const check = () => {
      if (input.value.trim() === "") return null;
      try { return JSON.parse(input.value); } catch (e) { throw new Error("Not valid JSON: " + e.message); }
    };
    input.addEventListener("input", () => {
      try { check(); input.setCustomValidity(""); } catch (e) { input.setCustomValidity(e.message); }
    });
    return { el: input, input, read: check };
  },
};

function simple(f, v, id, type) {
  const input = h("input", { id, name: f.name, type, autocomplete: "off" });
  input.value = v ?? "";
  if (f.max !== null) input.maxLength = f.max;
  if (f.pattern) input.title = "Pattern: " + f.pattern;
  return { el: input, input, read: () => (input.value === "" ? null : input.value) };
}

function numeric(f, v, id, step, parse) {
  const input = h("input", { id, name: f.name, type: "number", step, inputmode: "decimal" });
  if (f.min !== null) input.min = f.min;
  if (f.max !== null) input.max = f.max;
  input.value = v ?? "";
  return { el: input, input, read: () => (input.value.trim() === "" ? null : parse(input.value.trim())) };
}

function relationPicker(f, v, id) {
  const listId = id + "-options";
  const input = h("input", { id, name: f.name, type: "search", list: listId, autocomplete: "off",
    placeholder: `Search ${f.collection}…` });
  const options = h("datalist", { id: listId });
  input.value = v ?? "";
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const term = input.value.trim();
      const filter = term ? `id.startsWith(${JSON.stringify(term)})` : "";
      try {
        const page = await api("GET", `/api/collections/${f.collection}?perPage=20${filter ? "&filter=" + encodeURIComponent(filter) : ""}`);
        options.replaceChildren(...page.items.map((r) => h("option", { value: r.id }, label(r))));
      } catch (e) { /* a search that fails leaves the list as it was */ }
    }, 150);
  });
  return { el: h("span", input, options), input, read: () => input.value.trim() || null };
}

/** A record's human label: its first short text value that is not the id. */
export function label(record) {
  for (const [k, v] of Object.entries(record || {})) {
    if (k !== "id" && typeof v === "string" && v && v.length < 80 && !/_at$/.test(k)) return v;
  }
  return record ? record.id : "";
}

/**
 * The form for one collection; `record` null to create. Resolves through onSaved(record).
 */
export function recordForm(collection, record, { onSaved, onCancel }) {
  const widgets = {};
  const errors = {};
  const general = h("div.error", { role: "alert", hidden: true });
  const rows = collection.fields.map((f) => {
    const id = "f-" + f.name;
    const make = WIDGETS[f.widget] || WIDGETS.json;
    const w = make(f, record ? record[f.name] : (f.widget === "toggle" ? f.default : f.default ?? null), id);
    widgets[f.name] = w;
    errors[f.name] = h("div.field-error", { id: id + "-error", role: "alert", hidden: true });
    w.input.setAttribute("aria-describedby", id + "-error");
    const hints = [f.type, f.required ? "required" : null, f.unique ? "unique" : null,
      f.min !== null ? "min " + f.min : null, f.max !== null ? "max " + f.max : null,
      f.collection ? "→ " + f.collection : null].filter(Boolean).join(" · ");
    return h("div.field", { "data-field": f.name },
      h("label", { for: id }, f.name, f.required ? h("span.req", { "aria-hidden": "true" }, " *") : null),
      w.el, h("div.hint", hints), errors[f.name]);
  });
  const save = h("button.primary", { type: "submit" }, record ? "Save" : "Create");
  const form = h("form.record-form", { novalidate: true, on: { submit: submit } },
    h("h2", record ? `Edit ${collection.name} ${record.id}` : `New ${collection.name} record`),
    rows, general,
    h("div.actions", h("button", { type: "button", on: { click: onCancel } }, "Cancel"), save));

  function showErrors(map) {
    let first = null;
    for (const [name, box] of Object.entries(errors)) {
      const messages = map[name];
      box.hidden = !messages;
      box.textContent = messages ? [].concat(messages).join(" ") : "";
      widgets[name].input.setAttribute("aria-invalid", messages ? "true" : "false");
      if (messages && !first) first = widgets[name].input;
    }
    if (first) first.focus();
  }

  async function submit(e) {
    e.preventDefault();
    general.hidden = true;
    const body = {};
    const local = {};
    for (const f of collection.fields) {
      let value;
      try { value = widgets[f.name].read(); } catch (err) { local[f.name] = [err.message]; continue; }
      if (record) {
        if (JSON.stringify(value) !== JSON.stringify(record[f.name] ?? null)) body[f.name] = value;
      } else if (value !== null) {
        body[f.name] = value;
      }
    }
    showErrors(local);
    if (Object.keys(local).length) return;
    save.disabled = true;
    try {
      const path = `/api/collections/${encodeURIComponent(collection.name)}`;
      const saved = record ? await api("PATCH", `${path}/${encodeURIComponent(record.id)}`, body)
        : await api("POST", path, body);
      onSaved(saved);
    } catch (err) {
      const fieldErrors = {};
      const other = [];
      for (const [k, v] of Object.entries(err.details || {})) {
        if (widgets[k]) fieldErrors[k] = v; else other.push(`${k}: ${text(v)}`);
      }
      showErrors(fieldErrors);
      general.textContent = err.message + (other.length ? " " + other.join("; ") : "");
      general.hidden = false;
    } finally {
      save.disabled = false;
    }
  }

  return form;
}
