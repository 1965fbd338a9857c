// framecast page: picks a clip and the models to compare, calls the public /v1/compare routes,
// draws every model's results side by side.
// Plain ES2017, no libraries. Everything from the API is put in the page as text, never as HTML.
"use strict";

const ARCHS = ["conv2d_lstm", "convlstm2d"];
const NAMES = { conv2d_lstm: "Conv2D+LSTM", convlstm2d: "ConvLSTM2D", other: "other architecture" };
const TASKS = ["next_frame", "classify"];
const SERIES = 8;  // colours (style.css .s0-.s7); markers cycle through 4 shapes
const MARKERS = ["circles", "squares", "triangles", "diamonds"];
const $ = (sel) => document.querySelector(sel);
// picked[task]: the model names the user chose (null: the default pair, until they change it)
const state = { samples: [], models: [], files: [], anims: [], playing: true, timer: null,
                picked: { next_frame: null, classify: null }, modelsTimer: null };

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
  if (n === null || n === undefined) return "–";
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
  clearTimeout(state.modelsTimer);
  let resp;
  try {
    resp = await fetch("/v1/models", { headers: authHeaders() });
  } catch (e) {
    status.textContent = `Cannot reach the service (${e.message}).`;
    pickersUnavailable();
    return;
  }
  if (resp.status === 503 && attempt < 60) {
    status.textContent = "Models are loading…";
    state.modelsTimer = setTimeout(() => loadModels(attempt + 1), 2000);
    return;
  }
  if (!resp.ok) {
    status.textContent = "Model list unavailable: " + (await apiError(resp));
    if (resp.status === 401 || resp.status === 403) $("#key-box").open = true;
    pickersUnavailable();
    return;
  }
  state.models = (await resp.json()).models || [];
  const ready = state.models.filter((m) => m.ready);
  const failed = state.models.filter((m) => m.state === "failed");
  const pending = state.models.filter((m) => !m.ready && (m.state === "loading" || m.state === "warming"));
  let text = ready.length
    ? "Loaded: " + ready.map((m) => `${m.name} (${inputText(m.input)})`).join(", ")
    : "No models are loaded.";
  if (pending.length) text += `. Still loading: ${pending.map((m) => m.name).join(", ")}`;
  if (failed.length) text += `. Failed to load: ${failed.map((m) => m.name).join(", ")}`;
  status.textContent = text;
  for (const t of TASKS) buildPicker(t);
  refreshLabels();
  if (source() === "sample") onSampleChange();  // the sample's true label is now an option
  if (pending.length && attempt < 60) {
    state.modelsTimer = setTimeout(() => loadModels(attempt + 1), 3000);
  }
}

// ------------------------------------------------------------------ model pickers

// "64×64 RGB, 10 frames" (frames null: the model takes clips of any length)
function inputText(input) {
  if (!input) return "input unknown";
  const colour = input.channels === 3 ? "RGB" : input.channels === 1 ? "grey"
    : `${input.channels} channels`;
  const frames = input.frames ? `${input.frames} frames` : "any number of frames";
  return `${input.height}×${input.width} ${colour}, ${frames}`;
}

// Without a model list the page compares the server's default pair, as it always did.
function pickersUnavailable() {
  state.models = [];
  for (const t of TASKS) {
    document.querySelector(`#picker-${t} .picks`).replaceChildren(
      el("p", { class: "hint" }, "No model list: Compare uses the server's default pair."));
    document.getElementById(`picker-${t}-msg`).textContent = "";
  }
}

const modelInfo = (name) => state.models.find((m) => m.name === name);
const taskModels = (t) => state.models.filter((m) => m.ready && m.task === t);

// The pair the server compares without ?models=: its only loaded model of each architecture.
function serverPair(t) {
  const pair = [];
  for (const a of ARCHS) {
    const loaded = state.models.filter((m) => m.task === t && m.architecture === a &&
                                              m.state !== "failed" && m.state !== "unloaded");
    if (loaded.length !== 1 || !loaded[0].ready) return null;
    pair.push(loaded[0].name);
  }
  return pair;
}

// What the picker starts with: the server's pair, else the first ready model of each architecture.
function defaultPick(t) {
  const pair = serverPair(t);
  if (pair) return pair;
  const out = [];
  for (const a of ARCHS) {
    const m = taskModels(t).find((x) => x.architecture === a);
    if (m) out.push(m.name);
  }
  return out;
}

