// Jobs you can follow: convert and train with labelled controls, a jobs list (kind, config, input, state,
// duration), the followed job's log as it grows, its loss per modality on canvas, and its latest validation
// beside the baselines measured on the same windows.
"use strict";

const Jobs = (() => {
  const $ = (id) => document.getElementById(id);
  const OUTPUTS = ["animation", "audio", "internal_text", "external_text"];
  const BASELINES = { hold: "holding still", const_vel: "constant velocity", repeat_last: "repeating the last sound", no_text: "saying nothing" };
  let followed = null; // job id
  let followedState = null;
  let finalPolls = 0; // one more poll once the job has ended: its last log lines and metrics
  let lastJobs = [];
  let datasetTouched = false;

  function say(text, isError = false) {
    $("train-msg").textContent = text;
    $("train-msg").classList.toggle("error", isError);
  }

  function fillSelect(id, values, wanted) {
    const sel = $(id);
    const keep = sel.value;
    sel.replaceChildren(...values.map((v) => Object.assign(document.createElement("option"), { value: v, textContent: v })));
    if (wanted && values.includes(wanted)) sel.value = wanted;
    else if (values.includes(keep)) sel.value = keep;
  }

  // The newest dataset: the output of the latest conversion that succeeded, else the last name listed.
  function newestDataset(datasets, jobs) {
    const done = jobs.find((j) => j.kind === "replay" && j.state === "succeeded" && datasets.includes(j.params.dataset));
    return done ? done.params.dataset : datasets[datasets.length - 1];
  }

  function duration(job) {
    const start = Date.parse(job.created_utc);
    const end = job.finished_utc ? Date.parse(job.finished_utc) : Date.now();
    return Number.isFinite(start) && Number.isFinite(end) ? Words.seconds(Math.max(0, (end - start) / 1000)) : "–";
  }

  function overrides(o) {
    const items = Object.entries(o || {});
    return items.length ? items.map(([k, v]) => k + " " + v).join(", ") : "default";
  }

  const STATE_WORDS = { running: "running", succeeded: "done", failed: "failed", cancelled: "cancelled" };

  async function refresh() {
    try {
      const [configs, datasets, jobs] = await Promise.all([
        App.api("GET", "/jobs/configs"), App.api("GET", "/datasets"), App.api("GET", "/jobs?limit=10"),
      ]);
      lastJobs = jobs.jobs;
      fillSelect("train-config", configs.configs, $("train-config").dataset.touched ? null : "tiny");
      fillSelect("train-dataset", datasets.datasets, datasetTouched ? null : newestDataset(datasets.datasets, jobs.jobs));
      $("train-dataset-empty").hidden = datasets.datasets.length > 0;
      renderJobs(jobs.jobs);
    } catch (err) {
      if (!err.offline) say(Words.explain(err, "listing the jobs"), true);
    }
  }

  function cell(cls, text) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    return span;
  }

  function renderJobs(jobs) {
    const list = $("jobs");
    list.replaceChildren();
    for (const job of jobs) {
      const li = document.createElement("li");
      li.dataset.job = job.id;
      li.classList.toggle("followed", job.id === followed);
      const p = job.params || {};
      const info = document.createElement("div");
      info.className = "job-info";
      info.append(
        cell("job-kind", job.kind === "replay" ? "convert" : "train"),
        cell("job-config", job.kind === "train" ? "config " + p.config + (p.max_steps ? ", " + p.max_steps + " steps" : "") : "config " + overrides(p.overrides)),
        cell("job-input", job.kind === "train" ? "dataset " + p.dataset : "session " + p.session + " → dataset " + p.dataset),
        cell("job-state state-" + job.state, STATE_WORDS[job.state] || job.state),
        cell("job-duration", duration(job)),
      );
      li.append(info);
      const actions = document.createElement("div");
      actions.className = "row job-actions";
      const follow = document.createElement("button");
      follow.textContent = job.id === followed ? "Following" : "Follow";
      follow.setAttribute("aria-label", follow.textContent + " the " + (job.kind === "replay" ? "conversion of " + p.session : "training on " + p.dataset));
      follow.onclick = () => followJob(job.id);
      actions.append(follow);
      if (job.state === "running") {
        const cancel = document.createElement("button");
        cancel.className = "danger";
        cancel.textContent = "Cancel";
        cancel.onclick = () => cancelJob(job.id);
        actions.append(cancel);
      }
      li.append(actions);
      if (job.error) li.append(cell("small job-error", Words.clean(job.error)));
      list.append(li);
      if (job.id === followed) followedState = job.state;
    }
    if (!jobs.length) list.append(Object.assign(document.createElement("li"), { textContent: "No jobs yet." }));
  }

  async function cancelJob(id) {
    try {
      await App.api("POST", "/jobs/" + encodeURIComponent(id) + "/cancel");
      say("Cancelled.");
    } catch (err) {
      say(Words.explain(err, "cancelling the job"), true);
    }
    refresh();
  }

  async function convert(name) {
    try {
      const job = await App.api("POST", "/jobs/replay", { session: name });
      say("Converting " + name + ".");
      datasetTouched = false;
      followJob(job.id);
      refresh();
    } catch (err) {
      say(Words.explain(err, "converting " + name), true);
    }
  }

  // Steps: a whole number from 1 up. Zero or empty is refused here, as the server refuses it: it never means
  // "train the config's full length".
  function steps() {
    const raw = $("train-steps").value.trim();
    const n = Number(raw);
    return raw !== "" && Number.isInteger(n) && n >= 1 && n <= 10_000_000 ? n : null;
  }

  async function train() {
    const n = steps();
    if (n === null) {
      $("train-steps").setAttribute("aria-invalid", "true");
      return say("Steps must be a whole number of 1 or more.", true);
    }
    $("train-steps").removeAttribute("aria-invalid");
    const dataset = $("train-dataset").value;
    if (!dataset) return say("There is nothing to train on yet: convert a session first.", true);
    try {
      const job = await App.api("POST", "/jobs/train", { config: $("train-config").value, dataset, max_steps: n });
      say("Training on " + dataset + " for " + n + " steps.");
      followJob(job.id);
      refresh();
    } catch (err) {
      say(Words.explain(err, "starting the training"), true);
    }
  }

  // --- the followed job: log, loss, validation ----------------------------------------------------------

  function followJob(id) {
    followed = id;
    followedState = "running";
    finalPolls = 0;
    $("follow-card").hidden = false;
    $("follow-card").dataset.job = id;
    $("job-log").textContent = "";
    $("follow-title").textContent = "Following job " + id;
    poll();
  }

  let polling = false;
  async function poll() {
    if (!followed || polling) return;
    polling = true;
    const id = followed;
    try {
      const [job, log, metrics] = await Promise.all([
        App.api("GET", "/jobs/" + encodeURIComponent(id)),
        App.api("GET", "/jobs/" + encodeURIComponent(id) + "/log?tail=300"),
        App.api("GET", "/jobs/" + encodeURIComponent(id) + "/metrics?limit=2000"),
      ]);
      if (id !== followed) return;
      followedState = job.state;
      const kind = job.kind === "replay" ? "Conversion" : "Training";
      $("follow-title").textContent = `${kind} ${job.id}: ${STATE_WORDS[job.state] || job.state} after ${duration(job)}`;
      $("follow-card").dataset.state = job.state;
      showLog(log.lines);
      $("loss-block").hidden = job.kind !== "train";
      if (job.kind === "train") { plotLoss(metrics.points); showValidation(metrics.points); }
    } catch (err) {
      if (!err.offline) $("follow-title").textContent = Words.explain(err, "following the job");
    } finally {
      polling = false;
    }
  }

  function showLog(lines) {
    const pre = $("job-log");
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8; // follow unless the reader scrolled up
    const text = lines.map(Words.clean).join("\n");
    if (pre.textContent !== text) pre.textContent = text;
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }

  function plotLoss(points) {
    const rows = points.filter((p) => typeof p.step === "number");
    const series = [];
    for (const out of [...OUTPUTS, "total"]) {
      const train = rows.filter((p) => typeof p["loss/" + out] === "number");
      if (train.length) series.push({ name: out.replace("_", " "), xs: train.map((p) => p.step), ys: train.map((p) => p["loss/" + out]), width: out === "total" ? 3 : 2 });
    }
    const val = rows.filter((p) => typeof p["val/loss/total"] === "number");
    if (val.length) series.push({ name: "validation total", xs: val.map((p) => p.step), ys: val.map((p) => p["val/loss/total"]), dots: true, color: "#f0f6fc" });
    $("loss").dataset.curves = String(series.length);
    if (!series.length) {
      Charts.plot($("loss"), { x: { label: "step", min: 0, max: 1 }, y: { label: "loss", min: 0, max: 1 }, series: [], legend: false });
      $("loss-label").textContent = "No losses yet: the first arrive after a few steps.";
      return;
    }
    Charts.plot($("loss"), { x: { label: "step" }, y: { label: "loss", min: 0 }, series });
    const last = rows.filter((p) => typeof p["loss/total"] === "number").pop();
    $("loss-label").textContent = last ? `step ${last.step}: total loss ${last["loss/total"].toFixed(3)}` : "";
  }

  function metricWords(name) {
    const m = /^(\w+)\/(\w+?)_(pos_mm|rot_deg)@([\d.]+)s$/.exec(name);
    if (m) return `${m[2]} ${m[3] === "pos_mm" ? "position error (mm)" : "turn error (degrees)"} ${m[4]} s ahead`;
    if (/^audio\/logmel_mse@/.test(name)) return "sound error " + name.split("@")[1].replace(/s$/, " s") + " ahead";
    if (name === "audio/logmel_mse") return "sound error";
    const t = /^(\w+)_text\/when_accuracy$/.exec(name);
    if (t) return `${t[1]} text: right about when (accuracy)`;
    return name.replace(/[/_]/g, " ");
  }

  function showValidation(points) {
    const last = points.filter((p) => Object.keys(p).some((k) => k.startsWith("val/"))).pop();
    const table = $("val-table");
    table.replaceChildren();
    table.closest(".table-wrap").hidden = !last;
    if (!last) { $("val-label").textContent = "No validation yet."; return; }
    $("val-label").textContent = `Validation at step ${last.step}, beside the baselines on the same windows:`;
    const names = Object.keys(last).filter((k) => k.startsWith("val/") && !k.includes("|") && !k.startsWith("val/loss/"));
    for (const key of names.sort()) {
      const name = key.slice(4);
      const higher = name.endsWith("accuracy");
      const tr = document.createElement("tr");
      const bases = Object.keys(last).filter((k) => k.startsWith(key + "|"));
      const model = last[key];
      const beats = bases.every((b) => (higher ? model > last[b] : model < last[b]));
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = metricWords(name);
      const mine = document.createElement("td");
      mine.textContent = model.toFixed(higher ? 3 : 1) + (bases.length ? (beats ? " ✓ better" : " ✗ not better") : "");
      const others = document.createElement("td");
      others.textContent = bases.map((b) => `${BASELINES[b.split("|")[1]] || b.split("|")[1]} ${last[b].toFixed(higher ? 3 : 1)}`).join(", ");
      tr.append(th, mine, others);
      table.append(tr);
    }
  }

  function wire() {
    $("train").onclick = train;
    $("train-config").onchange = () => { $("train-config").dataset.touched = "1"; };
    $("train-dataset").onchange = () => { datasetTouched = true; };
    $("train-steps").addEventListener("input", () => { if (steps() !== null) $("train-steps").removeAttribute("aria-invalid"); });
    $("follow-close").onclick = () => { followed = null; $("follow-card").hidden = true; };
  }

  function tick() {
    refresh();
    if (!followed) return;
    if (followedState === "running") poll();
    else if (finalPolls < 1) { finalPolls += 1; poll(); }
  }

  return { refresh, convert, wire, tick, get followed() { return followed; } };
})();
