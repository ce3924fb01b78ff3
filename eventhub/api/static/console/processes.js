// Processes: definitions, instances (state, variables, history), traces (events and
// variables) and unrouted events; an instance's and a trace's own pages.

import { api, seg } from "./api.js";
import { badge, code, confirm, facts, h, json, problem, statusLine, table, when } from "./dom.js";

const STATES = ["Running", "Waiting", "Completed", "Failed", "TimedOut", "Cancelled"];
const LIVE = new Set(["Running", "Waiting"]);

export async function render(root, { signal }) {
  const defs = section("defs-title", "Definitions");
  const inst = section("inst-title", "Instances");
  const traces = section("traces-title", "Traces");
  const unrouted = section("unrouted-title", "Unrouted events");
  root.append(h("h1", {}, "Processes"), defs, inst, traces, unrouted);
  const guard = (where) => (err) => err.name !== "AbortError" && where.append(problem(err));
  await Promise.all([
    definitions(defs, signal).catch(guard(defs)),
    instances(inst, signal).catch(guard(inst)),
    traceList(traces, signal).catch(guard(traces)),
    unroutedList(unrouted, signal).catch(guard(unrouted)),
  ]);
}

function section(id, title) {
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title));
}

function start(definition) {
  const st = definition.start || {};
  if (st.knowledgeModel) return `trigger ${st.knowledgeModel} / ${st.trigger}`;
  return json(st.filters || st);
}

async function definitions(where, signal) {
  const found = await api("/api/processes", { signal });
  where.append(
    table(
      "Process definitions",
      ["Id", "Name", "Starts on", "Steps", "Updated"],
      found.processes.map((d) => [
        code(d.id),
        d.name,
        start(d),
        d.steps.map((step) => (step.call ? `${step.id}: call` : `${step.id}: wait for ${step.wait.type}`)).join(" → "),
        when(d.updatedAt),
      ]),
      "No process definition.",
    ),
  );
}

async function instances(where, signal) {
  const state = h("select", { id: "inst-state" }, h("option", { value: "" }, "Any state"), STATES.map((st) => h("option", { value: st }, st)));
  const body = h("div");
  where.append(h("form", { class: "filters", role: "search", "aria-label": "Filter instances" }, h("p", {}, h("label", { for: "inst-state" }, "State"), state)), body);
  const load = async () => {
    const query = new URLSearchParams({ limit: "100" });
    if (state.value) query.set("state", state.value);
    try {
      const found = await api(`/api/instances?${query}`, { signal });
      body.replaceChildren(
        table(
          "Process instances",
          ["Instance", "Definition", "State", "Step", "Updated"],
          found.instances.map((i) => [
            h("a", { href: `#/instances/${seg(i.id)}` }, i.id),
            code(i.definitionId),
            badge(i.state),
            i.step || "—",
            when(i.updatedAt),
          ]),
          "No instance.",
        ),
      );
    } catch (err) {
      if (err.name !== "AbortError") body.replaceChildren(problem(err));
    }
  };
  state.addEventListener("change", load);
  await load();
}

async function traceList(where, signal) {
  const found = await api("/api/traces?limit=50", { signal });
  where.append(
    table(
      "Traces, most recently active first",
      ["Trace", "Events", "First", "Last"],
      found.traces.map((t) => [h("a", { href: `#/traces/${seg(t.traceId)}` }, t.traceId), String(t.events), when(t.firstTime), when(t.lastTime)]),
      "No trace.",
    ),
  );
}

async function unroutedList(where, signal) {
  const found = await api("/api/unrouted?limit=100", { signal });
  where.append(
    table(
      "Events that named no live instance",
      ["Offset", "Source", "Id", "Type", "Instance named", "Why"],
      found.events.map((e) => [String(e.offset), e.source, e.id, e.type, code(e.cxpinstanceid), e.reason]),
      "No unrouted event.",
    ),
  );
}

function variables(values, caption) {
  return table(caption, ["Name", "Value"], Object.entries(values || {}).map(([k, v]) => [code(k), code(JSON.stringify(v))]), "No variable.");
}

export async function instance(root, { me, params, signal }) {
  const [id] = params;
  const path = `/api/instances/${seg(id)}`;
  const said = statusLine();
  const body = h("div");
  root.append(h("p", {}, h("a", { href: "#/processes" }, "← Processes")), h("h1", {}, `Instance ${id}`), said, body);
  const show = (i) => {
    const cancel = me.role === "admin" && LIVE.has(i.state) ? h("button", { type: "button", class: "danger" }, "Cancel the instance…") : null;
    if (cancel) {
      cancel.addEventListener("click", async () => {
        const ok = await confirm({ title: "Cancel the instance", message: `Cancel ${i.id}? It stops where it is.`, action: "Cancel the instance", danger: true });
        if (ok === null) return;
        try {
          const updated = await api(`${path}/cancel`, { method: "POST", signal });
          show(updated);
          said.textContent = `Now ${updated.state}.`;
        } catch (err) {
          if (err.name !== "AbortError") body.prepend(problem(err));
        }
      });
    }
    body.replaceChildren(
      facts([
        ["State", h("span", { id: "instance-state" }, badge(i.state))],
        ["Definition", code(`${i.definitionId} (version ${i.version})`)],
        ["Step", i.step || "—"],
        ["Waiting for", i.waitingFor || "—"],
        ["Error", i.error ? h("span", { class: "error-text" }, i.error) : "—"],
        ["Started by", i.startedBy ? `${i.startedBy.source} / ${i.startedBy.id} (offset ${i.startedBy.offset})` : "—"],
        ["Created", when(i.createdAt)],
        ["Updated", when(i.updatedAt)],
      ]),
      cancel ? h("div", { class: "actions" }, cancel) : null,
      h("h2", {}, "Variables"),
      variables(i.variables, "Variables"),
      h("h2", {}, "History"),
      table(
        "History, oldest first",
        ["At", "Step", "What", "Offset", "Detail"],
        (i.history || []).map((e) => [when(e.at), e.step || "—", e.what, e.offset === undefined ? "—" : String(e.offset), e.detail === undefined || e.detail === null ? "—" : typeof e.detail === "object" ? JSON.stringify(e.detail) : String(e.detail)]),
        "No history.",
      ),
    );
  };
  show(await api(path, { signal }));
}

export async function trace(root, { params, signal }) {
  const [id] = params;
  const found = await api(`/api/traces/${seg(id)}`, { signal });
  root.append(
    h("p", {}, h("a", { href: "#/processes" }, "← Processes")),
    h("h1", {}, `Trace ${id}`),
    h("h2", {}, "Events"),
    table(
      "Events of the trace, by time",
      ["Offset", "Time", "Source", "Id", "Type", "Group", "Revision"],
      found.events.map((e) => [String(e.offset), when(e.time), e.source, e.id, e.type, e.group || "—", String(e.revision)]),
    ),
    h("h2", {}, "Variables"),
    variables(found.variables, "Variables of the trace"),
  );
}
