// Overview: rates of the last minutes (a chart), the log's head, the database's size,
// subscriptions by state, the worst lagging subscriptions, instances by state.

import { api, seg } from "./api.js";
import { age, badge, bytes, facts, h, problem, s, table } from "./dom.js";

const REFRESH_MS = 5000;

export async function render(root, { signal }) {
  const body = h("div", { class: "overview" });
  root.append(h("h1", {}, "Overview"), body);
  async function load() {
    try {
      const o = await api("/api/overview?lagging=10", { signal });
      body.replaceChildren(...view(o));
    } catch (err) {
      if (err.name === "AbortError") return;
      // Keep the last figures on a failed refresh; say it failed above them.
      const shown = body.querySelector(":scope > .problem");
      if (shown) shown.replaceWith(problem(err, load));
      else body.prepend(problem(err, load));
    }
  }
  await load();
  const timer = setInterval(load, REFRESH_MS);
  return () => clearInterval(timer);
}

function view(o) {
  const rates = o.rates.filter((b) => b.seconds > 0);
  const last = rates.length ? rates[rates.length - 1] : null;
  const perSecond = (n, b) => (b && b.seconds > 0 ? n / b.seconds : 0);
  return [
    h(
      "section",
      { class: "cards", "aria-label": "Figures" },
      card("Log head", `offset ${o.head}`),
      card("Database", `${bytes(o.databaseBytes)} (+ ${bytes(o.walBytes)} WAL)`),
      card("Ingest now", `${perSecond(last ? last.ingested : 0, last).toFixed(1)} events/s`),
      card("Delivery now", `${perSecond(last ? last.delivered : 0, last).toFixed(1)} events/s`),
    ),
    h(
      "section",
      { "aria-labelledby": "rates-title" },
      h("h2", { id: "rates-title" }, "Ingest and delivery, last 15 minutes"),
      chart(rates, o.bucketSeconds),
    ),
    h(
      "div",
      { class: "columns" },
      h(
        "section",
        { "aria-labelledby": "subs-title" },
        h("h2", { id: "subs-title" }, "Subscriptions by state"),
        facts(Object.entries(o.subscriptions).map(([state, n]) => [badge(state), String(n)])),
      ),
      h(
        "section",
        { "aria-labelledby": "inst-title" },
        h("h2", { id: "inst-title" }, "Process instances by state"),
        facts(Object.entries(o.instances).map(([state, n]) => [badge(state), String(n)])),
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "lag-title" },
      h("h2", { id: "lag-title" }, "Most behind"),
      table(
        "Subscriptions furthest behind their trigger",
        ["Subscription", "State", "Trigger", "Events behind", "Oldest undelivered"],
        o.lagging.map((l) => [
          h("a", { href: `#/subscriptions/${seg(l.id)}` }, l.name || l.id),
          badge(l.status),
          `${l.knowledgeModelId} / ${l.triggerId}`,
          String(l.events),
          age(l.oldestAgeSeconds),
        ]),
        "No subscription is behind.",
      ),
    ),
  ];
}

function card(title, value) {
  return h("div", { class: "card" }, h("h2", {}, title), h("p", { class: "figure" }, value));
}

/** Two lines, events per second ingested and delivered, one point per bucket. */
function chart(buckets, bucketSeconds) {
  const width = 600;
  const height = 160;
  const pad = 28;
  const ingest = buckets.map((b) => b.ingested / b.seconds);
  const deliver = buckets.map((b) => b.delivered / b.seconds);
  const top = Math.max(1, ...ingest, ...deliver);
  const total = (key) => buckets.reduce((sum, b) => sum + b[key], 0);
  const span = total("seconds");
  const summary =
    `${buckets.length} buckets of ${bucketSeconds} s: ${total("ingested")} events ingested, ` +
    `${total("delivered")} delivered; peak ${top.toFixed(1)} events/s.`;
  const x = (i) => pad + (buckets.length < 2 ? 0 : (i * (width - 2 * pad)) / (buckets.length - 1));
  const y = (v) => height - pad - (v * (height - 2 * pad)) / top;
  const line = (values, cls) =>
    s("polyline", { class: cls, points: values.map((v, i) => `${x(i)},${y(v)}`).join(" ") });
  const svg = s(
    "svg",
    { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary },
    s("title", {}, summary),
    s("line", { class: "axis", x1: pad, y1: height - pad, x2: width - pad, y2: height - pad }),
    s("line", { class: "axis", x1: pad, y1: pad, x2: pad, y2: height - pad }),
    s("text", { x: pad - 4, y: pad + 4, "text-anchor": "end", class: "tick" }, top.toFixed(0)),
    s("text", { x: pad - 4, y: height - pad, "text-anchor": "end", class: "tick" }, "0"),
    s("text", { x: pad, y: height - 8, class: "tick" }, buckets.length ? `${age(span)} ago` : ""),
    s("text", { x: width - pad, y: height - 8, "text-anchor": "end", class: "tick" }, "now"),
    buckets.length ? [line(ingest, "ingest"), line(deliver, "deliver")] : [],
  );
  return h(
    "figure",
    { class: "chart-box" },
    svg,
    h(
      "figcaption",
      {},
      h("span", { class: "key ingest" }, "Ingested"),
      " ",
      h("span", { class: "key deliver" }, "Delivered"),
      ` (events/s). ${buckets.length ? summary : "Collecting the first samples…"}`,
    ),
  );
}
