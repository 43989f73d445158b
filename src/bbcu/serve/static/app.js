// The bbcu serve page: pick an image and options, send it to /api/restore, show input and result
// side by side with one shared zoom and pan, a before/after divider, the facts, and a PNG download.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, file: null, urls: [], size: { w: 0, h: 0 }, view: { zoom: 1, x: 0, y: 0 } };
const ZOOM_STEP = 1.25;

// ------------------------------------------------------------------------------- models and options

async function loadInfo() {
  try {
    const response = await fetch("/api/info");
    state.info = await response.json();
  } catch (err) {
    showError(`cannot reach the server: ${err.message}`);
    return;
  }
  const limits = state.info.limits;
  $("limits").textContent =
    `up to ${formatBytes(limits.max_upload_bytes)} and ${limits.max_pixels.toLocaleString("en")} pixels`;
  refreshModels();
}

function currentScale() {
  return $("task").value === "sr" ? Number($("scale").value) : 1;
}

function selectedModel() {
  const fits = modelsForTask();
  return fits.find((m) => m.name === $("model").value) || null;
}

function modelsForTask() {
  const task = $("task").value;
  const scale = currentScale();
  return state.info ? state.info.models.filter((m) => m.task === task && m.scale === scale) : [];
}

function refreshModels() {
  const fits = modelsForTask();
  const options = fits.map((m) => {
    const cost = m.ops_g_320x180 ? ` - ${m.ops_g_320x180} G OPs, ${m.params_k} K params` : "";
    return new Option(`${m.name}${cost}`, m.name);
  });
  if (!options.length) {
    const none = new Option("no model for this task is available yet", "");
    none.disabled = true;
    options.push(none);
  }
  $("model").replaceChildren(...options);
  refreshEngines();
  refreshFields();
}

function refreshEngines() {
  const model = selectedModel();
  for (const option of $("engine").options) {
    option.disabled = !model || !model.engines.includes(option.value);
  }
  if ($("engine").selectedOptions[0].disabled) $("engine").value = "torch";
  $("run").disabled = !model;
}

function refreshFields() {
  const task = $("task").value;
  $("degrade").disabled = task === "face"; // faces have no degradation protocol to score with
  if (task === "face") $("degrade").checked = false;
  const degrade = $("degrade").checked;
  $("scale-field").hidden = task !== "sr";
  $("degrade-fields").hidden = !degrade;
  $("degrade-sr").hidden = task !== "sr";
  $("sigma-field").hidden = task !== "denoise";
  $("quality-field").hidden = task !== "jpeg";
}

// ---------------------------------------------------------------------------------------- the image

function setFile(file) {
  clearError();
  state.file = file || null;
  $("file-name").textContent = file ? `${file.name} (${formatBytes(file.size)})` : "no image yet";
  if (file && state.info && file.size > state.info.limits.max_upload_bytes) {
    showError(`${file.name} is larger than the upload limit of ${formatBytes(state.info.limits.max_upload_bytes)}`);
  }
}

function wireDropZone() {
  const zone = $("drop");
  $("file").addEventListener("change", () => setFile($("file").files[0]));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    setFile(event.dataTransfer.files[0]);
  });
}

// ---------------------------------------------------------------------------------------- restoring

