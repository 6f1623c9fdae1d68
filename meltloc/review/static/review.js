// meltloc review: the page. Plain JavaScript, no build step, nothing from the network but this server.
"use strict";

const $ = (id) => document.getElementById(id);
const ZOOMS = [8, 4, 2, 1, 1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64];
const STEP_M = 0.0001; // 0.1 mm
const state = {
  sections: [], byImage: new Map(), rowOf: new Map(), lowScore: 0.5, version: 0,
  image: null, sec: null, dets: [], selId: null, zoom: 1, undo: [], queue: Promise.resolve(),
  tiles: new Map(), ticks: [], pendingFirstView: null,
};
window.__review = state; // for tests and measurements
window.__timings = [];

// ---- server ------------------------------------------------------------------------------------------

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const res = await fetch(path, opts);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) throw new Error((data && data.detail) || `${res.status} ${res.statusText}`);
  return data;
}

function say(text, error = false) {
  const m = $("message");
  m.textContent = text;
  m.className = error ? "error" : "muted";
}

// Decisions go out one after another, in the order they were made.
function send(path, body) {
  const p = state.queue.then(() => api(path, body));
  state.queue = p.catch(() => {});
  return p.then((r) => { applyResult(r); $("saved").textContent = "saved " + new Date().toLocaleTimeString(); return r; })
    .catch((e) => { say(e.message, true); throw e; });
}

function applyResult(r) {
  if (r.version) state.version = Math.max(state.version, r.version);
  const d = r.detection;
  if (d && state.sec && d.image === state.image) {
    const i = state.dets.findIndex((x) => x.id === d.id);
    if (i >= 0) state.dets[i] = d; else state.dets.push(d);
    sortDets();
    drawBoxes();
    drawOverviewMarks();
    showCurrent();
  }
  if (r.counts) updateSectionRow(r.counts);
}

// ---- section list ------------------------------------------------------------------------------------

function fmt(v, n) { return v === null || v === undefined ? "" : Number(v).toFixed(n); }
function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])); }

function filters() {
  return { unreviewed: $("f-unreviewed").checked, low: $("f-low").checked, type: $("f-type").value };
}

function sectionMatches(c, f) {
  if (f.unreviewed && c.unreviewed === 0) return false;
  if (f.low && c.low === 0) return false;
  if (f.type && c[f.type] === 0) return false;
  return true;
}

function detMatches(d, f) {
  if (f.unreviewed && d.status !== "unreviewed") return false;
  if (f.low && !(d.status === "unreviewed" && d.score !== null && d.score < state.lowScore)) return false;
  if (f.type && d.type !== f.type) return false;
  return true;
}

function rowHtml(c) {
  const acc = c.accepted + c.edited;
  const done = c.unreviewed === 0 && (c.accepted + c.edited + c.rejected + c.added) > 0;
  return `<div data-image="${esc(c.image)}" class="srow${c.image === state.image ? " open" : ""}${done ? " done" : ""}">` +
    `<span>${esc(c.image)}</span><span>${c.top_m === null ? "?" : fmt(c.top_m, 2) + "-" + fmt(c.bottom_m, 2)}</span>` +
    `<span class="n${c.unreviewed ? " todo" : ""}">${c.unreviewed}</span><span class="n">${acc}</span>` +
    `<span class="n">${c.rejected}</span><span class="n">${c.added}</span></div>`;
}

function renderList() {
  const t0 = performance.now();
  const f = filters();
  const shown = state.sections.filter((c) => sectionMatches(c, f));
  $("sections").innerHTML = shown.map(rowHtml).join("");
  state.rowOf = new Map();
  for (const tr of $("sections").children) state.rowOf.set(tr.dataset.image, tr);
  $("list-count").textContent = `${shown.length} of ${state.sections.length} sections`;
  updateProgress();
  return performance.now() - t0;
}

function updateSectionRow(c) {
  const old = state.byImage.get(c.image);
  if (old) Object.assign(old, c); else { state.sections.push(c); state.byImage.set(c.image, c); }
  const tr = state.rowOf.get(c.image);
  if (tr) {
    const tmp = document.createElement("div");
    tmp.innerHTML = rowHtml(state.byImage.get(c.image));
    const fresh = tmp.firstChild;
    tr.replaceWith(fresh);
    state.rowOf.set(c.image, fresh);
  }
  updateProgress();
}

