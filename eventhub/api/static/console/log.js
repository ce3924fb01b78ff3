// The log: the live tail (GET /events?after=N&wait=S, a long poll that answers as soon as
// an event is appended), filtered by type and source; an event's full JSON on request.

import { api } from "./api.js";
import { h, json, problem, statusLine, when } from "./dom.js";

const BACKLOG = 50; // events shown when the page opens
const KEEP = 500; // rows kept; older ones drop off the bottom
const WAIT_S = 25; // under the hub's 30 s limit
const RETRY_MS = 3000;
// A reader past the head gets an empty page that says where the head is.
const PAST_THE_HEAD = "9223372036854775807";

export async function render(root, { signal }) {
  const type = h("input", { id: "tail-type", type: "search", placeholder: "e.g. order.created" });
  const source = h("input", { id: "tail-source", type: "search", placeholder: "e.g. /shop" });
  const pause = h("button", { type: "button", "aria-pressed": "false" }, "Pause the tail");
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter the log" },
    h("p", {}, h("label", { for: "tail-type" }, "Type starts with"), type),
    h("p", {}, h("label", { for: "tail-source" }, "Source starts with"), source),
    h("p", {}, pause),
  );
  form.addEventListener("submit", (event) => event.preventDefault());
  const said = statusLine();
  const trouble = h("div");
  const rows = h("tbody", { id: "tail-rows" });
  const shown = h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Events, newest first" },
    h(
      "table",
      {},
      h("caption", {}, "Events, newest first"),
      h("thead", {}, h("tr", {}, ["Offset", "Received", "Source", "Type", "Id", ""].map((t) => h("th", { scope: "col" }, t)))),
      rows,
    ),
  );
  const viewer = h("section", { class: "viewer", "aria-labelledby": "event-title", hidden: true });
  root.append(h("h1", {}, "Log"), form, said, trouble, h("div", { class: "log-layout" }, shown, viewer));

  const matches = (entry) =>
    entry.event.type.startsWith(type.value.trim()) && entry.event.source.startsWith(source.value.trim());
  const refilter = () => {
    for (const row of rows.children) if (row.entry) row.hidden = !matches(row.entry);
  };
  type.addEventListener("input", refilter);
  source.addEventListener("input", refilter);

  function open(entry, button) {
    const close = h("button", { type: "button", class: "secondary" }, "Close");
    viewer.replaceChildren(
      h("h2", { id: "event-title", tabindex: "-1" }, `Event at offset ${entry.offset}`),
      h("p", {}, `Revision ${entry.revision}, received `, when(entry.receivedAt)),
      json(entry.event),
      close,
    );
    close.addEventListener("click", () => {
      viewer.hidden = true;
      button.focus();
    });
    viewer.hidden = false;
    viewer.querySelector("h2").focus();
  }

  function add(entries) {
    for (const entry of entries) {
      const button = h("button", { type: "button", class: "link", "aria-label": `Show event ${entry.offset} as JSON` }, "JSON");
      button.addEventListener("click", () => open(entry, button));
      const row = h(
        "tr",
        { "data-offset": entry.offset },
        h("td", {}, String(entry.offset)),
        h("td", {}, when(entry.receivedAt)),
        h("td", {}, entry.event.source),
        h("td", {}, entry.event.type),
        h("td", {}, entry.event.id),
        h("td", {}, button),
      );
      row.entry = entry;
      row.hidden = !matches(entry);
      rows.prepend(row);
    }
    while (rows.children.length > KEEP) rows.lastElementChild.remove();
  }

  let paused = false;
  let wake = null;
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume the tail" : "Pause the tail";
    if (!paused && wake) wake();
  });

  const { head } = await api(`/events?after=${PAST_THE_HEAD}&limit=1`, { signal });
  let after = Math.max(0, head - BACKLOG);
  try {
    const first = await api(`/events?after=${after}&limit=${BACKLOG}`, { signal });
    add(first.events);
    after = first.nextAfter;
  } catch (err) {
    if (err.name === "AbortError") throw err;
    after = head; // below the retained range: follow from the head
  }

  async function follow() {
    while (!signal.aborted) {
      if (paused) {
        said.textContent = `Paused after offset ${after}.`;
        await new Promise((resolve) => (wake = resolve));
        wake = null;
        continue;
      }
      said.textContent = `Following the log after offset ${after}.`;
      try {
        const page = await api(`/events?after=${after}&limit=100&wait=${WAIT_S}`, { signal });
        trouble.replaceChildren();
        add(page.events);
        after = page.nextAfter;
      } catch (err) {
        if (err.name === "AbortError") return;
        trouble.replaceChildren(problem(err));
        if (err.status === 401) return;
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
  }
  follow();
  return () => {
    if (wake) wake();
  };
}
