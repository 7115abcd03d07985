// Users: the auth collection through the REST API (admins may set role and verified): search,
// promote/demote, verified, delete.
import { api, qs, session } from "../api.js";
import { clear, confirmDialog, errorBox, h, toast } from "../dom.js";

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
  const load = async () => {
    const term = search.value.trim();
    try {
      const r = await api("GET", "/api/collections/users" + qs({ page, perPage: 30, sort: "-created_at",
        filter: term ? `email.contains(${JSON.stringify(term.toLowerCase())})` : "" }));
      clear(list, r.items.length ? h("table", h("thead", h("tr", ["Email", "Role", "Verified", "Created", ""].map((c) => h("th", c)))),
        h("tbody", r.items.map((u) => h("tr", { "data-user": u.email },
          h("td", u.email), h("td", h("span.badge" + (u.role === "admin" ? ".ok" : ""), u.role)),
          h("td", h("input.verified", { type: "checkbox", role: "switch", "aria-label": `Verified: ${u.email}`, checked: Boolean(u.verified),
            on: { change: (e) => patch(u, { verified: e.target.checked }, `${u.email}: verified ${e.target.checked ? "on" : "off"}.`) } })),
          h("td.mono", u.created_at || ""),
          h("td.row-actions",
            u.id === me.id ? h("span.muted", "you") : [
              h("button.role", { type: "button", on: { click: () => patch(u, { role: u.role === "admin" ? "user" : "admin" },
                `${u.email} is now ${u.role === "admin" ? "a user" : "an admin"}.`) } }, u.role === "admin" ? "Demote" : "Promote"),
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
  const el = h("section", h("header.bar", h("h1", "Users")),
    h("p.muted", "New admins: ", h("code", "alyx admin create EMAIL"), ", or promote a user here."),
    h("form.filter", { on: { submit: (e) => { e.preventDefault(); page = 1; load(); } } }, search, h("button", { type: "submit" }, "Search")),
    list, pager);
  load();
  return { el };
}