function updateProgress() {
  let total = 0, todo = 0, added = 0;
  for (const c of state.sections) {
    total += c.unreviewed + c.accepted + c.edited + c.rejected;
    todo += c.unreviewed; added += c.added;
  }
  $("progress").textContent = `${total - todo} of ${total} detections reviewed, ${added} added`;
}

async function loadList() {
  const data = await api("/api/sections");
  state.sections = data.sections;
  state.byImage = new Map(data.sections.map((c) => [c.image, c]));
  state.lowScore = data.low_score;
  state.version = data.version;
  $("low-score").textContent = data.low_score;
  const base = (p) => p.split(/[\\/]/).pop();
  $("files").textContent = `${base(data.detections)} \u2192 ${base(data.decisions)}`;
  $("files").title = `detections: ${data.detections}\ndecisions: ${data.decisions}`;
  renderList();
  return data;
}

// ---- one section -------------------------------------------------------------------------------------

function sortDets() { state.dets.sort((a, b) => (a.depth_from_m ?? a.row_from) - (b.depth_from_m ?? b.row_from) || a.id - b.id); }

function rowOfDepth(m) { const s = state.sec.scale; return s.top_row + (m - s.top_m) * s.px_per_m; }
function depthOfRow(r) { const s = state.sec.scale; return s.top_m + (r - s.top_row) / s.px_per_m; }
function yOfDepth(m) { return rowOfDepth(m) * state.zoom; }
function detRows(d) {
  if (state.sec.scale && d.depth_from_m !== null) return [rowOfDepth(d.depth_from_m), rowOfDepth(d.depth_to_m)];
  return [d.row_from, d.row_to];
}

function fitZoom() {
  const cols = state.sec.meta.col1 - state.sec.meta.col0;
  const avail = $("scroller").clientWidth - 86 - 2 * 34 - 20;
  for (const z of ZOOMS) if (z <= 4 && cols * z <= avail) return z;
  return ZOOMS[ZOOMS.length - 1];
}

async function openSection(image, selectWhich = "first") {
  const t0 = performance.now();
  say(`opening ${image} ...`);
  document.body.dataset.state = "loading";
  let sec;
  try {
    sec = await api(`/api/sections/${encodeURIComponent(image)}`);
  } catch (e) { say(e.message, true); document.body.dataset.state = "ready"; return; }
  const tJson = performance.now();
  const firstOpen = state.sec === null;
  state.image = image;
  state.sec = sec;
  state.dets = sec.detections.slice();
  sortDets();
  if (firstOpen || !state.zoomSet) state.zoom = fitZoom();
  const was = state.rowOf.get(state.prevImage);
  if (was) was.classList.remove("open");
  const tr = state.rowOf.get(image);
  state.prevImage = image;
  if (tr) { tr.classList.add("open"); tr.scrollIntoView({ block: "nearest" }); }
  $("title").textContent = `${image}  ${sec.top_m === null ? "(no depths)" : fmt(sec.top_m, 2) + "-" + fmt(sec.bottom_m, 2) + " m"}` +
    (sec.alignment ? `  log shift ${fmt(sec.alignment.shift_mm, 2)} mm (conf. ${fmt(sec.alignment.confidence, 2)})` : "");
  updateSectionRow(sec.counts);
  layout();
  buildOverview();
  const f = filters();
  const pool = state.dets.filter((d) => detMatches(d, f));
  const pick = selectWhich === "last" ? pool[pool.length - 1] : pool[0];
  state.selId = pick ? pick.id : null;
  drawBoxes();
  if (pick) centreOn(pick); else $("scroller").scrollTop = 0;
  state.pendingFirstView = { t0, tJson, image };
  renderVisible();
  showCurrent();
  say(state.dets.length ? `${state.dets.length} detection(s); ${pool.length} match the filters` : "no detection in this section: drag on the core to add a missed layer");
  document.body.dataset.state = "ready";
}

