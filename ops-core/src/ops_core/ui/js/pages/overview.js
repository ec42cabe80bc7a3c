// Overview: the last hour of the tenant's tasks: throughput and failure rate, queue lag (submission to
// first start), finished tasks per five minutes, and tokens by agent and model. From GET /v1/stats and
// GET /v1/usage, read again every five seconds.

import { api } from "../api.js";
import { h, message, number, replace, seconds, svg } from "../dom.js";

const EVERY_MS = 5000;
const HOUR_MS = 3600_000;

export async function overviewPage(main, { signal }) {
  const body = h("div");
  const notice = h("div");
  replace(main, h("div", { class: "title" }, h("h1", {}, "Overview"), h("span", { class: "muted" }, "tasks submitted in the last hour")), notice, body);

  async function load() {
    const since = new Date(Date.now() - HOUR_MS).toISOString();
    try {
      const [stats, usage] = await Promise.all([
        api("/v1/stats", { query: { since, bucket_seconds: 300 }, signal }),
        api("/v1/usage", { query: { since }, signal }),
      ]);
      replace(notice);
      replace(body, view(stats, usage));
    } catch (error) {
      if (!signal.aborted) replace(notice, message("error", error.message));
    }
  }

  await load();
  const timer = setInterval(() => load(), EVERY_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}

function view(stats, usage) {
  const s = stats.by_status;
  const rate = stats.failure_rate === null ? "–" : `${(stats.failure_rate * 100).toFixed(1)} %`;
  const tiles = [
    ["Submitted", number(stats.submitted), "submitted"],
    ["Throughput", `${stats.throughput_per_minute.toFixed(2)} / min`, "throughput"],
    ["Failure rate", rate, "failure-rate"],
    ["Queue lag (avg)", seconds(stats.queue_lag.avg_seconds), "lag-avg"],
    ["Queue lag (max)", seconds(stats.queue_lag.max_seconds), "lag-max"],
    ["Running or waiting", number((s.running || 0) + (s.waiting || 0)), "running"],
    ["Pending now", number(s.pending || 0), "pending"],
  ];
  return [
    h("div", { class: "tiles" }, tiles.map(([name, value, key]) => h("div", { class: "tile", dataset: { stat: key } }, h("div", { class: "tile-value" }, value), h("div", { class: "tile-name" }, name)))),
    h("h2", {}, "Finished per 5 minutes"),
    chart(stats.buckets),
    h("h2", {}, "Tokens by agent and model"),
    tokens(usage.items),
  ];
}

function chart(buckets) {
  const width = 1000;
  const height = 180;
  const gap = 4;
  const top = Math.max(1, ...buckets.map((b) => b.completed + b.failed + b.cancelled));
  const bar = buckets.length ? width / buckets.length - gap : 0;
  const bars = [];
  buckets.forEach((b, i) => {
    let y = height;
    for (const status of ["completed", "failed", "cancelled"]) {
      const tall = (b[status] / top) * (height - 20);
      if (!tall) continue;
      y -= tall;
      const rect = svg("rect", { x: i * (bar + gap), y, width: bar, height: tall, class: `bar bar-${status}` });
      rect.append(svg("title", {}, document.createTextNode(`${new Date(b.start).toLocaleTimeString()}: ${b[status]} ${status}`)));
      bars.push(rect);
    }
  });
  const axis = svg("text", { x: 0, y: 12, class: "axis" }, document.createTextNode(`max ${top}`));
  const legend = h("p", { class: "legend" }, ["completed", "failed", "cancelled"].map((st) => h("span", { class: `key key-${st}` }, st)));
  return h("figure", { class: "chart" }, svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "finished tasks per bucket" }, axis, ...bars), legend);
}

function tokens(items) {
  if (!items.length) return message("info", "No tokens spent in the last hour.");
  return h(
    "table",
    { class: "usage" },
    h("thead", {}, h("tr", {}, ["Agent", "Model", "Tasks", "Input", "Output", "Cached", "Total"].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      items.map((u) =>
        h(
          "tr",
          {},
          h("td", {}, u.agent),
          h("td", { class: "mono" }, u.model),
          h("td", { class: "num" }, number(u.tasks)),
          h("td", { class: "num" }, number(u.input_tokens)),
          h("td", { class: "num" }, number(u.output_tokens)),
          h("td", { class: "num" }, number(u.reused_tokens)),
          h("td", { class: "num" }, number(u.input_tokens + u.output_tokens)),
        ),
      ),
    ),
  );
}
