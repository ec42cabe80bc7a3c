// Submit: a new task from a form (goal, agent, model, input JSON and the task's options); on success
// the page moves to the new task's timeline.

import { api } from "../api.js";
import { h, message, replace } from "../dom.js";

export async function submitPage(main, { signal }) {
  const notice = h("div");
  const field = (label, input, hint) => h("label", {}, h("span", {}, label), input, hint ? h("small", {}, hint) : null);
  const goal = h("textarea", { name: "goal", rows: 3, required: true, placeholder: "What is 6 * 7?" });
  const agent = h("input", { name: "agent", value: "default", list: "agent-names" });
  // The agents the deployment serves (local and the tenant's remote ones), offered as the field's choices.
  const agentNames = h("datalist", { id: "agent-names" });
  api("/v1/agents", { signal })
    .then(({ items }) =>
      replace(agentNames, ...items.map((a) => h("option", { value: a.name }, `${a.kind}: ${a.description || a.name}`))),
    )
    .catch(() => {}); // only suggestions: the field takes any name
  const model = h("input", { name: "model", placeholder: "the agent's, then the server's default" });
  const input = h("textarea", { name: "input", rows: 4, class: "mono", placeholder: "{}" });
  const number = (name, min, max) => h("input", { name, type: "number", min, max, inputMode: "numeric" });
  const maxRetries = number("max_retries", 0, 100);
  const timeout = number("timeout_seconds", 1, 604800);
  const priority = number("priority", 0, 9);
  const scheduleToStart = number("schedule_to_start_seconds", 1, 604800);
  const idempotencyKey = h("input", { name: "idempotency_key" });

  const form = h(
    "form",
    { class: "submit", onsubmit: (event) => send(event) },
    field("Goal", goal),
    h("div", { class: "row" }, field("Agent", agent), field("Model", model, "e.g. openai:gpt-4o-mini")),
    agentNames,
    field("Input (a JSON object)", input),
    h(
      "fieldset",
      {},
      h("legend", {}, "Options"),
      h(
        "div",
        { class: "row" },
        field("Max retries", maxRetries),
        field("Timeout (s)", timeout),
        field("Priority (0–9)", priority),
        field("Schedule-to-start (s)", scheduleToStart),
      ),
      field("Idempotency key", idempotencyKey, "the same key again returns the first task"),
    ),
    h("button", { type: "submit", class: "primary" }, "Submit task"),
  );
  replace(main, h("div", { class: "title" }, h("h1", {}, "Submit a task")), notice, form);

  async function send(event) {
    event.preventDefault();
    replace(notice);
    const body = { goal: goal.value, agent: agent.value.trim() || "default" };
    if (model.value.trim()) body.model = model.value.trim();
    if (input.value.trim()) {
      try {
        body.input = JSON.parse(input.value);
      } catch (error) {
        replace(notice, message("error", `Input is not JSON: ${error.message}`));
        return;
      }
    }
    for (const [name, node] of [
      ["max_retries", maxRetries],
      ["timeout_seconds", timeout],
      ["priority", priority],
      ["schedule_to_start_seconds", scheduleToStart],
    ]) {
      if (node.value !== "") body[name] = Number(node.value);
    }
    if (idempotencyKey.value.trim()) body.idempotency_key = idempotencyKey.value.trim();
    try {
      const task = await api("/v1/tasks", { method: "POST", body, signal });
      location.hash = `#/task/${task.id}`;
    } catch (error) {
      if (!signal.aborted) replace(notice, message("error", error.message));
    }
  }
}