// "version 2 of 1, 2 · stable → 1": which numbered version answers (the highest served), the
// others served beside it and the labels; nothing for a flat folder (one version, 1)
function versionText(m) {
  const vs = m.versions || [];
  const labels = Object.entries(m.labels || {}).map(([k, v]) => `${k} → ${v}`);
  if (vs.length <= 1 && (m.version || 1) === 1 && !labels.length) return null;
  let text = `version ${m.version}`;
  if (vs.length > 1) text += ` of ${vs.join(", ")}`;
  return [text, ...labels].join(" · ");
}

function buildPicker(t) {
  const box = document.querySelector(`#picker-${t} .picks`);
  const ready = new Set(taskModels(t).map((m) => m.name));
  const chosen = new Set((state.picked[t] || defaultPick(t)).filter((n) => ready.has(n)));
  // every model of the task (the failed ones have no task: they are listed under both)
  const listed = state.models.filter((m) => m.task === t || (!m.ready && !m.task));
  box.replaceChildren();
  if (!listed.length) box.append(el("p", { class: "hint" }, "No model of this task is loaded."));
  listed.forEach((m, i) => {
    const id = `pick-${t}-${i}`;
    const usable = ready.has(m.name);
    const row = el("div", { class: "pick" + (usable ? "" : " unusable") });
    const check = el("input", { type: "checkbox", id, name: `models-${t}`, value: m.name });
    check.checked = chosen.has(m.name);
    check.disabled = !usable;
    check.addEventListener("change", () => onPick(t));
    const label = el("label", { for: id });
    label.append(el("span", { class: "pick-name" }, m.display_name || m.name));
    if (usable) {
      const arch = NAMES[m.architecture] || m.architecture || "";
      const detail = [m.display_name ? m.name : null, arch, inputText(m.input), versionText(m)]
        .filter(Boolean);
      label.append(el("span", { class: "pick-meta" }, detail.join(" · ")));
      if (m.description) label.title = m.description;
    } else {
      const why = m.state === "failed"
        ? `failed to load${m.error ? ": " + m.error : ""}`
        : `${m.state || "not ready"}`;
      label.append(el("span", { class: "pick-meta pick-error" }, why));
      label.title = why;
      row.title = why;
    }
    row.append(check, label);
    box.append(row);
  });
  onPick(t, false);
}

const pickedNames = (t) =>
  [...document.querySelectorAll(`#picker-${t} input[type=checkbox]:checked`)].map((c) => c.value);

function onPick(t, byUser = true) {
  const names = pickedNames(t);
  if (byUser) state.picked[t] = names;
  const msg = document.getElementById(`picker-${t}-msg`);
  const choosable = taskModels(t).length;
  msg.classList.toggle("warn", choosable > 0 && names.length < 1);
  if (!choosable) msg.textContent = "";
  else if (names.length < 1) msg.textContent = "Pick at least one model.";
  else if (names.length === 1) {
    msg.textContent = choosable < 2
      ? "1 model selected (the only one of this task): its output alone."
      : "1 model selected: its output alone. Tick another to compare.";
  } else msg.textContent = `${names.length} models selected.`;
  if (t === "classify") refreshLabels();
}

// The labels offered as the true class: the classes of the chosen classifiers (all, if none).
function refreshLabels() {
  const chosenNames = new Set(pickedNames("classify"));
  let models = taskModels("classify").filter((m) => chosenNames.has(m.name));
  if (!models.length) models = state.models.filter((m) => m.ready);
  const classes = new Set();
  for (const m of models) for (const c of m.class_names || []) classes.add(c);
  const label = $("#label");
  const chosen = label.value;
  label.replaceChildren(el("option", { value: "" }, "unknown"));
  for (const c of classes) label.append(el("option", { value: c }, c));
  label.value = classes.has(chosen) ? chosen : "";
}

