// normstyle serve: the page. Plain JavaScript, no build step; every picture comes from the
// server's JSON/HTTP API (/api/stylize, /api/compare), the same one scripts use.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { content: null, style: null, style2: null, seq: 0, shown: 0, changedAt: 0, models: [] };
// Read by the browser test: the last slider-change-to-new-image time and the settings shown.
window.normstyle = { lastLatencyMs: null, updates: 0, lastSettings: null };

function setStatus(text, error) {
  const s = $("status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

function normValue() {
  const n = $("norm").value;
  return n === "gn" ? `gn:${Math.max(1, parseInt($("groups").value, 10) || 32)}` : n;
}

function model() {
  return state.models.find((m) => m.id === $("model").value);
}

function family() {
  const m = model();
  return m ? m.family : "magenta";
}

/// A trained network paints its own style: no style images, presets or α.
function trained() {
  return family() === "trained";
}

/// The form of the current settings (the API's field names).
function settingsForm() {
  const f = new FormData();
  f.append("content", state.content, "content");
  const preset = $("preset").value;
  if (trained()) {
    // The style is built in; a network trained without norm layers has no statistics to swap.
    if (model().norm !== "none") f.append("norm", normValue());
    f.append("preserve_color", $("preserve").value);
    f.append("content_size", $("size").value);
    f.append("model", $("model").value);
    return f;
  }
  if (preset !== "" && family() === "magenta") {
    f.append("preset", preset);
  } else {
    f.append("style", state.style, "style");
    if (state.style2) {
      f.append("style", state.style2, "style2");
      const b = parseFloat($("blend").value);
      f.append("style_weights", `${1 - b},${b}`);
    }
  }
  f.append("alpha", $("alpha").value);
  f.append("norm", normValue());
  f.append("preserve_color", $("preserve").value);
  f.append("content_size", $("size").value);
  f.append("model", $("model").value);
  return f;
}

function ready() {
  if (trained()) return Boolean(state.content);
  return state.content && (state.style || ($("preset").value !== "" && family() === "magenta"));
}

let inFlight = false;
let pending = false;
/// Debounced by the server's own pace: one request at a time, and while one is out only the
/// latest settings wait (sent when it returns). A moving slider never queues stale pictures,
/// and a change after a pause is sent at once.
function schedule() {
  if (!state.changedAt) state.changedAt = performance.now();
  if (inFlight) {
    pending = true;
    return;
  }
  inFlight = true;
  update().finally(() => {
    inFlight = false;
    if (pending) {
      pending = false;
      schedule();
    }
  });
}

async function update() {
  if (!ready()) {
    setStatus("Pick a photo and a style.");
    return;
  }
  const seq = ++state.seq;
  const since = state.changedAt || performance.now();
  state.changedAt = 0;
  const settings = { alpha: $("alpha").value, norm: normValue(), preset: $("preset").value, model: $("model").value };
  setStatus("Painting…");
  let res;
  try {
    res = await fetch("/api/stylize", { method: "POST", body: settingsForm() });
  } catch (e) {
    setStatus(`The server did not answer (${e}).`, true);
    return;
  }
  if (seq !== state.seq) return; // a newer request is on its way
  if (!res.ok) {
    const body = await res.json().catch(() => ({ error: res.statusText }));
    setStatus(`Error ${res.status}: ${body.error}`, true);
    return;
  }
  const seconds = parseFloat(res.headers.get("X-Normstyle-Seconds") || "0");
  const blob = await res.blob();
  if (seq !== state.seq) return;
  const url = URL.createObjectURL(blob);
  const img = $("result");
  const shownNow = new Promise((resolve) => {
    img.onerror = resolve;
    img.addEventListener("load", resolve, { once: true });
  });
  img.onload = () => {
    const ms = performance.now() - since;
    window.normstyle.lastLatencyMs = ms;
    window.normstyle.updates += 1;
    window.normstyle.lastSettings = settings;
    $("timing").textContent = `${ms.toFixed(0)} ms from the change to the picture (model ${(seconds * 1000).toFixed(0)} ms)`;
    setStatus(`${settings.norm}, α = ${parseFloat(settings.alpha).toFixed(2)}:`);
    if (state.shown) URL.revokeObjectURL(state.shown);
    state.shown = url;
  };
  img.src = url;
  const dl = $("download");
  dl.href = url;
  dl.hidden = false;
  await shownNow;
}

async function setImage(role, blob, fromSample) {
  state[role] = blob;
  if (!fromSample) {
    document.querySelectorAll(`#${role}-samples img`).forEach((i) => i.classList.remove("chosen"));
  }
  $(`${role}-preview`).src = URL.createObjectURL(blob);
  if (role === "style") $("preset").value = "";
  schedule();
}

async function pickSample(role, folder, name, thumb) {
  const res = await fetch(`/samples/${folder}/${encodeURIComponent(name)}`);
  if (!res.ok) return setStatus(`cannot load the sample ${name}`, true);
  document.querySelectorAll(`#${role}-samples img`).forEach((i) => i.classList.remove("chosen"));
  if (thumb) thumb.classList.add("chosen");
  await setImage(role, await res.blob(), true);
}

function wireDrop(role) {
  const zone = $(`${role}-drop`);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) setImage(role, file);
  });
  $(`${role}-file`).addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) setImage(role, file);
  });
}

