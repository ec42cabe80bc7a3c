// A task's events as a step timeline: model calls with tokens and latency (request to response), tool
// calls with arguments, result or error and duration, approvals, attempts and their errors, resumed
// steps with the tokens they saved, status changes and the final answer.
//
// Latencies and durations are differences of the events' own times, which the worker takes when each
// thing happens (not when the batch of events is written).

import { between, h, json, number, seconds, time } from "../dom.js";

export function timeline(events, { pending, decide, live }) {
  const items = [];
  const openModel = new Map(); // attempt -> the model call still waiting for its response
  const tools = new Map(); // call id -> its tool item (a resumed attempt may run a call asked before)
  const approvals = new Map(); // call id -> its approval item
  let attempt = null;
  let lastText = null;
  let waitingModel = null;

  for (const event of events) {
    const p = event.payload;
    if (event.attempt && event.attempt !== attempt) {
      attempt = event.attempt;
      items.push({ kind: "attempt", event });
    }
    switch (event.type) {
      case "model_request": {
        const item = { kind: "model", event, response: null };
        openModel.set(event.attempt, item);
        items.push(item);
        waitingModel = item;
        break;
      }
      case "model_response": {
        const item = openModel.get(event.attempt);
        if (item) item.response = event;
        else items.push({ kind: "model", event: null, response: event });
        openModel.delete(event.attempt);
        waitingModel = null;
        if (p.text) lastText = { text: p.text, event };
        break;
      }
      case "tool_call": {
        const item = { kind: "tool", event, result: null, decisions: [] };
        tools.set(p.id, item);
        items.push(item);
        break;
      }
      case "tool_result": {
        const item = tools.get(p.id);
        if (item && !item.result) item.result = event;
        else items.push({ kind: "tool", event: null, result: event, decisions: [] });
        break;
      }
      case "policy_decision": {
        const item = tools.get(p.id);
        if (item) item.decisions.push(event);
        else items.push({ kind: "line", event, text: `policy ${p.verdict} for ${p.name}: ${p.reason}` });
        break;
      }
      case "approval_requested": {
        const item = { kind: "approval", event, decided: null };
        approvals.set(p.id, item);
        items.push(item);
        break;
      }
      case "approval_decided": {
        const item = approvals.get(p.call_id);
        if (item) item.decided = event;
        else items.push({ kind: "line", event, text: `approval of ${p.tool}: ${p.decision}` });
        break;
      }
      default:
        items.push({ kind: event.type, event });
    }
  }

  const view = items.map((item) => draw(item, { pending, decide, approvals }));
  return { items: view, current: now(events, waitingModel, lastText, live) };
}

// The current step: the text a streaming model is writing (live_text events), else what the model
// said last, and whether a model call is in flight.
function now(events, waitingModel, lastText, live) {
  const last = events[events.length - 1];
  const finished = last && last.type === "status" && ["completed", "failed", "cancelled"].includes(last.payload.to);
  if (finished || (!waitingModel && !lastText && !live)) return [];
  // Live text may come before the step's model_request is stored (a step's events are written together).
  const writing = Boolean(live);
  return [
    h("h2", {}, "Current step"),
    waitingModel
      ? h("p", { class: "muted", dataset: { kind: "waiting-model" } }, writing ? "Writing: " : "Waiting for ", h("span", { class: "mono" }, waitingModel.event.payload.model), " since ", time(waitingModel.event.created_at), "…")
      : null,
    writing
      ? h("blockquote", { class: "model-text live-text", dataset: { kind: "live-text", step: live.step } }, live.text)
      : lastText
        ? h("blockquote", { class: "model-text" }, lastText.text)
        : null,
  ];
}

function draw(item, ctx) {
  const drawers = {
    attempt: drawAttempt,
    model: drawModel,
    tool: drawTool,
    approval: drawApproval,
    status: drawStatus,
    resumed: drawResumed,
    attempt_failed: drawAttemptError,
    requeued: drawAttemptError,
    error: drawError,
    final_answer: drawAnswer,
    cancel_requested: (i) => entry(i.event, "cancel", "Cancel requested"),
    line: (i) => entry(i.event, "line", i.text),
  };
  const drawer = drawers[item.kind] || ((i) => entry(i.event, "other", i.event.type, json(i.event.payload)));
  return drawer(item, ctx);
}

function entry(event, kind, title, ...body) {
  return h(
    "article",
    { class: `step step-${kind}`, dataset: { kind, seq: event ? event.seq : "" } },
    h("header", {}, h("span", { class: "step-title" }, title), event ? meta(event) : null),
    body,
  );
}

function meta(event) {
  const step = event.payload.step ? ` · step ${event.payload.step}` : "";
  return h("span", { class: "step-meta" }, `#${event.seq} · attempt ${event.attempt}${step} · `, time(event.created_at));
}

function drawAttempt({ event }) {
  return h("div", { class: "attempt-divider", dataset: { kind: "attempt" } }, `Attempt ${event.attempt}`);
}

