// The "Evaluate" view: a whole data set through the models the user picks, as an evaluation job
// (POST /v1/evaluations), its progress from the job's Server-Sent Events (read with fetch, so an
// API key travels as a header), then the job's report (GET /v1/evaluations/{id}/report) shown in
// a sandboxed frame, with links to its JSON, per-clip CSV and PNG. A module of its own: it builds
// its section's content, with the page's DOM helpers and API key (./dom.js).

import { $, authHeaders, el } from "./dom.js";

const state = { models: [], job: null, controller: null };

function build(section) {
  section.replaceChildren(
    el("h2", { id: "evaluate-title" }, "Evaluate"),
    el("p", { class: "hint" }, "A whole data set through the models you pick: each model's " +
      "mean error (or accuracy) with a 95 % confidence interval, a paired test, the clips " +
      "each wins and what each costs. Data sets: an .npy of clips (N, T, H, W[, C]), an .npz " +
      "(clips, labels), a .zip or .tar.gz of clips (videos, GIFs, .npy, folders of images; " +
      "classifiers' labels from folder names or a labels.csv), or one video cut into windows."),
  );
  const form = el("form", { id: "eval-form", novalidate: "" });
  const file = el("div", {});
  file.append(el("label", { for: "eval-file" }, "Data set file"),
    el("input", { type: "file", id: "eval-file", accept: ".npy,.npz,.zip,.tar,.gz,.tgz,.mp4,.webm,.avi,.mov,.mkv,video/*" }));
  const task = el("div", { class: "row" });
  const taskBox = el("div", {});
  const select = el("select", { id: "eval-task" });
  select.append(el("option", { value: "next_frame" }, "Next frame"), el("option", { value: "classify" }, "Classify"));
  taskBox.append(el("label", { for: "eval-task" }, "Task"), select);
  const hold = el("div", { id: "eval-holdout-box" });
  hold.append(el("label", { for: "eval-holdout" }, "Frames of truth per clip (holdout)"),
    el("input", { type: "number", id: "eval-holdout", min: "1", max: "30", value: "10" }));
  const win = el("div", {});
  win.append(el("label", { for: "eval-window" }, "A video: frames per clip (window)"),
    el("input", { type: "number", id: "eval-window", min: "1", placeholder: "not a video" }));
  task.append(taskBox, hold, win);
  const picker = el("fieldset", { id: "eval-picker", class: "picker" });
  picker.append(el("legend", {}, "Models"), el("div", { class: "picks" }));
  form.append(file, task, picker, el("button", { type: "submit", id: "eval-run" }, "Evaluate"),
    el("button", { type: "button", id: "eval-cancel", disabled: "" }, "Cancel"));
  const error = el("div", { id: "eval-error", class: "error", role: "alert", hidden: "" });
  const progress = el("progress", { id: "eval-progress", max: "1", value: "0", hidden: "" });
  const status = el("p", { id: "eval-status", class: "status", role: "status", "aria-live": "polite" });
  const report = el("div", { id: "eval-report", class: "panel", hidden: "" });
  report.append(el("p", { id: "eval-verdict", class: "summary" }), el("p", { id: "eval-links" }),
    el("iframe", { id: "eval-frame", title: "Evaluation report", sandbox: "", class: "report-frame" }));
  section.append(form, error, progress, status, report);
  select.addEventListener("change", pick);
  form.addEventListener("submit", run);
  $("#eval-cancel").addEventListener("click", cancel);
}

function showError(text) {
  const box = $("#eval-error");
  box.textContent = text || "";
  box.hidden = !text;
}

function pick() {
  const task = $("#eval-task").value;
  $("#eval-holdout-box").hidden = task !== "next_frame";
  const box = $("#eval-picker .picks");
  box.replaceChildren();
  const models = state.models.filter((m) => m.task === task && m.state === "ready");
  if (!models.length) box.append(el("p", { class: "hint" }, "No model of this task is served."));
  models.forEach((m, k) => {
    const id = "eval-pick-" + m.name;
    const row = el("div", { class: "choice" });
    const input = el("input", { type: "checkbox", id, value: m.name });
    input.checked = k < 2;
    row.append(input, el("label", { for: id }, m.name));
    box.append(row);
  });
}

