// Building the page with DOM calls only: the policy (Trusted Types) forbids HTML from
// strings, so nothing an event or a subscription holds can ever become markup.

const SVG = "http://www.w3.org/2000/svg";

function put(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "text") {
      el.textContent = String(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

function add(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** An HTML element: h("a", {href: "#/log"}, "Log"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  put(el, attrs);
  add(el, children);
  return el;
}

/** An SVG element. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  put(el, attrs);
  add(el, children);
  return el;
}

let ids = 0;
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A message saying what failed, announced to screen readers; with ``retry``, a button. */
export function problem(err, retry = null) {
  const message = err && err.message ? err.message : String(err);
  const status = err && err.status ? ` (${err.status}${err.code ? ` ${err.code}` : ""})` : "";
  const again = retry ? h("button", { type: "button", class: "secondary", onclick: retry }, "Try again") : null;
  return h("div", { class: "problem", role: "alert" }, h("span", {}, message + status), again ? " " : null, again);
}

export function badge(state) {
  return h("span", { class: `badge state-${String(state).toLowerCase()}` }, state);
}

export function code(value) {
  return h("code", {}, value === null || value === undefined ? "—" : String(value));
}

export function json(value) {
  return h("pre", { class: "json", tabindex: "0" }, JSON.stringify(value, null, 2));
}

/** A table in a horizontally scrolling box, so a phone-width page never overflows. */
export function table(caption, headings, rows, empty = "Nothing yet.") {
  const head = h("thead", {}, h("tr", {}, headings.map((t) => h("th", { scope: "col" }, t))));
  const body = h(
    "tbody",
    {},
    rows.length
      ? rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))
      : h("tr", {}, h("td", { colspan: headings.length, class: "empty" }, empty)),
  );
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    h("table", {}, h("caption", {}, caption), head, body),
  );
}

/** A definition list from [term, value] pairs. */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value ?? "—")]),
  );
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = "B";
  for (const next of units) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  return `${value.toFixed(1)} ${unit}`;
}

export function age(seconds) {
  if (!seconds) return "—";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return h("time", { datetime: iso, title: iso }, date.toLocaleString());
}

/**
 * A modal dialog that asks to confirm; resolves to the form's values, or null if cancelled
 * (Cancel, Escape). Focus moves into it and returns where it was.
 */
export function confirm({ title, message, fields = [], action, danger = false }) {
  return new Promise((resolve) => {
    const titleId = uid("dialog-title");
    const returnTo = document.activeElement;
    let answered = false;
    const inputs = fields.map((field) => {
      const id = uid("field");
      const input = h("input", { id, name: field.name, ...field.input });
      return { input, node: h("p", {}, h("label", { for: id }, field.label), input, field.hint ? h("span", { class: "hint" }, field.hint) : null) };
    });
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    const ok = h("button", { type: "submit", class: danger ? "danger" : "" }, action);
    const form = h(
      "form",
      { class: "dialog-form" },
      h("h2", { id: titleId }, title),
      h("p", {}, message),
      inputs.map((i) => i.node),
      h("div", { class: "buttons" }, cancel, ok),
    );
    const dialog = h("dialog", { "aria-labelledby": titleId }, form);
    const finish = (value) => {
      if (answered) return;
      answered = true;
      if (dialog.open) dialog.close();
      dialog.remove();
      if (returnTo && returnTo.isConnected && typeof returnTo.focus === "function") returnTo.focus();
      resolve(value);
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      finish(Object.fromEntries(new FormData(form)));
    });
    cancel.addEventListener("click", () => finish(null));
    dialog.addEventListener("close", () => finish(null));
    document.body.append(dialog);
    dialog.showModal();
    (inputs.length ? inputs[0].input : cancel).focus();
  });
}

/** A modal dialog that shows something once (a new secret) until closed. */
export function notice({ title, message, value }) {
  return new Promise((resolve) => {
    const titleId = uid("dialog-title");
    const returnTo = document.activeElement;
    const id = uid("value");
    const field = h("input", { id, class: "secret", readonly: true, value, spellcheck: "false" });
    const close = h("button", { type: "submit" }, "Close");
    const form = h(
      "form",
      { class: "dialog-form" },
      h("h2", { id: titleId }, title),
      h("p", {}, message),
      h("p", {}, h("label", { for: id }, "Value"), field),
      h("div", { class: "buttons" }, close),
    );
    const dialog = h("dialog", { "aria-labelledby": titleId }, form);
    const finish = () => {
      if (dialog.open) dialog.close();
      dialog.remove();
      if (returnTo && returnTo.isConnected && typeof returnTo.focus === "function") returnTo.focus();
      resolve();
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      finish();
    });
    dialog.addEventListener("close", finish, { once: true });
    document.body.append(dialog);
    dialog.showModal();
    field.focus();
    field.select();
  });
}

/** A live region for what an action did. */
export function statusLine() {
  return h("p", { class: "status", role: "status", "aria-live": "polite" });
}

/** Bars of recent delivery attempts, oldest first: height by latency, class by outcome. */
export function sparkline(attempts) {
  const shown = attempts.slice(0, 20).reverse();
  const failed = shown.filter((a) => !ok(a)).length;
  const label = shown.length
    ? `${shown.length} recent deliveries, ${failed} failed`
    : "no deliveries yet";
  const width = 100;
  const height = 20;
  const bar = width / 20;
  const slowest = Math.max(1, ...shown.map((a) => a.latencyMs || 0));
  const svg = s("svg", {
    class: "spark",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": label,
    preserveAspectRatio: "none",
  });
  svg.append(s("title", {}, label));
  shown.forEach((a, i) => {
    const tall = Math.max(3, (height - 2) * Math.sqrt((a.latencyMs || 0) / slowest));
    svg.append(
      s("rect", {
        x: i * bar + 0.5,
        y: height - tall,
        width: bar - 1,
        height: tall,
        class: ok(a) ? "ok" : "fail",
      }),
    );
  });
  return svg;
}

function ok(attempt) {
  return attempt.statusCode !== null && attempt.statusCode >= 200 && attempt.statusCode < 300;
}
