// The admin UI's shell: sign-in, navigation and the #/route → page table.
import { api, onSession, resume, session, signIn, signOut } from "./api.js";
import { clear, h } from "./dom.js";
import { overviewPage } from "./pages/overview.js";
import { recordsPage } from "./pages/records.js";
import { functionsPage } from "./pages/functions.js";
import { executionsPage, executionPage } from "./pages/executions.js";
import { jobsPage } from "./pages/jobs.js";
import { usersPage } from "./pages/users.js";
import { settingsPage } from "./pages/settings.js";

const root = document.getElementById("app");
let cleanup = null;
export const state = { collections: null };

export async function collections(force) {
  if (!state.collections || force) state.collections = (await api("GET", "/api/collections")).items;
  return state.collections;
}

const ROUTES = [
  [/^#\/collections\/([^/]+)$/, (m) => recordsPage(decodeURIComponent(m[1]))],
  [/^#\/functions$/, () => functionsPage()],
  [/^#\/executions\/([^/]+)$/, (m) => executionPage(decodeURIComponent(m[1]))],
  [/^#\/executions$/, () => executionsPage()],
  [/^#\/jobs$/, () => jobsPage()],
  [/^#\/users$/, () => usersPage()],
  [/^#\/settings$/, () => settingsPage()],
  [/.*/, () => overviewPage()],
];

function signInPage(message) {
  const email = h("input", { id: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "password", type: "password", autocomplete: "current-password", required: true });
  const problem = h("div.error", { role: "alert", hidden: !message }, message || "");
  const button = h("button.primary", { type: "submit" }, "Sign in");
  const form = h("form.card.signin", {
    on: {
      submit: async (e) => {
        e.preventDefault();
        button.disabled = true;
        problem.hidden = true;
        try {
          await signIn(email.value, password.value);
        } catch (err) {
          problem.textContent = err.message;
          problem.hidden = false;
        } finally {
          button.disabled = false;
        }
      },
    },
  },
  h("h1", "Alyx admin"),
  h("p.muted", "Sign in with an admin account."),
  h("label", { for: "email" }, "Email"), email,
  h("label", { for: "password" }, "Password"), password,
  problem, button);
  clear(root, h("main.center", form));
  email.focus();
}

function nav(user) {
  const links = [["#/", "Overview"], ["#/functions", "Functions"], ["#/executions", "Executions"],
    ["#/jobs", "Schedules & jobs"], ["#/users", "Users"], ["#/settings", "Settings"]];
  const list = h("ul.collections");
  collections().then((items) => {
    for (const c of items) {
      list.append(h("li", h("a", { href: "#/collections/" + encodeURIComponent(c.name), "data-route": "collection" },
        h("span", c.name), h("span.count", String(c.count)))));
    }
    markCurrent();
  }).catch(() => {});
  return h("nav.side", { "aria-label": "Main" },
    h("div.brand", "Alyx"),
    h("ul", links.map(([href, label]) => h("li", h("a", { href }, label)))),
    h("div.section", "Collections"), list,
    h("div.who", h("span.muted", user.email),
      h("button#signout", { type: "button", on: { click: () => signOut() } }, "Sign out")));
}

function markCurrent() {
  const here = location.hash || "#/";
  for (const a of root.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === here) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function route() {
  const s = session();
  if (cleanup) { try { cleanup(); } catch (e) { /* a page's cleanup failing must not stop routing */ } cleanup = null; }
  if (!s) { signInPage(); return; }
  let shell = root.querySelector(".shell");
  if (!shell) {
    shell = h("div.shell", nav(s.user), h("main#main", { tabindex: "-1" }));
    clear(root, shell);
  }
  const main = shell.querySelector("#main");
  const hash = location.hash || "#/";
  for (const [pattern, make] of ROUTES) {
    const m = hash.match(pattern);
    if (!m) continue;
    const page = make(m);
    clear(main, page.el);
    cleanup = page.cleanup || null;
    break;
  }
  markCurrent();
}

let signedIn = Boolean(session());
onSession((s) => {
  // a refreshed token changes nothing on screen; signing in or out does
  if (Boolean(s) === signedIn) return;
  signedIn = Boolean(s);
  if (!s) { state.collections = null; root.replaceChildren(); }
  route();
});
window.addEventListener("hashchange", route);
resume();
route();
