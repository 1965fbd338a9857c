// The "Live" view: frames streamed one at a time over a WebSocket (/v1/streams/{id}/ws), each
// chosen model's predicted next frame and a rolling plot of its surprise (the error of the
// prediction made for each frame received). Frames come from a next-frame sample clip (the one
// chosen above, else the first; its frames looped), a video or GIF file, or the webcam. Uses
// only public routes.

import { $, apiError, authHeaders, el, png, seriesClass, svgEl } from "./dom.js";
import { modelInfo, taskModels } from "./models.js";
import { nextFrameSample } from "./form.js";

const live = { ws: null, id: null, source: null, timer: null, series: {}, frames: 0,
               busy: false, stopped: true };
const LIVE_POINTS = 80;  // surprise points shown per model

function liveError(message) {
  const box = $("#live-error");
  box.textContent = message || "";
  box.hidden = !message;
}

function liveStatus(text) { $("#live-status").textContent = text; }

function buildLivePicker() {
  const box = $("#live-picker .picks");
  box.replaceChildren();
  const models = taskModels("next_frame");
  if (!models.length) { box.append(el("p", { class: "hint" }, "No next-frame model is loaded.")); return; }
  models.forEach((m, k) => {
    const id = "live-pick-" + m.name;
    const input = el("input", { type: "checkbox", id, value: m.name });
    input.checked = k < 2;
    const how = m.stream ? ` (${m.stream.mode}, predicts after ${m.stream.context} frames)` : "";
    const row = el("div", { class: "choice" });
    row.append(input, el("label", { for: id }, m.name + how));
    box.append(row);
  });
}

const livePicked = () => [...document.querySelectorAll("#live-picker input:checked")].map((i) => i.value);

function canvasOf(image, w, h) {
  const c = el("canvas", { width: w, height: h });
  c.getContext("2d").drawImage(image, 0, 0, w, h);
  return c;
}

async function decodeFrames(blobOrResp, type, w, h) {
  // every frame of a GIF (or any image) with WebCodecs' ImageDecoder; one frame without it
  const data = blobOrResp instanceof Blob ? blobOrResp.stream() : blobOrResp.body;
  if ("ImageDecoder" in window) {
    const dec = new ImageDecoder({ data, type });
    await dec.tracks.ready;
    const out = [];
    for (let i = 0; i < dec.tracks.selectedTrack.frameCount; i++) {
      const { image } = await dec.decode({ frameIndex: i });
      out.push(canvasOf(image, w, h));
      image.close();
    }
    dec.close();
    return out;
  }
  const blob = blobOrResp instanceof Blob ? blobOrResp : await blobOrResp.blob();
  return [canvasOf(await createImageBitmap(blob), w, h)];
}

async function openSource(kind, w, h) {
  // an object with next() → a canvas of w×h (the model's size), and close()
  if (kind === "sample") {
    const s = nextFrameSample();
    if (!s) throw new Error("no next-frame sample clip is available; choose a file instead");
    const frames = await decodeFrames(await fetch("/static/samples/" + s.file), "image/gif", w, h);
    let i = 0;
    return { next: () => frames[i++ % frames.length], close() {}, label: s.title + " (looped)" };
  }
  let video;
  if (kind === "camera") {
    if (!navigator.mediaDevices) throw new Error("this browser gives no camera here (it needs https or localhost)");
    const media = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    video = el("video", { muted: "", playsinline: "" });
    video.srcObject = media;
  } else {
    const file = $("#live-file").files[0];
    if (!file) throw new Error("choose a video or GIF file first");
    if (!file.type.startsWith("video/")) {
      const frames = await decodeFrames(file, file.type || "image/gif", w, h);
      let i = 0;
      return { next: () => frames[i++ % frames.length], close() {}, label: file.name + " (looped)" };
    }
    video = el("video", { muted: "", playsinline: "", loop: "" });
    video.src = URL.createObjectURL(file);
  }
  video.muted = true;
  await video.play();
  const c = el("canvas", { width: w, height: h });
  return {
    next: () => { c.getContext("2d").drawImage(video, 0, 0, w, h); return c; },
    close() {
      if (video.srcObject) for (const t of video.srcObject.getTracks()) t.stop();
      video.pause();
    },
    label: kind === "camera" ? "the webcam" : $("#live-file").files[0].name,
  };
}

function drawChart() {
  const svg = $("#live-chart");
  svg.replaceChildren();
  const all = Object.values(live.series).flat().map((p) => p[1]);
  if (!all.length) return;
  const top = Math.max(...all) || 1, W = 300, H = 120;
  Object.entries(live.series).forEach(([name, pts], k) => {
    const first = pts.length ? pts[0][0] : 0;
    const d = pts.map(([step, v]) =>
      `${((step - first) / (LIVE_POINTS - 1)) * W},${H - (v / top) * (H - 6) - 3}`).join(" ");
    svg.append(svgEl("polyline", { points: d, class: "series " + seriesClass(k), "data-model": name }));
  });
  svg.append(svgEl("text", { x: 2, y: 10 }, `max ${top.toFixed(1)}`));
}