// The names to send as ?models=: null for the server's default pair (results keyed by
// architecture, as before); throws when none is picked. One name: that model's output alone.
function modelsParam(t) {
  if (!state.models.length) return null;  // no model list (yet): the server's default pair
  const names = pickedNames(t);
  if (names.length < 1) {
    const err = new Error("Pick at least one model (under “Models to compare”).");
    err.inline = true;
    throw err;
  }
  const pair = serverPair(t);
  if (pair && names.length === 2 && pair.every((n) => names.includes(n))) return null;
  return names;
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
  for (const t of TASKS) document.getElementById("picker-" + t).hidden = task() !== t;
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
  const names = modelsParam(task());
  if (names) q.set("models", names.join(","));
  if (task() === "classify") {
    // every class of the chosen classifiers, up to 10 bars each
    const counts = (names || pickedNames("classify")).map((n) => ((modelInfo(n) || {}).class_names || []).length);
    q.set("top_k", String(Math.min(10, Math.max(8, ...counts))));
    if ($("#label").value) q.set("label", $("#label").value);
    return "/v1/compare/classify?" + q;
  }
  const holdout = parseInt($("#holdout").value, 10) || 0;
  if (holdout > 0) q.set("holdout", String(holdout));
  else q.set("horizon", String(parseInt($("#horizon").value, 10) || 1));
  q.set("frames", "true"); // the predicted frames as PNGs (left out unless asked)
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
    const url = requestUrl();  // before anything is fetched: a bad model choice sends nothing
    const body = await buildBody();
    const resp = await fetch(url, { method: "POST", body, headers: authHeaders() });
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
    const pick = e.inline && document.querySelector(`#picker-${task()} input:not(:disabled)`);
    if (pick) pick.focus();
  } finally {
    button.disabled = false;
    button.textContent = "Compare";
    results.setAttribute("aria-busy", "false");
  }
}

// ------------------------------------------------------------------ drawing

// Frames in a row, each labelled: "t+1", "t+2", … for predictions (opts.ahead), the frame's
// number otherwise.
function strip(container, frames, what, opts = {}) {
  container.replaceChildren();
  frames.forEach((b64, i) => {
    const label = opts.ahead ? `t+${i + 1}` : String(i + 1);
    const img = el("img", { src: png(b64), width: 64, height: 64, class: "pixelated",
                            alt: `${what}, frame ${label} (${i + 1} of ${frames.length})`,
                            title: `${what} ${label}` });
    if (opts.markFirst && i === 0) img.classList.add("first-pred");
    const fig = el("figure", { class: "frame" });
    fig.append(img, el("figcaption", {}, label));
    container.append(fig);
  });
}

// What fitting the upload to a model changed, in words ("" when nothing).
function conversionText(c) {
  if (!c) return "";
  const out = [];
  if (c.resized_from) out.push(`resized from ${c.resized_from[0]}×${c.resized_from[1]} (${c.fit || "stretch"})`);
  if (c.channels_from) out.push(c.channels_from === 3 ? "colour turned to grey" : "grey repeated into RGB");
  if (c.frames_dropped) out.push(`${c.frames_dropped} earlier frame(s) not read`);
  return out.join("; ");
}

// When an animation frame is: "frame i" while the context plays, "t+j" for what follows it.
function timeLabel(i, nCtx) {
  return i < nCtx ? `frame ${i + 1}` : `t+${i - nCtx + 1}`;
}

// A looping animation of context frames then nCtx.. onward (predicted or true); a caption
// under it says which frame is showing.
function animate(img, frames, what, nCtx = frames.length) {
  let fig = img.parentElement;
  if (!fig.classList.contains("anim-frame")) {
    fig = el("figure", { class: "anim-frame" });
    img.replaceWith(fig);
    fig.append(img, el("figcaption", { class: "anim-time" }));
  }
  const cap = fig.querySelector("figcaption");
  img.alt = `${what}: looping animation of ${frames.length} frames`;
  img.src = frames.length ? png(frames[0]) : "";
  cap.textContent = frames.length ? timeLabel(0, nCtx) : "";
  state.anims.push({ img, cap, frames, nCtx, i: 0 });
}

