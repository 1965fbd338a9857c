// framecast page: picks a clip and the models to compare, calls the public /v1/compare routes,
// draws every model's results side by side; and the live view (live.js).
// Plain ES modules (no libraries, no build step): dom.js (helpers), models.js (the model list
// and pickers), form.js (the clip, the task, the request), render.js (drawing an answer),
// live.js (streams), evaluate.js (the Evaluate view: evaluation jobs). This one wires them.

import { $ } from "./dom.js";
import { initEvaluate } from "./evaluate.js";
import { initForm } from "./form.js";
import { initLive } from "./live.js";
import { loadModels } from "./models.js";
import { setPlaying, view } from "./render.js";

function init() {
  $("#play").addEventListener("click", () => setPlaying(!view.playing));
  const key = $("#api-key");
  key.value = sessionStorage.getItem("framecast-api-key") || "";
  key.addEventListener("change", () => {
    sessionStorage.setItem("framecast-api-key", key.value.trim());
    loadModels();
  });
  if (window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches) {
    view.playing = false;
  }
  initForm();
  initLive();
  initEvaluate();
  loadModels();
}

// a module runs once the document is parsed (as a deferred script)
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