function renderLive(answer, sent) {
  const per = answer.models || { [answer.model]: answer };
  $("#live-frame").getContext("2d").drawImage(sent, 0, 0);
  const preds = $("#live-preds");
  preds.replaceChildren();
  Object.entries(per).forEach(([name, a], k) => {
    const fig = el("figure", { class: "live-pred " + seriesClass(k), "data-model": name });
    if (a.frames.length) {
      fig.append(el("img", { src: png(a.frames[0].png), alt: `${name}: predicted frame t+1`,
                             class: "pixelated", width: 128, height: 128 }));
    } else {
      fig.append(el("p", { class: "hint" }, a.message || "waiting for frames"));
    }
    const last = (a.surprise || []).slice(-1)[0];
    (live.series[name] = live.series[name] || []);
    if (last) {
      live.series[name].push([last.step, last.mse_per_frame]);
      live.series[name] = live.series[name].slice(-LIVE_POINTS);
    }
    const s = last ? ` · surprise ${last.mse_per_frame.toFixed(1)} MSE/frame` : "";
    fig.append(el("figcaption", {}, `${name} (${a.mode}): t+1${s}`));
    preds.append(fig);
  });
  drawChart();
  liveStatus(`Frame ${answer.step} received from ${live.source.label}.`);
  $("#live-view").dataset.step = String(answer.step);
}

function sendNext() {
  if (live.stopped || live.busy || !live.ws || live.ws.readyState !== WebSocket.OPEN) return;
  const frame = live.source.next();
  live.busy = true;
  live.pending = frame;
  frame.toBlob(async (blob) => live.ws && live.ws.send(await blob.arrayBuffer()), "image/png");
}

async function liveStart() {
  await liveStop();
  liveError("");
  const names = livePicked();
  if (!names.length) { liveError("Pick at least one next-frame model."); return; }
  const first = modelInfo(names[0]);
  const [h, w] = [first.input.height, first.input.width];
  try {
    live.source = await openSource($("#live-source").value, w, h);
  } catch (e) {
    liveError(`Cannot read the frames: ${e.message}`);
    return;
  }
  const url = names.length > 1
    ? "/v1/compare/streams?models=" + encodeURIComponent(names.join(","))
    : `/v1/models/${encodeURIComponent(names[0])}/streams`;
  const resp = await fetch(url, { method: "POST", headers: authHeaders() });
  if (!resp.ok) { liveError("Cannot open the stream: " + (await apiError(resp))); live.source.close(); return; }
  live.id = (await resp.json()).id;
  live.series = {};
  // With a key, the socket gets a single-use ticket (the key stays in the header, never in a URL)
  let query = "";
  if ($("#api-key").value.trim()) {
    const t = await fetch(`/v1/streams/${live.id}/ticket`, { method: "POST", headers: authHeaders() });
    if (!t.ok) { liveError("Cannot get the WebSocket's ticket: " + (await apiError(t))); live.source.close(); return; }
    query = "?ticket=" + encodeURIComponent((await t.json()).ticket);
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/v1/streams/${live.id}/ws` + query);
  live.ws = ws;
  live.stopped = false;
  $("#live-frame").width = w;
  $("#live-frame").height = h;
  $("#live-view").hidden = false;
  $("#live-start").disabled = true;
  $("#live-stop").disabled = false;
  ws.onopen = () => {
    const fps = Math.min(30, Math.max(1, Number($("#live-fps").value) || 10));
    live.timer = setInterval(sendNext, 1000 / fps);
    sendNext();
  };
  ws.onmessage = (event) => {
    live.busy = false;
    const answer = JSON.parse(event.data);
    if (answer.error) { liveError(`${answer.message} (${answer.status})`); return; }
    renderLive(answer, live.pending);
  };
  ws.onclose = (event) => {
    if (!live.stopped && event.code >= 4000) liveError(`The stream ended: ${event.reason || event.code}`);
    if (!live.stopped) liveStop();
  };
}

async function liveStop() {
  const was = live.id;
  live.stopped = true;
  clearInterval(live.timer);
  if (live.ws) live.ws.close();
  if (live.source) live.source.close();
  live.ws = null;
  live.id = null;
  $("#live-start").disabled = false;
  $("#live-stop").disabled = true;
  if (was) {
    await fetch(`/v1/streams/${was}`, { method: "DELETE", headers: authHeaders() }).catch(() => {});
    liveStatus("Stopped; the stream was closed.");
  }
}

export function initLive() {
  $("#live-source").addEventListener("change", () => {
    $("#live-file-box").hidden = $("#live-source").value !== "file";
  });
  $("#live-start").addEventListener("click", liveStart);
  $("#live-stop").addEventListener("click", liveStop);
  document.addEventListener("framecast:models", buildLivePicker);  // models.js's list
  buildLivePicker();
}
