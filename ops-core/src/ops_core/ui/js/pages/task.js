// Task: the header (status, usage, result, actions) and the step timeline, both live from the task's
// event stream. The stream resumes with Last-Event-ID after a drop, so the timeline has every event once.

import { ApiError, api, follow } from "../api.js";
import { TERMINAL, badge, dateTime, h, json, message, number, replace, seconds } from "../dom.js";
import { timeline } from "./timeline.js";

const REFRESH_MS = 300;

export async function taskPage(main, { args, signal }) {
  const [id] = args;
  const events = [];
  const header = h("section", { class: "task-header" });
  const actions = h("div", { class: "actions" });
  const notice = h("div");
  const current = h("section", { class: "current" });
  const steps = h("section", { class: "timeline", "aria-label": "Timeline" });
  const live = h("span", { class: "live", dataset: { state: "connecting" } }, "connecting…");
  let task = await api(`/v1/tasks/${encodeURIComponent(id)}`, { signal });
  let pending = [];
  let streamed = null; // {key, attempt, step, text}: the current step's text so far, as the model writes it

  replace(
    main,
    h("div", { class: "title" }, h("h1", {}, "Task"), live),
    header,
    actions,
    notice,
    current,
    h("h2", {}, "Timeline"),
    steps,
  );

  function show(error) {
    if (!signal.aborted) replace(notice, message("error", error.message));
  }

  async function act(path, body) {
    replace(notice);
    try {
      task = await api(path, { method: "POST", body, signal });
      render();
      if (!following) stream(); // a retried task runs again: follow its new events
    } catch (error) {
      show(error);
    }
  }

  async function decide(callId, decision) {
    replace(notice);
    try {
      await api(`/v1/tasks/${id}/approvals/${encodeURIComponent(callId)}`, {
        method: "POST",
        body: { decision },
        signal,
      });
      await refresh();
    } catch (error) {
      show(error);
    }
  }

  async function refresh() {
    task = await api(`/v1/tasks/${id}`, { signal });
    if (task.status === "waiting") {
      pending = (await api("/v1/approvals", { query: { status: "pending", task_id: id }, signal })).items;
    } else {
      pending = [];
    }
    render();
  }

  let timer = null;
  function refreshSoon() {
    if (timer === null) timer = setTimeout(() => ((timer = null), refresh().catch(show)), REFRESH_MS);
  }
  signal.addEventListener("abort", () => clearTimeout(timer));

  let frame = null;
  function render() {
    if (frame === null) frame = requestAnimationFrame(draw);
  }
  signal.addEventListener("abort", () => cancelAnimationFrame(frame));

  function draw() {
    frame = null;
    replace(header, summary(task));
    const buttons = [];
    if (!TERMINAL.has(task.status)) {
      buttons.push(
        h(
          "button",
          { type: "button", class: "danger", disabled: task.cancel_requested, onclick: () => act(`/v1/tasks/${id}/cancel`) },
          task.cancel_requested ? "Cancelling…" : "Cancel",
        ),
      );
    }
    if (task.status === "failed" || task.status === "cancelled") {
      buttons.push(h("button", { type: "button", class: "primary", onclick: () => act(`/v1/tasks/${id}/retry`) }, "Retry"));
    }
    replace(actions, buttons);
    const view = timeline(events, { pending, decide, live: streamed });
    replace(current, view.current);
    replace(steps, view.items);
  }

  let following = false;
  let ended = false;
  function stream() {
    following = true;
    ended = false;
    follow(`/v1/tasks/${id}/stream`, {
      query: { after_seq: events.length ? events[events.length - 1].seq : undefined },
      signal,
      finished: () => ended,
      onState: (state, why) => {
        live.dataset.state = state;
        live.textContent = state === "live" ? "live" : `reconnecting (${why})`;
      },
      onEvent: ({ event, data }) => {
        if (event === "live_text") {
          // A streaming model's text as it is written: not stored, no id; its step's model_response replaces it.
          const key = `${data.attempt}:${data.step}`;
          streamed = streamed && streamed.key === key ? { ...streamed, text: streamed.text + data.text } : { key, ...data };
          render();
          return;
        }
        if (data.type === "model_response" && streamed && streamed.key === `${data.attempt}:${data.payload.step}`) {
          streamed = null;
        }
        events.push(data);
        if (data.type === "status") {
          if (TERMINAL.has(data.payload.to)) ended = true;
          refreshSoon();
        } else if (data.type.startsWith("approval_") || data.type === "cancel_requested") {
          refreshSoon();
        }
        render();
      },
    })
      .then(() => {
        following = false;
        if (ended && !signal.aborted) {
          live.dataset.state = "ended";
          live.textContent = "finished";
        }
      })
      .catch((error) => {
        following = false;
        if (!(error instanceof ApiError && error.status === 404)) show(error);
      });
  }

  render();
  if (task.status === "waiting") refresh().catch(show);
  stream();
}

function summary(task) {
  const usage = task.usage;
  const facts = [
    ["Status", h("span", {}, badge(task.status), task.cancel_requested && !TERMINAL.has(task.status) ? " (cancel requested)" : "")],
    ["Id", h("span", { class: "mono" }, task.id)],
    ["Agent", task.agent],
    ["Model", h("span", { class: "mono" }, task.model)],
    ["Attempts", `${task.attempts} (retries allowed: ${task.max_retries})`],
    ["Tokens", `${number(usage.total_tokens)} (in ${number(usage.input_tokens)}, out ${number(usage.output_tokens)}, cached ${number(usage.reused_tokens)})`],
    ["Submitted", dateTime(task.created_at)],
    ["Started", dateTime(task.started_at)],
    ["Finished", dateTime(task.finished_at)],
    ["Worker", h("span", { class: "mono" }, task.worker_id || "–")],
  ];
  if (task.started_at) facts.push(["Queue lag", seconds((new Date(task.started_at) - new Date(task.created_at)) / 1000)]);
  return [
    h("p", { class: "goal-text" }, task.goal),
    h("dl", { class: "facts" }, facts.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)])),
    task.error && message("error", `${task.error.type}: ${task.error.message}`),
    task.attempt_errors && task.attempt_errors.length
      ? h(
          "details",
          {},
          h("summary", {}, `Attempt errors (${task.attempt_errors.length})`),
          h("ul", {}, task.attempt_errors.map((e) => h("li", {}, `attempt ${e.attempt}: ${e.type}: ${e.message}`))),
        )
      : null,
    task.status === "completed" ? h("div", { class: "result" }, h("h3", {}, "Result"), json(task.result)) : null,
    Object.keys(task.input || {}).length ? h("details", {}, h("summary", {}, "Input"), json(task.input)) : null,
  ];
}
