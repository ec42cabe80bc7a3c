// Workers: each live worker process, its last heartbeat and the runs it holds. Needs an admin key;
// there is no worker stream, so the page reads the list again every two seconds.

import { ApiError, api } from "../api.js";
import { between, dateTime, h, message, replace, seconds, shortId } from "../dom.js";

const EVERY_MS = 2000;

export async function workersPage(main, { signal }) {
  const list = h("div", { class: "workers" });
  const notice = h("div");
  replace(main, h("div", { class: "title" }, h("h1", {}, "Workers")), notice, list);

  async function load() {
    try {
      const { items } = await api("/v1/workers", { signal });
      replace(notice);
      const now = new Date().toISOString();
      replace(list, items.length ? items.map((w) => card(w, now)) : message("info", "No live worker."));
    } catch (error) {
      if (signal.aborted) return;
      const text =
        error instanceof ApiError && error.status === 403
          ? "Workers are shown to admin keys only: this key's tenant sees its tasks, not the machines that run them."
          : error.message;
      replace(notice, message("error", text));
      replace(list);
    }
  }

  await load();
  const timer = setInterval(() => load(), EVERY_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}

function card(worker, now) {
  const running = worker.current_task_ids;
  const age = between(worker.last_heartbeat, now);
  return h(
    "article",
    { class: "worker", dataset: { workerId: worker.id } },
    h("header", {}, h("span", { class: "mono" }, worker.id), h("span", { class: "muted" }, `${worker.host} · pid ${worker.pid}`)),
    h(
      "dl",
      { class: "inline" },
      h("dt", {}, "heartbeat"),
      h("dd", {}, `${seconds(Math.max(age, 0))} ago`),
      h("dt", {}, "runs"),
      h("dd", {}, h("meter", { min: 0, max: worker.concurrency, value: running.length }), ` ${running.length} / ${worker.concurrency}`),
      h("dt", {}, "started"),
      h("dd", {}, dateTime(worker.started_at)),
    ),
    running.length
      ? h("ul", { class: "runs" }, running.map((id) => h("li", {}, h("a", { href: `#/task/${id}`, class: "mono" }, shortId(id)))))
      : h("p", { class: "muted" }, "idle"),
  );
}