function layout() {
  const m = state.sec.meta;
  const h = m.height * state.zoom, w = (m.col1 - m.col0) * state.zoom;
  $("content").style.height = h + "px";
  for (const id of ["ruler", "log-lane", "truth-lane"]) $(id).style.height = h + "px";
  $("log-lane").style.display = state.sec.labels.length || state.sec.alignment ? "" : "none";
  $("truth-lane").style.display = state.sec.truth.length ? "" : "none";
  $("core").style.height = h + "px";
  $("core").style.width = w + "px";
  $("zoom-label").textContent = state.zoom >= 1 ? `${state.zoom}x` : `1/${Math.round(1 / state.zoom)}`;
  $("tiles").classList.toggle("pixelated", state.zoom >= 2);
  $("tiles").innerHTML = "";
  state.tiles = new Map();
  $("ruler").innerHTML = "";
  drawLanes();
}

function level() {
  const n = state.sec.meta.levels.length;
  return Math.max(0, Math.min(n - 1, Math.floor(Math.log2(1 / state.zoom) + 1e-9)));
}

function renderVisible() {
  if (!state.sec) return;
  const sc = $("scroller");
  const m = state.sec.meta, z = level(), lv = m.levels[z], f = 2 ** z;
  const r0 = sc.scrollTop / state.zoom, r1 = (sc.scrollTop + sc.clientHeight) / state.zoom;
  const pad = (r1 - r0) * 0.5;
  const tileImageRows = m.tile_rows * f;
  const i0 = Math.max(0, Math.floor((r0 - pad) / tileImageRows));
  const i1 = Math.min(lv.tiles - 1, Math.floor((r1 + pad) / tileImageRows));
  const want = new Set();
  const w = (m.col1 - m.col0) * state.zoom;
  const first = state.pendingFirstView;
  const visible = [];
  for (let i = i0; i <= i1; i++) {
    const key = `${z}/${i}`;
    want.add(key);
    let img = state.tiles.get(key);
    if (!img) {
      img = new Image();
      img.decoding = "async";
      const rows = Math.min(m.tile_rows, lv.rows - i * m.tile_rows);
      img.style.top = i * tileImageRows * state.zoom + "px";
      img.style.height = rows * f * state.zoom + "px";
      img.style.width = w + "px";
      img.src = `/api/tiles/${encodeURIComponent(state.image)}/${z}/${i}.jpg`;
      $("tiles").appendChild(img);
      state.tiles.set(key, img);
    }
    const top = i * tileImageRows, bottom = top + tileImageRows;
    if (bottom > r0 && top < r1) visible.push(img);
  }
  for (const [key, img] of state.tiles) if (!want.has(key)) { img.remove(); state.tiles.delete(key); }
  if (first) {
    state.pendingFirstView = null;
    const loaded = visible.map((img) => new Promise((ok) => { if (img.complete) ok(); else { img.addEventListener("load", ok); img.addEventListener("error", ok); } }));
    let tLoaded = 0;
    Promise.all(loaded).then(() => { tLoaded = performance.now(); })
      .then(() => Promise.all(visible.map((img) => (img.decode ? img.decode() : Promise.resolve()).catch(() => {}))))
      .then(() => new Promise((ok) => requestAnimationFrame(() => ok()))) // drawn
      .then(() => {
        const now = performance.now();
        window.__timings.push({ image: first.image, json_ms: first.tJson - first.t0, tiles_loaded_ms: tLoaded - first.t0,
          view_ms: now - first.t0, tiles: visible.length });
      });
  }
  drawRuler(r0 - pad, r1 + pad);
  drawViewport();
}

