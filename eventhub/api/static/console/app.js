// The console: sign-in, navigation, and a router over "#/page" addresses. Each page module
// renders into <div id="page"> and may return a function that stops what it started
// (a refresh timer, the log's long poll); the router calls it on leaving the page.

import { api, ApiError, forget, key, setKey } from "./api.js";
import * as catalogue from "./catalogue.js";
import { h, problem } from "./dom.js";
import * as log from "./log.js";
import * as overview from "./overview.js";
import * as processes from "./processes.js";
import * as subscriptions from "./subscriptions.js";

const ROUTES = [
  [/^\/overview$/, overview.render, "Overview"],
  [/^\/subscriptions$/, subscriptions.list, "Subscriptions"],
  [/^\/subscriptions\/([^/]+)$/, subscriptions.detail, "Subscription"],
  [/^\/log$/, log.render, "Log"],
  [/^\/catalogue$/, catalogue.render, "Catalogue"],
  [/^\/processes$/, processes.render, "Processes"],
  [/^\/instances\/([^/]+)$/, processes.instance, "Instance"],
  [/^\/traces\/([^/]+)$/, processes.trace, "Trace"],
];
// Roles whose keys may read what the pages show (the API's READERS).
const READERS = new Set(["admin", "consumer"]);

const el = (id) => document.getElementById(id);
let me = null;
let leave = null;
let controller = null;

function stopPage() {
  if (controller) controller.abort();
  controller = null;
  if (leave) {
    try {
      leave();
    } catch (err) {
      console.error(err);
    }
  }
  leave = null;
}

function showSignIn(message) {
  stopPage();
  me = null;
  el("loading").hidden = true;
  el("nav").hidden = true;
  el("who").hidden = true;
  el("page").hidden = true;
  el("page").replaceChildren();
  el("signin").hidden = false;
  const said = el("signin-message");
  said.hidden = !message;
  said.textContent = message || "";
  document.title = "Sign in · eventhub console";
  el("key").value = "";
  el("key").focus();
}

function showApp() {
  el("loading").hidden = true;
  el("signin").hidden = true;
  el("page").hidden = false;
  el("who").hidden = false;
  el("who-text").textContent = `Key ${me.keyId} (${me.role})`;
  el("nav").hidden = !READERS.has(me.role);
  if (!location.hash.startsWith("#/")) {
    location.replace("#/overview"); // fires hashchange, which routes
    return;
  }
  route();
}

async function route() {
  if (!me) return;
  const hash = location.hash;
  if (!hash.startsWith("#/")) return; // the skip link, not a page
  stopPage();
  const page = el("page");
  page.replaceChildren();
  for (const link of document.querySelectorAll("#nav a")) {
    const here = hash === link.getAttribute("href") || hash.startsWith(`${link.getAttribute("href")}/`);
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!READERS.has(me.role)) {
    document.title = "eventhub console";
    page.append(
      h("h1", { tabindex: "-1" }, "Nothing to show for this key"),
      h("p", {}, `This is a ${me.role} key: it may send events, and the console's pages need an admin or consumer key.`),
    );
    return;
  }
  const path = decodeURI(hash.slice(1));
  const found = ROUTES.map(([pattern, render, title]) => [path.match(pattern), render, title]).find(([m]) => m);
  if (!found) {
    document.title = "Not found · eventhub console";
    page.append(h("h1", { tabindex: "-1" }, "No such page"), h("p", {}, h("a", { href: "#/overview" }, "Go to the overview")));
    return;
  }
  const [match, render, title] = found;
  document.title = `${title} · eventhub console`;
  controller = new AbortController();
  const ctx = { me, params: match.slice(1).map(decodeURIComponent), signal: controller.signal };
  try {
    leave = (await render(page, ctx)) || null;
  } catch (err) {
    if (err.name === "AbortError") return;
    page.append(problem(err));
  }
  const heading = page.querySelector("h1");
  if (heading && document.activeElement !== el("key")) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

async function signIn(event) {
  event.preventDefault();
  const value = el("key").value.trim();
  if (!value) return;
  setKey(value);
  try {
    me = await api("/api/me");
  } catch (err) {
    forget();
    showSignIn(err.status === 401 ? "The hub refused that key (401). Check it and sign in again." : err.message);
    return;
  }
  showApp();
}

function signOut() {
  forget();
  showSignIn("Signed out: the key is forgotten.");
}

async function start() {
  el("signin-form").addEventListener("submit", signIn);
  el("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  window.addEventListener("eventhub:unauthorized", () => {
    showSignIn("The hub refused the key (401): it may have been revoked. Sign in again.");
  });
  if (!key()) {
    showSignIn("");
    return;
  }
  try {
    me = await api("/api/me");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // the listener showed sign-in
    el("loading").hidden = true;
    el("page").hidden = false;
    el("page").replaceChildren(h("h1", {}, "eventhub console"), problem(err, () => location.reload()));
    return;
  }
  showApp();
}

start();
