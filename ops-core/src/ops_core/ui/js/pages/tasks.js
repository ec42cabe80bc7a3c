// Tasks: the tenant's tasks, newest first, filtered by status and agent, with cursor paging. The list
// follows the tenant's status stream: a row's status changes at once, and the page is read again
// (at most twice a second) so new tasks appear and moved ones leave a filtered list.

import { api, follow } from "../api.js";
import { STATUSES, badge, between, h, message, number, replace, seconds, shortId, time } from "../dom.js";

const PAGE_SIZE = 25;
const REFRESH_MS = 500;

export async function tasksPage(main, { query, signal }) {
  const status = query.get("status") || "";
  const agent = query.get("agent") || "";
  const cursors = [null]; // the cursor of each page seen so far: "Newer" goes back one
  const body = h("tbody");
  const live = h("span", { class: "live", dataset: { state: "connecting" } }, "connecting…");
  const pager = h("div", { class: "pager" });
  const notice = h("div");
  let rows = new Map();

  const statusSelect = h(
    "select",
    { name: "status", "aria-label": "Status" },
    h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)),
  );
  const agentInput = h("input", { name: "agent", value: agent, placeholder: "any agent", "aria-label": "Agent" });
  const filters = h(
    "form",
    {
      class: "filters",
      onsubmit: (event) => {
        event.preventDefault();
        const next = new URLSearchParams();
        if (statusSelect.value) next.set("status", statusSelect.value);
        if (agentInput.value.trim()) next.set("agent", agentInput.value.trim());
        location.hash = `#/tasks${next.size ? `?${next}` : ""}`;
      },
    },
    statusSelect,
    agentInput,
    h("button", { type: "submit" }, "Filter"),
  );
  statusSelect.addEventListener("change", () => filters.requestSubmit());

  replace(
    main,
    h("div", { class: "title" }, h("h1", {}, "Tasks"), live),
    filters,
    notice,
    h(
      "table",
      { class: "tasks" },
      h(
        "thead",
        {},
        h("tr", {}, ["Task", "Goal", "Agent", "Model", "Status", "Attempts", "Tokens", "Submitted", "Ran"].map((t) => h("th", {}, t))),
      ),
      body,
    ),
    pager,
  );

  async function load() {
    const cursor = cursors[cursors.length - 1];
    const page = await api("/v1/tasks", { query: { status, agent, cursor, limit: PAGE_SIZE }, signal });
    rows = new Map(page.items.map((task) => [task.id, row(task)]));
    replace(body, rows.size ? [...rows.values()] : h("tr", {}, h("td", { colspan: 9, class: "empty" }, "No tasks.")));
    replace(
      pager,
      h("button", { type: "button", disabled: cursors.length === 1, onclick: () => turn(() => cursors.pop()) }, "← Newer"),
      h("span", {}, `page ${cursors.length}`),
      h(
        "button",
        { type: "button", disabled: !page.next_cursor, onclick: () => turn(() => cursors.push(page.next_cursor)) },
        "Older →",
      ),
    );
  }

  function turn(move) {
    move();
    load().catch(show);
  }

  function show(error) {
    if (!signal.aborted) replace(notice, message("error", error.message));
  }

  let timer = null;
  function refreshSoon() {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      if (!signal.aborted) load().then(() => replace(notice), show);
    }, REFRESH_MS);
  }
  signal.addEventListener("abort", () => clearTimeout(timer));

  await load();
  follow("/v1/events/stream", {
    query: { agent },
    signal,
    onState: (state, why) => {
      live.dataset.state = state;
      live.textContent = state === "live" ? "live" : `reconnecting (${why})`;
    },
    onEvent: ({ data }) => {
      const shown = rows.get(data.task_id);
      if (shown) replace(shown.querySelector(".status"), badge(data.payload.to));
      // A new task matters on the first page only; a shown one may have left the filter.
      if (shown || cursors.length === 1) refreshSoon();
    },
  }).catch(show);
}

function row(task) {
  const link = `#/task/${task.id}`;
  return h(
    "tr",
    { dataset: { taskId: task.id } },
    h("td", {}, h("a", { href: link, class: "mono" }, shortId(task.id))),
    h("td", { class: "goal" }, h("a", { href: link }, task.goal)),
    h("td", {}, task.agent),
    h("td", { class: "mono" }, task.model),
    h("td", { class: "status" }, badge(task.status)),
    h("td", { class: "num" }, task.attempts),
    h("td", { class: "num" }, number(task.usage.total_tokens)),
    h("td", {}, time(task.created_at)),
    h("td", { class: "num" }, seconds(between(task.started_at, task.finished_at))),
  );
}