function drawRuler(r0, r1) {
  const ruler = $("ruler");
  ruler.innerHTML = "";
  if (!state.sec.scale) return;
  const pxPerM = state.sec.scale.px_per_m * state.zoom;
  const steps = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1];
  const step = steps.find((s) => s * pxPerM >= 8) || 1;
  const major = steps.find((s) => s >= step * 2 && s * pxPerM >= 50) || step * 10;
  const d0 = Math.max(depthOfRow(Math.max(0, r0)), state.sec.scale.top_m - 0.05);
  const d1 = Math.min(depthOfRow(Math.min(state.sec.meta.height, r1)), state.sec.scale.bottom_m + 0.05);
  const digits = major >= 0.01 ? 2 : major >= 0.001 ? 3 : 4;
  let html = "";
  for (let k = Math.ceil(d0 / step - 1e-9); k * step <= d1; k++) {
    const d = k * step, y = yOfDepth(d);
    const isMajor = Math.abs(d / major - Math.round(d / major)) < 1e-6;
    html += `<div class="t${isMajor ? " major" : ""}" style="top:${y}px"></div>`;
    if (isMajor) html += `<div class="l" style="top:${y}px">${d.toFixed(digits)}</div>`;
  }
  ruler.innerHTML = html;
}

function drawLanes() {
  const lane = (id, items, cls) => {
    $(id).innerHTML = items.map((f) => {
      const y0 = yOfDepth(f.depth_from_m), y1 = yOfDepth(f.depth_to_m);
      const point = f.depth_to_m - f.depth_from_m < 1e-7;
      const ignore = f.type === "uncertain" || f.type === "bubble_free";
      const title = `${f.raw_type || f.type} ${f.depth_from_m.toFixed(4)}${point ? "" : "-" + f.depth_to_m.toFixed(4)} m${f.line ? " (log row " + f.line + ")" : ""}`;
      return `<div class="f${point ? " point" : ""}${ignore ? " ignore" : ""} ${cls}" style="top:${y0}px;height:${Math.max(2, y1 - y0)}px" title="${esc(title)}"></div>`;
    }).join("");
  };
  if (!state.sec.scale) { $("log-lane").innerHTML = $("truth-lane").innerHTML = ""; return; }
  lane("log-lane", state.sec.labels, "log");
  lane("truth-lane", state.sec.truth, "truth");
}

function drawBoxes() {
  const html = state.dets.map((d) => {
    const [r0, r1] = detRows(d);
    const y0 = r0 * state.zoom, h = Math.max(3, (r1 - r0) * state.zoom);
    const kind = d.type === "melt_lens" ? "lens" : "layer";
    const score = d.score === null ? "" : " " + d.score.toFixed(2);
    return `<div class="det ${d.type} ${d.status}${d.id === state.selId ? " sel" : ""}" data-id="${d.id}" style="top:${y0}px;height:${h}px">` +
      `<span class="lbl">${kind}${score}${d.status === "unreviewed" ? "" : " \u00b7 " + d.status}</span>` +
      `<div class="h top" data-edge="top"></div><div class="h bot" data-edge="bot"></div></div>`;
  }).join("");
  $("boxes").innerHTML = html;
}

function buildOverview() {
  const m = state.sec.meta, z = m.levels.length - 1, lv = m.levels[z];
  const ov = $("overview"), h = ov.clientHeight;
  const scale = h / m.height; // overview px per image row
  let html = "";
  for (let i = 0; i < lv.tiles; i++) {
    const rows = Math.min(m.tile_rows, lv.rows - i * m.tile_rows);
    html += `<img src="/api/tiles/${encodeURIComponent(state.image)}/${z}/${i}.jpg" style="height:${rows * 2 ** z * scale}px" alt="">`;
  }
  $("ov-tiles").innerHTML = html;
  state.ovScale = scale;
  drawOverviewMarks();
}

function drawOverviewMarks() {
  if (!state.sec) return;
  const colours = { unreviewed: "#fc5", accepted: "#5d5", edited: "#4dd", added: "#e6e", rejected: "#e55" };
  $("ov-marks").innerHTML = state.dets.map((d) => {
    const [r0] = detRows(d);
    return `<div style="top:${r0 * state.ovScale}px;background:${colours[d.status]}"></div>`;
  }).join("");
  drawViewport();
}

function drawViewport() {
  if (!state.sec || !state.ovScale) return;
  const sc = $("scroller"), v = $("ov-view");
  v.style.top = (sc.scrollTop / state.zoom) * state.ovScale + "px";
  v.style.height = Math.max(2, (sc.clientHeight / state.zoom) * state.ovScale) + "px";
}

function centreOn(d) {
  const [r0, r1] = detRows(d);
  const sc = $("scroller");
  sc.scrollTop = Math.max(0, ((r0 + r1) / 2) * state.zoom - sc.clientHeight / 2);
}

