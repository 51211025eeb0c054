/** The trained models in MODELS_DIR, with the metrics their training recorded. */
import { api, ApiError } from "./api.js";
import { bytes, el, number, shortId, when } from "./format.js";
import { notice } from "./live.js";

export function showModels() {
  load();
}

async function load() {
  let body;
  try {
    body = await api("/train/models/available");
  } catch (e) {
    if (e instanceof ApiError && e.status !== 401) notice(`Could not list models: ${e.message}`);
    return;
  }
  document.getElementById("models-dir").textContent = `In ${body.models_directory}`;
  const rows = Object.entries(body.available_models)
    .sort(([, a], [, b]) => String(b.modified).localeCompare(String(a.modified)))
    .map(([name, m]) => {
      const metrics = Object.entries(m.metadata?.metrics ?? {})
        .filter(([, v]) => typeof v === "number")
        .map(([k, v]) => `${k} ${number(v)}`)
        .join(", ");
      return el(
        "tr",
        {},
        el("td", { class: "id", text: name }),
        el("td", { text: m.type ?? "—" }),
        el("td", { class: "num", text: bytes(m.size) }),
        el("td", { text: when(m.modified) }),
        el("td", { text: metrics || "—" }),
        el(
          "td",
          {},
          m.job_id ? el("a", { href: `#/job/${m.job_id}`, text: shortId(m.job_id) }) : "—",
        ),
      );
    });
  const tbody = document.getElementById("models-body");
  if (rows.length) tbody.replaceChildren(...rows);
  else {
    tbody.replaceChildren(
      el("tr", {}, el("td", { colspan: 6, class: "empty", text: "No trained models yet." })),
    );
  }
}
