// The form: the clip (a sample or the user's files), the task, the request and its answer.
// The page opens on a task that has models (with only a user's classifiers: classification),
// reading a sample of that task, until the user picks a task or a sample themselves.

import { $, authHeaders, apiError, clearError, el, showError } from "./dom.js";
import { TASKS, models, modelInfo, modelsParam, pickedNames, tasksServed } from "./models.js";
import { render } from "./render.js";

// chosen: the user picked a task or a sample (from then on the page picks neither)
const form = { samples: [], files: [], chosen: false };

export const source = () => document.querySelector("input[name=source]:checked").value;
export const task = () => document.querySelector("input[name=task]:checked").value;
export const currentSample = () => form.samples.find((s) => s.id === $("#sample").value);
// the sample the live view loops: the chosen one when it is a next-frame clip, else the first
export const nextFrameSample = () => {
  const s = currentSample();
  return s && s.task === "next_frame" ? s : form.samples.find((x) => x.task === "next_frame");
};

async function loadSamples() {
  const select = $("#sample");
  try {
    const resp = await fetch("/static/samples/index.json");
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    form.samples = (await resp.json()).samples || [];
  } catch (e) {
    showError(`Could not load the sample clips (${e.message}); upload your own frames instead.`);
    return;
  }
  const groups = { next_frame: el("optgroup", { label: "Next frame (20 frames)" }),
                   classify: el("optgroup", { label: "Classify the direction (10 frames)" }) };
  for (const s of form.samples) {
    (groups[s.task] || groups.next_frame).append(el("option", { value: s.id }, s.title));
  }
  for (const g of Object.values(groups)) if (g.children.length) select.append(g);
  // the opening sample: one of the task the page opens on, when the list has come first
  const t = servedTask();
  const first = t && form.samples.find((s) => s.task === t);
  if (first) select.value = first.id;
  onSampleChange();
  openOnServedTask();  // the task, when no sample is of it
}

// The task the page opens on, until the user picks: the one shown if a loaded model serves it,
// else the first that one serves (null before the list, or when the user has picked).
function servedTask() {
  if (form.chosen || !models.loaded) return null;
  const served = tasksServed();
  return served.includes(task()) ? task() : served[0] || null;
}

// Until the user picks: a task that some loaded model serves, and a sample of it. True when it
// switched (and so showed the new task's sample).
function openOnServedTask() {
  const t = servedTask();
  if (!t || t === task()) return false;
  showTask(t);
  return true;
}

// Task t, with a sample of t when the clip is a sample.
function showTask(t) {
  const s = currentSample();
  const other = source() === "sample" && (!s || s.task !== t) && form.samples.find((x) => x.task === t);
  if (other) {
    $("#sample").value = other.id;
    onSampleChange();
    return;
  }
  document.getElementById(t === "classify" ? "task-classify" : "task-next").checked = true;
  onTaskChange();
  showPreview();
}

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

// The preview waits for the model list (which may pick another task's sample), so that the page
// never fetches a clip it drops at once; the user's own pick shows at once.
function showPreview() {
  const s = currentSample();
  const img = $("#sample-preview");
  const url = s && "/static/samples/" + s.file;
  if (!url || !(form.chosen || models.answered) || img.getAttribute("src") === url) return;
  img.src = url;
  img.alt = `Preview of the sample clip: ${s.title}`;
}

function onSampleChange() {
  const s = currentSample();
  if (!s) return;
  showPreview();
  document.getElementById(s.task === "classify" ? "task-classify" : "task-next").checked = true;
  if (s.task === "classify") {  // its true label, when the classifiers have that class
    const label = $("#label");
    label.value = [...label.options].some((o) => o.value === s.label) ? s.label : "";
  }
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
  form.files = naturalSort(files);
  $("#file-list").textContent = form.files.length
    ? `${form.files.length} file(s), in this order: ` + form.files.map((f) => f.name).join(", ")
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

async function buildBody() {
  const body = new FormData();
  if (source() === "sample") {
    const s = currentSample();
    if (!s) throw new Error("No sample clip is available; upload your own frames.");
    const resp = await fetch("/static/samples/" + s.file);
    if (!resp.ok) throw new Error(`Could not fetch the sample clip (HTTP ${resp.status}).`);
    body.append("files", await resp.blob(), s.file);
  } else {
    if (!form.files.length) throw new Error("Choose or drop some files first.");
    for (const f of form.files) body.append("files", f, f.name);
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

export function initForm() {
  for (const r of document.querySelectorAll("input[name=source]")) r.addEventListener("change", onSourceChange);
  for (const r of document.querySelectorAll("input[name=task]")) {
    r.addEventListener("change", () => { form.chosen = true; showTask(task()); });
  }
  $("#sample").addEventListener("change", () => { form.chosen = true; onSampleChange(); });
  $("#holdout").addEventListener("input", syncHorizon);
  $("#compare-form").addEventListener("submit", onSubmit);
  document.addEventListener("framecast:models", () => {
    // the served task first; else the sample as it is (its true label is now an option)
    if (!openOnServedTask() && source() === "sample") onSampleChange();
  });
  document.addEventListener("framecast:nolist", () => { if (source() === "sample") onSampleChange(); });
  wireUpload();
  syncHorizon();
  onTaskChange();
  loadSamples();
}