function tick() {
  for (const a of state.anims) {
    if (!a.frames.length) continue;
    a.i = (a.i + 1) % a.frames.length;
    a.img.src = png(a.frames[a.i]);
    a.cap.textContent = timeLabel(a.i, a.nCtx);
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

function stat(dl, name, value, win, n = 2) {
  dl.append(el("dt", {}, name));
  const dd = el("dd", {}, value);
  if (win) {
    dd.classList.add("win");
    dd.append(" ✓");
    dd.title = n > 2 ? `best of the ${n}` : "better of the two";
  }
  dl.append(dd);
}

function bars(container, scores, trueLabel, classCount) {
  container.replaceChildren();
  for (const s of scores || []) {
    const label = el("span", { class: "bar-label" + (s.class_name === trueLabel ? " true" : ""),
                               title: s.class_name }, s.class_name);
    const track = el("span", { class: "bar-track", role: "img",
                               "aria-label": `${s.class_name}: ${(s.score * 100).toFixed(1)}%` });
    const fill = el("span", { class: "bar-fill" });
    fill.style.width = `${Math.max(0, Math.min(1, s.score)) * 100}%`;
    track.append(fill);
    container.append(label, track, el("span", { class: "bar-value" }, (s.score * 100).toFixed(1) + "%"));
  }
  if (scores && scores.length && classCount > scores.length) {
    container.append(el("span", { class: "hint bars-note" },
                        `The top ${scores.length} of ${classCount} classes.`));
  }
}

// A result's heading: keyed by architecture (the default pair) its architecture's name, as
// before; keyed by model name the model's display name (or name).
function resultTitle(key, r) {
  if (NAMES[key] && key === r.architecture) return NAMES[key];
  const info = modelInfo(r.model || key);
  return (info && info.display_name) || r.model || key;
}

function marker(k, px, py, cls) {
  switch (k % MARKERS.length) {
    case 0: return svgEl("circle", { cx: px, cy: py, r: 3, class: cls });
    case 1: return svgEl("rect", { x: px - 3, y: py - 3, width: 6, height: 6, class: cls });
    case 2: return svgEl("polygon", { points: `${px},${py - 4} ${px + 4},${py + 3} ${px - 4},${py + 3}`, class: cls });
    default: return svgEl("polygon", { points: `${px},${py - 4} ${px + 4},${py} ${px},${py + 4} ${px - 4},${py}`, class: cls });
  }
}

const seriesClass = (k) => "s" + (k % SERIES);

// A line chart of one per-step metric for every model, as inline SVG.
function chart(container, data, keys, titles, metric, label) {
  container.replaceChildren();
  const series = keys.map((key) => ((data.results[key].metrics || {}).per_step || {})[metric] || []);
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
  const summary = keys.map((key, k) => `${titles[key]}: ${series[k].map((v) => fmt(v)).join(", ")}`);
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
  keys.forEach((key, k) => {
    const cls = "series " + seriesClass(k);
    const pts = series[k].map((v, i) => (v === null || v === undefined ? null : [x(i), y(v)])).filter(Boolean);
    svg.append(svgEl("polyline", { points: pts.map((p) => p.join(",")).join(" "), class: cls }));
    for (const [px, py] of pts) svg.append(marker(k, px, py, cls));
  });
  container.append(svg);
}

function swatch(k) {
  return el("span", { class: `swatch ${seriesClass(k)} m${k % MARKERS.length}`, "aria-hidden": "true" });
}

// One result's panel: heading, stats, frames (next frame) or score bars (classify).
function modelPanel(key, r, k, title) {
  const panel = el("article", { class: `panel model ${seriesClass(k)}`, id: "panel-" + key,
                                "data-key": key, "data-model": r.model,
                                "data-arch": r.architecture });
  const h = el("h3", {}, "");
  h.append(swatch(k), el("span", { class: "model-title" }, title));
  if (title !== NAMES[r.architecture]) {
    h.append(el("span", { class: "model-arch" }, NAMES[r.architecture] || r.architecture || ""));
  }
  const media = el("div", { class: "media" });
  media.append(el("img", { class: "pixelated anim", width: 192, height: 192, alt: `${title}: no frames` }),
               el("div", { class: "strip" }));
  panel.append(h, el("dl", { class: "stats" }), media, el("div", { class: "bars" }));
  return panel;
}

function render(data) {
  state.anims = [];
  $("#placeholder").hidden = true;
  const next = data.task === "next_frame";
  const ctx = data.context_png || [];
  const truth = data.truth_png || [];
  const keys = Object.keys(data.results || {});
  const titles = {};
  for (const key of keys) titles[key] = resultTitle(key, data.results[key]);
  const n = keys.length;
  const nameOf = (key) => titles[key] || NAMES[key] || key;

  let summary = next
    ? `Next frame: ${data.horizon} step(s) predicted from ${data.context_frames} frame(s) of ` +
      `context (the models see the last ${ctx.length})`
    : `Direction of motion${data.true_label ? ` (true: ${data.true_label})` : ""}`;
  if (n > 2) summary = `${n} models. ` + summary;
  if (n === 1) {
    summary += `. One model, ${nameOf(keys[0])}: ` + (next && truth.length
      ? "its errors against the held-back truth, nothing to compare with."
      : data.true_label ? "its score for the true class." : "its output alone.");
  } else if (data.winner === "tie") summary += ". A tie.";
  else if (data.winner) summary += `. ${n > 2 ? "Best" : "Better"} here: ${nameOf(data.winner)}.`;
  else if (next) summary += ". No truth was held back, so there are no scores.";
  $("#summary").textContent = summary;

  strip($("#context-strip"), ctx, "Context");
  $("#truth-block").hidden = !truth.length;
  strip($("#truth-strip"), truth, "Truth", { ahead: true });
  animate($("#input-anim"), ctx.concat(truth), truth.length ? "Context then truth" : "Context",
          ctx.length);

  const grid = $("#model-panels");
  grid.replaceChildren();
  grid.dataset.count = String(n);
  const winners = data.winners || {};
  keys.forEach((key, k) => {
    const r = data.results[key];
    const title = titles[key];
    const panel = modelPanel(key, r, k, title);
    grid.append(panel);
    const dl = panel.querySelector(".stats");
    const info = modelInfo(r.model);
    stat(dl, "model", r.model);
    if (info && info.input) stat(dl, "input", inputText(info.input));
    stat(dl, "params", fmtParams(r.params));
    const c = r.cost || {};  // cost facts; an unknown figure is "–", why in its tooltip
    stat(dl, "FLOPs / clip", c.flops_per_clip ? `${fmt(c.flops_per_clip / 1e9, 3)} G` : "–");
    dl.lastElementChild.title = c.flops_note || "";
    stat(dl, "peak memory / clip", c.peak_memory_bytes ? `${fmt(c.peak_memory_bytes / 1e6, 3)} MB` : "–");
    dl.lastElementChild.title = c.memory_note || "measured at batch 1";
    stat(dl, "latency", `${fmt(r.latency_ms, 4)} ms`);
    stat(dl, "inference", `${fmt(r.inference_ms, 4)} ms`);
    const changed = conversionText(r.conversion);
    if (changed) stat(dl, "input changed", changed);
    if (r.metrics) {
      stat(dl, "MSE / frame", fmt(r.metrics.mse_per_frame, 4), winners.mse_per_frame === key, n);
      stat(dl, "SSIM", fmt(r.metrics.ssim, 3), winners.ssim === key, n);
      stat(dl, "PSNR", `${fmt(r.metrics.psnr, 3)} dB`, winners.psnr === key, n);
    }
    if (!next) {
      stat(dl, "predicted", r.label || "–");
      if (r.correct !== null && r.correct !== undefined) stat(dl, "correct", r.correct ? "yes" : "no");
      if (r.true_class_score !== null && r.true_class_score !== undefined) {
        stat(dl, "true-class score", (r.true_class_score * 100).toFixed(1) + "%",
             winners.true_class_score === key, n);
      } else if (data.true_label) {
        stat(dl, "true-class score", `– (${data.true_label} is not one of its classes)`);
      }
    }
    const preds = (r.frames || []).map((f) => f.png);
    const media = panel.querySelector(".media");
    media.hidden = !next;
    if (next) {
      strip(panel.querySelector(".strip"), preds, `${title} prediction`, { ahead: true });
      animate(panel.querySelector(".anim"), ctx.concat(preds), `Context then ${title} prediction`,
              ctx.length);
    }
    const classCount = (r.class_names || (info && info.class_names) || []).length;
    bars(panel.querySelector(".bars"), next ? [] : r.scores, data.true_label, classCount);
  });
  $("#charts").hidden = !next;
  if (next) {
    chart($("#chart-mse"), data, keys, titles, "mse_per_frame", "MSE per frame");
    chart($("#chart-ssim"), data, keys, titles, "ssim", "SSIM");
    const legend = $("#chart-legend");
    legend.replaceChildren();
    keys.forEach((key, k) => {
      const item = el("span", {});
      item.append(swatch(k), `${titles[key]} (${MARKERS[k % MARKERS.length]})`);
      legend.append(item);
    });
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
