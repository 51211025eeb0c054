/** The trained models, with the metrics their training recorded and a download of each. */
import { api, ApiError, download } from "./api.js";
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
  document.getElementById("models-dir").textContent = `In ${
    body.artifact_store ?? body.models_directory
  }`;
  const rows = Object.entries(body.available_models)
    .sort(([, a], [, b]) => String(b.modified).localeCompare(String(a.modified)))
    .map(([name, m]) => {
      const metrics = Object.entries(m.metrics ?? m.metadata?.metrics ?? {})
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
        el("td", { class: `status-${m.status ?? "ok"}`, text: m.status ?? "—" }),
        el(
          "td",
          {},
          m.status === "ok" ? downloadButton(name) : "—",
        ),
      );
    });
  const tbody = document.getElementById("models-body");
  if (rows.length) tbody.replaceChildren(...rows);
  else {
    tbody.replaceChildren(
      el("tr", {}, el("td", { colspan: 8, class: "empty", text: "No trained models yet." })),
    );
  }
}

/** A button that downloads the model with the saved token (the CSP allows no inline handler). */
function downloadButton(name) {
  const button = el("button", {
    type: "button",
    text: "Download",
    "aria-label": `Download ${name}`,
  });
  button.addEventListener("click", () => {
    download(`/train/models/${encodeURIComponent(name)}/download`, name)
      .catch((e) => notice(`Could not download ${name}: ${e.message}`));
  });
  return button;
}
