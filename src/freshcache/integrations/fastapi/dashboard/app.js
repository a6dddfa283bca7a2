// The freshcache dashboard: polls the monitoring API once a second and draws with inline SVG.
// No build step and no library: served as is by the router, usable on machines without internet.
"use strict";

const BASE = location.pathname.replace(/\/dashboard\/?$/, "");
const HISTORY = 120; // points kept per time series: two minutes at one a second
const SVG = "http://www.w3.org/2000/svg";
const series = { hitRate: [], backlog: [], lag: [] };
let help = {}; // "group.key" -> help text, from the one metric table
const COUNTERS = [
  ["cache", "hits"], ["cache", "misses"], ["cache", "loads"], ["cache", "stale_fills_rejected"],
  ["cache", "pending_bypasses"], ["cache", "backend_errors"], ["manager", "entity_invalidations"],
  ["manager", "tag_invalidations"], ["manager", "key_invalidations"],
  ["manager", "pattern_invalidations"], ["manager", "failed_invalidations"],
  ["manager", "queued_invalidations"], ["events", "published"], ["events", "delivered"],
  ["monitor", "checked"], ["monitor", "inconsistent"],
];

const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("freshcache-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("freshcache-token", tokenInput.value));

async function api(path, options = {}) {
  const headers = Object.assign({ "Content-Type": "application/json" }, options.headers || {});
  if (tokenInput.value) headers.Authorization = "Bearer " + tokenInput.value;
  const response = await fetch(BASE + path, Object.assign({}, options, { headers }));
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  return { status: response.status, body };
}

function element(tag, attributes = {}, text = "") {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== "") node.textContent = text;
  return node;
}

function detail(body) {
  if (!body) return "no answer";
  if (typeof body.detail === "string") return body.detail;
  if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
  return JSON.stringify(body);
}

// Charts

function lineChart(id, points, { max = null, floor = 1e-9, format = (v) => v } = {}) {
  const width = 300, height = 120, left = 40, bottom = 14, pad = 8;
  const top = max ?? Math.max(floor, ...points);
  const svg = element("svg:svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  for (const fraction of [0, 0.5, 1]) {
    const y = pad + (height - bottom - pad) * (1 - fraction);
    svg.append(element("svg:line", { x1: left, x2: width, y1: y, y2: y, stroke: "#e5e8ef" }));
    svg.append(element("svg:text", { x: 0, y: y + 3 }, format(top * fraction)));
  }
  if (points.length) {
    // The x axis grows with the history until it is full, so a fresh page draws a line, not a dot.
    const step = (width - left) / Math.max(29, points.length - 1);
    const start = width - step * (points.length - 1);
    const y = (v) => (pad + (height - bottom - pad) * (1 - v / top)).toFixed(1);
    const d = points.map((v, i) => `${i ? "L" : "M"}${(start + i * step).toFixed(1)},${y(v)}`).join(" ");
    svg.append(element("svg:path", { d, fill: "none", stroke: "#2463eb", "stroke-width": 2, class: "series" }));
  }
  svg.append(element("svg:text", { x: left, y: height - 2 }, `last ${points.length} s`));
  document.getElementById(id).replaceChildren(svg);
}

function barChart(id, entries, format = (v) => String(v)) {
  const width = 340, row = 20, labelWidth = 150;
  const height = Math.max(row, entries.length * row);
  const top = Math.max(1e-9, ...entries.map(([, v]) => v ?? 0));
  const svg = element("svg:svg", { viewBox: `0 0 ${width} ${height}`, role: "img", style: `height:${height}px` });
  if (!entries.length) svg.append(element("svg:text", { x: 0, y: 14 }, "none yet"));
  entries.forEach(([label, value], i) => {
    const y = i * row;
    svg.append(element("svg:text", { x: 0, y: y + 14 }, label));
    svg.append(element("svg:rect", { x: labelWidth, y: y + 4, height: row - 8, width: Math.max(1, (width - labelWidth - 60) * (value ?? 0) / top), fill: "#2463eb", class: "bar" }));
    svg.append(element("svg:text", { x: width - 56, y: y + 14, class: "bar-value" }, format(value)));
  });
  document.getElementById(id).replaceChildren(svg);
}

const seconds = (v) => (v == null ? "–" : v >= 1 ? v.toFixed(2) + " s" : v >= 0.001 ? (v * 1000).toFixed(1) + " ms" : (v * 1e6).toFixed(0) + " µs");
const push = (list, value) => { list.push(value); if (list.length > HISTORY) list.shift(); };

// Refresh

function drawCounters(report) {
  const box = document.getElementById("counters");
  box.replaceChildren(...COUNTERS.filter(([group]) => report[group]).map(([group, key]) => {
    const item = element("div", { class: "counter", id: `counter-${group}-${key}`, title: help[`${group}.${key}`] || "" });
    item.append(element("span", {}, key.replaceAll("_", " ")), element("b", {}, String(report[group][key] ?? 0)));
    return item;
  }));
}

function drawRecent(entries) {
  const rows = entries.map((entry) => {
    const tr = element("tr");
    const cells = [
      new Date(entry.timestamp * 1000).toLocaleTimeString(),
      entry.entity_types.join(", ") || "–",
      entry.tags.join(", ") || "–",
      [...entry.keys, ...entry.patterns].join(", ") || "–",
      entry.source,
      entry.applied ? "yes" : "queued",
    ];
    for (const text of cells) tr.append(element("td", {}, text));
    return tr;
  });
  document.querySelector("#recent tbody").replaceChildren(...rows);
}