function drawModel({ event, response }) {
  const anchor = event || response;
  const model = (response && response.payload.model) || (event && event.payload.model) || "model";
  if (!response) return entry(anchor, "model", `Model call · ${model}`, h("p", { class: "muted" }, "waiting for the response…"));
  const r = response.payload;
  const usage = r.usage || {};
  const latency = event ? seconds(between(event.created_at, response.created_at)) : "–";
  const calls = (r.tool_calls || []).map((c) => c.name).join(", ");
  return entry(
    anchor,
    "model",
    `Model call · ${model}`,
    h(
      "dl",
      { class: "inline" },
      h("dt", {}, "latency"),
      h("dd", { dataset: { field: "latency" } }, latency),
      h("dt", {}, "tokens"),
      h("dd", { dataset: { field: "tokens" } }, `${number(usage.input_tokens)} in · ${number(usage.output_tokens)} out${usage.estimated ? " (estimated)" : ""}`),
      h("dt", {}, "finish"),
      h("dd", {}, r.finish_reason || "–"),
      calls ? [h("dt", {}, "asks for"), h("dd", {}, calls)] : null,
    ),
    r.text ? h("blockquote", { class: "model-text" }, r.text) : null,
  );
}

function drawTool({ event, result, decisions }, { approvals }) {
  const anchor = event || result;
  const p = anchor.payload;
  const body = [h("div", { class: "label" }, "arguments"), json((result || event).payload.arguments || {})];
  for (const d of decisions) {
    body.push(h("p", { class: "muted" }, `policy: ${d.payload.verdict}${d.payload.reason ? ` (${d.payload.reason})` : ""}`));
  }
  let state = "running";
  if (result) {
    const r = result.payload;
    state = r.is_error ? "error" : "ok";
    body.push(
      h("div", { class: "label" }, r.is_error ? `error${r.error_kind ? ` (${r.error_kind})` : ""}` : "result"),
      h("pre", { class: `tool-output${r.is_error ? " is-error" : ""}`, dataset: { field: "result" } }, r.content),
    );
    if (event) body.push(h("p", { class: "muted", dataset: { field: "duration" } }, `took ${seconds(between(event.created_at, result.created_at))}`));
  } else if (approvals.has(p.id)) {
    state = "approval";
    body.push(h("p", { class: "muted" }, "waits for a person's approval (below)"));
  } else {
    body.push(h("p", { class: "muted" }, "running…"));
  }
  const node = entry(anchor, "tool", `Tool call · ${p.name}`, body);
  node.dataset.tool = p.name;
  node.dataset.state = state;
  return node;
}

function drawApproval({ event, decided }, { pending, decide }) {
  const p = event.payload;
  const open = !decided && pending.some((a) => a.call_id === p.id);
  const body = [h("p", {}, p.reason || "the policy asks a person first"), json(p.arguments || {})];
  if (decided) {
    const d = decided.payload;
    body.push(h("p", { class: `decision decision-${d.decision}` }, `${d.decision}${d.reason ? `: ${d.reason}` : ""} (by ${d.decided_by})`));
  } else if (open) {
    body.push(
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "primary", onclick: () => decide(p.id, "approve") }, "Approve"),
        h("button", { type: "button", class: "danger", onclick: () => decide(p.id, "deny") }, "Deny"),
      ),
    );
  }
  return entry(event, "approval", `Approval needed · ${p.name}`, body);
}

function drawStatus({ event }) {
  const p = event.payload;
  const move = p.from ? `${p.from} → ${p.to}` : p.to;
  return entry(event, "status", `Status ${move}`, p.reason ? h("p", { class: "muted" }, p.reason) : null);
}

function drawResumed({ event }) {
  const p = event.payload;
  return entry(
    event,
    "resumed",
    `Resumed after step ${p.steps_reused}`,
    h("p", {}, `${p.steps_reused} finished step(s) reused from the checkpoint, ${number(p.tokens_saved)} tokens saved`),
  );
}

function drawAttemptError({ event }) {
  const p = event.payload;
  const retry = p.retry_in_seconds !== undefined ? `; retried in ${seconds(p.retry_in_seconds)}` : "";
  const title = event.type === "requeued" ? `Attempt ${p.attempt} requeued` : `Attempt ${p.attempt} failed`;
  return entry(event, "attempt-error", title, h("p", { class: "error-text" }, `${p.type || p.error_type}: ${p.message}${retry}`));
}

function drawError({ event }) {
  const p = event.payload;
  return entry(event, "error", "Run error", h("p", { class: "error-text" }, `${p.kind}: ${p.message}`));
}

function drawAnswer({ event }) {
  const p = event.payload;
  const output = p.text !== undefined && p.text !== null ? h("blockquote", { class: "model-text" }, p.text) : json(p.output);
  return entry(event, "answer", "Final answer", output);
}
