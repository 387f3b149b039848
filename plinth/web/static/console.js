// The console's only script: follow logs and draw metric charts (uPlot).
// No inline scripts anywhere (the pages' Content-Security-Policy forbids them).
"use strict";

const FINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
const POLL_MS = 1000;

function jobState() {
  const live = document.getElementById("live");
  return live ? live.dataset.state : null;
}

// ---- logs: fetch from X-Log-Offset onwards until X-Log-Complete, while "follow" is on.
function followLog(pre) {
  if (pre.dataset.started) return;
  pre.dataset.started = "true";
  let offset = 0;
  const follow = pre.parentElement.querySelector("input.follow");
  async function step() {
    let complete = false;
    try {
      const resp = await fetch(`${pre.dataset.logUrl}?offset=${offset}`, { credentials: "same-origin" });
      if (resp.ok) {
        const text = await resp.text();
        if (text) {
          pre.append(text);
          if (follow && follow.checked) pre.scrollTop = pre.scrollHeight;
        }
        offset = Number(resp.headers.get("X-Log-Offset") || offset);
        complete = resp.headers.get("X-Log-Complete") === "true";
      } else if (resp.status === 401 || resp.status === 404) {
        complete = true;
      }
    } catch (e) { /* a network blip: try again */ }
    if (complete) { pre.dataset.complete = "true"; return; }
    if (!follow || follow.checked) setTimeout(step, POLL_MS);
    else follow.addEventListener("change", () => step(), { once: true });
  }
  step();
}

// ---- metric charts: one uPlot per metric name, x = step (or the point's index).
const PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0891b2"];

function metricChart(box) {
  let after = null;
  const series = new Map(); // name -> [[x...], [y...]]
  const plots = new Map();
  function draw() {
    for (const [name, data] of series) {
      let plot = plots.get(name);
      if (!plot) {
        const holder = document.createElement("div");
        holder.className = "metric";
        holder.dataset.metric = name;
        box.append(holder);
        const color = PALETTE[plots.size % PALETTE.length];
        plot = new uPlot({
          title: name, width: Math.min(box.clientWidth || 640, 640), height: 220,
          scales: { x: { time: false } },
          series: [{ label: "step" }, { label: name, stroke: color, width: 2 }],
        }, data, holder);
        plots.set(name, plot);
      } else {
        plot.setData(data);
      }
    }
    if (series.size) box.classList.add("has-data");
  }
  async function step() {
    let more = false;
    // Stop only after a fetch that began once the job had ended: no late point is lost.
    const endedBefore = FINAL.has(jobState());
    try {
      const url = after === null ? box.dataset.metricsUrl : `${box.dataset.metricsUrl}?after=${after}`;
      const resp = await fetch(url, { credentials: "same-origin" });
      if (resp.ok) {
        const body = await resp.json();
        for (const pt of body.points) {
          for (const [name, value] of Object.entries(pt.values)) {
            if (!series.has(name)) series.set(name, [[], []]);
            const s = series.get(name);
            s[0].push(pt.step === null ? s[0].length : pt.step);
            s[1].push(value);
          }
        }
        if (body.last !== null) after = body.last;
        more = body.points.length > 0;
        draw();
      }
    } catch (e) { /* try again */ }
    if (more) setTimeout(step, 0);
    else if (!endedBefore) setTimeout(step, 2 * POLL_MS);
    else box.dataset.complete = "true";
  }
  step();
}

// ---- the overview's usage chart: one line per group, x = time.
function usageChart(box) {
  const data = JSON.parse(box.dataset.usage);
  const names = Object.keys(data.groups);
  for (const key of ["cpu", "gpu"]) {
    if (key === "gpu" && !names.some((g) => data.groups[g].gpu.some((v) => v > 0))) continue;
    const holder = document.createElement("div");
    holder.className = "metric";
    holder.dataset.metric = key;
    box.append(holder);
    new uPlot({
      title: key === "cpu" ? "cores held" : "GPUs held",
      width: Math.min(box.clientWidth || 900, 900), height: 220,
      series: [{}, ...names.map((g, i) => ({ label: g, stroke: PALETTE[i % PALETTE.length], width: 2 }))],
    }, [data.t, ...names.map((g) => data.groups[g][key])], holder);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-usage]").forEach(usageChart);
  document.querySelectorAll("pre[data-log-url]").forEach(followLog);
  document.querySelectorAll("[data-metrics-url]").forEach(metricChart);
  // the logs part arrives by an htmx poll once a replica has started
  document.body.addEventListener("htmx:afterSettle", () => {
    document.querySelectorAll("pre[data-log-url]").forEach(followLog);
  });
});
