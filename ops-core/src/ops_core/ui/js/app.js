// The dashboard's shell: hash routes, the navigation, and the key dialog.

import { api, currentKey, setKey } from "./api.js";
import { message, replace } from "./dom.js";
import { overviewPage } from "./pages/overview.js";
import { submitPage } from "./pages/submit.js";
import { taskPage } from "./pages/task.js";
import { tasksPage } from "./pages/tasks.js";
import { workersPage } from "./pages/workers.js";

const PAGES = { tasks: tasksPage, task: taskPage, workers: workersPage, overview: overviewPage, submit: submitPage };

const main = document.getElementById("page");
const dialog = document.getElementById("key-dialog");
let leave = () => {};

// "#/task/ID" -> {page: "task", args: ["ID"], query: URLSearchParams}
function route() {
  const [path, search = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [page, ...args] = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page: PAGES[page] ? page : "tasks", args, query: new URLSearchParams(search) };
}

function show() {
  leave();
  const { page, args, query } = route();
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.dataset.page === (page === "task" ? "tasks" : page));
  }
  const controller = new AbortController();
  replace(main);
  leave = () => controller.abort();
  PAGES[page](main, { args, query, signal: controller.signal }).catch((error) => {
    if (!controller.signal.aborted) replace(main, message("error", error.message));
  });
}

function askKey() {
  if (dialog.open) return;
  document.getElementById("key-input").value = "";
  dialog.showModal();
}

dialog.addEventListener("close", () => {
  const choice = dialog.returnValue;
  if (choice === "save") setKey(document.getElementById("key-input").value.trim());
  if (choice === "forget") setKey(null);
  if (choice === "save" || choice === "forget") {
    showKey();
    show();
  }
});

function showKey() {
  const key = currentKey();
  // The key id (opsk_<16 hex>_…) names the key without showing its secret part.
  document.getElementById("key-button").textContent = key ? `Key ${key.slice(0, 21)}…` : "API key";
}

document.getElementById("key-button").addEventListener("click", askKey);
window.addEventListener("opscore:unauthenticated", askKey);
window.addEventListener("hashchange", show);
showKey();
show();
// Whether this API asks for a key at all: a 401 opens the dialog (see api.js), on any page.
if (!currentKey()) api("/v1/tasks", { query: { limit: 1 } }).catch(() => {});
