// Review a finished session: a timeline with annotations, dropped frames and gaps; camera images at the cursor;
// head and hand paths from above and from the side; speeds; the audio level; the validation report in words;
// play at 1x. Everything comes from two bounded endpoints (overview, frame) and the session's detail.
"use strict";

const Review = (() => {
  const $ = (id) => document.getElementById(id);
  const NAMES = { head: "head", controller_left: "left controller", controller_right: "right controller", hand_left: "left hand", hand_right: "right hand" };
  const KIND_ROW = { instruction: 2.5, transcript: 1.5, marker: 0.5 };
  let data = null; // the overview
  let cursor = 0; // seconds from the first frame
  let playing = null; // {startedAt, from} while playing
  let lastDraw = 0;
  let timelineMap = null; // the timeline's x mapping, for clicks on it
  const thumbs = {}; // camera -> {busy, want, url}

  function label(name) {
    return NAMES[name] || name.replace(/_/g, " ");
  }

  async function open(name) {
    stop();
    $("review-card").hidden = false;
    $("review-name").textContent = name;
    $("review-card").dataset.session = name;
    $("review-card").dataset.ready = "";
    say("review-msg", "reading " + name + "…");
    $("review-validation").textContent = "";
    try {
      const [overview, detail] = await Promise.all([
        App.api("GET", "/sessions/" + encodeURIComponent(name) + "/overview?points=400"),
        App.api("GET", "/sessions/" + encodeURIComponent(name)),
      ]);
      data = overview;
      cursor = 0;
      $("review-pos").max = String(Math.max(1, Math.round(data.duration_s * 100)));
      $("review-pos").value = "0";
      say("review-msg", "");
      $("review-validation").textContent = validationWords(detail.validation, data);
      $("review-audio-words").textContent = audioWords(data.audio);
      listAnnotations();
      buildThumbs();
      draw(true);
      $("review-card").dataset.ready = "1";
      $("review-card").scrollIntoView({ block: "start" });
    } catch (err) {
      data = null;
      say("review-msg", Words.explain(err, "opening the session"), true);
    }
  }

  function say(id, text, isError = false) {
    $(id).textContent = text;
    $(id).classList.toggle("error", isError);
  }

  // --- the validation report in plain words ------------------------------------------------------------

  const FINDING_WORDS = {
    "missing-stream": "a stream was set up but recorded nothing",
    "audio-gap": "the sound has gaps",
    "time-backwards": "some times go backwards",
    "rate-off": "a stream came at a different rate than expected",
    "undeclared-stream": "it holds data of a stream it never announced",
    "incident": "something interrupted the recording (for example the headset disconnected)",
    "not-finalized": "the recording was not closed properly",
    "unreadable-records": "part of it cannot be read",
    "undecodable": "part of it cannot be read",
    "stats-mismatch": "its summary does not match its contents",
  };

  function validationWords(v, overview) {
    if (!v) return "Not checked yet.";
    const head = `${v.packets} frames over ${Words.seconds(v.duration_s)}`;
    const dropped = v.dropped_frames ? `${v.dropped_frames} frames were dropped` : "no frames were dropped";
    const gaps = overview.gaps.length ? `, with ${overview.gaps.length} pause${overview.gaps.length > 1 ? "s" : ""} in the recording` : "";
    const problems = [];
    for (const f of v.findings) {
      if (f.code === "dropped-frames") continue;
      const words = FINDING_WORDS[f.code] || Words.clean(f.message);
      if (!problems.includes(words)) problems.push(words);
    }
    const fixable = v.findings.some((f) => f.fixable) ? " The damaged part can be repaired on the server." : "";
    const verdict = v.valid ? "This session is complete and readable" : "This session has problems";
    return `${verdict}: ${head}; ${dropped}${gaps}.` + (problems.length ? " Also: " + problems.join("; ") + "." : "") + fixable;
  }

  function audioWords(a) {
    if (!a) return "No sound was recorded.";
    if (a.rms_dbfs_overall <= -90) return "The microphone was silent for the whole session.";
    return `Sound level ${Words.level(a.rms_dbfs_overall)} on average, loudest ${Math.round(a.peak * 100)}% of full scale.`;
  }

  function listAnnotations() {
    const list = $("review-annotations");
    list.replaceChildren();
    for (const n of data.annotations.slice(0, 100)) {
      const li = document.createElement("li");
      const jump = document.createElement("button");
      jump.className = "small-btn";
      jump.textContent = Words.seconds(n.t);
      jump.setAttribute("aria-label", "go to " + Words.seconds(n.t));
      jump.onclick = () => seek(n.t);
      const text = document.createElement("span");
      text.textContent = `${n.kind}: ${n.text}`;
      li.append(jump, text);
      list.append(li);
    }
    if (!data.annotations.length) list.append(Object.assign(document.createElement("li"), { textContent: "No annotations." }));
    else if (data.annotations_total > data.annotations.length) {
      const li = document.createElement("li");
      li.textContent = `… and ${data.annotations_total - data.annotations.length} more`;
      list.append(li);
    }
  }

  // --- camera images at the cursor --------------------------------------------------------------------

  function buildThumbs() {
    const box = $("review-thumbs");
    for (const t of Object.values(thumbs)) if (t.url) URL.revokeObjectURL(t.url);
    for (const k of Object.keys(thumbs)) delete thumbs[k];
    box.replaceChildren();
    if (!data.cameras.length) { box.textContent = "No cameras were recorded."; return; }
    for (const cam of data.cameras) {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.id = "thumb-" + cam.name;
      img.alt = label(cam.name) + " image at the cursor";
      img.width = 320;
      img.height = Math.round((320 * cam.height) / cam.width);
      const cap = document.createElement("figcaption");
      cap.textContent = label(cam.name);
      fig.append(img, cap);
      box.append(fig);
      thumbs[cam.name] = { busy: false, want: null, url: null, img, cap };
    }
    for (const cam of data.cameras) wantFrame(cam.name);
  }

  // One request in flight per camera; while it runs, only the latest wanted time is kept.
  function wantFrame(camera) {
    const t = thumbs[camera];
    if (!t) return;
    t.want = cursor;
    if (!t.busy) fetchFrame(camera);
  }

  async function fetchFrame(camera) {
    const t = thumbs[camera];
    const at = t.want;
    t.want = null;
    t.busy = true;
    try {
      const session = $("review-card").dataset.session;
      const res = await App.raw("/sessions/" + encodeURIComponent(session) + "/frame?camera=" + encodeURIComponent(camera) + "&t=" + at.toFixed(3) + "&width=320");
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      await new Promise((resolve) => { t.img.onload = t.img.onerror = resolve; t.img.src = url; });
      if (t.url) URL.revokeObjectURL(t.url);
      t.url = url;
      t.img.dataset.t = res.headers.get("X-Frame-Time") || "";
      t.cap.textContent = label(camera) + " at " + Words.seconds(parseFloat(t.img.dataset.t || at));
    } catch (err) {
      t.cap.textContent = label(camera) + ": " + Words.explain(err, "showing the image");
    } finally {
      t.busy = false;
      if (thumbs[camera] === t && t.want !== null) fetchFrame(camera);
    }
  }

  // --- drawing ----------------------------------------------------------------------------------------

  function atCursor(track) {
    let best = null;
    for (let i = 0; i < track.t.length; i++) {
      if (track.t[i] > cursor && best !== null) break;
      best = i;
    }
    return best;
  }

  function draw(all) {
    if (!data) return;
    $("review-time").textContent = Words.seconds(cursor) + " of " + Words.seconds(data.duration_s);
    const note = data.annotations.filter((n) => n.t <= cursor).pop();
    $("review-now").textContent = note ? `latest annotation: ${note.kind} "${note.text}" at ${Words.seconds(note.t)}` : "no annotation yet at this moment";
    timeline();
    const tracks = data.tracks;
    const at = tracks.map(atCursor);
    const paths = (xKey, yKey, sign) => tracks.map((tr, i) => ({
      name: label(tr.name), xs: tr[xKey].map((v) => (v === null || xKey !== "z" ? v : -v)), ys: tr[yKey].map((v) => (v === null ? v : sign * v)),
      at: at[i] === null ? null : [xKey === "z" ? -tr.z[at[i]] : tr[xKey][at[i]], sign * tr[yKey][at[i]]],
    }));
    Charts.plot($("review-top"), { x: { label: "x: right (m)" }, y: { label: "forward (m)" }, series: paths("x", "z", -1), equal: true });
    Charts.plot($("review-side"), { x: { label: "forward (m)" }, y: { label: "height (m)" }, series: paths("z", "y", 1), equal: true });
    const range = { min: 0, max: Math.max(data.duration_s, 0.1) };
    Charts.plot($("review-speed"), {
      x: { label: "time (s)", ...range }, y: { label: "speed (m/s)", min: 0 },
      series: tracks.map((tr) => ({ name: label(tr.name), xs: tr.t, ys: tr.speed, width: 2 })), cursor,
    });
    const a = data.audio;
    if (a) {
      Charts.plot($("review-audio"), {
        x: { label: "time (s)", ...range }, y: { label: "sound (full scale)", min: -1, max: 1 },
        series: [{ name: "sound", xs: a.t, ys: a.max, lo: a.min, color: Charts.COLORS[2] }], cursor,
      });
    }
    $("review-audio").hidden = !a;
    if (all || !playing) for (const cam of Object.keys(thumbs)) wantFrame(cam);
  }

  function timeline() {
    const dots = (kind) => {
      const ns = data.annotations.filter((n) => (KIND_ROW[n.kind] ? n.kind : "marker") === kind);
      return { name: kind + "s", xs: ns.map((n) => n.t), ys: ns.map(() => KIND_ROW[kind]), dots: true };
    };
    const marks = [
      ...data.gaps.map((g) => ({ x: g.t, width: g.length_s, color: "#d29922" })),
      ...data.drops.map((d) => ({ x: d.t, color: "#f85149" })),
    ];
    const series = [dots("instruction"), dots("transcript"), dots("marker")];
    if (data.drops.length) series.push({ name: `dropped frames (${data.drops.reduce((s, d) => s + d.frames, 0)})`, xs: [], ys: [], color: "#f85149" });
    if (data.gaps.length) series.push({ name: `gaps (${data.gaps.length})`, xs: [], ys: [], color: "#d29922" });
    timelineMap = Charts.plot($("review-timeline"), {
      x: { label: "time (s)", min: 0, max: Math.max(data.duration_s, 0.1) }, y: { label: "", min: 0, max: 3 },
      series, marks, cursor, yTicks: false,
    });
  }

  // --- the cursor and playing -------------------------------------------------------------------------

  function seek(t) {
    if (!data) return;
    cursor = Math.max(0, Math.min(data.duration_s, t));
    $("review-pos").value = String(Math.round(cursor * 100));
    draw(true);
  }

  function play() {
    if (!data) return;
    if (playing) return stop();
    if (cursor >= data.duration_s - 0.01) cursor = 0;
    playing = { startedAt: performance.now(), from: cursor };
    $("review-play").textContent = "❚❚ Pause";
    requestAnimationFrame(tick);
  }

  function tick(now) {
    if (!playing || !data) return;
    cursor = Math.min(data.duration_s, playing.from + (now - playing.startedAt) / 1000); // 1x: page time
    $("review-pos").value = String(Math.round(cursor * 100));
    if (now - lastDraw > 66) { // ~15 redraws a second are plenty for a cursor
      lastDraw = now;
      draw(false);
      for (const cam of Object.keys(thumbs)) wantFrame(cam);
    }
    if (cursor >= data.duration_s) { stop(); draw(true); return; }
    requestAnimationFrame(tick);
  }

  function stop() {
    playing = null;
    if ($("review-play")) $("review-play").textContent = "▶ Play";
  }

  function wire() {
    $("review-pos").addEventListener("input", () => { stop(); seek(parseInt($("review-pos").value, 10) / 100); });
    $("review-play").onclick = play;
    $("review-timeline").addEventListener("click", (ev) => { // a click on the timeline moves the cursor there
      if (!timelineMap) return;
      const box = $("review-timeline").getBoundingClientRect();
      const x = ev.clientX - box.left;
      stop();
      seek(timelineMap.x0 + ((x - timelineMap.left) / timelineMap.w) * (timelineMap.x1 - timelineMap.x0));
    });
    $("review-close").onclick = () => { stop(); data = null; $("review-card").hidden = true; };
    window.addEventListener("resize", () => draw(false));
  }

  return { open, wire, seek, get cursor() { return cursor; }, get playing() { return playing !== null; } };
})();
