/**
 * The submit form. Its hyperparameter fields are built from the JSON Schema the server makes
 * from its own zod schemas, so ranges and defaults shown here are the API's; the API stays
 * the one validator, and its 422 details are shown next to the fields they name.
 */
import { api, ApiError } from "./api.js";
import { el } from "./format.js";
import { modelTypes } from "./types.js";

const $ = (id) => document.getElementById(id);
let wired = false;

export function showSubmit() {
  if (!wired) wire();
}

async function wire() {
  wired = true;
  const types = await modelTypes();
  const select = $("s-type");
  for (const t of types) select.append(new Option(t.name, t.name));
  select.append(new Option("all (one job per type)", "all"));
  select.addEventListener("change", () => buildFields(types, select.value));
  buildFields(types, select.value);
  $("submit-form").addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
}

/** The properties of the chosen type, or of every type for "all" (the first one wins). */
function properties(types, name) {
  const chosen = name === "all" ? types : types.filter((t) => t.name === name);
  const props = {};
  for (const t of chosen) {
    for (const [k, s] of Object.entries(t.hyperparameters.properties ?? {})) props[k] ??= s;
  }
  return props;
}

function buildFields(types, name) {
  const fields = Object.entries(properties(types, name)).map(([key, schema]) => field(key, schema));
  $("s-param-fields").replaceChildren(...fields);
  clearErrors();
}

/** The non-null alternatives of a schema (zod writes `nullable` as anyOf [..., null]). */
function variants(schema) {
  const list = schema.anyOf ? schema.anyOf.flatMap(variants) : [schema];
  return list.filter((s) => s.type !== "null");
}

function field(key, schema) {
  const id = `p-${key}`;
  const kinds = variants(schema);
  const only = kinds.length === 1 ? kinds[0] : null;
  let input;
  if (only?.enum) {
    input = el("select", { id, name: key, "data-kind": "string" }, new Option("(default)", ""));
    for (const v of only.enum) input.append(new Option(v, v));
  } else if (only && (only.type === "integer" || only.type === "number")) {
    input = el("input", {
      id,
      name: key,
      type: "number",
      "data-kind": "number",
      min: only.minimum ?? only.exclusiveMinimum,
      max: only.maximum,
      step: only.type === "integer" ? 1 : "any",
      inputmode: "decimal",
    });
  } else {
    input = el("input", {
      id,
      name: key,
      type: "text",
      "data-kind": only?.type === "array" ? "list" : "auto",
    });
  }
  const hint = el("span", { class: "hint", id: `${id}-hint`, text: hintText(schema, kinds) });
  input.setAttribute("aria-describedby", `${id}-hint ${id}-err`);
  return el(
    "div",
    { class: "field", "data-field": `hyperparameters.${key}` },
    el("label", { for: id, text: key }),
    input,
    hint,
    el("p", { class: "field-error", id: `${id}-err`, hidden: true }),
  );
}

function hintText(schema, kinds) {
  const parts = kinds.map((k) => {
    if (k.enum) return k.enum.join(" / ");
    if (k.type === "array") return `list of ${k.items?.type ?? "values"}, comma-separated`;
    const lo = k.minimum ?? k.exclusiveMinimum;
    const open = k.exclusiveMinimum !== undefined;
    if (lo !== undefined && k.maximum !== undefined) {
      return open ? `(${lo}–${k.maximum}]` : `${lo}–${k.maximum}`;
    }
    if (lo !== undefined) return `${open ? ">" : "≥"} ${lo}`;
    return k.type ?? "any";
  });
  if (schema.anyOf?.some((s) => s.type === "null")) parts.push("null");
  const def = schema.default === undefined ? "" : `; default ${JSON.stringify(schema.default)}`;
  return `${parts.join(" or ")}${def}`;
}

function readValue(input) {
  const raw = input.value.trim();
  if (raw === "") return undefined;
  if (raw === "null") return null;
  const kind = input.dataset.kind;
  if (kind === "number") return Number(raw);
  if (kind === "list") return raw.split(",").map((s) => Number(s.trim()));
  if (kind === "auto" && raw !== "" && !Number.isNaN(Number(raw))) return Number(raw);
  return raw;
}

function collect() {
  const hyperparameters = {};
  for (const input of $("s-param-fields").querySelectorAll("input, select")) {
    const v = readValue(input);
    if (v !== undefined) hyperparameters[input.name] = v;
  }
  const extra = $("s-extra").value.trim();
  if (extra) {
    let parsed;
    try {
      parsed = JSON.parse(extra);
    } catch (e) {
      return { error: { field: "hyperparameters", message: `not valid JSON: ${e.message}` } };
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      return { error: { field: "hyperparameters", message: "must be a JSON object" } };
    }
    Object.assign(hyperparameters, parsed);
  }
  const body = {
    model_type: $("s-type").value,
    retrain: $("s-retrain").checked,
    use_cv: $("s-cv").checked,
  };
  if (Object.keys(hyperparameters).length) body.hyperparameters = hyperparameters;
  const timeout = $("s-timeout").value.trim();
  if (timeout) body.timeout_seconds = Number(timeout);
  return { body };
}

async function submit() {
  clearErrors();
  const { body, error } = collect();
  if (error) return showErrors("The form has a mistake.", [error]);
  const button = $("submit-form").querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const job = await api("/train", { method: "POST", json: body });
    location.hash = `#/job/${job.job_id}`;
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    showErrors(e.message, e.details);
  } finally {
    button.disabled = false;
  }
}

function clearErrors() {
  $("submit-error").hidden = true;
  for (const node of $("submit-form").querySelectorAll(".field")) {
    node.classList.remove("invalid");
    node.querySelector("[aria-invalid]")?.removeAttribute("aria-invalid");
    const err = node.querySelector(".field-error");
    if (err) err.hidden = true;
  }
}

/** Puts each detail next to the field it names (the closest enclosing path), the rest on top. */
function showErrors(message, details) {
  const wrappers = [...$("submit-form").querySelectorAll(".field[data-field]")];
  const unplaced = [];
  let first = null;
  for (const d of details.filter((d) => d.field || d.message)) {
    const path = String(d.field ?? "");
    const wrap = wrappers
      .filter((w) => path === w.dataset.field || path.startsWith(`${w.dataset.field}.`))
      .sort((a, b) => b.dataset.field.length - a.dataset.field.length)[0];
    if (!wrap) {
      unplaced.push(d.field ? `${d.field}: ${d.message}` : d.message);
      continue;
    }
    let err = wrap.querySelector(".field-error");
    if (!err) wrap.append(err = el("p", { class: "field-error" }));
    err.textContent = err.hidden ? d.message : `${err.textContent}; ${d.message}`;
    err.hidden = false;
    wrap.classList.add("invalid");
    const input = wrap.querySelector("input, select, textarea");
    input?.setAttribute("aria-invalid", "true");
    first ??= input;
  }
  const top = $("submit-error");
  top.textContent = unplaced.length ? `${message} ${unplaced.join("; ")}` : message;
  top.hidden = false;
  (first ?? top).focus?.();
}
