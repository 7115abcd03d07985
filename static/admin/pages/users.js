// Users: the auth collection through the REST API (admins may set role and verified): search,
// promote/demote, verified, delete; and the admin endpoints: create a user or an admin with a password
// (POST /api/admin/users), end all of a user's sessions (DELETE /api/admin/users/<id>/sessions).
import { api, qs, session } from "../api.js";
import { clear, confirmDialog, errorBox, h, modal, text, toast } from "../dom.js";

function createUserForm(onCreated) {
  const email = h("input#new-email", { type: "email", autocomplete: "off", required: true });
  const password = h("input#new-password", { type: "password", autocomplete: "new-password" });
  const role = h("select#new-role", h("option", { value: "user" }, "user"), h("option", { value: "admin" }, "admin"));
  const verified = h("input#new-verified", { type: "checkbox", role: "switch" });
  const errors = {};
  const field = (name, label, input, hint) => {
    errors[name] = h("div.field-error", { id: `new-${name}-error`, role: "alert", hidden: true });
    input.setAttribute("aria-describedby", `new-${name}-error`);
    return h("div.field", { "data-field": name }, h("label", { for: input.id }, label), input,
      hint ? h("div.hint", hint) : null, errors[name]);
  };
  const general = h("div.error", { role: "alert", hidden: true });
  const save = h("button.primary", { type: "submit" }, "Create user");
  const form = h("form.record-form#create-user", { novalidate: true, on: { submit: async (e) => {
    e.preventDefault();
    for (const box of Object.values(errors)) box.hidden = true;
    general.hidden = true;
    const body = { email: email.value.trim(), role: role.value, verified: verified.checked };
    if (password.value) body.password = password.value;
    save.disabled = true;
    try {
      const user = await api("POST", "/api/admin/users", body);
      onCreated(user);
    } catch (err) {
      let placed = false;
      for (const [k, v] of Object.entries(err.details || {})) {
        if (errors[k]) { errors[k].textContent = [].concat(v).join(" "); errors[k].hidden = false; placed = true; }
      }
      if (!placed || err.status === 409) { general.textContent = err.message; general.hidden = false; }
    } finally { save.disabled = false; }
  } } },
  h("h2", "New user"),
  field("email", "Email", email),
  field("password", "Password", password, "Optional: without one the user signs in with OAuth or resets it."),
  field("role", "Role", role, "admin: may use this UI and every admin endpoint."),
  field("verified", "Verified", h("span.switch", verified)),
  general,
  h("div.actions", h("button", { type: "button", on: { click: () => form.closest("dialog").close() } }, "Cancel"), save));
  return form;
}

export function usersPage() {
  const search = h("input#user-search", { type: "search", placeholder: "Search by email", "aria-label": "Search users" });
  const list = h("div.card");
  let page = 1;
  const pager = h("div.pager");
  const me = (session() || {}).user || {};
  const patch = async (u, body, done) => {
    try { await api("PATCH", `/api/collections/users/${encodeURIComponent(u.id)}`, body); toast(done); load(); }
    catch (err) { toast(err.message, "bad"); }
  };
  const revoke = async (u) => {
    if (!(await confirmDialog(`End every session of ${u.email}? They must sign in again on every device.`, "Revoke sessions"))) return;
    try {
      const r = await api("DELETE", `/api/admin/users/${encodeURIComponent(u.id)}/sessions`);
      toast(`${u.email}: ${r.revoked} session${r.revoked === 1 ? "" : "s"} ended.`);
    } catch (err) { toast(err.message, "bad"); }
  };
  let loads = 0; // only the newest load renders: answers can arrive out of order
  const load = async () => {
    const term = search.value.trim();
    const mine = ++loads;
    try {
      const r = await api("GET", "/api/collections/users" + qs({ page, perPage: 30, sort: "-created_at",
        filter: term ? `email.contains(${JSON.stringify(term.toLowerCase())})` : "" }));
      if (mine !== loads) return;
      clear(list, r.items.length ? h("table", h("thead", h("tr", ["Email", "Role", "Verified", "Created", ""].map((c) => h("th", c)))),
        h("tbody", r.items.map((u) => h("tr", { "data-user": u.email },
          h("td", u.email), h("td", h("span.badge" + (u.role === "admin" ? ".ok" : ""), u.role)),
          h("td", h("input.verified", { type: "checkbox", role: "switch", "aria-label": `Verified: ${u.email}`, checked: Boolean(u.verified),
            on: { change: (e) => patch(u, { verified: e.target.checked }, `${u.email}: verified ${e.target.checked ? "on" : "off"}.`) } })),
          h("td.mono", text(u.created_at)),
          h("td.row-actions",
            u.id === me.id ? h("span.muted", "you") : [
              h("button.role", { type: "button", on: { click: () => patch(u, { role: u.role === "admin" ? "user" : "admin" },
                `${u.email} is now ${u.role === "admin" ? "a user" : "an admin"}.`) } }, u.role === "admin" ? "Demote" : "Promote"),
              h("button.revoke", { type: "button", title: "End every session of this user", on: { click: () => revoke(u) } }, "Revoke sessions"),
              h("button.delete.danger", { type: "button", on: { click: async () => {
                if (!(await confirmDialog(`Delete user ${u.email}? Their sessions end and records that cascade go too.`))) return;
                try { await api("DELETE", `/api/collections/users/${encodeURIComponent(u.id)}`); toast(`Deleted ${u.email}.`); load(); }
                catch (err) { toast(err.message, "bad"); }
              } } }, "Delete")]))))) : h("p.muted.pad", "No users match."));
      clear(pager,
        h("button", { type: "button", disabled: page <= 1, on: { click: () => { page--; load(); } } }, "‹ Previous"),
        h("span", `Page ${page} of ${Math.max(1, r.totalPages)}`),
        h("button", { type: "button", disabled: page >= r.totalPages, on: { click: () => { page++; load(); } } }, "Next ›"));
    } catch (err) { clear(list, errorBox(err)); }
  };
  const openCreate = () => {
    const m = modal(createUserForm((user) => { m.close(); toast(`Created ${user.email} (${user.role}).`); load(); }));
    m.dialog.querySelector("#new-email").focus();
  };
  const el = h("section", h("header.bar", h("h1", "Users"), h("div.spacer"),
      h("button.primary#new-user", { type: "button", on: { click: openCreate } }, "New user")),
    h("p.muted", "Create users and admins here (or with ", h("code", "alyx admin create EMAIL"), "), or promote a user."),
    h("form.filter", { on: { submit: (e) => { e.preventDefault(); page = 1; load(); } } }, search, h("button", { type: "submit" }, "Search")),
    list, pager);
  load();
  return { el };
}
