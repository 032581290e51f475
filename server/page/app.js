// The companion page: pair with the token, drive a recording, watch it live, launch training, plot the loss.
// Plain JS, no build step. Every server-provided string goes through textContent (never innerHTML).
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "vrcap.token";
const $ = (id) => document.getElementById(id);
let token = localStorage.getItem(TOKEN_KEY) || "";
let current = null; // the latest recording status
let socket = null;
let watchedJob = null;

function say(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) showPairing("The token was refused: pair again.");
  if (!res.ok) throw new Error((data.detail || res.statusText) + (data.fix ? " — " + data.fix : ""));
  return data;
}

// --- pairing -------------------------------------------------------------------------------------------

function tokenFromHash() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!m) return null;
  history.replaceState(null, "", location.pathname); // keep the token out of the address bar and history
  return decodeURIComponent(m[1]);
}

function showPairing(message) {
  $("main").hidden = true;
  $("pair-panel").hidden = false;
  if (message) say("pair-msg", message, true);
  if (socket) socket.close();
}

async function pair(candidate) {
  token = candidate.trim();
  try {
    await api("GET", "/recordings/current");
  } catch (err) {
    showPairing("Pairing failed: " + err.message);
    return;
  }
  localStorage.setItem(TOKEN_KEY, token);
  $("pair-panel").hidden = true;
  $("main").hidden = false;
  connectLive();
  refreshSessions();
  refreshTraining();
}

// --- live recording stats ------------------------------------------------------------------------------

function connectLive() {
  if (socket) socket.close();
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + API + "/recordings/live");
  socket = ws;
  ws.onopen = () => ws.send(JSON.stringify({ token })); // browsers cannot set headers on a WebSocket
  ws.onmessage = (ev) => {
    showStatus(JSON.parse(ev.data));
  };
  ws.onclose = (ev) => {
    $("conn").textContent = "offline";
    $("conn").className = "pill";
    if (socket !== ws) return;
    if (ev.code === 4401) showPairing("The token was refused: pair again.");
    else setTimeout(connectLive, 2000);
  };
}

function showStatus(status) {
  const was = current && current.state;
  current = status;
  const s = status.stats;
  const running = status.state === "recording" || status.state === "starting";
  $("rec-state").textContent = status.state;
  $("rec-session").textContent = status.session || "";
  $("frames").textContent = s ? String(s.frames) : "0";
  $("elapsed").textContent = s ? s.elapsed_s.toFixed(1) + " s" : "0.0 s";
  $("drops").textContent = s ? String(s.total_drops) : "0";
  const perStream = s ? Object.entries(s.drops).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n) : [];
  $("drops-detail").textContent = perStream.length ? "dropped: " + perStream.join(", ") : "";
  const db = s && s.audio_dbfs !== null ? s.audio_dbfs : null;
  $("audio-db").textContent = db === null ? "–" : db.toFixed(1) + " dBFS";
  $("audio-bar").style.width = db === null ? "0%" : Math.max(0, Math.min(100, ((db + 60) / 60) * 100)) + "%";
  $("start").disabled = running;
  $("stop").disabled = !running;
  $("conn").className = running ? "pill rec" : "pill on";
  $("conn").textContent = running ? "● REC" : "live";
  if (was && was !== status.state) refreshSessions(); // a session appears, or its status changes
}

async function startRecording() {
  const name = $("session").value.trim() || defaultSessionName();
  say("rec-msg", "starting…");
  try {
    const status = await api("POST", "/recordings", { session: name, source: "sim" });
    showStatus(status);
    say("rec-msg", "recording " + status.session);
    $("session").value = "";
  } catch (err) {
    say("rec-msg", err.message, true);
  }
}

async function stopRecording() {
  if (!current || !current.id) return;
  say("rec-msg", "stopping…");
  try {
    const status = await api("POST", "/recordings/" + encodeURIComponent(current.id) + "/stop");
    showStatus(status);
    const r = status.result;
    say("rec-msg", r ? "saved " + status.session + ": " + r.frames + " frames" : "stopped");
    refreshSessions();
  } catch (err) {
    say("rec-msg", err.message, true);
  }
}