async function loadModels() {
  try {
    const r = await fetch("/v1/models", { headers: authHeaders() });
    if (!r.ok) throw new Error(`GET /v1/models answered ${r.status}`);
    state.models = (await r.json()).models;
    pick();
  } catch (e) {
    setTimeout(loadModels, 2000);  // the models may still be loading
  }
}

async function answerError(r) {
  try {
    const body = await r.json();
    return body.message || JSON.stringify(body);
  } catch (e) {
    return `${r.status} ${r.statusText}`;
  }
}

function showProgress(job) {
  const p = job.progress || {};
  const bar = $("#eval-progress");
  bar.hidden = false;
  bar.max = p.total || 1;
  bar.value = p.done || 0;
  const eta = p.eta_s != null ? `, about ${Math.round(p.eta_s)} s left` : "";
  $("#eval-status").textContent = `${job.state}: ${p.done || 0} of ${p.total || "?"} clips` +
    (p.clips_per_s ? `, ${p.clips_per_s} clips/s${eta}` : "");
  $("#eval-progress").dataset.done = String(p.done || 0);
}

async function follow(location) {
  // the job's events, read as a stream (EventSource cannot send the API key)
  const r = await fetch(location + "/events", { headers: authHeaders(), signal: state.controller.signal });
  if (!r.ok) throw new Error(await answerError(r));
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", kind = "message", job = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return job;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) kind = line.slice(7);
        else if (line.startsWith("data: ")) {
          job = JSON.parse(line.slice(6));
          showProgress(job);
          if (["done", "failed", "cancelled"].includes(kind)) return job;
        }
      }
    }
  }
}

async function showReport(job) {
  const base = job.location;
  $("#eval-verdict").textContent = job.result.verdict;
  const links = $("#eval-links");
  links.replaceChildren();
  for (const [label, path] of [["report page", "/report"], ["JSON", "/report.json"], ["per-clip CSV", "/clips.csv"], ["plot (PNG)", "/plot.png"]]) {
    if (links.childNodes.length) links.append(" · ");
    links.append(el("a", { href: base + path, target: "_blank", rel: "noopener" }, label));
  }
  const r = await fetch(base + "/report", { headers: authHeaders() });
  if (!r.ok) throw new Error(await answerError(r));
  $("#eval-frame").srcdoc = await r.text();
  $("#eval-report").hidden = false;
}

async function run(event) {
  event.preventDefault();
  showError("");
  $("#eval-report").hidden = true;
  const file = $("#eval-file").files[0];
  const models = [...document.querySelectorAll("#eval-picker input:checked")].map((i) => i.value);
  if (!file) return showError("Choose a data set file first.");
  if (!models.length) return showError("Tick at least one model.");
  const q = new URLSearchParams({ models: models.join(",") });
  if ($("#eval-task").value === "next_frame") q.set("holdout", $("#eval-holdout").value);
  if ($("#eval-window").value) q.set("window", $("#eval-window").value);
  const data = new FormData();
  data.append("dataset", file, file.name);
  $("#eval-run").disabled = true;
  $("#eval-status").textContent = "Sending the data set…";
  state.controller = new AbortController();
  try {
    const r = await fetch("/v1/evaluations?" + q, { method: "POST", body: data, headers: authHeaders() });
    if (r.status !== 202) throw new Error(await answerError(r));
    state.job = await r.json();
    $("#eval-cancel").disabled = false;
    const job = await follow(state.job.location);
    if (!job || job.state !== "done") throw new Error(`The job ${job ? job.state : "stopped"}: ${job && job.error || ""}`);
    await showReport(job);
    $("#eval-status").textContent = `done: ${job.result.clips} clips`;
  } catch (e) {
    if (e.name !== "AbortError") showError(e.message);
  } finally {
    $("#eval-run").disabled = false;
    $("#eval-cancel").disabled = true;
  }
}

async function cancel() {
  if (!state.job) return;
  await fetch(state.job.location, { method: "DELETE", headers: authHeaders() });
  $("#eval-status").textContent = "cancelled";
}

export function initEvaluate() {
  const section = document.getElementById("evaluate");
  if (section) {
    build(section);
    loadModels();
  }
}