function selected() { return state.dets.find((d) => d.id === state.selId) || null; }

function showCurrent() {
  const d = selected();
  if (!d) { $("current").textContent = ""; $("note").value = ""; return; }
  const n = state.dets.indexOf(d) + 1;
  $("current").textContent = `#${n}/${state.dets.length} ${d.type === "melt_lens" ? "lens" : "layer"} ` +
    `${fmt(d.depth_from_m, 4)}-${fmt(d.depth_to_m, 4)} m (${fmt(d.thickness_mm, 2)} mm) ` +
    `score ${d.score === null ? "-" : d.score.toFixed(2)} \u00b7 ${d.status}`;
  if (document.activeElement !== $("note")) $("note").value = d.note || "";
}

function select(d, centre = true) {
  state.selId = d ? d.id : null;
  drawBoxes();
  if (d && centre) {
    const [r0, r1] = detRows(d);
    const sc = $("scroller"), y0 = r0 * state.zoom, y1 = r1 * state.zoom;
    if (y0 < sc.scrollTop + 40 || y1 > sc.scrollTop + sc.clientHeight - 40) centreOn(d);
  }
  showCurrent();
}

// ---- navigation and decisions ------------------------------------------------------------------------

function visibleSections() {
  const f = filters();
  return state.sections.filter((c) => sectionMatches(c, f) || c.image === state.image);
}

async function step(dir) {
  const f = filters();
  const d = selected();
  const pool = state.dets.filter((x) => detMatches(x, f) || (d && x.id === d.id));
  let i = d ? pool.findIndex((x) => x.id === d.id) : (dir > 0 ? -1 : pool.length);
  const next = pool[i + dir];
  if (next && next !== d) { select(next); return; }
  await stepSection(dir, true);
}

async function stepSection(dir, needMatch = false) {
  const f = filters();
  const list = visibleSections();
  let i = list.findIndex((c) => c.image === state.image);
  for (i += dir; i >= 0 && i < list.length; i += dir) {
    const c = list[i];
    if (!needMatch || ((f.unreviewed || f.low || f.type) ? sectionMatches(c, f) : c.unreviewed + c.accepted + c.edited + c.rejected + c.added > 0)) {
      await openSection(c.image, dir > 0 ? "first" : "last");
      return;
    }
  }
  say(dir > 0 ? "no more sections in this direction (with the filters)" : "at the first section");
}

function snapshot(d) {
  return { status: d.status, depth_from_m: d.depth_from_m, depth_to_m: d.depth_to_m, type: d.type, note: d.note || "" };
}

async function decide(changes, advance = false) {
  const d = selected();
  if (!d) { say("no detection selected"); return; }
  state.undo.push({ id: d.id, prev: snapshot(d), added: false });
  const p = send(`/api/decisions/${d.id}`, changes);
  if (advance) await step(+1);
  return p;
}

function nudge(edge, deltaM) {
  const d = selected();
  if (!d || d.depth_from_m === null) { say("select a detection with depths first"); return; }
  let a = d.depth_from_m, b = d.depth_to_m;
  if (edge === "top") a = Math.round((a + deltaM) * 1e6) / 1e6; else b = Math.round((b + deltaM) * 1e6) / 1e6;
  if (b - a < 0.00005 && d.type === "melt_layer") { say("the boundaries would cross"); return; }
  if (b < a) { say("the boundaries would cross"); return; }
  const prev = snapshot(d);
  Object.assign(d, { depth_from_m: a, depth_to_m: b, thickness_mm: (b - a) * 1000 });
  drawBoxes(); showCurrent();
  state.undo.push({ id: d.id, prev, added: false });
  return send(`/api/decisions/${d.id}`, edge === "top" ? { depth_from_m: a } : { depth_to_m: b });
}

function toggleType() {
  const d = selected();
  if (!d) return;
  return decide({ type: d.type === "melt_lens" ? "melt_layer" : "melt_lens" });
}