function defaultSessionName() {
  const d = new Date();
  const p = (n) => String(n).padStart(2, "0");
  return `session-${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

async function annotate() {
  const text = $("note").value.trim();
  if (!text) return say("note-msg", "write something first", true);
  if (!current || !current.id) return say("note-msg", "start a recording first", true);
  try {
    await api("POST", "/recordings/" + encodeURIComponent(current.id) + "/annotations", {
      text, kind: $("note-kind").value, channel: $("note-channel").value,
    });
    say("note-msg", "added: " + text);
    $("note").value = "";
  } catch (err) {
    say("note-msg", err.message, true);
  }
}

// --- sessions ------------------------------------------------------------------------------------------

async function refreshSessions() {
  try {
    const data = await api("GET", "/sessions");
    const list = $("sessions");
    list.replaceChildren();
    for (const s of data.sessions.slice().reverse()) {
      const li = document.createElement("li");
      li.dataset.session = s.name;
      const text = document.createElement("span");
      text.textContent = `${s.name} · ${s.duration_s.toFixed(1)} s · ${s.frames} frames · ${s.status}`;
      li.append(text);
      if (!s.recording) {
        const convert = document.createElement("button");
        convert.textContent = "Convert";
        convert.onclick = () => convertSession(s.name);
        li.append(convert);
      }
      list.append(li);
    }
    if (!data.sessions.length) list.textContent = "no sessions yet";
  } catch (err) {
    $("sessions").textContent = err.message;
  }
}

async function convertSession(name) {
  try {
    const job = await api("POST", "/jobs/replay", { session: name });
    say("train-msg", "converting " + name + " (" + job.id + ")");
    refreshTraining();
  } catch (err) {
    say("train-msg", err.message, true);
  }
}

// --- training ------------------------------------------------------------------------------------------

function fillSelect(id, values) {
  const sel = $(id);
  const keep = sel.value;
  sel.replaceChildren(...values.map((v) => Object.assign(document.createElement("option"), { value: v, textContent: v })));
  if (values.includes(keep)) sel.value = keep;
}

async function refreshTraining() {
  try {
    const [configs, datasets, jobs] = await Promise.all([
      api("GET", "/jobs/configs"), api("GET", "/datasets"), api("GET", "/jobs?limit=10"),
    ]);
    fillSelect("train-config", configs.configs);
    if (configs.configs.includes("tiny") && !$("train-config").dataset.touched) $("train-config").value = "tiny";
    fillSelect("train-dataset", datasets.datasets);
    const list = $("jobs");
    list.replaceChildren();
    for (const job of jobs.jobs) {
      const li = document.createElement("li");
      const text = document.createElement("span");
      text.textContent = `${job.kind} ${job.id} · ${job.state}` + (job.error ? " · " + job.error : "");
      li.append(text);
      if (job.kind === "train") {
        const watch = document.createElement("button");
        watch.textContent = "Loss";
        watch.onclick = () => { watchedJob = job.id; plotLoss(); };
        li.append(watch);
      }
      if (job.state === "running") {
        const cancel = document.createElement("button");
        cancel.textContent = "Cancel";
        cancel.onclick = () => api("POST", "/jobs/" + job.id + "/cancel").then(refreshTraining, (e) => say("train-msg", e.message, true));
        li.append(cancel);
      }
      list.append(li);
    }
  } catch (err) {
    say("train-msg", err.message, true);
  }
}

async function train() {
  const body = { config: $("train-config").value, dataset: $("train-dataset").value };
  const steps = parseInt($("train-steps").value, 10);
  if (steps > 0) body.max_steps = steps;
  if (!body.dataset) return say("train-msg", "convert a session first (Convert in the sessions list)", true);
  try {
    const job = await api("POST", "/jobs/train", body);
    watchedJob = job.id;
    say("train-msg", "training " + job.id);
    refreshTraining();
    plotLoss();
  } catch (err) {
    say("train-msg", err.message, true);
  }
}

async function plotLoss() {
  if (!watchedJob) return;
  let points = [];
  try {
    points = (await api("GET", "/jobs/" + watchedJob + "/metrics?limit=2000")).points;
  } catch (err) {
    return say("loss-label", err.message, true);
  }
  const series = points.filter((p) => typeof p["loss/total"] === "number" && typeof p.step === "number");
  const canvas = $("loss");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (series.length === 0) return say("loss-label", watchedJob + ": no metrics yet");
  const xs = series.map((p) => p.step), ys = series.map((p) => p["loss/total"]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) || 1], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const pad = 24, w = canvas.width - 2 * pad, h = canvas.height - 2 * pad;
  const X = (x) => pad + (x1 === x0 ? w / 2 : ((x - x0) / (x1 - x0)) * w);
  const Y = (y) => pad + (y1 === y0 ? h / 2 : (1 - (y - y0) / (y1 - y0)) * h);
  g.strokeStyle = "#2f81f7";
  g.lineWidth = 3;
  g.beginPath();
  series.forEach((p, i) => (i ? g.lineTo : g.moveTo).call(g, X(p.step), Y(p["loss/total"])));
  g.stroke();
  const last = series[series.length - 1];
  say("loss-label", `${watchedJob}: step ${last.step}, loss ${last["loss/total"].toFixed(4)} (min ${y0.toFixed(4)}, max ${y1.toFixed(4)})`);
}

// --- wiring --------------------------------------------------------------------------------------------

window.addEventListener("DOMContentLoaded", () => {
  $("pair").onclick = () => pair($("token").value);
  $("token").addEventListener("keydown", (e) => { if (e.key === "Enter") pair($("token").value); });
  $("start").onclick = startRecording;
  $("stop").onclick = stopRecording;
  $("annotate").onclick = annotate;
  $("note").addEventListener("keydown", (e) => { if (e.key === "Enter") annotate(); });
  $("refresh").onclick = refreshSessions;
  $("train").onclick = train;
  $("train-config").onchange = () => { $("train-config").dataset.touched = "1"; };
  setInterval(() => { if (!$("main").hidden) { refreshTraining(); plotLoss(); } }, 3000);
  // A pairing URL opened in a tab already showing the page changes only the hash: no new load.
  window.addEventListener("hashchange", () => { const t = tokenFromHash(); if (t) pair(t); });
  const fromHash = tokenFromHash();
  if (fromHash) pair(fromHash);
  else if (token) pair(token);
});
