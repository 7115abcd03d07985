// Record forms generated from the schema: one widget per field type (the field registry's `widget`,
// sent by GET /api/collections), API validation errors shown beside their fields.
import { api } from "./api.js";
import { collections } from "./app.js";
import { clear, h, text } from "./dom.js";
import { filePreview, isImage, names } from "./files.js";

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
  file: (f, v, id, ctx) => fileWidget(f, v, id, ctx),
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

/** The field a collection's records are labelled and searched by: its first text or email field. */
export function labelField(coll) {
  const f = ((coll && coll.fields) || []).find((x) => ["text", "email"].includes(x.widget));
  return f ? f.name : null;
}

const RECORD_ID = /^[a-z0-9]{15}$/;

function relationPicker(f, v, id) {
  // A search box over the target collection (its label field through the REST list's filter, or an id
  // prefix), a list of matches to pick from, and the picked record shown by its label.
  const listId = id + "-options";
  const input = h("input", { id, name: f.name, type: "search", role: "combobox", autocomplete: "off",
    "aria-autocomplete": "list", "aria-controls": listId, "aria-expanded": "false", placeholder: `Search ${f.collection}…` });
  const options = h("ul.options", { id: listId, role: "listbox", hidden: true });
  const shown = h("span.chosen-label");
  const clearBtn = h("button.clear-relation", { type: "button", "aria-label": `Clear ${f.name}`, hidden: true }, "×");
  // the picked record could not be read: its id stays, with why, and a button to try again
  const problem = h("span.field-error.relation-error", { role: "alert", hidden: true });
  const retryBtn = h("button.retry-relation", { type: "button", hidden: true }, "Retry");
  const chosen = h("span.chosen", shown, clearBtn, problem, retryBtn);
  let value = v ?? null;
  let target = null;
  const targetReady = collections().then((all) => { target = all.find((c) => c.name === f.collection) || null; });
  const failed = (message) => {
    problem.textContent = message;
    problem.hidden = retryBtn.hidden = !message;
  };
  const show = (record) => {
    value = record ? record.id : null;
    shown.textContent = record ? `${label(record)}${label(record) === record.id ? "" : " · " + record.id}` : "none";
    shown.dataset.id = value || "";
    shown.classList.toggle("muted", !record);
    clearBtn.hidden = !record;
    failed("");
  };
  // The stored id is shown at once; its label when the record is read. A failure that may pass (the
  // network, 429, 5xx) is tried again twice; then, or for any other (404: deleted or hidden by the view
  // rule), the id stays with the error beside it.
  const fetchChosen = (attempt) => {
    const wanted = value;
    api("GET", `/api/collections/${encodeURIComponent(f.collection)}/${encodeURIComponent(wanted)}`)
      .then((r) => { if (value === wanted) show(r); })
      .catch((err) => {
        if (value !== wanted) return; // another record was picked (or none) meanwhile
        const passing = err.status === undefined || err.status === 429 || err.status >= 500;
        if (passing && attempt < 2) {
          const wait = err.status === 429 ? Math.min(5, Number(err.details.retry_after) || 1) * 1000 : 300 * (attempt + 1);
          setTimeout(() => { if (value === wanted) fetchChosen(attempt + 1); }, wait);
          return;
        }
        failed(`Could not read ${f.collection} ${wanted}: ${err.message}`);
      });
  };
  retryBtn.addEventListener("click", () => { failed(""); fetchChosen(0); });
  show(value ? { id: value } : null);
  if (value) fetchChosen(0);
  clearBtn.addEventListener("click", () => { show(null); input.focus(); });
  const close = () => { options.hidden = true; input.setAttribute("aria-expanded", "false"); };
  const pick = (r) => { show(r); input.value = ""; close(); input.focus(); };
  let timer = null;
  let asked = 0;
  const search = async () => {
    const term = input.value.trim();
    if (!term) { close(); return; }
    await targetReady;
    const lf = labelField(target);
    const quoted = JSON.stringify(term);
    const filter = lf ? `${lf}.contains(${quoted}) || id.startsWith(${quoted})` : `id.startsWith(${quoted})`;
    const mine = ++asked;
    try {
      const page = await api("GET", `/api/collections/${encodeURIComponent(f.collection)}` +
        `?perPage=10&skipTotal=1&filter=${encodeURIComponent(filter)}`);
      if (mine !== asked) return; // an older answer arriving late
      options.replaceChildren(...(page.items.length ? page.items.map((r) => h("li", { role: "presentation" },
        h("button.option", { type: "button", role: "option", "data-id": r.id, on: { click: () => pick(r) } },
          h("span", label(r)), h("span.muted.mono", r.id))))
        : [h("li.muted.small", "No match.")]));
      options.hidden = false;
      input.setAttribute("aria-expanded", "true");
    } catch (e) { /* a search that fails leaves the list as it was */ }
  };
  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 150); });
  input.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown") { const first = options.querySelector("button"); if (first) { e.preventDefault(); first.focus(); } }
    if (e.key === "Enter") { e.preventDefault(); const first = options.querySelector("button"); if (first) first.click(); }
  });
  options.addEventListener("keydown", (e) => {
    const buttons = [...options.querySelectorAll("button")];
    const i = buttons.indexOf(document.activeElement);
    if (e.key === "ArrowDown" && i < buttons.length - 1) { e.preventDefault(); buttons[i + 1].focus(); }
    if (e.key === "ArrowUp") { e.preventDefault(); (i > 0 ? buttons[i - 1] : input).focus(); }
  });
  return { el: h("div.picker", chosen, input, options), input,
    read: () => (RECORD_ID.test(input.value.trim()) ? input.value.trim() : value) };
}

