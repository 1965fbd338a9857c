// Drawing a compare answer: the input, one panel per model (stats, frames or score bars), the
// per-step charts, and the animations.

import { $, MARKERS, el, fmt, fmtParams, png, seriesClass, svgEl } from "./dom.js";
import { NAMES, classesTitle, inputText, modelInfo } from "./models.js";

export const view = { anims: [], playing: true, timer: null };

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
  view.anims.push({ img, cap, frames, nCtx, i: 0 });
}

function tick() {
  for (const a of view.anims) {
    if (!a.frames.length) continue;
    a.i = (a.i + 1) % a.frames.length;
    a.img.src = png(a.frames[a.i]);
    a.cap.textContent = timeLabel(a.i, a.nCtx);
  }
}

export function setPlaying(on) {
  view.playing = on;
  clearInterval(view.timer);
  if (on) view.timer = setInterval(tick, 200);
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

export function render(data) {
  view.anims = [];
  $("#placeholder").hidden = true;
  const next = data.task === "next_frame";
  const ctx = data.context_png || [];
  const truth = data.truth_png || [];
  const keys = Object.keys(data.results || {});
  const titles = {};
  for (const key of keys) titles[key] = resultTitle(key, data.results[key]);
  const n = keys.length;
  const nameOf = (key) => titles[key] || NAMES[key] || key;
  // what the compared classifiers tell apart: their classes as the answer or the list give them
  const compared = keys.map((key) => {
    const r = data.results[key];
    return { class_names: r.class_names || (modelInfo(r.model) || {}).class_names || [] };
  });

  let summary = next
    ? `Next frame: ${data.horizon} step(s) predicted from ${data.context_frames} frame(s) of ` +
      `context (the models see the last ${ctx.length})`
    : `${classesTitle(compared)}${data.true_label ? ` (true: ${data.true_label})` : ""}`;
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
  setPlaying(view.playing);
}
