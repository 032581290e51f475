// The companion page: pair with the token, drive a recording and watch it live; the connection banner. Reviewing
// (review.js), jobs (jobs.js), charts (charts.js) and the page's wording of errors (words.js) live beside it.
// Plain JS, no build step. Every server-provided string goes through textContent (never innerHTML).
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "vrcap.token";
const $ = (id) => document.getElementById(id);
let token = localStorage.getItem(TOKEN_KEY) || "";
let current = null; // the latest recording status
let socket = null;
let xr = null; // the WebXRCapture.Recorder while this page records its own headset

function say(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// Every call to the API: a refused call throws an Error carrying the server's code, detail and fix; a call that
// never reached the server throws one marked `offline` and shows the banner (the page then reconnects by itself).
async function raw(path, options = {}) {
  const headers = { Authorization: "Bearer " + token, ...(options.headers || {}) };
  let res;
  try {
    res = await fetch(API + path, { ...options, headers });
  } catch (err) {
    Conn.lost();
    throw Object.assign(new Error("the server cannot be reached"), { offline: true });
  }
  if (res.ok) return res;
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) showPairing(Words.explain({ code: "unauthorized" }));
  throw Object.assign(new Error(data.detail || res.statusText), { status: res.status, code: data.error, detail: data.detail, fix: data.fix });
}

async function api(method, path, body) {
  const options = { method };
  if (body !== undefined) { options.headers = { "Content-Type": "application/json" }; options.body = JSON.stringify(body); }
  const res = await raw(path, options);
  return res.json();
}

// --- the connection: a banner, actions disabled and a retry loop while the server cannot be reached ----------

const Conn = (() => {
  let down = false;
  let timer = null;
  let attempt = 0;

  function show(isDown) {
    down = isDown;
    $("offline-banner").hidden = !isDown;
    $("controls").disabled = isDown; // a disabled fieldset disables every control inside, and gives each its own state back
    if (isDown) { $("conn").textContent = "offline"; $("conn").className = "pill"; }
  }

  function lost() {
    if (!down) show(true);
    if (!timer) timer = setTimeout(check, 1000);
  }

  async function probe() {
    try {
      return (await fetch(API + "/health", { cache: "no-store" })).ok;
    } catch (err) {
      return false;
    }
  }

  async function check() {
    timer = null;
    attempt += 1;
    const ok = await probe();
    if (!ok) {
      $("offline-retry").textContent = "Trying again… (attempt " + attempt + ")";
      timer = setTimeout(check, attempt < 10 ? 1000 : 3000); // quickly at first, then gently
      return;
    }
    attempt = 0;
    $("offline-retry").textContent = "";
    if (down) {
      show(false);
      if (token && $("main").hidden) pair(token);
      else if (token) resume();
    }
  }

  return { lost, check, probe, get down() { return down; } };
})();

function resume() {
  connectLive();
  refreshSessions();
  Jobs.refresh();
}

const App = { api, raw };

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
    if (err.offline) return; // the banner says it; pairing is tried again when the server is back
    showPairing("Pairing failed: " + (err.code === "unauthorized" ? "that token was not accepted. Paste the token the server printed when it started, or open its pairing link." : Words.explain(err)));
    return;
  }
  localStorage.setItem(TOKEN_KEY, token);
  $("pair-panel").hidden = true;
  $("main").hidden = false;
  resume();
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
    if (ev.code === 4401) showPairing(Words.explain({ code: "unauthorized" }));
    else if (!Conn.down) Conn.probe().then((ok) => (ok ? setTimeout(() => { if (socket === ws) connectLive(); }, 1000) : Conn.lost()));
  };
}

function showStatus(status) {
  const was = current && current.state;
  current = status;
  const s = status.stats;
  const running = status.state === "recording" || status.state === "starting";
  $("rec-state").textContent = status.state;
  $("rec-session").textContent = status.session || "";
  $("what").textContent = running || status.state === "stopping"
    ? "● Recording " + status.session + ": " + (status.describes || "?")
    : "Not recording. Start records " + describeChoice() + ".";
  $("what").classList.toggle("rec", running);
  $("frames").textContent = s ? String(s.frames) : "0";
  $("elapsed").textContent = s ? s.elapsed_s.toFixed(1) + " s" : "0.0 s";
  $("drops").textContent = s ? String(s.total_drops) : "0";
  const perStream = s ? Object.entries(s.drops).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n) : [];
  $("drops-detail").textContent = perStream.length ? "dropped: " + perStream.join(", ") : "";
  const db = s && s.audio_dbfs !== null ? s.audio_dbfs : null;
  $("audio-db").textContent = Words.level(db);
  $("audio-bar").style.width = db === null ? "0%" : Math.max(0, Math.min(100, ((db + 60) / 60) * 100)) + "%";
  $("start").disabled = running;
  $("stop").disabled = !running;
  $("conn").className = running ? "pill rec" : "pill on";
  $("conn").textContent = running ? "● REC" : "live";
  if (was && was !== status.state) refreshSessions(); // a session appears, or its status changes
}

// What the picker would record, in the words the server uses for a running recording.
function describeChoice() {
  const headset = { webxr: "this headset (WebXR)", "webxr-ar": "this headset (WebXR, passthrough)", openxr: "the PC's OpenXR runtime", sim: "the simulator" }[$("source").value];
  const mic = { webxr: "this headset's microphone", sim: "simulated microphone", default: "the PC's default microphone", none: "no microphone" }[$("mic").value];
  return headset + ", " + mic + ", " + ($("cams").value === "sim" ? "simulated cameras" : "no cameras");
}

