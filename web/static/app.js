/** The dashboard's entry: token field, hash routing between the four views, notices. */
import { getToken, onUnauthorized, setToken } from "./api.js";
import { showJobs } from "./jobs.js";
import { notice } from "./live.js";

const VIEWS = ["jobs", "job", "submit", "models"];
/** Stops the live updates of the view being left. */
let leave = () => {};
let routed = 0;

/** The views; all but the jobs table are loaded when first shown, off the first page's path. */
const SHOW = {
  jobs: () => showJobs,
  job: async () => (await import("./job.js")).showJob,
  submit: async () => (await import("./submit.js")).showSubmit,
  models: async () => (await import("./models.js")).showModels,
};

async function route() {
  leave();
  leave = () => {};
  const turn = ++routed;
  notice("");
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, arg] = hash.split("/");
  const view = name === "job" && arg ? "job" : VIEWS.includes(name) ? name : "jobs";
  for (const v of VIEWS) document.getElementById(`view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === (view === "job" ? "jobs" : view)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const show = await SHOW[view]();
  if (turn === routed) leave = show(arg) ?? (() => {});
}

function setupToken() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  input.value = getToken();
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    setToken(input.value.trim());
    form.classList.remove("wanted");
    route();
  });
  onUnauthorized(() => {
    // Polling meets the 401 every second: take the focus only the first time.
    if (!form.classList.contains("wanted")) input.focus();
    form.classList.add("wanted");
    notice(
      getToken()
        ? "The API token was refused: enter the server's API_TOKEN above."
        : "This server needs a token: enter its API_TOKEN above.",
    );
  });
}

setupToken();
addEventListener("hashchange", route);
route();
