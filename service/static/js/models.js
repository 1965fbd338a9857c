// The model list (GET /v1/models) and the pickers of the models to compare, one per task.
// When the list arrives (or changes) it says so with a "framecast:models" event on document.

import { $, apiError, authHeaders, el } from "./dom.js";

export const ARCHS = ["conv2d_lstm", "convlstm2d"];
export const NAMES = { conv2d_lstm: "Conv2D+LSTM", convlstm2d: "ConvLSTM2D", other: "other architecture" };
export const TASKS = ["next_frame", "classify"];
export const DIRECTIONS = ["E", "NE", "N", "NW", "W", "SW", "S", "SE"];  // the bundled classifiers'

// picked[task]: the model names the user chose (null: the default pair, until they change it)
// answered: the list request has had an answer (a list, a refusal, or none), so the page knows
// whether to wait for the tasks that are served
export const models = { list: [], loaded: false, answered: false,
                        picked: { next_frame: null, classify: null }, timer: null };

export const modelInfo = (name) => models.list.find((m) => m.name === name);
export const taskModels = (t) => models.list.filter((m) => m.ready && m.task === t);
// the tasks some model serves, or is loading for (a failed model has no task)
export const tasksServed = () => TASKS.filter((t) => models.list.some((m) => m.task === t && m.state !== "failed"));

// "64×64 RGB, 10 frames" (frames null: the model takes clips of any length)
export function inputText(input) {
  if (!input) return "input unknown";
  const colour = input.channels === 3 ? "RGB" : input.channels === 1 ? "grey"
    : `${input.channels} channels`;
  const frames = input.frames ? `${input.frames} frames` : "any number of frames";
  return `${input.height}×${input.width} ${colour}, ${frames}`;
}

const isDirections = (names) => names.length === DIRECTIONS.length && DIRECTIONS.every((d) => names.includes(d));

// What the classifiers `ms` tell apart, as a heading: "Direction of motion" for the bundled
// direction classifiers, else their own classes ("Classes: left, right, still").
export function classesTitle(ms) {
  const sets = ms.map((m) => m.class_names || []).filter((c) => c.length);
  if (!sets.length) return "Classes";
  if (sets.every(isDirections)) return "Direction of motion";
  const first = sets[0].join(", ");
  return sets.every((c) => c.join(", ") === first) ? `Classes: ${first}` : "Classes (each model's own)";
}

export async function loadModels(attempt = 0) {
  const status = $("#models-status");
  clearTimeout(models.timer);
  let resp;
  try {
    resp = await fetch("/v1/models", { headers: authHeaders() });
  } catch (e) {
    status.textContent = `Cannot reach the service (${e.message}).`;
    pickersUnavailable();
    answeredWithoutList();
    return;
  }
  if (resp.status === 503 && attempt < 60) {
    status.textContent = "Models are loading…";
    models.timer = setTimeout(() => loadModels(attempt + 1), 2000);
    answeredWithoutList();
    return;
  }
  if (!resp.ok) {
    status.textContent = "Model list unavailable: " + (await apiError(resp));
    if (resp.status === 401 || resp.status === 403) $("#key-box").open = true;
    pickersUnavailable();
    answeredWithoutList();
    return;
  }
  models.list = (await resp.json()).models || [];
  models.loaded = true;
  models.answered = true;
  const ready = models.list.filter((m) => m.ready);
  const failed = models.list.filter((m) => m.state === "failed");
  const pending = models.list.filter((m) => !m.ready && (m.state === "loading" || m.state === "warming"));
  let text = ready.length
    ? "Loaded: " + ready.map((m) => `${m.name} (${inputText(m.input)})`).join(", ")
    : "No models are loaded.";
  if (pending.length) text += `. Still loading: ${pending.map((m) => m.name).join(", ")}`;
  if (failed.length) text += `. Failed to load: ${failed.map((m) => m.name).join(", ")}`;
  status.textContent = text;
  for (const t of TASKS) buildPicker(t);
  refreshLabels();
  document.dispatchEvent(new CustomEvent("framecast:models"));
  if (pending.length && attempt < 60) {
    models.timer = setTimeout(() => loadModels(attempt + 1), 3000);
  }
}