function syncControls() {
  $("groups-label").classList.toggle("disabled", $("norm").value !== "gn");
  $("groups").disabled = $("norm").value !== "gn";
  const magenta = family() === "magenta";
  const own = trained();
  $("preset").disabled = !magenta;
  for (const id of ["style-drop", "style2-drop"]) $(id).classList.toggle("disabled", own);
  for (const id of ["style-file", "style2-file", "style2-clear", "alpha", "compare-button"]) $(id).disabled = own;
  $("alpha").parentElement.classList.toggle("disabled", own);
  $("norm").disabled = own && model().norm === "none";
  const blend = $("blend");
  blend.disabled = !state.style2 || $("preset").value !== "";
  blend.parentElement.classList.toggle("disabled", blend.disabled);
  $("alpha-out").textContent = parseFloat($("alpha").value).toFixed(2);
  $("blend-out").textContent = parseFloat($("blend").value).toFixed(2);
}

async function compareAll() {
  if (!ready() || !state.style) return setStatus("Compare needs a photo and a style image.", true);
  const f = new FormData();
  f.append("content", state.content, "content");
  f.append("style", state.style, "style");
  const g = Math.max(1, parseInt($("groups").value, 10) || 32);
  f.append("norms", `in,bn,ln,gn:${g}`);
  f.append("alphas", "0.5,1");
  f.append("tile", "256");
  f.append("model", $("model").value);
  f.append("preserve_color", $("preserve").value);
  setStatus("Comparing every norm…");
  const res = await fetch("/api/compare", { method: "POST", body: f });
  const doc = await res.json();
  if (!res.ok) return setStatus(`Error ${res.status}: ${doc.error}`, true);
  $("compare").hidden = false;
  $("compare-grid").src = doc.grid;
  const cols = ["variant", "seconds", "ssim", "color_distance"];
  const extra = ["style_vector_distance", "content_loss", "style_loss"].filter((k) => doc.tiles.some((t) => t[k] !== undefined));
  const all = cols.concat(extra);
  $("compare-table").querySelector("thead").innerHTML = `<tr>${all.map((c) => `<th>${c}</th>`).join("")}</tr>`;
  $("compare-table").querySelector("tbody").innerHTML = doc.tiles
    .map((t) => `<tr>${all.map((c) => `<td>${typeof t[c] === "number" ? t[c].toFixed(4) : t[c]}</td>`).join("")}</tr>`)
    .join("");
  setStatus(`Compared ${doc.tiles.length} variants.`);
}

async function init() {
  const [models, presets, samples] = await Promise.all(
    ["/api/models", "/api/presets", "/samples"].map((u) => fetch(u).then((r) => r.json())));
  state.models = models.models;
  $("model").innerHTML = models.models.map((m) => `<option value="${m.id}">${m.title}</option>`).join("");
  $("preset").innerHTML += presets.presets.map((p) => `<option value="${p.id}">${p.label}</option>`).join("");
  for (const [role, folder] of [["content", "photos"], ["style", "styles"], ["style2", "styles"]]) {
    const box = $(`${role}-samples`);
    for (const name of samples[folder]) {
      const img = document.createElement("img");
      img.src = `/samples/${folder}/${encodeURIComponent(name)}`;
      img.alt = img.title = name;
      img.addEventListener("click", () => pickSample(role, folder, name, img));
      box.appendChild(img);
    }
  }
  for (const role of ["content", "style", "style2"]) wireDrop(role);
  for (const id of ["alpha", "blend"]) $(id).addEventListener("input", () => { syncControls(); schedule(); });
  // A trained network starts on the norm it was trained with.
  $("model").addEventListener("change", () => {
    const m = model();
    if (!m || m.family !== "trained" || m.norm === "none") return;
    const [kind, groups] = m.norm.split(":");
    $("norm").value = kind;
    if (groups) $("groups").value = groups;
  });
  for (const id of ["norm", "groups", "preserve", "size", "model", "preset"]) {
    $(id).addEventListener("change", () => { syncControls(); schedule(); });
  }
  $("style2-clear").addEventListener("click", () => {
    state.style2 = null;
    $("style2-preview").removeAttribute("src");
    syncControls();
    schedule();
  });
  $("compare-button").addEventListener("click", compareAll);
  syncControls();
  // Start with the first bundled photo and style, so the page shows a picture at once.
  const first = (box) => $(box).querySelector("img");
  await pickSample("content", "photos", samples.photos[0], first("content-samples"));
  await pickSample("style", "styles", samples.styles[0], first("style-samples"));
}

init().catch((e) => setStatus(`The page could not start: ${e}`, true));
