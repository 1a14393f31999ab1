/* mango watch: polls /api/state and draws every run (uPlot for the plots). No data is ever put into the page
   as HTML: text goes through textContent, so a store cannot inject markup. */
"use strict";

const S = {runs: [], interval: 1000, compare: null, compareKey: "", timer: null, fails: 0};
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf"];

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(v, digits) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (!isFinite(v)) return "nan";
  return Number(v.toPrecision(digits || 5)).toString();
}

function fmtDur(s) {
  if (s === null || s === undefined) return "–";
  s = Math.round(s);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function statusText(d) {
  if (d.error && d.status === undefined) return "unavailable";
  if (d.status === "running") return d.live ? "running" : "stopped (process gone: resume it)";
  if (d.status === "finished") return "finished";
  return d.status || "–";
}

function chartWidth(box) {
  return Math.max(280, box.clientWidth || 500);
}

/* ---- one run ------------------------------------------------------------------------------------------- */
function card(i) {
  let st = S.runs[i];
  if (st) return st;
  const a = el("article", "run");
  a.id = "run-" + i;
  const h = el("h2");
  h.append(el("span", "idx", "run " + (i + 1)), el("span", "label"), el("span", "status"));
  a.append(h, el("div", "file"));
  const err = el("div", "err");
  err.hidden = true;
  a.append(err);
  const tiles = el("div", "tiles");
  const tile = (name, cls) => {
    const t = el("div", "tile " + cls);
    t.append(el("b", null, name));
    tiles.append(t);
    return t;
  };
  const tq = tile("queries / budget", "t-q");
  tq.append(el("span", "nq", "0"), document.createTextNode(" / "), el("span", "budget", "–"));
  const bar = el("div", "bar");
  bar.append(el("i"));
  tq.append(bar);
  tile("queries / s", "t-rate").append(el("span", "rate", "–"));
  tile("ETA", "t-eta").append(el("span", "eta", "–"));
  const tb = tile("best value", "t-best");
  tb.append(el("span", "best", "–"), el("small", "bestq"));
  tile("last write", "t-age").append(el("span", "age", "–"));
  tile("non-finite responses", "t-nf").append(el("span", "nonfinite", "0"));
  const trig = tile("rig faults", "t-rig");
  trig.append(el("span", "rig", "–"));
  trig.hidden = true;
  a.append(tiles);
  a.append(el("h3", null, "best so far and every response"));
  const conv = el("div", "chart conv");
  a.append(conv);
  const uh = el("h3", "units-h", "responses per unit");
  const units = el("div", "chart units");
  uh.hidden = units.hidden = true;
  a.append(uh, units);
  a.append(el("h3", null, "best distinct stimuli"));
  a.append(el("div", "stims top"));
  const lh = el("h3", "latest-h", "latest batch");
  a.append(lh, el("div", "stims latest"));
  document.getElementById("runs").append(a);
  st = S.runs[i] = {el: a, gen: -1, q: [], v: [], bsf: [], r: null, chart: null, unitChart: null, topKey: "",
                    latestKey: "", ref: null, units: []};
  return st;
}

function $(st, sel) {
  return st.el.querySelector(sel);
}

function convChart(st, d) {
  const box = $(st, ".conv");
  const series = [
    {label: "query"},
    {label: "response", stroke: "rgba(110,110,110,0.55)", fill: "rgba(110,110,110,0.55)", paths: () => null,
     points: {show: true, size: 3, stroke: "rgba(110,110,110,0.55)", fill: "rgba(110,110,110,0.55)"}},
    {label: "best so far", stroke: "#1f77b4", width: 2, paths: uPlot.paths.stepped({align: 1}),
     points: {show: false}},
  ];
  if (st.ref !== null) series.push({label: "reference", stroke: "#d62728", dash: [6, 4], width: 1.5,
                                     points: {show: false}});
  const budget = Math.max(1, d.budget || 1);
  const opts = {
    width: chartWidth(box), height: 240, series: series, legend: {live: true},
    scales: {x: {time: false, range: (u, lo, hi) => [0, Math.max(budget, hi || 0)]}},
    axes: [{label: "queries"}, {label: "objective", size: 60}],
    cursor: {drag: {x: true, y: false}},
  };
  st.chart = new uPlot(opts, convData(st), box);
}

function convData(st) {
  const data = [st.q, st.v, st.bsf];
  if (st.ref !== null) data.push(st.q.map(() => st.ref));
  return data;
}

function unitChart(st, d) {
  const box = $(st, ".units");
  const series = [{label: "query"}];
  st.units.forEach((u, j) => {
    const c = COLORS[j % COLORS.length];
    series.push({label: String(u), stroke: c, fill: c, paths: () => null, points: {show: true, size: 3}});
  });
  const budget = Math.max(1, d.budget || 1);
  st.unitChart = new uPlot({width: chartWidth(box), height: 200, series: series,
                            scales: {x: {time: false, range: (u, lo, hi) => [0, Math.max(budget, hi || 0)]}},
                            axes: [{label: "queries"}, {label: "response", size: 60}]},
                           [st.q].concat(st.r), box);
}

function stimFigure(i, gen, item, rank, cls) {
  const f = el("figure", cls);
  if (item.image) {
    const img = el("img", "stim" + (rank === 1 && cls === "topfig" ? " best" : ""));
    img.src = "/stimulus/" + i + "/" + gen + "/" + item.query + ".png";
    img.alt = "stimulus of query " + item.query;
    img.dataset.query = item.query;
    f.append(img);
  } else {
    f.append(el("div", "noimg", "not stored"));
  }
  const cap = el("figcaption");
  cap.append(document.createTextNode((rank ? "#" + rank + " " : "") + "q" + item.query), el("br"),
             document.createTextNode(fmt(item.value, 4)));
  f.append(cap);
  return f;
}

function updateRun(d) {
  const i = d.index;
  const st = card(i);
  $(st, ".file").textContent = d.path;
  const err = $(st, ".err");
  err.hidden = !d.error;
  err.textContent = d.error || "";
  st.el.classList.toggle("unavailable", d.label === undefined);
  if (d.label === undefined) {
    $(st, ".label").textContent = d.file;
    $(st, ".status").textContent = "unavailable";
    $(st, ".status").className = "status s-error";
    return;
  }
  $(st, ".label").textContent = d.label;
  $(st, ".status").textContent = statusText(d);
  $(st, ".status").className = "status s-" + (d.status === "running" && !d.live ? "stopped" : d.status);
  // history: reset on a new generation (another run at this path), else append
  if (d.generation !== st.gen || d.since === 0) {
    st.gen = d.generation;
    st.q = []; st.v = []; st.bsf = []; st.r = d.r ? d.r.map(() => []) : null;
    if (st.chart) { st.chart.destroy(); st.chart = null; }
    if (st.unitChart) { st.unitChart.destroy(); st.unitChart = null; }
    st.topKey = st.latestKey = "";
  }
  let best = st.bsf.length ? st.bsf[st.bsf.length - 1] : null;
  for (let k = 0; k < d.q.length; k++) {
    st.q.push(d.q[k]);
    const v = d.v[k];
    st.v.push(v);
    if (v !== null && (best === null || v > best)) best = v;
    st.bsf.push(best);
  }
  if (d.r && st.r) d.r.forEach((col, j) => { for (const x of col) st.r[j].push(x); });
  st.ref = d.reference;
  st.units = d.units || [];
  // numbers
  $(st, ".nq").textContent = String(d.n_queries);
  $(st, ".budget").textContent = String(d.budget);
  $(st, ".bar i").style.width = Math.min(100, 100 * d.n_queries / Math.max(1, d.budget)).toFixed(1) + "%";
  $(st, ".rate").textContent = d.rate === null ? "–" : fmt(d.rate, 3);
  $(st, ".eta").textContent = d.n_queries >= d.budget ? "done" : (d.eta_s === null ? "–" : fmtDur(d.eta_s));
  $(st, ".best").textContent = fmt(d.best_value, 6);
  $(st, ".bestq").textContent = d.best_query === null ? "" : " at query " + d.best_query;
  $(st, ".age").textContent = d.last_write_s === null ? "–" : fmtDur(d.last_write_s) + " ago";
  $(st, ".nonfinite").textContent = String(d.nonfinite);
  $(st, ".t-nf").classList.toggle("warn", d.nonfinite > 0);
  const rig = $(st, ".t-rig");
  rig.hidden = !d.rig;
  if (d.rig) {
    const r = d.rig;
    $(st, ".rig").textContent = "timeouts " + (r.timeouts || 0) + " · retries " + (r.retries || 0) +
      " · reconnects " + (r.reconnects || 0) + " · discarded " + ((r.discarded_malformed || 0) +
      (r.discarded_stale || 0));
    rig.classList.toggle("warn", (r.timeouts || 0) + (r.retries || 0) > 0);
  }
  // plots
  if (!st.chart) convChart(st, d); else st.chart.setData(convData(st));
  const multi = st.r && st.units.length > 1;
  $(st, ".units").hidden = $(st, ".units-h").hidden = !multi;
  if (multi) {
    if (!st.unitChart) unitChart(st, d); else st.unitChart.setData([st.q].concat(st.r));
    const ub = d.unit_best || [];
    $(st, ".units-h").textContent = "responses per unit (best: " +
      st.units.map((u, j) => u + " " + fmt(ub[j], 4)).join(", ") + ")";
  }
  // stimuli (rebuilt only when they change)
  const topKey = st.gen + ":" + d.top.map(t => t.query).join(",");
  if (topKey !== st.topKey) {
    st.topKey = topKey;
    const box = $(st, ".top");
    box.replaceChildren(...d.top.map((t, k) => stimFigure(i, st.gen, t, k + 1, "topfig")));
    if (!d.top.length) box.append(el("p", "note", d.stored_stimuli ? "–" : "this run stores no stimuli"));
  }
  const lt = d.latest || {items: []};
  const latestKey = st.gen + ":" + lt.batch;
  if (latestKey !== st.latestKey) {
    st.latestKey = latestKey;
    $(st, ".latest-h").textContent = lt.batch === null ? "latest batch" :
      "latest batch (batch " + lt.batch + ", " + lt.n + " points" + (lt.n > lt.items.length ? ", first " +
      lt.items.length + " shown" : "") + ")";
    $(st, ".latest").replaceChildren(...lt.items.map(t => stimFigure(i, st.gen, t, 0, "latestfig")));
  }
}

/* ---- all runs ------------------------------------------------------------------------------------------- */
function updateOverview(runs) {
  const t = document.getElementById("overview");
  const head = ["run", "file", "optimizer", "seed", "status", "queries / budget", "q/s", "ETA", "best", "at query",
                "non-finite"];
  const rows = [el("tr")];
  head.forEach(h => rows[0].append(el("th", null, h)));
  runs.forEach((d, i) => {
    const tr = el("tr");
    const a = el("a", null, "run " + (i + 1));
    a.href = "#run-" + i;
    const c0 = el("td");
    c0.append(a);
    const sw = el("span", "swatch");
    sw.style.background = COLORS[i % COLORS.length];
    c0.prepend(sw);
    tr.append(c0, el("td", "l", d.file));
    if (d.label === undefined) {
      const td = el("td", "l err-cell", d.error || "unavailable");
      td.colSpan = head.length - 2;
      tr.append(td);
    } else {
      const done = d.n_queries >= d.budget;
      [d.optimizer, d.seed, statusText(d), d.n_queries + " / " + d.budget, d.rate === null ? "–" : fmt(d.rate, 3),
       done ? "done" : fmtDur(d.eta_s), fmt(d.best_value, 6), d.best_query === null ? "–" : d.best_query,
       d.nonfinite].forEach(x => tr.append(el("td", null, x === null || x === undefined ? "–" : String(x))));
    }
    rows.push(tr);
  });
  t.replaceChildren(...rows);
}

function bestAt(st, x) {
  // best so far at query x (binary search in the run's sorted query indices)
  let lo = 0, hi = st.q.length - 1, k = -1;
  if (hi < 0 || x > st.q[hi]) return null;
  while (lo <= hi) {
    const m = (lo + hi) >> 1;
    if (st.q[m] <= x) { k = m; lo = m + 1; } else hi = m - 1;
  }
  return k < 0 ? null : st.bsf[k];
}

function updateCompare(runs) {
  const box = document.getElementById("compare-chart");
  const live = runs.filter(d => d.label !== undefined);
  if (runs.length < 2) { box.hidden = true; return; }
  box.hidden = false;
  let maxX = 1;
  runs.forEach(d => { if (d.label !== undefined) maxX = Math.max(maxX, d.budget, d.n_queries); });
  const G = Math.min(800, maxX);
  const xs = [];
  for (let j = 0; j <= G; j++) xs.push(Math.round(j * maxX / G));
  const data = [xs];
  runs.forEach((d, i) => {
    const st = S.runs[i];
    data.push(xs.map(x => (st && st.q.length) ? bestAt(st, x) : null));
  });
  const key = runs.map(d => d.file + "|" + (d.label || "")).join(";") + ":" + maxX;
  if (!S.compare || key !== S.compareKey) {
    if (S.compare) S.compare.destroy();
    S.compareKey = key;
    const series = [{label: "query"}].concat(runs.map((d, i) => ({
      label: "run " + (i + 1) + (d.label ? ": " + d.label : ""), stroke: COLORS[i % COLORS.length], width: 2,
      paths: uPlot.paths.stepped({align: 1}), points: {show: false}, spanGaps: false})));
    S.compare = new uPlot({width: chartWidth(box), height: 260, series: series,
                           scales: {x: {time: false, range: [0, maxX]}},
                           axes: [{label: "queries"}, {label: "best so far", size: 60}],
                           title: "runs compared: best so far" + (live.length ? "" : " (no run readable yet)")},
                          data, box);
  } else {
    S.compare.setData(data);
  }
}

function setConn(ok, doc) {
  const c = document.getElementById("conn");
  c.className = "conn " + (ok ? "ok" : "down");
  c.textContent = ok ? "live · updated " + new Date(doc.time * 1000).toLocaleTimeString() + " · mango " + doc.version
                     : "no connection to mango watch (stopped?): retrying";
}

async function poll() {
  const g = S.runs.map(r => (r ? r.gen : -1)).join(",");
  const n = S.runs.map(r => (r ? r.q.length : 0)).join(",");
  try {
    const res = await fetch("/api/state?g=" + g + "&n=" + n, {cache: "no-store"});
    if (!res.ok) throw new Error("HTTP " + res.status);
    const doc = await res.json();
    S.interval = Math.max(200, 1000 * doc.interval);
    doc.runs.forEach(updateRun);
    updateOverview(doc.runs);
    updateCompare(doc.runs);
    setConn(true, doc);
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (e) {
    setConn(false);
    console.error(e);
  }
  S.timer = setTimeout(poll, S.interval);
}

window.addEventListener("resize", () => {
  for (const st of S.runs) {
    if (!st) continue;
    if (st.chart) st.chart.setSize({width: chartWidth($(st, ".conv")), height: 240});
    if (st.unitChart) st.unitChart.setSize({width: chartWidth($(st, ".units")), height: 200});
  }
  if (S.compare) S.compare.setSize({width: chartWidth(document.getElementById("compare-chart")), height: 260});
});

poll();
