// Building the page. Text is only ever set as text (never parsed as HTML): a task's goal, a model's
// answer or a tool's output cannot add markup or script to the page.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children) if (child) node.append(child);
  return node;
}

export function badge(status) {
  return h("span", { class: `badge badge-${status}`, dataset: { status } }, status);
}

export function shortId(id) {
  return id.slice(0, 8);
}

export function time(iso) {
  if (!iso) return "–";
  const at = new Date(iso);
  return h("time", { datetime: iso, title: at.toISOString() }, at.toLocaleTimeString());
}

export function dateTime(iso) {
  if (!iso) return "–";
  const at = new Date(iso);
  return h("time", { datetime: iso, title: at.toISOString() }, at.toLocaleString());
}

export function seconds(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 60) return `${value.toFixed(value < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(value / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(value % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function between(startIso, endIso) {
  if (!startIso || !endIso) return null;
  return (new Date(endIso) - new Date(startIso)) / 1000;
}

export function number(value) {
  return value === null || value === undefined ? "–" : Number(value).toLocaleString();
}

export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

export function message(kind, text) {
  return h("div", { class: `message message-${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);
export const STATUSES = ["pending", "running", "waiting", "completed", "failed", "cancelled"];
