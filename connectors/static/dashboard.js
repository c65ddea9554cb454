// The Tidings dashboard: fetches the named queries and draws them as inline SVG. No libraries.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = { entered: "#7a869a", sent: "#3b6fd8", delivered: "#2aa876", opened: "#e0a526", clicked: "#8e5bd6",
                 intents: "#7a869a", bounced: "#d9534f", complained: "#c2185b", unsubscribed: "#5bb5d6",
                 accepted: "#2aa876", deferred: "#e0a526" };
const state = { refreshSeconds: 5, key: sessionStorage.getItem("tidings-key") || "", refreshes: 0, timer: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function fmt(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString("en-US") : String(value);
  if (Array.isArray(value)) return value.join(" · ");
  const time = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d+)?\+00:00$/.exec(value);
  if (time) return `${time[1]} ${time[2]} UTC`;
  return String(value);
}

function pct(part, whole) {
  return whole > 0 ? (100 * part / whole).toFixed(1) + "%" : "–";
}

function rowsAsObjects(result) {
  return result.rows.map(row => Object.fromEntries(result.columns.map((c, i) => [c, row[i]])));
}

async function fetchJSON(path) {
  const headers = state.key ? { Authorization: "Bearer " + state.key } : {};
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) {
    document.getElementById("key-form").hidden = false;
    throw new Error("an API key is needed");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// ---- the table under every chart: the query's exact result ------------------------------------

function renderTable(container, name, result) {
  if (!result.rows.length) {
    container.replaceChildren(el("p", { class: "empty" }, "no data in this period"));
    return;
  }
  const head = el("tr", {}, ...result.columns.map(c => el("th", {}, c)));
  const body = result.rows.map((row, r) => el("tr", { "data-row": String(r) }, ...row.map((value, i) =>
    el("td", { "data-col": result.columns[i], "data-value": JSON.stringify(value),
               class: typeof value === "number" ? "num" : "text" }, fmt(value)))));
  container.replaceChildren(el("table", { "data-query": name }, el("thead", {}, head), el("tbody", {}, ...body)));
}

// ---- journey funnels: one row of bars per journey --------------------------------------------

function drawFunnels(container, result) {
  const stages = ["entered", "sent", "delivered", "opened", "clicked"];
  const journeys = rowsAsObjects(result);
  if (!journeys.length) { container.replaceChildren(el("p", { class: "empty" }, "no journey activity yet")); return; }
  const width = 960, rowH = 26, labelW = 150, top = 8;
  const blockH = stages.length * rowH + 24;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${journeys.length * blockH + top}`, role: "img",
                             "aria-label": "journey funnels" });
  journeys.forEach((j, index) => {
    const y0 = top + index * blockH;
    chart.append(svg("text", { x: 0, y: y0 + 12, "font-weight": "600" }, j.journey_id));
    const base = Math.max(j.entered, j.sent, 1);
    stages.forEach((stage, s) => {
      const y = y0 + 20 + s * rowH, w = (width - labelW - 160) * (j[stage] / base);
      chart.append(
        svg("text", { x: 12, y: y + 14, class: "axis" }, stage),
        svg("rect", { x: labelW, y, width: Math.max(w, 1), height: rowH - 6, rx: 3, fill: COLORS[stage] }),
        svg("text", { x: labelW + Math.max(w, 1) + 8, y: y + 14, "data-journey": j.journey_id, "data-stage": stage },
            `${fmt(j[stage])}  (${pct(j[stage], j.entered)} of entered)`));
    });
  });
  container.replaceChildren(chart);
}

// ---- sends and engagement over time: one line per metric -------------------------------------

function dayRange(count) {
  const days = [], now = new Date();
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  for (let i = count; i >= 0; i--) days.push(new Date(today - i * 86400000).toISOString().slice(0, 10));
  return days;
}

function drawTimeline(container, result, panel) {
  const metrics = ["delivered", "opened", "clicked", "bounced", "complained", "unsubscribed"];
  const byDay = Object.fromEntries(rowsAsObjects(result).map(r => [r.day, r]));
  const days = dayRange(Number(document.getElementById("days").value));
  const width = 960, height = 240, left = 48, right = 28, top = 10, bottom = 28;
  const max = Math.max(1, ...days.flatMap(d => metrics.map(m => (byDay[d] || {})[m] || 0)));
  const x = i => left + (days.length === 1 ? 0 : i * (width - left - right) / (days.length - 1));
  const y = v => top + (height - top - bottom) * (1 - v / max);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "sends over time" });
  const grid = svg("g", { class: "grid axis" });
  for (let t = 0; t <= 4; t++) {
    const v = Math.round(max * t / 4);
    grid.append(svg("line", { x1: left, x2: width - right, y1: y(v), y2: y(v) }),
                svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  const step = Math.max(1, Math.ceil(days.length / 8));
  days.forEach((d, i) => {
    if (i % step === 0 || i === days.length - 1)
      grid.append(svg("text", { x: x(i), y: height - 8, "text-anchor": "middle" }, d.slice(5)));
  });
  chart.append(grid);
  for (const m of metrics) {
    const points = days.map((d, i) => `${x(i)},${y((byDay[d] || {})[m] || 0)}`).join(" ");
    chart.append(svg("polyline", { points, fill: "none", stroke: COLORS[m], "stroke-width": 2 }));
    days.forEach((d, i) => {
      const v = (byDay[d] || {})[m] || 0;
      if (v) chart.append(svg("circle", { cx: x(i), cy: y(v), r: 3, fill: COLORS[m] },
                                svg("title", {}, `${d} ${m}: ${fmt(v)}`)));
    });
  }
  panel.querySelector(".legend").replaceChildren(...metrics.map(m => {
    const total = rowsAsObjects(result).reduce((sum, r) => sum + r[m], 0);
    return el("span", { "data-metric": m }, el("i", { style: `background:${COLORS[m]}` }), `${m} ${fmt(total)}`);
  }));
  container.replaceChildren(chart);
}

// ---- deliverability: one stacked bar per sending domain and provider --------------------------

function drawDeliverability(container, result) {
  const kinds = ["accepted", "deferred", "bounced", "complained"];
  const rows = rowsAsObjects(result);
  if (!rows.length) { container.replaceChildren(el("p", { class: "empty" }, "nothing sent in this period")); return; }
  const width = 520, rowH = 30, labelW = 190, barW = width - labelW - 96;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${rows.length * rowH + 4}`, role: "img", "aria-label": "deliverability" });
  rows.forEach((r, i) => {
    const total = kinds.reduce((s, k) => s + r[k], 0) || 1;
    const y = 2 + i * rowH;
    chart.append(svg("text", { x: 0, y: y + 10 }, r.sending_domain),
                 svg("text", { x: 0, y: y + 22, class: "axis" }, "→ " + r.recipient_domain));
    let x = labelW;
    for (const k of kinds) {
      const w = barW * r[k] / total;
      if (w > 0) chart.append(svg("rect", { x, y: y + 4, width: w, height: rowH - 10, fill: COLORS[k] },
                                  svg("title", {}, `${k}: ${fmt(r[k])}`)));
      x += w;
    }
    chart.append(svg("text", { x: labelW + barW + 8, y: y + 18 }, `bounce ${(100 * r.bounce_rate).toFixed(1)}%`));
  });
  container.replaceChildren(chart);
}