// This headset when the browser can run an immersive session; the simulator (with its microphone and cameras)
// on a desktop browser. The picker, and the line above it, say which.
async function pickDefaults() {
  const set = (source, mic) => { $("source").value = source; $("mic").value = mic; syncCameras(); };
  set("sim", "sim");
  try {
    if (navigator.xr && (await navigator.xr.isSessionSupported("immersive-vr"))) set("webxr", "webxr");
  } catch (err) { /* no WebXR: keep the simulator */ }
  if (current) showStatus(current);
  else $("what").textContent = "Not recording. Start records " + describeChoice() + ".";
}

// Simulated cameras film the simulated room: they come with the simulator or OpenXR, never with this headset.
function syncCameras() {
  $("cams").value = $("source").value.startsWith("webxr") ? "none" : "sim";
}

function startBody(name) {
  const source = $("source").value.startsWith("webxr") ? "webxr" : $("source").value;
  let audio = $("mic").value;
  if (audio === "webxr" && source !== "webxr") audio = "none"; // the headset's microphone comes with its page
  const body = { session: name, source, audio };
  return body;
}

async function startRecording() {
  const name = $("session").value.trim() || defaultSessionName();
  say("rec-msg", "starting…");
  const body = startBody(name);
  let capture = null;
  try {
    if (body.source === "webxr") {
      // The XR session and the microphone need this click's user activation: open them before the POST.
      capture = new WebXRCapture.Recorder({
        token, hands: true, audio: body.audio === "webxr",
        mode: $("source").value === "webxr-ar" ? "immersive-ar" : "immersive-vr",
        onStatus: (text) => say("rec-msg", text),
        onStats: showXRStats,
        onEnd: (reason, code) => {
          xr = null;
          say("rec-msg", "headset recording ended: " + Words.clean(reason));
          // Leaving VR (the headset's menu button ends the XR session) is how a wearer stops: stop the recording.
          if (code === undefined && current && (current.state === "recording" || current.state === "starting")) stopRecording();
        },
      });
      await capture.open();
    }
    const status = await api("POST", "/recordings", body);
    if (capture) {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      capture.o.wsUrl = scheme + location.host + API + "/recordings/" + encodeURIComponent(status.id) + "/webxr";
      xr = capture;
      window.vrcapCapture = capture; // for the page's own tests and the browser console
      capture.start();
      $("xr-stats").hidden = false;
    }
    showStatus(status);
    say("rec-msg", "recording " + status.session);
    $("session").value = "";
  } catch (err) {
    if (capture) capture.stop("the recording did not start");
    say("rec-msg", Words.explain(err, "starting the recording"), true);
  }
}

function showXRStats(stats, capture) {
  showStatus(stats);
  const clock = (stats.stats && stats.stats.clocks && stats.stats.clocks.headset) || {};
  $("xr-frames").textContent = String(capture.frames);
  $("xr-drops").textContent = String(capture.dropped);
  $("xr-clock").textContent = clock.uncertainty_ms === undefined ? "–" : clock.uncertainty_ms.toFixed(1) + " ms";
  $("xr-rtt").textContent = capture.rtt === null ? "–" : capture.rtt.toFixed(1) + " ms";
}

async function stopRecording() {
  if (!current || !current.id) return;
  say("rec-msg", "stopping…");
  try {
    const status = await api("POST", "/recordings/" + encodeURIComponent(current.id) + "/stop");
    if (xr) { const capture = xr; xr = null; capture.stop("stopped", 1000); }
    showStatus(status);
    const r = status.result;
    say("rec-msg", r ? "saved " + status.session + ": " + r.frames + " frames" : "stopped");
    refreshSessions();
  } catch (err) {
    say("rec-msg", Words.explain(err, "stopping the recording"), true);
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
  if (xr) { // the headset's own recording: the note carries this page's time through the clock mapping
    xr.note(text, $("note-kind").value, $("note-channel").value);
    say("note-msg", "added: " + text);
    $("note").value = "";
    return;
  }
  try {
    await api("POST", "/recordings/" + encodeURIComponent(current.id) + "/annotations", {
      text, kind: $("note-kind").value, channel: $("note-channel").value,
    });
    say("note-msg", "added: " + text);
    $("note").value = "";
  } catch (err) {
    say("note-msg", Words.explain(err, "adding the annotation"), true);
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
      text.textContent = `${s.name} · ${Words.seconds(s.duration_s)} · ${s.frames} frames · ${s.status}`;
      li.append(text);
      if (!s.recording) {
        const actions = document.createElement("div");
        actions.className = "row job-actions";
        const review = document.createElement("button");
        review.textContent = "Review";
        review.className = "review";
        review.setAttribute("aria-label", "review " + s.name);
        review.onclick = () => Review.open(s.name);
        const convert = document.createElement("button");
        convert.textContent = "Convert";
        convert.className = "convert";
        convert.setAttribute("aria-label", "convert " + s.name + " for training");
        convert.onclick = () => Jobs.convert(s.name);
        actions.append(review, convert);
        li.append(actions);
      }
      list.append(li);
    }
    if (!data.sessions.length) list.append(Object.assign(document.createElement("li"), { textContent: "No sessions yet." }));
  } catch (err) {
    if (!err.offline) $("sessions").replaceChildren(Object.assign(document.createElement("li"), { textContent: Words.explain(err, "listing the sessions") }));
  }
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
  for (const id of ["source", "mic"]) $(id).onchange = () => { syncCameras(); if (current) showStatus(current); };
  pickDefaults();
  Jobs.wire();
  Review.wire();
  setInterval(() => { if (!$("main").hidden && !Conn.down) Jobs.tick(); }, 2000);
  // A pairing URL opened in a tab already showing the page changes only the hash: no new load.
  window.addEventListener("hashchange", () => { const t = tokenFromHash(); if (t) pair(t); });
  const fromHash = tokenFromHash();
  if (fromHash) pair(fromHash);
  else if (token) pair(token);
});
