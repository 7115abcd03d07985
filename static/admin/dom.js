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