async function undo() {
  const u = state.undo.pop();
  if (!u) { say("nothing to undo"); return; }
  if (u.added) await send(`/api/decisions/${u.id}`, { status: "rejected", note: "added, then undone" });
  else {
    const body = { status: u.prev.status, type: u.prev.type, note: u.prev.note };
    if (u.prev.depth_from_m !== null) { body.depth_from_m = u.prev.depth_from_m; body.depth_to_m = u.prev.depth_to_m; }
    await send(`/api/decisions/${u.id}`, body);
  }
  const d = state.dets.find((x) => x.id === u.id);
  if (d) select(d);
  say("undone");
}

async function addFeature(depthFrom, depthTo) {
  const r = await send("/api/decisions", { image: state.image, depth_from_m: depthFrom, depth_to_m: depthTo, type: "melt_layer" });
  state.undo.push({ id: r.detection.id, added: true });
  select(state.dets.find((x) => x.id === r.detection.id), false);
  say(`added a melt layer ${depthFrom.toFixed(4)}-${depthTo.toFixed(4)} m (t: make it a lens)`);
}

function setZoom(dir) {
  if (!state.sec) return;
  const i = ZOOMS.indexOf(state.zoom);
  const j = Math.max(0, Math.min(ZOOMS.length - 1, i - dir));
  if (j === i) return;
  const sc = $("scroller");
  const mid = (sc.scrollTop + sc.clientHeight / 2) / state.zoom;
  state.zoom = ZOOMS[j];
  state.zoomSet = true;
  layout();
  drawBoxes();
  drawOverviewMarks();
  sc.scrollTop = Math.max(0, mid * state.zoom - sc.clientHeight / 2);
  renderVisible();
}

// ---- mouse ---------------------------------------------------------------------------------------------

function rowAtEvent(ev) {
  const rect = $("core").getBoundingClientRect();
  return (ev.clientY - rect.top) / state.zoom;
}

function round4(m) { return Math.round(m * 1e4) / 1e4; } // 0.1 mm

function onCoreDown(ev) {
  if (ev.button !== 0 || !state.sec) return;
  const box = ev.target.closest(".det");
  if (box && ev.target.classList.contains("h")) {
    const d = state.dets.find((x) => x.id === Number(box.dataset.id));
    if (!d || !state.sec.scale) return;
    ev.preventDefault();
    const edge = ev.target.dataset.edge;
    const startRow = rowAtEvent(ev), startDepth = edge === "top" ? d.depth_from_m : d.depth_to_m;
    const move = (e) => { // the boundary moves with the mouse, from where it was grabbed
      const depth = round4(startDepth + (rowAtEvent(e) - startRow) / state.sec.scale.px_per_m);
      if (edge === "top") d.depth_from_m = Math.min(depth, d.depth_to_m - (d.type === "melt_layer" ? 0.0001 : 0));
      else d.depth_to_m = Math.max(depth, d.depth_from_m + (d.type === "melt_layer" ? 0.0001 : 0));
      drawBoxes();
    };
    const prev = snapshot(d);
    const up = (e) => {
      window.removeEventListener("mousemove", move);
      window.removeEventListener("mouseup", up);
      move(e);
      state.undo.push({ id: d.id, prev, added: false });
      d.thickness_mm = (d.depth_to_m - d.depth_from_m) * 1000;
      showCurrent();
      send(`/api/decisions/${d.id}`, edge === "top" ? { depth_from_m: d.depth_from_m } : { depth_to_m: d.depth_to_m });
    };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
    return;
  }
  if (box) {
    select(state.dets.find((x) => x.id === Number(box.dataset.id)), false);
    return;
  }
  if (!state.sec.scale) { say("this section has no depths in the manifest: nothing can be added"); return; }
  ev.preventDefault();
  const start = rowAtEvent(ev);
  const band = $("band");
  const draw = (e) => {
    const r = rowAtEvent(e), a = Math.min(start, r), b = Math.max(start, r);
    band.hidden = false;
    band.style.top = a * state.zoom + "px";
    band.style.height = Math.max(1, (b - a) * state.zoom) + "px";
  };
  const up = (e) => {
    window.removeEventListener("mousemove", draw);
    window.removeEventListener("mouseup", up);
    band.hidden = true;
    const r = rowAtEvent(e);
    if (Math.abs(r - start) * state.zoom < 3) return; // a click, not a drag
    const a = round4(depthOfRow(Math.min(start, r))), b = round4(depthOfRow(Math.max(start, r)));
    if (b > a) addFeature(a, b);
  };
  window.addEventListener("mousemove", draw);
  window.addEventListener("mouseup", up);
}