// No list (yet): the form shows its clip as it is ("framecast:models" comes with a list).
function answeredWithoutList() {
  models.answered = true;
  document.dispatchEvent(new CustomEvent("framecast:nolist"));
}

// Without a model list the page compares the server's default pair, as it always did.
function pickersUnavailable() {
  models.list = [];
  for (const t of TASKS) {
    document.querySelector(`#picker-${t} .picks`).replaceChildren(
      el("p", { class: "hint" }, "No model list: Compare uses the server's default pair."));
    document.getElementById(`picker-${t}-msg`).textContent = "";
  }
}

// The pair the server compares without ?models=: its only loaded model of each architecture.
export function serverPair(t) {
  const pair = [];
  for (const a of ARCHS) {
    const loaded = models.list.filter((m) => m.task === t && m.architecture === a &&
                                             m.state !== "failed" && m.state !== "unloaded");
    if (loaded.length !== 1 || !loaded[0].ready) return null;
    pair.push(loaded[0].name);
  }
  return pair;
}

// What the picker starts with: the server's pair, else the first ready model of each
// architecture, else (a user's models: any architecture) the first two ready models.
function defaultPick(t) {
  const pair = serverPair(t);
  if (pair) return pair;
  const out = [];
  for (const a of ARCHS) {
    const m = taskModels(t).find((x) => x.architecture === a);
    if (m) out.push(m.name);
  }
  return out.length ? out : taskModels(t).slice(0, 2).map((m) => m.name);
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
  const chosen = new Set((models.picked[t] || defaultPick(t)).filter((n) => ready.has(n)));
  // every model of the task (the failed ones have no task: they are listed under both)
  const listed = models.list.filter((m) => m.task === t || (!m.ready && !m.task));
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
      const classes = t === "classify" && !isDirections(m.class_names || [])
        ? `classes ${(m.class_names || []).join(", ")}` : null;
      const detail = [m.display_name ? m.name : null, arch, inputText(m.input), classes, versionText(m)]
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

export const pickedNames = (t) =>
  [...document.querySelectorAll(`#picker-${t} input[type=checkbox]:checked`)].map((c) => c.value);

function onPick(t, byUser = true) {
  const names = pickedNames(t);
  if (byUser) models.picked[t] = names;
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

// The chosen classifiers (all ready ones, if none is ticked).
export function chosenClassifiers() {
  const chosen = new Set(pickedNames("classify"));
  const picked = taskModels("classify").filter((m) => chosen.has(m.name));
  return picked.length ? picked : taskModels("classify");
}

// The labels offered as the true class: the classes of the chosen classifiers; the task's
// wording follows them (directions for the bundled classifiers, else their own classes).
function refreshLabels() {
  const ms = chosenClassifiers();
  const classes = new Set();
  for (const m of ms) for (const c of m.class_names || []) classes.add(c);
  const label = $("#label");
  const chosen = label.value;
  label.replaceChildren(el("option", { value: "" }, "unknown"));
  for (const c of classes) label.append(el("option", { value: c }, c));
  label.value = classes.has(chosen) ? chosen : "";
  const all = taskModels("classify");
  const sets = all.map((m) => m.class_names || []);
  const own = sets.length && !sets.every(isDirections);
  const one = own && sets.every((c) => c.join(", ") === sets[0].join(", "));
  $("#task-classify-label").textContent = !own ? "Classify the direction"
    : one ? `Classify (${sets[0].join(", ")})` : "Classify";
  $("#label-label").textContent = ms.length && ms.every((m) => isDirections(m.class_names || []))
    ? "True direction (optional)" : "True class (optional)";
}

// The names to send as ?models=: null for the server's default pair (results keyed by
// architecture, as before); throws when none is picked. One name: that model's output alone.
export function modelsParam(t) {
  if (!models.list.length) return null;  // no model list (yet): the server's default pair
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
