// Records of one collection: the REST list (filter, sort, page, fields=) in a table, kept live by the
// realtime channel, with create/edit/delete forms and bulk delete.
import { api, accessToken, currentFilesToken, qs } from "../api.js";
import { collections } from "../app.js";
import { clear, confirmDialog, errorBox, h, keyed, modal, rebuild, text, toast } from "../dom.js";
import { filePreview, names, readyFor } from "../files.js";
import { label, recordForm } from "../form.js";
import { collectionYaml } from "../schema.js";

const PAGE_SIZES = [10, 30, 50, 100, 200];
const SYSTEM = ["id", "created_at", "updated_at"];

export function realtimeUrl() {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/realtime";
}

export function recordsPage(name) {
  const st = { filter: "", sort: "", page: 1, perPage: 30, columns: null, selected: new Set(), items: [] };
  const el = h("section.records");
  let coll = null;
  let rt = null;
  let sub = null;
  let reloadTimer = null;
  const live = h("span.live", { title: "Live updates" }, "connecting…");

  const filterInput = h("input#filter", { type: "search", placeholder: 'Filter (CEL), e.g. status == "published" && views > 10',
    "aria-label": "Filter", autocomplete: "off", spellcheck: "false" });
  const filterError = h("div.error#filter-error", { role: "alert", hidden: true });
  const table = h("div.table-wrap");
  const pager = h("div.pager");
  const bulk = h("button.danger#bulk-delete", { type: "button", disabled: true, on: { click: bulkDelete } }, "Delete selected");
  const columnsMenu = h("details.columns", h("summary", "Columns"));
  const totalLabel = h("span.muted");

  clear(el,
    h("header.bar", h("h1", name, " ", totalLabel), live,
      h("div.spacer"), h("button#show-schema", { type: "button", on: { click: showSchema } }, "Schema"), columnsMenu, bulk,
      h("button.primary#new-record", { type: "button", on: { click: () => openForm(null) } }, "New record")),
    h("form.filter", { on: { submit: (e) => { e.preventDefault(); st.filter = filterInput.value.trim(); st.page = 1; load(); resubscribe(); } } },
      filterInput, h("button", { type: "submit" }, "Apply")),
    filterError, table, pager);

  collections().then((items) => {
    coll = items.find((c) => c.name === name);
    if (!coll) { clear(table, errorBox(new Error(`No collection ${name}.`))); return; }
    st.columns = coll.fields.map((f) => f.name).slice(0, 8);
    buildColumnsMenu();
    load();
    connect();
  }).catch((err) => clear(table, errorBox(err)));

  function allColumns() { return [...SYSTEM.slice(0, 1), ...coll.fields.map((f) => f.name), ...SYSTEM.slice(1)]; }
  function shown() { return ["id", ...st.columns]; }

  function buildColumnsMenu() {
    const boxes = allColumns().filter((c) => c !== "id").map((c) => {
      const box = h("input", { type: "checkbox", value: c, checked: st.columns.includes(c),
        on: { change: () => {
          st.columns = allColumns().filter((n) => n !== "id" && (n === c ? box.checked : st.columns.includes(n)));
          load();
        } } });
      return h("label.check", box, " ", c);
    });
    columnsMenu.replaceChildren(h("summary", "Columns"), h("div.menu", boxes));
  }

  let loads = 0; // only the newest load renders: answers can arrive out of order
  async function load() {
    if (!coll) return;
    const mine = ++loads;
    const relations = coll.fields.filter((f) => f.widget === "relation" && st.columns.includes(f.name)).map((f) => f.name);
    const params = { filter: st.filter, sort: st.sort, page: st.page, perPage: st.perPage,
      fields: shown().join(","), expand: relations.join(",") };
    try {
      const page = await api("GET", `/api/collections/${encodeURIComponent(name)}${qs(params)}`);
      await readyFor(coll.fields.filter((f) => f.widget === "file" && st.columns.includes(f.name)));
      if (mine !== loads) return;
      filterError.hidden = true;
      filterInput.removeAttribute("aria-invalid");
      st.items = page.items;
      st.total = page.totalItems;
      st.pages = page.totalPages;
      render();
    } catch (err) {
      if (err.details && (err.details.filter || err.details.sort)) {
        filterError.textContent = err.message;
        filterError.hidden = false;
        filterInput.setAttribute("aria-invalid", "true");
      } else {
        clear(table, errorBox(err));
      }
    }
  }

  function sortState(col) {
    const parts = st.sort.split(",").filter(Boolean);
    if (parts[0] === col) return "ascending";
    if (parts[0] === "-" + col) return "descending";
    return "none";
  }

  function toggleSort(col) {
    const now = sortState(col);
    st.sort = now === "none" ? col : now === "ascending" ? "-" + col : "";
    load();
  }

  function cell(col, record) {
    const value = record[col];
    const field = coll.fields.find((f) => f.name === col);
    if (field && field.widget === "relation" && value) {
      const expanded = record.expand && record.expand[col];
      return h("details.relation", h("summary", expanded ? label(expanded) : value),
        h("pre", JSON.stringify(expanded || { id: value }, null, 2)));
    }
    if (field && field.widget === "toggle") return value ? "✓" : "—";
    if (field && field.widget === "file") {
      const all = names(value);
      return h("span.files", all.slice(0, 3).map((n) => filePreview(name, field, record.id, n)),
        all.length > 3 ? h("span.muted", `+${all.length - 3}`) : null);
    }
    const s = text(value);
    return s.length > 80 ? s.slice(0, 80) + "…" : s;
  }

  // The table is patched, not rebuilt: a row (and the head, the pager) whose content did not change keeps
  // its elements, so a live reload (or the reload after a save) never swallows a click under way on them.
  const thead = h("thead");
  const tbody = h("tbody");
  const grid = h("table", thead, tbody);
  const empty = h("p.muted.pad");

  function render() {
    const total = st.total >= 0 ? `(${st.total})` : "";
    if (totalLabel.textContent !== total) totalLabel.textContent = total;
    const allChecked = st.items.length > 0 && st.items.every((r) => st.selected.has(r.id));
    rebuild(thead, JSON.stringify([shown(), st.sort, allChecked]), () => {
      const allBox = h("input", { type: "checkbox", "aria-label": "Select all on this page", checked: allChecked,
        on: { change: () => { for (const r of st.items) allBox.checked ? st.selected.add(r.id) : st.selected.delete(r.id); render(); } } });
      return h("tr", h("th.pick", allBox), shown().map((col) => h("th", { "aria-sort": sortState(col) },
        h("button.sort", { type: "button", "data-column": col, on: { click: () => toggleSort(col) } }, col,
          h("span.arrow", { "aria-hidden": "true" }, { ascending: " ▲", descending: " ▼", none: "" }[sortState(col)])))),
        h("th", h("span.sr", "Actions")));
    });
    // a row's key: all its cells show (file links carry the current file token)
    const files = coll.fields.some((f) => f.widget === "file" && st.columns.includes(f.name)) ? currentFilesToken() : null;
    keyed(tbody, st.items, (r) => r.id, (r) => JSON.stringify([shown(), r, st.selected.has(r.id), files]), (r) => h("tr", { "data-id": r.id },
      h("td.pick", h("input", { type: "checkbox", "aria-label": "Select " + r.id, checked: st.selected.has(r.id),
        on: { change: (e) => { e.target.checked ? st.selected.add(r.id) : st.selected.delete(r.id); updateBulk(); } } })),
      shown().map((col) => h("td", { "data-column": col }, cell(col, r))),
      h("td.row-actions",
        h("button.edit", { type: "button", on: { click: () => edit(r.id) } }, "Edit"),
        h("button.delete.danger", { type: "button", on: { click: () => remove([r.id]) } }, "Delete"))));
    empty.textContent = st.filter ? "No record matches the filter." : "No records yet.";
    empty.hidden = st.items.length > 0;
    if (table.firstChild !== grid) clear(table, grid, empty); // first render, or after an error box
    rebuild(pager, JSON.stringify([st.page, st.pages, st.perPage]), () => {
      const perPage = h("select#per-page", { "aria-label": "Records per page",
        on: { change: () => { st.perPage = Number(perPage.value); st.page = 1; load(); } } },
        PAGE_SIZES.map((n) => h("option", { value: String(n), selected: n === st.perPage }, `${n} per page`)));
      return [
        h("button#prev", { type: "button", disabled: st.page <= 1, on: { click: () => { st.page--; load(); } } }, "‹ Previous"),
        h("span#page-info", `Page ${st.page} of ${Math.max(1, st.pages)}`),
        h("button#next", { type: "button", disabled: st.page >= st.pages, on: { click: () => { st.page++; load(); } } }, "Next ›"),
        perPage];
    });
    updateBulk();
  }

  function updateBulk() {
    bulk.disabled = st.selected.size === 0;
    bulk.textContent = st.selected.size ? `Delete selected (${st.selected.size})` : "Delete selected";
  }

  async function edit(id) {
    try {
      openForm(await api("GET", `/api/collections/${encodeURIComponent(name)}/${encodeURIComponent(id)}`));
    } catch (err) { toast(err.message, "bad"); }
  }

  async function openForm(record) {
    if (record) await readyFor(coll.fields.filter((f) => f.widget === "file")).catch(() => {});
    const m = modal(recordForm(coll, record, {
      onSaved: (saved) => { m.close(); toast(record ? "Saved." : `Created ${saved.id}.`); load(); },
      onCancel: () => m.close(),
    }));
    const first = m.dialog.querySelector("input, select, textarea");
    if (first) first.focus();
  }

  async function remove(ids) {
    const what = ids.length === 1 ? `record ${ids[0]}` : `${ids.length} records`;
    if (!(await confirmDialog(`Delete ${what} from ${name}? This cannot be undone.`))) return;
    const failed = [];
    for (const id of ids) {
      try { await api("DELETE", `/api/collections/${encodeURIComponent(name)}/${encodeURIComponent(id)}`); st.selected.delete(id); }
      catch (err) { failed.push(`${id}: ${err.message}`); }
    }
    toast(failed.length ? "Not deleted: " + failed.join("; ") : `Deleted ${what}.`, failed.length ? "bad" : null);
    load();
  }

  function bulkDelete() { remove([...st.selected]); }

  function showSchema() {
    if (!coll) return;
    const m = modal(h("div.schema-view", h("h2", `${name}: schema`),
      h("p.muted", "Read-only. Fields, indexes and rules are edited in schema.yaml (then restart, or let alyx dev reload)."),
      h("pre.code#schema-yaml", collectionYaml(coll)),
      h("div.actions", h("button", { type: "button", on: { click: () => m.close() } }, "Close"))));
  }

  // -- live updates: the realtime channel (resumes with `since` after a dropped connection) --
  function connect() {
    if (!window.AlyxRealtime) { live.textContent = "no live updates"; return; }
    rt = new window.AlyxRealtime(realtimeUrl(), { token: accessToken });
    resubscribe();
  }

  function resubscribe() {
    if (!rt) return;
    if (sub) sub.close();
    const options = { limit: 1 };
    if (st.filter) options.filter = st.filter;
    sub = rt.subscribe(name, options, {
      snapshot: () => { live.textContent = "live"; live.classList.add("on"); },
      change: (kind, doc) => {
        const id = typeof doc === "string" ? doc : doc.id;
        if (kind === "delete") st.selected.delete(id);
        clearTimeout(reloadTimer);
        reloadTimer = setTimeout(load, 100);
      },
      error: (e) => { live.textContent = "live updates: " + (e.message || e.code); live.classList.remove("on"); },
    });
  }

  return { el, cleanup: () => { clearTimeout(reloadTimer); if (rt) rt.close(); } };
}