// The opt-in consistency monitor: the nines its checks allow (never more), what it found.
async function drawConsistency(monitor) {
  const value = document.getElementById("consistency-value");
  const statement = document.getElementById("consistency-statement");
  const examples = document.getElementById("consistency-examples");
  if (!monitor) {
    value.textContent = "off";
    statement.textContent = "no consistency monitor on this cache (it is opt-in)";
    examples.replaceChildren();
    return;
  }
  value.textContent = monitor.checked ? monitor.consistency_nines.toFixed(2) + " nines" : "–";
  const { status, body } = await api("/api/system/cache/consistency");
  if (status !== 200) return;
  statement.textContent = body.statement;
  statement.className = "result" + (body.inconsistent ? " error" : "");
  examples.replaceChildren(...body.examples.map((e) => element("li", {},
    `${e.tag} back at ${e.version}, ${e.seconds_after} s after its invalidation (${e.invalidated_at})`)));
}

async function refresh() {
  const [metrics, recent, health] = await Promise.all([
    api("/api/system/metrics/cache"), api("/api/system/cache/recent?limit=20"), api("/api/system/health"),
  ]);
  const badge = document.getElementById("status");
  badge.textContent = health.body ? `health: ${health.body.status}` : `health: ${health.status}`;
  badge.className = "badge " + (health.status === 200 ? "up" : "down");
  if (metrics.status !== 200) {
    document.getElementById("updated").textContent = detail(metrics.body);
    return;
  }
  const report = metrics.body;
  push(series.hitRate, report.hit_rate);
  push(series.backlog, report.outbox_backlog ?? 0);
  push(series.lag, report.event_lag_seconds ?? 0);
  document.getElementById("hit-rate-value").textContent = (report.hit_rate * 100).toFixed(1) + " %";
  document.getElementById("backlog-value").textContent = report.outbox_backlog ?? "–";
  document.getElementById("lag-value").textContent = seconds(report.event_lag_seconds);
  lineChart("hit-rate-chart", series.hitRate, { max: 1, format: (v) => (v * 100).toFixed(0) + "%" });
  lineChart("backlog-chart", series.backlog, { floor: 2, format: (v) => v.toFixed(0) });
  lineChart("lag-chart", series.lag, { floor: 0.001, format: seconds });
  barChart("entity-chart", Object.entries(report.invalidations_by_entity_type));
  // Bucket upper bounds; "–" until a histogram has a sample (reads are timed one in 16).
  barChart("latency-chart", Object.entries(report.latency).flatMap(([name, l]) => [
    [`${name.replace("_latency", "").replace("_", " ")} p50`, l.p50_seconds], [`${name.replace("_latency", "").replace("_", " ")} p99`, l.p99_seconds],
  ]), seconds);
  drawCounters(report);
  await drawConsistency(report.monitor);
  if (recent.status === 200) drawRecent(recent.body);
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

// Forms

const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

document.getElementById("invalidate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { tags: list(form.get("tags")), keys: list(form.get("keys")), patterns: list(form.get("patterns")), confirm: form.get("confirm") === "on" };
  if (form.get("entity_type")) body.entity = { type: form.get("entity_type"), id: /^\d+$/.test(form.get("entity_id")) ? Number(form.get("entity_id")) : form.get("entity_id") };
  const { status, body: answer } = await api("/api/system/cache/invalidate", { method: "POST", body: JSON.stringify(body) });
  const out = document.getElementById("invalidate-result");
  out.className = "result" + (status === 200 ? "" : " error");
  out.textContent = status === 200
    ? `invalidated ${answer.tags.length} tag(s), ${answer.key_count} key(s)${answer.applied ? "" : " (queued: backend down)"} in ${answer.duration_ms.toFixed(1)} ms`
    : `${status}: ${detail(answer)}`;
  refresh();
});

document.getElementById("inspect-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = new FormData(event.target).get("key");
  const { status, body } = await api("/api/system/cache/keys/" + encodeURIComponent(key));
  const out = document.getElementById("inspect-result");
  if (!body || !("would_hit" in body)) {
    out.replaceChildren(element("p", { class: "error" }, `${status}: ${detail(body)}`));
    return;
  }
  const verdict = element("p", {}, "");
  verdict.append(element("span", { class: body.would_hit ? "hit" : "miss" }, body.would_hit ? "would hit" : "would miss"));
  verdict.append(` · TTL ${body.ttl_seconds == null ? "–" : body.ttl_seconds.toFixed(1) + " s"} · ${body.size_bytes ?? "–"} bytes`);
  const reasons = element("ul", { class: "reasons" });
  for (const reason of body.reasons) reasons.append(element("li", {}, reason));
  const table = element("table");
  table.append(element("tr")); table.firstChild.append(...["tag", "stored", "current", "holders"].map((h) => element("th", {}, h)));
  for (const tag of body.tags) {
    const tr = element("tr");
    for (const text of [tag.tag, tag.stored_version ?? "–", tag.version ?? "none", tag.holders.map((h) => h.token).join(", ") || "–"]) tr.append(element("td", {}, text));
    table.append(tr);
  }
  out.replaceChildren(verdict, reasons, table);
});

api("/api/system/metrics/table").then(({ status, body }) => {
  if (status === 200) help = Object.fromEntries(body.map((m) => [`${m.group}.${m.key}`, m.help]));
});
refresh();
setInterval(refresh, 1000);