// ---- reputation: a card per sending identity and provider ------------------------------------

function drawReputation(container, result) {
  const rows = rowsAsObjects(result);
  if (!rows.length) { container.replaceChildren(el("p", { class: "empty" }, "no reputation snapshots yet")); return; }
  container.replaceChildren(el("div", { class: "cards" }, ...rows.map(r => el("div", { class: "card" },
    el("div", { class: "who" }, r.sending_domain),
    el("div", { class: "sub" }, "at " + r.provider + " ", el("span", { class: `state state-${r.state}` }, r.state)),
    el("div", { class: "sub" }, `${fmt(r.sent)} sent · ${pct(r.accepted, r.sent)} accepted · ${fmt(r.bounced)} bounced · ${fmt(r.complained)} complaints`)))));
}

// ---- refresh loop ----------------------------------------------------------------------------

const RENDERERS = { journey_funnel: drawFunnels, sends_over_time: drawTimeline,
                    deliverability_by_identity: drawDeliverability, reputation_latest: drawReputation };

async function refresh() {
  const status = document.getElementById("status");
  const panels = [...document.querySelectorAll(".panel[data-query]")];
  const errors = [];
  await Promise.all(panels.map(async panel => {
    const name = panel.dataset.query;
    const query = name === "reputation_latest" ? "" : "?days=" + encodeURIComponent(document.getElementById("days").value);
    try {
      const result = await fetchJSON(`/dashboard/api/query/${name}${query}`);
      RENDERERS[name](panel.querySelector(".chart"), result, panel);
      renderTable(panel.querySelector(".table"), name, result);
      panel.dataset.loaded = "true";
    } catch (error) {
      errors.push(`${name}: ${error.message}`);
      panel.querySelector(".chart").replaceChildren(el("p", { class: "error" }, error.message));
    }
  }));
  state.refreshes += 1;
  document.body.dataset.refreshes = String(state.refreshes);
  status.className = errors.length ? "error" : "";
  status.textContent = errors.length ? errors[0] : `updated ${new Date().toLocaleTimeString("en-GB")} · every ${state.refreshSeconds}s`;
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(async () => { await refresh(); schedule(); }, state.refreshSeconds * 1000);
}

document.getElementById("days").addEventListener("change", () => { refresh(); schedule(); });
document.getElementById("key-form").addEventListener("submit", event => {
  event.preventDefault();
  state.key = document.getElementById("key").value.trim();
  sessionStorage.setItem("tidings-key", state.key);
  document.getElementById("key-form").hidden = true;
  refresh();
});

(async () => {
  try { state.refreshSeconds = (await fetchJSON("/dashboard/api/queries")).refresh_seconds || 5; } catch (error) { /* shown by refresh */ }
  await refresh();
  schedule();
})();
