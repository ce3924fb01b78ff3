// Subscriptions: the list (state, lag in events and age, last error, recent deliveries),
// filtered by state, trigger and owner; and one subscription's page with its configuration,
// its attempts and the actions, each confirmed and each showing the state the API answers.

import { api, seg } from "./api.js";
import {
  age,
  badge,
  code,
  confirm,
  facts,
  h,
  notice,
  problem,
  sparkline,
  statusLine,
  table,
  when,
} from "./dom.js";

const SUBS = "/intelligence/api/subscriptions";
const STATES = ["Active", "Failed", "Rejected", "Paused", "Suspended"];
const LIST_REFRESH_MS = 5000;
const DETAIL_REFRESH_MS = 2000;
const SPARKLINES = 50; // rows that get one (each is a request)

export async function list(root, { me, signal }) {
  const admin = me.role === "admin";
  const state = h("select", { id: "filter-state", name: "status" }, h("option", { value: "" }, "Any state"), STATES.map((st) => h("option", { value: st }, st)));
  const trigger = h("input", { id: "filter-trigger", name: "trigger", type: "search", placeholder: "trigger id" });
  const owner = h("input", { id: "filter-owner", name: "owner", type: "search", placeholder: "key id" });
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter subscriptions" },
    h("p", {}, h("label", { for: "filter-state" }, "State"), state),
    h("p", {}, h("label", { for: "filter-trigger" }, "Trigger"), trigger),
    admin ? h("p", {}, h("label", { for: "filter-owner" }, "Owner"), owner) : null,
  );
  const body = h("div");
  root.append(h("h1", {}, "Subscriptions"), form, body);
  form.addEventListener("submit", (event) => event.preventDefault());

  let generation = 0;
  async function load() {
    const mine = ++generation;
    const query = new URLSearchParams();
    if (state.value) query.set("status", state.value);
    if (trigger.value.trim()) query.set("trigger", trigger.value.trim());
    try {
      const [found, overview] = await Promise.all([
        api(`${SUBS}?${query}`, { signal }),
        api("/api/overview?lagging=1000", { signal }),
      ]);
      if (mine !== generation) return;
      const ages = new Map(overview.lagging.map((l) => [l.id, l.oldestAgeSeconds]));
      const wanted = owner.value.trim();
      const subs = found.content.filter((sub) => !wanted || sub.owner.includes(wanted));
      const sparks = new Map(subs.slice(0, SPARKLINES).map((sub) => [sub.id, h("span", { class: "spark-slot" }, "…")]));
      const headings = ["Name", "State", "Trigger", ...(admin ? ["Owner"] : []), "Lag", "Oldest undelivered", "Last error", "Recent deliveries"];
      body.replaceChildren(
        table(
          `${subs.length} subscription${subs.length === 1 ? "" : "s"}`,
          headings,
          subs.map((sub) => [
            h("a", { href: `#/subscriptions/${seg(sub.id)}` }, sub.name || sub.id),
            badge(sub.status),
            `${sub.knowledgeModelId} / ${sub.triggerId}`,
            ...(admin ? [code(sub.owner)] : []),
            `${sub.lag} events`,
            age(ages.get(sub.id) || 0),
            sub.lastError ? h("span", { class: "error-text" }, sub.lastError) : "—",
            sparks.get(sub.id) || "—",
          ]),
          "No subscription matches.",
        ),
      );
      await Promise.all(
        [...sparks].map(async ([id, slot]) => {
          const attempts = await api(`${SUBS}/${seg(id)}/attempts?limit=20`, { signal });
          slot.replaceChildren(sparkline(attempts.content));
        }),
      );
    } catch (err) {
      if (err.name === "AbortError" || mine !== generation) return;
      body.replaceChildren(problem(err));
    }
  }
  for (const input of [state, trigger, owner]) input.addEventListener("input", load);
  await load();
  const timer = setInterval(load, LIST_REFRESH_MS);
  return () => clearInterval(timer);
}

/** Which actions a state allows (delivery/states.py), as buttons show them. */
function actions(status) {
  const out = [];
  if (status === "Active") out.push("pause");
  if (status === "Paused") out.push("resume", "resume-from-latest");
  if (status !== "Suspended") out.push("replay");
  out.push("rotate-secret", "delete");
  return out;
}

const LABELS = {
  pause: "Pause",
  resume: "Resume",
  "resume-from-latest": "Resume from latest",
  replay: "Replay from an offset…",
  "rotate-secret": "Rotate secret…",
  delete: "Delete…",
};