async function restore() {
  clearError();
  if (!state.file) return showError("pick an image first");
  if (state.file.size > state.info.limits.max_upload_bytes) {
    return showError(`${state.file.name} is larger than the upload limit of ${formatBytes(state.info.limits.max_upload_bytes)}`);
  }
  const query = new URLSearchParams({
    task: $("task").value,
    scale: currentScale(),
    model: $("model").value,
    engine: $("engine").value,
    degrade: $("degrade").checked,
    sigma: $("sigma").value,
    quality: $("quality").value,
    filename: state.file.name,
  });
  $("run").disabled = true;
  $("status").textContent = "restoring...";
  const started = performance.now();
  try {
    const response = await fetch(`/api/restore?${query}`, {
      method: "POST",
      body: state.file,
      headers: { "Content-Type": "application/octet-stream" },
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.error || `the server answered ${response.status}`);
    showResult(answer, (performance.now() - started) / 1000);
  } catch (err) {
    $("status").textContent = "";
    showError(err.message === "Failed to fetch" ? "cannot reach the server" : err.message);
  } finally {
    $("run").disabled = !selectedModel();
  }
}

function pngUrl(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const url = URL.createObjectURL(new Blob([bytes], { type: "image/png" }));
  state.urls.push(url);
  return url;
}

function showResult(answer, roundTrip) {
  state.urls.forEach((url) => URL.revokeObjectURL(url));
  state.urls = [];
  const inputUrl = pngUrl(answer.input_png);
  const outputUrl = pngUrl(answer.output_png);
  const [width, height] = answer.output_size;
  state.size = { w: width, h: height };
  $("input-img").src = inputUrl;
  $("compare-input").src = inputUrl;
  $("compare-output").src = outputUrl;
  for (const img of document.querySelectorAll(".viewport img")) {
    img.style.width = `${width}px`;
    img.style.height = `${height}px`;
  }
  // A low-resolution input is shown with its real pixels, not smoothed into a second upscaler.
  const upscaled = answer.input_size[0] < width;
  for (const img of [$("input-img"), $("compare-input")]) {
    img.style.imageRendering = upscaled ? "pixelated" : "";
  }
  const stem = state.file.name.replace(/\.[^.]*$/, "") || "image";
  $("download").href = outputUrl;
  $("download").download = `${stem}_${answer.model}${currentScale() > 1 ? `_x${currentScale()}` : ""}.png`;
  showFacts(answer, roundTrip);
  $("result").hidden = false;
  $("status").textContent = `done in ${answer.elapsed_s.toFixed(2)} s`;
  fitView();
}

function showFacts(answer, roundTrip) {
  const [inW, inH] = answer.input_size;
  const [outW, outH] = answer.output_size;
  $("fact-time").textContent = `${answer.elapsed_s.toFixed(3)} s restoring (${roundTrip.toFixed(2)} s round trip)`;
  $("fact-model").textContent = `${answer.model} on the ${answer.engine} engine`;
  $("fact-ops").textContent = answer.ops_g === null
    ? "not counted (a face model's cost depends on the faces found)"
    : `${answer.ops_g.toFixed(3)} G for this ${inW}x${inH} input`;
  $("fact-params").textContent = `${answer.params_k} K`;
  $("fact-file").textContent = answer.file_bytes ? formatBytes(answer.file_bytes) : "none (not learned)";
  $("fact-size").textContent = `${inW}x${inH} -> ${outW}x${outH}`;
  const psnr = answer.psnr;
  $("fact-psnr").textContent = psnr
    ? `result ${formatDb(psnr.output)}` + (psnr.input === null ? "" : `, degraded input ${formatDb(psnr.input)}`)
    : "tick 'Degrade the image first' to score against the original";
}

// ------------------------------------------------------------------------ synchronised zoom and pan

function applyView() {
  const { zoom, x, y } = state.view;
  for (const img of document.querySelectorAll(".viewport img")) {
    img.style.transform = `translate(${x}px, ${y}px) scale(${zoom})`;
  }
  for (const viewport of document.querySelectorAll(".viewport")) {
    viewport.classList.toggle("pixels", zoom >= 2);
  }
  $("zoom-level").textContent = `${Math.round(zoom * 100)} %`;
}

function zoomAt(factor, px, py) {
  const view = state.view;
  const zoom = Math.min(64, Math.max(0.05, view.zoom * factor));
  view.x = px - ((px - view.x) * zoom) / view.zoom;
  view.y = py - ((py - view.y) * zoom) / view.zoom;
  view.zoom = zoom;
  applyView();
}

function viewportSize() {
  const box = $("pane-compare").getBoundingClientRect();
  return { w: box.width, h: box.height };
}

function fitView() {
  const box = viewportSize();
  const zoom = Math.min(box.w / state.size.w, box.h / state.size.h);
  state.view = { zoom, x: (box.w - state.size.w * zoom) / 2, y: (box.h - state.size.h * zoom) / 2 };
  applyView();
}

function wireViewports() {
  for (const viewport of document.querySelectorAll(".viewport")) {
    viewport.addEventListener("wheel", (event) => {
      event.preventDefault();
      const box = viewport.getBoundingClientRect();
      zoomAt(event.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP, event.clientX - box.left, event.clientY - box.top);
    }, { passive: false });
    viewport.addEventListener("pointerdown", (event) => {
      viewport.setPointerCapture(event.pointerId);
      viewport.classList.add("dragging");
    });
    viewport.addEventListener("pointermove", (event) => {
      if (!viewport.hasPointerCapture(event.pointerId)) return;
      state.view.x += event.movementX;
      state.view.y += event.movementY;
      applyView();
    });
    viewport.addEventListener("pointerup", () => viewport.classList.remove("dragging"));
  }
  const centre = () => viewportSize();
  $("zoom-fit").addEventListener("click", fitView);
  $("zoom-1").addEventListener("click", () => zoomAt(1 / state.view.zoom, centre().w / 2, centre().h / 2));
  $("zoom-in").addEventListener("click", () => zoomAt(ZOOM_STEP, centre().w / 2, centre().h / 2));
  $("zoom-out").addEventListener("click", () => zoomAt(1 / ZOOM_STEP, centre().w / 2, centre().h / 2));
  $("split").addEventListener("input", () => {
    const at = `${$("split").value}%`;
    $("after-layer").style.clipPath = `inset(0 0 0 ${at})`;
    $("divider").style.left = at;
  });
}

// ------------------------------------------------------------------------------------------ helpers

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").textContent = "";
  $("error").hidden = true;
}

function formatBytes(bytes) {
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MB`;
  return `${(bytes / 1024).toFixed(1)} KB`;
}

function formatDb(value) {
  return value === null ? "identical (infinite PSNR)" : `${value.toFixed(2)} dB`;
}

document.addEventListener("DOMContentLoaded", () => {
  wireDropZone();
  wireViewports();
  $("task").addEventListener("change", refreshModels);
  $("scale").addEventListener("change", refreshModels);
  $("model").addEventListener("change", refreshEngines);
  $("degrade").addEventListener("change", refreshFields);
  $("run").addEventListener("click", restore);
  refreshFields();
  loadInfo();
});
