// A tiny DOM builder: h("tag.class#id", {attrs, on: {event}}, ...children). No innerHTML with data.

export function h(spec, attrs, ...children) {
  // "tag.class1.class2#id" (the #id may stand anywhere after the tag)
  const idMatch = spec.match(/#([\w-]+)/);
  const [tag, ...classes] = spec.replace(/#[\w-]+/, "").split(".");
  const el = document.createElement(tag || "div");
  if (idMatch) el.id = idMatch[1];
  if (classes.length) el.className = classes.join(" ");
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "class") el.className = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// What each node made by `keyed` or `rebuild` was built from: {id, key}.
const builtFrom = new WeakMap();

/**
 * Make `parent`'s children one node per item, in order: build(item) for an item that is new or whose
 * key(item) changed since its node was built, the node as it is otherwise. A node that stays is not
 * moved (only a change of order moves one), so a live reload that changes nothing leaves the DOM alone:
 * a click under way on it still lands (Chromium drops the click whose mousedown target left the document
 * before the mouseup, even to be put back).
 */
export function keyed(parent, items, id, key, build) {
  const old = new Map();
  for (const node of parent.children) {
    const from = builtFrom.get(node);
    if (from) old.set(from.id, { node, key: from.key });
  }
  const wanted = items.map((item) => {
    const k = key(item);
    const prev = old.get(id(item));
    if (prev && prev.key === k) { old.delete(id(item)); return prev.node; }
    const node = build(item);
    builtFrom.set(node, { id: id(item), key: k });
    return node;
  });
  const kept = new Set(wanted);
  for (const node of [...parent.children]) if (!kept.has(node)) node.remove();
  let cursor = parent.firstElementChild;
  for (const node of wanted) {
    if (node === cursor) cursor = cursor.nextElementSibling;
    else parent.insertBefore(node, cursor);
  }
  return parent;
}

/** clear(el, build()) unless `key` is the one el was last built with (see keyed). */
export function rebuild(el, key, build) {
  const from = builtFrom.get(el);
  if (from && from.key === key) return el;
  builtFrom.set(el, { key });
  return clear(el, build());
}

export function text(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function errorBox(err) {
  return h("div.error", { role: "alert" }, err.message || String(err));
}

export function toast(message, kind) {
  const box = h("div.toast" + (kind ? "." + kind : ""), { role: "status" }, message);
  document.body.append(box);
  setTimeout(() => box.remove(), 3500);
}

/** A modal <dialog> holding `content`; returns {dialog, close}. Esc closes it. */
export function modal(content, onClose) {
  const dialog = h("dialog.modal", content);
  dialog.addEventListener("close", () => { dialog.remove(); if (onClose) onClose(); });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close: () => dialog.close() };
}

/** Ask before a destructive action; resolves true when confirmed. */
export function confirmDialog(message, action) {
  return new Promise((resolve) => {
    let answer = false;
    const yes = h("button.danger", { type: "button", on: { click: () => { answer = true; m.close(); } } }, action || "Delete");
    const no = h("button", { type: "button", on: { click: () => m.close() } }, "Cancel");
    const m = modal(h("div.confirm", h("p", message), h("div.actions", no, yes)), () => resolve(answer));
    no.focus();
  });
}