function onOverview(ev) {
  if (!state.sec) return;
  const rect = $("overview").getBoundingClientRect();
  const row = (ev.clientY - rect.top) / state.ovScale;
  const sc = $("scroller");
  sc.scrollTop = Math.max(0, row * state.zoom - sc.clientHeight / 2);
}

// ---- keys ----------------------------------------------------------------------------------------------

function onKey(ev) {
  if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") {
    if (ev.target.id === "note" && ev.key === "Enter") {
      const d = selected();
      if (d) decide({ note: $("note").value });
      ev.target.blur();
      ev.preventDefault();
    } else if (ev.key === "Escape") ev.target.blur();
    return;
  }
  if (ev.altKey || ev.metaKey) return;
  const k = ev.key;
  const big = ev.shiftKey ? 10 : 1;
  if (ev.ctrlKey) { if (k === "z" || k === "Z") { undo(); ev.preventDefault(); } return; }
  const actions = {
    j: () => step(+1), ArrowDown: () => step(+1), k: () => step(-1), ArrowUp: () => step(-1),
    "]": () => stepSection(+1), "[": () => stepSection(-1),
    a: () => decide({ status: "accepted" }, true), r: () => decide({ status: "rejected" }, true),
    w: () => nudge("top", -STEP_M * big), s: () => nudge("top", +STEP_M * big),
    e: () => nudge("bot", -STEP_M * big), d: () => nudge("bot", +STEP_M * big),
    t: () => toggleType(), u: () => undo(), "+": () => setZoom(+1), "=": () => setZoom(+1), "-": () => setZoom(-1),
    c: () => $("note").focus(),
  };
  const fn = actions[k] || actions[k.toLowerCase()];
  if (!fn) return;
  ev.preventDefault();
  Promise.resolve(fn()).catch(() => {});
}

// ---- start ---------------------------------------------------------------------------------------------

async function poll() {
  try {
    const v = (await api("/api/version")).version;
    if (v > state.version) { // another tab or server changed the decisions
      state.version = v;
      await loadList();
      if (state.image) {
        const sec = await api(`/api/sections/${encodeURIComponent(state.image)}`);
        state.dets = sec.detections.slice(); sortDets(); drawBoxes(); drawOverviewMarks(); showCurrent();
      }
    }
  } catch (e) { /* the server may be restarting */ }
}

async function start() {
  document.addEventListener("keydown", onKey);
  $("scroller").addEventListener("scroll", () => requestAnimationFrame(renderVisible), { passive: true });
  $("core").addEventListener("mousedown", onCoreDown);
  $("overview").addEventListener("mousedown", onOverview);
  $("sections").addEventListener("click", (ev) => { const tr = ev.target.closest(".srow[data-image]"); if (tr) openSection(tr.dataset.image); });
  for (const id of ["f-unreviewed", "f-low", "f-type"]) $(id).addEventListener("change", () => { renderList(); $(id).blur(); });
  $("zoom-in").onclick = () => setZoom(+1);
  $("zoom-out").onclick = () => setZoom(-1);
  $("b-accept").onclick = () => decide({ status: "accepted" }, true);
  $("b-reject").onclick = () => decide({ status: "rejected" }, true);
  $("b-type").onclick = () => toggleType();
  $("b-undo").onclick = () => undo();
  $("bright").oninput = () => { $("tiles").style.filter = `brightness(${$("bright").value})`; };
  window.addEventListener("resize", () => { if (state.sec) { buildOverview(); renderVisible(); } });
  try {
    await loadList();
  } catch (e) { say(e.message, true); return; }
  const first = state.sections.find((c) => c.unreviewed > 0) || state.sections[0];
  if (first) await openSection(first.image);
  else { say("no section to review"); document.body.dataset.state = "ready"; }
  setInterval(poll, 4000);
}

start();