function fileWidget(f, v, id, ctx) {
  // Stored files (previews; each can be removed) and a file input for uploads (sent as multipart).
  const settings = f.file || {};
  const stored = names(v);
  const removed = new Set();
  const input = h("input", { id, name: f.name, type: "file", multiple: Boolean(settings.multiple),
    accept: (settings.mime_types || []).join(",") || null });
  const chips = h("div.files.stored");
  const fresh = h("div.files.fresh");
  const render = () => clear(chips, stored.map((name) => h("span.file-chip" + (removed.has(name) ? ".removed" : ""), { "data-name": name },
    ctx.record ? filePreview(ctx.collection.name, f, ctx.record.id, name) : h("span", name),
    h("button.remove-file", { type: "button", "aria-label": `Remove ${name}`, "aria-pressed": String(removed.has(name)),
      on: { click: () => { removed.has(name) ? removed.delete(name) : removed.add(name); render(); } } },
    removed.has(name) ? "Keep" : "Remove"))));
  input.addEventListener("change", () => clear(fresh, [...input.files].map((file) => h("span.file-chip.new",
    isImage(file.name) ? h("img.thumb", { src: URL.createObjectURL(file), alt: file.name }) : null, h("span", file.name)))));
  render();
  const hints = [settings.multiple ? `up to ${settings.max_files} files` : "one file",
    settings.max_size ? `${Math.round(settings.max_size / 1024)} KB each` : null,
    settings.protected ? "protected" : null].filter(Boolean).join(", ");
  return { el: h("div.file-field", chips, input, fresh, h("div.hint", hints)), input, read: () => undefined,
    files: () => ({ uploads: [...input.files], removals: [...removed] }) };
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
    const w = make(f, record ? record[f.name] : (f.widget === "toggle" ? f.default : f.default ?? null), id,
      { collection, record });
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
    const parts = new FormData();
    let multipart = false;
    for (const f of collection.fields) {
      const w = widgets[f.name];
      if (w.files) { // file fields travel as multipart parts: uploads under the name, removals as `name-`
        const { uploads, removals } = w.files();
        const key = record && f.file && f.file.multiple ? f.name + "+" : f.name;
        for (const file of uploads) { parts.append(key, file, file.name); multipart = true; }
        for (const name of removals) { parts.append(f.name + "-", name); multipart = true; }
        continue;
      }
      let value;
      try { value = w.read(); } catch (err) { local[f.name] = [err.message]; continue; }
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
      let payload = body;
      if (multipart) { parts.append("@json", JSON.stringify(body)); payload = parts; }
      const saved = record ? await api("PATCH", `${path}/${encodeURIComponent(record.id)}`, payload)
        : await api("POST", path, payload);
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
