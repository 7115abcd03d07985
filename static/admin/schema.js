// A collection's definition shown read-only, written back as schema.yaml YAML.

const scalar = (v) => (typeof v === "string" ? JSON.stringify(v) : JSON.stringify(v));

function fieldYaml(f) {
  const parts = [`name: ${f.name}`, `type: ${f.type}`];
  if (f.required) parts.push("required: true");
  if (f.unique) parts.push("unique: true");
  if (f.default !== null && f.default !== undefined) parts.push(`default: ${scalar(f.default)}`);
  if (f.min !== null) parts.push(`min: ${f.min}`);
  if (f.max !== null) parts.push(`max: ${f.max}`);
  if (f.pattern) parts.push(`pattern: ${scalar(f.pattern)}`);
  if (f.values && f.values.length) parts.push(`values: [${f.values.join(", ")}]`);
  if (f.collection) parts.push(`collection: ${f.collection}`);
  const file = f.file;
  if (file) { // only what differs from the file type's defaults, as a user would write it
    if (file.multiple) parts.push("multiple: true");
    if (file.max_size !== 5 * 1024 * 1024) parts.push(`max_size: ${file.max_size}`);
    if (file.mime_types.length) parts.push(`mime_types: [${file.mime_types.join(", ")}]`);
    if (file.max_files !== (file.multiple ? 99 : 1)) parts.push(`max_files: ${file.max_files}`);
    if (file.protected) parts.push("protected: true");
    if (file.thumbs.length) parts.push(`thumbs: [${file.thumbs.map((t) => (t.startsWith("0x") ? JSON.stringify(t) : t)).join(", ")}]`);
  }
  return `      - {${parts.join(", ")}}`;
}

export function collectionYaml(c) {
  const lines = [`  - name: ${c.name}`];
  if (c.auth) lines.push("    auth: true");
  lines.push("    fields:", ...c.fields.filter((f) => !(c.auth && ["email", "role", "verified"].includes(f.name))).map(fieldYaml));
  if (c.indexes.length) {
    lines.push("    indexes:", ...c.indexes.map((i) => `      - {fields: [${i.fields.join(", ")}]${i.unique ? ", unique: true" : ""}}`));
  }
  const rules = Object.entries(c.rules || {}).filter(([, v]) => v !== null && v !== undefined);
  if (rules.length) lines.push(`    rules: {${rules.map(([k, v]) => `${k}: ${scalar(v)}`).join(", ")}}`);
  else lines.push("    # no rules: admins only");
  return lines.join("\n");
}
