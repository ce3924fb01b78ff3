// The catalogue: published knowledge models with their triggers and filters, and the event
// classes seen so far with their counts.

import { api, seg } from "./api.js";
import { code, h, json, problem, table, when } from "./dom.js";

const KM = "/intelligence/api/knowledge-models";

export async function render(root, { signal }) {
  const models = h("section", { "aria-labelledby": "models-title" }, h("h2", { id: "models-title" }, "Knowledge models and triggers"));
  const types = h("section", { "aria-labelledby": "types-title" }, h("h2", { id: "types-title" }, "Event types seen"));
  root.append(h("h1", {}, "Catalogue"), models, types);
  await Promise.all([
    loadModels(models, signal).catch((err) => err.name !== "AbortError" && models.append(problem(err))),
    loadTypes(types, signal).catch((err) => err.name !== "AbortError" && types.append(problem(err))),
  ]);
}

async function loadModels(section, signal) {
  const listed = await api(KM, { signal });
  const full = await Promise.all(listed.content.map((m) => api(`${KM}/${seg(m.id)}`, { signal })));
  if (!full.length) section.append(h("p", {}, "No published knowledge model."));
  for (const model of full) {
    section.append(
      h(
        "article",
        { class: "model", "aria-label": `Model ${model.name}` },
        h("h3", {}, `${model.name} `, code(model.id)),
        h("p", { class: "hint" }, `Version ${model.version}, published `, when(model.publishedAt)),
        model.description ? h("p", {}, model.description) : null,
        table(
          `Triggers of ${model.name}`,
          ["Trigger", "Name", "Description", "Filters"],
          model.triggers.map((t) => [code(t.id), t.name, t.description || "—", json(t.filters)]),
          "No trigger.",
        ),
      ),
    );
  }
}

async function loadTypes(section, signal) {
  const found = await api("/api/event-types", { signal });
  section.append(
    table(
      "Event classes seen, with counts",
      ["Type", "Source", "Group", "Count", "First seen", "Last seen"],
      found.content.map((t) => [t.type, t.source, t.group || "—", String(t.count), when(t.firstSeen), when(t.lastSeen)]),
      "No event yet.",
    ),
  );
}
