// File fields in the admin UI: download and thumbnail URLs (GET /api/files/...), previews. File URLs carry
// a short-lived file token (POST /api/files/token), never the access token.
import { currentFilesToken, filesToken } from "./api.js";
import { h } from "./dom.js";

const IMAGE = /\.(png|jpe?g|gif|webp|avif|bmp|ico)$/i;

export function isImage(name) { return IMAGE.test(name || ""); }

/** The smallest thumbnail size the field lists (only listed sizes are served), or null. */
export function smallestThumb(field) {
  const sizes = ((field.file || {}).thumbs || []).map((s) => {
    const m = /^(\d+)x(\d+)f?$/.exec(s);
    return m ? [s, Math.max(Number(m[1]), Number(m[2]))] : null;
  }).filter(Boolean);
  sizes.sort((a, b) => a[1] - b[1]);
  return sizes.length ? sizes[0][0] : null;
}

export function names(value) {
  if (value === null || value === undefined || value === "") return [];
  return Array.isArray(value) ? value : [value];
}

// An <img> sends no Authorization header, and the collection's view rule decides every download (an
// admins-only collection, or `view: "auth != null"`, hides files from an anonymous request): so every file
// URL carries the admin's file token, not only those of `protected` fields.

/** Fetch (or reuse) the file token before file URLs of `fields` are made. */
export async function readyFor(fields) {
  if (fields.length) await filesToken();
}

export function fileUrl(collection, field, recordId, name, thumb) {
  const params = new URLSearchParams();
  if (thumb) params.set("thumb", thumb);
  const token = currentFilesToken();
  if (token) params.set("token", token);
  const q = params.toString();
  return `/api/files/${encodeURIComponent(collection)}/${encodeURIComponent(recordId)}/${encodeURIComponent(name)}${q ? "?" + q : ""}`;
}

/** One stored file: a thumbnail (images) or its name, linking to the file. */
export function filePreview(collection, field, recordId, name) {
  const thumb = smallestThumb(field);
  const body = isImage(name)
    ? h("img.thumb", { src: fileUrl(collection, field, recordId, name, thumb), alt: name, loading: "lazy", "data-file": name })
    : h("span.mono.small", name);
  return h("a.file-link", { href: fileUrl(collection, field, recordId, name, null), target: "_blank", rel: "noopener noreferrer", title: name }, body);
}
