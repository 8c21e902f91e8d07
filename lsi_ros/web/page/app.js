// The live page: polls /api/state and fetches each panel's newest frame from /snapshot, one at a
// time, so a slow connection shows fewer frames instead of a growing backlog.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 250;
const loading = {};

function kB(bytes) {
  return bytes >= 1e6 ? (bytes / 1e6).toFixed(2) + " MB" : (bytes / 1e3).toFixed(1) + " kB";
}

function ms(value) {
  return value === null || value === undefined ? "–" : value.toFixed(0) + " ms";
}

async function loadFrame(name, image) {
  const img = $(name);
  if (loading[name] || image.seq === null || String(image.seq) === img.dataset.seq) return;
  loading[name] = true;
  try {
    const response = await fetch("/api/frame/" + name, { cache: "no-store" });
    if (response.ok) {
      const url = URL.createObjectURL(await response.blob());
      await new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; img.src = url; });
      if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
      img.dataset.url = url;
      img.dataset.seq = response.headers.get("X-Frame-Seq");
      img.dataset.frames = String(Number(img.dataset.frames) + 1);
    }
  } finally {
    loading[name] = false;
  }
}

function showPanel(name, image, staleAfter) {
  const panel = $(name + "-panel");
  if (!image) { panel.style.display = "none"; return; }
  panel.querySelector(".topic").textContent =
    image.topic + (image.width ? " · " + image.width + "×" + image.height : "");
  const message = panel.querySelector(".nosignal");
  const stale = image.seq === null || image.age_s > staleAfter;
  panel.classList.toggle("stale", stale);
  panel.dataset.stale = String(stale);
  if (image.seq === null) {
    message.textContent = name === "scene" ? "no scene published" : "no signal: no image received yet";
  } else if (stale) {
    message.textContent = "no signal · last frame " + image.age_s.toFixed(1) + " s ago";
  }
  loadFrame(name, image);
}

function showAttributes(attributes) {
  if (!attributes || !attributes.names.length) return;
  const box = $("attributes");
  box.replaceChildren(...attributes.names.map((name, i) => {
    const row = document.createElement("div");
    row.className = "attribute";
    const label = document.createElement("span");
    label.textContent = name;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = (100 * attributes.scores[i]).toFixed(1) + "%";
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = attributes.scores[i].toFixed(2);
    row.append(label, bar, value);
    return row;
  }));
}

function showMeasurements(m) {
  const canvas = $("plot");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!m || !m.values.length) { $("plot-caption").textContent = "none yet"; return; }
  const values = m.values;
  let low = Math.min(...values), high = Math.max(...values);
  if (high === low) { high += 1; low -= 1; }
  const pad = 6, left = 48, w = canvas.width - left - pad, h = canvas.height - 2 * pad;
  const step = w / values.length;
  const zero = Math.min(Math.max(0, low), high);
  const y = (v) => pad + h - ((v - low) / (high - low)) * h;
  ctx.fillStyle = "#4fb3ff";
  values.forEach((v, i) => {
    const top = Math.min(y(v), y(zero)), bottom = Math.max(y(v), y(zero));
    ctx.fillRect(left + i * step, top, Math.max(1, step - (step > 3 ? 1 : 0)), Math.max(1, bottom - top));
  });
  ctx.fillStyle = "#8a93a0";
  ctx.font = "11px sans-serif";
  ctx.textAlign = "right";
  ctx.fillText(high.toPrecision(3), left - 4, pad + 9);
  ctx.fillText(low.toPrecision(3), left - 4, pad + h);
  $("plot-caption").textContent = "· frame " + m.sequence + ", " + m.count + " values" +
    (m.stride > 1 ? " (every " + m.stride + "th shown)" : "") + (m.saturated ? ", " + m.saturated + " saturated" : "");
}

function showStatus(state) {
  $("rate").textContent = state.frame_rate_hz.toFixed(1) + " Hz";
  $("latency").textContent = ms(state.latency_ms.scene_to_code) + " → " + ms(state.latency_ms.scene_to_image);
  const b = state.bytes_per_frame;
  if (b.measurements) {
    const raw = b.raw_image || b.image;
    $("bytes").textContent = kB(b.measurements) + " vs raw image " + (raw ? kB(raw) + " (1/" + Math.round(raw / b.measurements) + ")" : "–");
  }
  const d = state.dropped;
  $("dropped").textContent = (d.not_encoded + d.not_decoded + d.sequence_gaps) +
    " (not encoded " + d.not_encoded + ", not decoded " + d.not_decoded + ", gaps " + d.sequence_gaps + ")";
  const refused = Object.values(state.refused).reduce((a, b) => a + b, 0);
  $("refused").textContent = String(refused);
  $("model").textContent = state.model_id || "–";
  const p = state.pattern_set;
  $("patterns").textContent = p.pattern_set_id
    ? (p.kind ? p.kind + ", M = " + p.num_patterns + ", " + p.resolution + "² · " : "") + p.pattern_set_id.slice(0, 12)
    : "–";
}

async function poll() {
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    const state = await response.json();
    showPanel("decoded", state.images.decoded, state.stale_after_s);
    showPanel("scene", state.images.scene, state.stale_after_s);
    showAttributes(state.attributes);
    showMeasurements(state.measurements);
    showStatus(state);
    $("connection").textContent = "";
  } catch (error) {
    $("connection").textContent = "lost the web_view server: retrying";
  }
  setTimeout(poll, POLL_MS);
}

poll();