export async function detail(root, { params, signal }) {
  const [id] = params;
  const path = `${SUBS}/${seg(id)}`;
  const title = h("h1", {}, "Subscription");
  const said = statusLine();
  const toolbar = h("div", { class: "actions", role: "group", "aria-label": "Actions" });
  const config = h("section", { "aria-labelledby": "config-title" });
  const tried = h("section", { "aria-labelledby": "attempts-title" });
  const trouble = h("div");
  root.append(
    h("p", {}, h("a", { href: "#/subscriptions" }, "← All subscriptions")),
    title,
    trouble,
    toolbar,
    said,
    config,
    tried,
  );
  let gone = false;

  function show(sub) {
    title.textContent = `Subscription ${sub.name || sub.id}`;
    config.replaceChildren(
      h("h2", { id: "config-title" }, "State and configuration"),
      facts([
        ["State", h("span", { id: "sub-state" }, badge(sub.status))],
        ["Id", code(sub.id)],
        ["Owner", code(sub.owner)],
        ["Trigger", `${sub.knowledgeModelId} / ${sub.triggerId}`],
        ["Callback", code(sub.callbackInfo.uri)],
        ["Callback headers", Object.keys(sub.callbackInfo.headers).length ? Object.entries(sub.callbackInfo.headers).map(([k, v]) => h("div", {}, code(`${k}: ${v}`))) : "none"],
        ["Format", `${sub.format}, up to ${sub.batchSize} a request`],
        ["Retries", String(sub.maxRetries)],
        ["Configurations", sub.configurations.join(", ") || "none"],
        ["Cursor (offset)", String(sub.offset)],
        ["Lag", `${sub.lag} events`],
        ["Latest delivered", sub.latestSucceedOffset === null ? "—" : `offset ${sub.latestSucceedOffset} (${sub.latestSucceedEvent})`],
        ["Last error", sub.lastError ? h("span", { class: "error-text" }, sub.lastError) : "—"],
        ["Delivered / skipped / lost", `${sub.counts.delivered} / ${sub.counts.skipped} / ${sub.counts.lost}`],
        ["Signing secret", "whsec_•••••••• (shown only when created or rotated)"],
        ["Created", when(sub.createdAt)],
        ["Updated", when(sub.updatedAt)],
      ]),
    );
    const focused = document.activeElement && toolbar.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    toolbar.replaceChildren(
      ...actions(sub.status).map((action) =>
        h("button", { type: "button", "data-action": action, class: action === "delete" ? "danger" : "", onclick: () => act(action, sub) }, LABELS[action]),
      ),
    );
    if (focused) {
      const again = toolbar.querySelector(`[data-action="${focused}"]`);
      (again || toolbar.querySelector("button")).focus();
    }
  }

  function showAttempts(found) {
    tried.replaceChildren(
      h("h2", { id: "attempts-title" }, "Recent delivery attempts"),
      sparkline(found.content),
      table(
        "Delivery attempts, newest first",
        ["Time", "Offsets", "Status", "Latency", "Error", "Webhook id"],
        found.content.map((a) => [
          when(a.at),
          a.offsets[0] === a.offsets[1] ? String(a.offsets[0]) : `${a.offsets[0]}–${a.offsets[1]}`,
          a.statusCode === null ? "no answer" : String(a.statusCode),
          `${a.latencyMs} ms`,
          a.error ? h("span", { class: "error-text" }, a.error) : "—",
          code(a.webhookId),
        ]),
        "No attempt yet.",
      ),
    );
  }

  async function load() {
    // Not while a dialog is open: the buttons it was opened from stay as they are.
    if (gone || document.querySelector("dialog[open]")) return;
    try {
      const [sub, found] = await Promise.all([api(path, { signal }), api(`${path}/attempts?limit=50`, { signal })]);
      trouble.replaceChildren();
      show(sub);
      showAttempts(found);
    } catch (err) {
      if (err.name === "AbortError") return;
      trouble.replaceChildren(problem(err));
    }
  }

  async function act(action, sub) {
    const name = sub.name || sub.id;
    let asked;
    if (action === "replay") {
      asked = await confirm({
        title: "Replay from an offset",
        message: `Deliver the events of ${name}'s trigger again, from this offset on. The subscription becomes Active.`,
        fields: [{ name: "fromOffset", label: "From offset", input: { type: "number", min: "0", step: "1", required: true, value: String(sub.offset + 1) } }],
        action: "Replay",
      });
    } else if (action === "delete") {
      asked = await confirm({ title: "Delete the subscription", message: `Delete ${name} and its queue? This cannot be undone.`, action: "Delete", danger: true });
    } else if (action === "rotate-secret") {
      asked = await confirm({ title: "Rotate the signing secret", message: `Make a new whsec_ secret for ${name}? The old one keeps signing beside it for the overlap the hub is set to.`, action: "Rotate" });
    } else {
      asked = await confirm({ title: `${LABELS[action]}?`, message: `${LABELS[action]} ${name}, now ${sub.status}.`, action: LABELS[action] });
    }
    if (asked === null) return;
    said.textContent = "Working…";
    const refocus = () => {
      const again = toolbar.querySelector(`[data-action="${action}"]`) || toolbar.querySelector("button");
      if (again) again.focus();
    };
    try {
      if (action === "delete") {
        await api(path, { method: "DELETE", signal });
        gone = true;
        toolbar.replaceChildren();
        config.replaceChildren(h("p", {}, "This subscription is deleted. ", h("a", { href: "#/subscriptions" }, "Back to the list")));
        tried.replaceChildren();
        said.textContent = `Deleted ${name}.`;
      } else if (action === "rotate-secret") {
        const answer = await api(`${path}/rotate-secret`, { method: "POST", signal });
        said.textContent = "Secret rotated.";
        await notice({ title: "The new signing secret", message: "Shown this once: copy it to the receiver now.", value: answer.secret });
      } else {
        const query = action === "replay" ? `?fromOffset=${encodeURIComponent(asked.fromOffset)}` : "";
        const updated = await api(`${path}/${action}${query}`, { method: "PATCH", signal });
        show(updated);
        said.textContent = `${LABELS[action].replace("…", "")}: now ${updated.status}.`;
      }
      refocus();
    } catch (err) {
      if (err.name === "AbortError") return;
      said.textContent = "";
      trouble.replaceChildren(problem(err));
    }
  }

  await load();
  const timer = setInterval(load, DETAIL_REFRESH_MS);
  return () => clearInterval(timer);
}
