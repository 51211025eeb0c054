/** The model types and their hyperparameter schemas (JSON Schema made from the API's zod). */

let loading;

/** @returns {Promise<{name: string, builtin: boolean, hyperparameters: any}[]>} */
export function modelTypes() {
  loading ??= fetch(new URL("model-types.json", import.meta.url)).then((r) => r.json()).then((b) =>
    b.model_types
  );
  return loading;
}

/** Fills a <select> with the type names (plus "all"), keeping its first option. */
export async function fillTypeSelect(select, { withAll }) {
  if (select.dataset.filled) return;
  select.dataset.filled = "1";
  const names = (await modelTypes()).map((t) => t.name);
  if (withAll) names.push("all");
  for (const name of names) select.append(new Option(name, name));
}
