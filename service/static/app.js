// framecast page: picks a clip, calls the public /v1/compare routes, draws both models' results.
// Plain ES2017, no libraries. Everything from the API is put in the page as text, never as HTML.
"use strict";

const ARCHS = ["conv2d_lstm", "convlstm2d"];
const NAMES = { conv2d_lstm: "Conv2D+LSTM", convlstm2d: "ConvLSTM2D" };
const $ = (sel) => document.querySelector(sel);
const state = { samples: [], models: [], files: [], anims: [], playing: true, timer: null };

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  if (text !== undefined) e.textContent = text;
  return e;
}

function svgEl(tag, attrs = {}, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Sent only when the user typed a key (servers with FRAMECAST_API_KEYS answer 401 without one).
function authHeaders() {
  const key = $("#api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

const png = (b64) => "data:image/png;base64," + b64;

function fmt(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en");
  return Number(x.toPrecision(digits)).toString();
}

function fmtParams(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " k";
  return String(n);
}

// ------------------------------------------------------------------ errors

function showError(message) {
  const box = $("#error");
  box.replaceChildren(el("strong", {}, "That did not work:"), document.createTextNode(message));
  box.hidden = false;
}

function clearError() {
  $("#error").hidden = true;
  $("#error").textContent = "";
}

// The API answers errors as {"error", "message", "status"}; anything else still gets a message.
async function apiError(resp) {
  let text = "";
  try {
    text = await resp.text();
    const body = JSON.parse(text);
    if (body && body.message) return `${body.message} (HTTP ${resp.status} ${body.error || ""})`.trim();
    if (body && body.detail) {
      const detail = Array.isArray(body.detail)
        ? body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ")
        : String(body.detail);
      return `${detail} (HTTP ${resp.status})`;
    }
  } catch (e) { /* not JSON */ }
  return `The server answered HTTP ${resp.status}${text ? ": " + text.slice(0, 300) : ""}`;
}

// ------------------------------------------------------------------ start-up

async function loadSamples() {
  const select = $("#sample");
  try {
    const resp = await fetch("/static/samples/index.json");
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    state.samples = (await resp.json()).samples || [];
  } catch (e) {
    showError(`Could not load the sample clips (${e.message}); upload your own frames instead.`);
    return;
  }
  const groups = { next_frame: el("optgroup", { label: "Next frame (20 frames)" }),
                   classify: el("optgroup", { label: "Classify the direction (10 frames)" }) };
  for (const s of state.samples) {
    (groups[s.task] || groups.next_frame).append(el("option", { value: s.id }, s.title));
  }
  for (const g of Object.values(groups)) if (g.children.length) select.append(g);
  onSampleChange();
}

async function loadModels(attempt = 0) {
  const status = $("#models-status");
  let resp;
  try {
    resp = await fetch("/v1/models", { headers: authHeaders() });
  } catch (e) {
    status.textContent = `Cannot reach the service (${e.message}).`;
    return;
  }
  if (resp.status === 503 && attempt < 60) {
    status.textContent = "Models are loading…";
    setTimeout(() => loadModels(attempt + 1), 2000);
    return;
  }
  if (!resp.ok) {
    status.textContent = "Model list unavailable: " + (await apiError(resp));
    if (resp.status === 401 || resp.status === 403) $("#key-box").open = true;
    return;
  }
  state.models = (await resp.json()).models || [];
  status.textContent = state.models.length
    ? "Loaded: " + state.models.map((m) =>
        `${m.name} (${m.input.frames}×${m.input.height}×${m.input.width})`).join(", ")
    : "No models are loaded.";
  const classes = new Set();
  for (const m of state.models) for (const c of m.class_names || []) classes.add(c);
  const label = $("#label");
  const chosen = label.value;
  label.replaceChildren(el("option", { value: "" }, "unknown"));
  for (const c of classes) label.append(el("option", { value: c }, c));
  label.value = classes.has(chosen) ? chosen : "";
  if (source() === "sample") onSampleChange();  // the sample's true label is now an option
}

// ------------------------------------------------------------------ form behaviour

const source = () => document.querySelector("input[name=source]:checked").value;
const task = () => document.querySelector("input[name=task]:checked").value;
const currentSample = () => state.samples.find((s) => s.id === $("#sample").value);

function onSourceChange() {
  $("#sample-box").hidden = source() !== "sample";
  $("#upload-box").hidden = source() !== "upload";
  if (source() === "sample") onSampleChange();
}

function onTaskChange() {
  $("#next-options").hidden = task() !== "next_frame";
  $("#classify-options").hidden = task() !== "classify";
}

function onSampleChange() {
  const s = currentSample();
  if (!s) return;
  const img = $("#sample-preview");
  img.src = "/static/samples/" + s.file;
  img.alt = `Preview of the sample clip: ${s.title}`;
  document.getElementById(s.task === "classify" ? "task-classify" : "task-next").checked = true;
  if (s.task === "classify" && s.label) $("#label").value = s.label;
  onTaskChange();
}

function syncHorizon() {
  const holdout = parseInt($("#holdout").value, 10) || 0;
  const horizon = $("#horizon");
  horizon.disabled = holdout > 0;
  if (holdout > 0) horizon.value = holdout;
}

function naturalSort(files) {
  const coll = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  return [...files].sort((a, b) => coll.compare(a.name, b.name));
}

function setFiles(files) {
  state.files = naturalSort(files);
  $("#file-list").textContent = state.files.length
    ? `${state.files.length} file(s), in this order: ` + state.files.map((f) => f.name).join(", ")
    : "No file chosen.";
  document.getElementById("source-upload").checked = true;
  onSourceChange();
}

function wireUpload() {
  const zone = $("#dropzone");
  const input = $("#file");
  input.addEventListener("change", () => setFiles(input.files));
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  for (const ev of ["dragenter", "dragover"]) {
    zone.addEventListener(ev, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    zone.addEventListener(ev, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) setFiles(e.dataTransfer.files);
  });
}

// ------------------------------------------------------------------ the request

async function buildBody() {
  const body = new FormData();
  if (source() === "sample") {
    const s = currentSample();
    if (!s) throw new Error("No sample clip is available; upload your own frames.");
    const resp = await fetch("/static/samples/" + s.file);
    if (!resp.ok) throw new Error(`Could not fetch the sample clip (HTTP ${resp.status}).`);
    body.append("files", await resp.blob(), s.file);
  } else {
    if (!state.files.length) throw new Error("Choose or drop some files first.");
    for (const f of state.files) body.append("files", f, f.name);
  }
  return body;
}

function requestUrl() {
  const q = new URLSearchParams({ inputs: "true" });
  if (task() === "classify") {
    q.set("top_k", "8");
    if ($("#label").value) q.set("label", $("#label").value);
    return "/v1/compare/classify?" + q;
  }
  const holdout = parseInt($("#holdout").value, 10) || 0;
  if (holdout > 0) q.set("holdout", String(holdout));
  else q.set("horizon", String(parseInt($("#horizon").value, 10) || 1));
  return "/v1/compare/next-frame?" + q;
}

async function onSubmit(event) {
  event.preventDefault();
  clearError();
  const button = $("#run");
  const results = $("#results");
  button.disabled = true;
  button.textContent = "Comparing…";
  results.setAttribute("aria-busy", "true");
  try {
    const body = await buildBody();
    const resp = await fetch(requestUrl(), { method: "POST", body, headers: authHeaders() });
    if (!resp.ok) {
      $("#output").hidden = true;
      $("#placeholder").hidden = true;
      showError(await apiError(resp));
      if (resp.status === 401 || resp.status === 403) $("#key-box").open = true;
      return;
    }
    render(await resp.json());
  } catch (e) {
    $("#output").hidden = true;
    showError(e.message || String(e));
  } finally {
    button.disabled = false;
    button.textContent = "Compare";
    results.setAttribute("aria-busy", "false");
  }
}

// ------------------------------------------------------------------ drawing

function strip(container, frames, what, opts = {}) {
  container.replaceChildren();
  frames.forEach((b64, i) => {
    const img = el("img", { src: png(b64), width: 64, height: 64, class: "pixelated",
                            alt: `${what}, frame ${i + 1} of ${frames.length}`,
                            title: `${what} ${i + 1}` });
    if (opts.markFirst && i === 0) img.classList.add("first-pred");
    container.append(img);
  });
}

function animate(img, frames, what) {
  img.alt = `${what}: looping animation of ${frames.length} frames`;
  img.src = frames.length ? png(frames[0]) : "";
  state.anims.push({ img, frames, i: 0 });
}

function tick() {
  for (const a of state.anims) {
    if (!a.frames.length) continue;
    a.i = (a.i + 1) % a.frames.length;
    a.img.src = png(a.frames[a.i]);
  }
}

function setPlaying(on) {
  state.playing = on;
  clearInterval(state.timer);
  if (on) state.timer = setInterval(tick, 200);
  const b = $("#play");
  b.setAttribute("aria-pressed", String(on));
  b.textContent = on ? "Pause animations" : "Play animations";
}

function stat(dl, name, value, win) {
  dl.append(el("dt", {}, name));
  const dd = el("dd", {}, value);
  if (win) { dd.classList.add("win"); dd.append(" ✓"); dd.title = "better of the two"; }
  dl.append(dd);
}

function bars(container, scores, trueLabel) {
  container.replaceChildren();
  for (const s of scores || []) {
    const label = el("span", { class: "bar-label" + (s.class_name === trueLabel ? " true" : "") },
                     s.class_name);
    const track = el("span", { class: "bar-track", role: "img",
                               "aria-label": `${s.class_name}: ${(s.score * 100).toFixed(1)}%` });
    const fill = el("span", { class: "bar-fill" });
    fill.style.width = `${Math.max(0, Math.min(1, s.score)) * 100}%`;
    track.append(fill);
    container.append(label, track, el("span", { class: "bar-value" }, (s.score * 100).toFixed(1) + "%"));
  }
}

// A line chart of one per-step metric for both models, as inline SVG.
function chart(container, data, metric, label) {
  container.replaceChildren();
  const series = ARCHS.map((a) => ((data.results[a].metrics || {}).per_step || {})[metric] || []);
  const values = series.flat().filter((v) => v !== null && v !== undefined);
  if (!values.length) {
    container.append(el("p", { class: "hint" }, `No ${label} (no truth, or frames too small).`));
    return;
  }
  const W = 320, H = 170, L = 52, R = 18, T = 10, B = 30;
  let lo = Math.min(...values), hi = Math.max(...values);
  if (metric === "mse_per_frame") lo = Math.min(0, lo);  // errors: bars from zero, no zoom
  if (hi - lo < 1e-9) { hi += Math.abs(hi) * 0.05 + 1e-3; lo -= Math.abs(lo) * 0.05 + 1e-3; }
  const n = Math.max(...series.map((s) => s.length));
  const x = (i) => L + (n <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const summary = ARCHS.map((a, k) => `${NAMES[a]}: ${series[k].map((v) => fmt(v)).join(", ")}`);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
                             "aria-label": `${label} per step. ${summary.join(". ")}` });
  svg.append(svgEl("title", {}, `${label} per step`));
  svg.append(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  svg.append(svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  svg.append(svgEl("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, fmt(hi)));
  svg.append(svgEl("text", { x: L - 4, y: H - B, "text-anchor": "end" }, fmt(lo)));
  const every = Math.ceil(n / 10);
  for (let i = 0; i < n; i += every) {
    svg.append(svgEl("text", { x: x(i), y: H - B + 13, "text-anchor": "middle" }, `t+${i + 1}`));
  }
  svg.append(svgEl("text", { x: (L + W - R) / 2, y: H - 2, "text-anchor": "middle" }, "step"));
  ARCHS.forEach((a, k) => {
    const cls = k === 0 ? "a" : "b";
    const pts = series[k].map((v, i) => (v === null ? null : [x(i), y(v)])).filter(Boolean);
    svg.append(svgEl("polyline", { points: pts.map((p) => p.join(",")).join(" "), class: cls }));
    for (const [px, py] of pts) {
      svg.append(k === 0 ? svgEl("circle", { cx: px, cy: py, r: 3, class: cls })
                         : svgEl("rect", { x: px - 3, y: py - 3, width: 6, height: 6, class: cls }));
    }
  });
  container.append(svg);
}

function render(data) {
  state.anims = [];
  $("#placeholder").hidden = true;
  const next = data.task === "next_frame";
  const ctx = data.context_png || [];
  const truth = data.truth_png || [];

  let summary = next
    ? `Next frame: ${data.horizon} step(s) predicted from ${data.context_frames} frame(s) of ` +
      `context (the models see the last ${ctx.length})`
    : `Direction of motion${data.true_label ? ` (true: ${data.true_label})` : ""}`;
  if (data.winner === "tie") summary += ". A tie.";
  else if (data.winner) summary += `. Better here: ${NAMES[data.winner] || data.winner}.`;
  else if (next) summary += ". No truth was held back, so there are no scores.";
  $("#summary").textContent = summary;

  strip($("#context-strip"), ctx, "Context");
  $("#truth-block").hidden = !truth.length;
  strip($("#truth-strip"), truth, "Truth");
  animate($("#input-anim"), ctx.concat(truth), truth.length ? "Context then truth" : "Context");

  for (const arch of ARCHS) {
    const r = data.results[arch];
    const panel = document.getElementById("panel-" + arch);
    const dl = panel.querySelector(".stats");
    dl.replaceChildren();
    const winners = data.winners || {};
    stat(dl, "model", r.model);
    stat(dl, "params", fmtParams(r.params));
    stat(dl, "latency", `${fmt(r.latency_ms, 4)} ms`);
    stat(dl, "inference", `${fmt(r.inference_ms, 4)} ms`);
    if (r.metrics) {
      stat(dl, "MSE / frame", fmt(r.metrics.mse_per_frame, 4), winners.mse_per_frame === arch);
      stat(dl, "SSIM", fmt(r.metrics.ssim, 3), winners.ssim === arch);
      stat(dl, "PSNR", `${fmt(r.metrics.psnr, 3)} dB`, winners.psnr === arch);
    }
    if (!next) {
      stat(dl, "predicted", r.label || "–");
      if (r.correct !== null && r.correct !== undefined) stat(dl, "correct", r.correct ? "yes" : "no");
      if (r.true_class_score !== null && r.true_class_score !== undefined) {
        stat(dl, "true-class score", (r.true_class_score * 100).toFixed(1) + "%",
             winners.true_class_score === arch);
      }
    }
    const preds = (r.frames || []).map((f) => f.png);
    const media = panel.querySelector(".media");
    media.hidden = !next;
    if (next) {
      strip(panel.querySelector(".strip"), preds, `${NAMES[arch]} prediction`);
      animate(panel.querySelector(".anim"), ctx.concat(preds), `Context then ${NAMES[arch]} prediction`);
    }
    bars(panel.querySelector(".bars"), next ? [] : r.scores, data.true_label);
  }
  $("#charts").hidden = !next;
  if (next) {
    chart($("#chart-mse"), data, "mse_per_frame", "MSE per frame");
    chart($("#chart-ssim"), data, "ssim", "SSIM");
  }
  $("#output").hidden = false;
  setPlaying(state.playing);
}

// ------------------------------------------------------------------ wiring

function init() {
  for (const r of document.querySelectorAll("input[name=source]")) r.addEventListener("change", onSourceChange);
  for (const r of document.querySelectorAll("input[name=task]")) r.addEventListener("change", onTaskChange);
  $("#sample").addEventListener("change", onSampleChange);
  $("#holdout").addEventListener("input", syncHorizon);
  $("#compare-form").addEventListener("submit", onSubmit);
  $("#play").addEventListener("click", () => setPlaying(!state.playing));
  const key = $("#api-key");
  key.value = sessionStorage.getItem("framecast-api-key") || "";
  key.addEventListener("change", () => {
    sessionStorage.setItem("framecast-api-key", key.value.trim());
    loadModels();
  });
  if (window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches) {
    state.playing = false;
  }
  wireUpload();
  syncHorizon();
  onTaskChange();
  loadSamples();
  loadModels();
}

document.addEventListener("DOMContentLoaded", init);
