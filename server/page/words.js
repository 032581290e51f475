// What the page says when something goes wrong, in its own words: never the server's paths, CLI flags or
// API wording, and the fix said once. The server's error body carries a stable `error` code; the page words
// the codes it knows and cleans the server's sentence for the rest.
"use strict";

const Words = (() => {
  // code -> [what happened, what to do] as a person using this page would put it
  const KNOWN = {
    "unauthorized": ["This page is no longer paired with the server.", "Pair again with the token the server printed."],
    "no-such-session": ["That session is no longer on the server.", "Pick one from the sessions list."],
    "session-recording": ["That session is still being recorded.", "Stop the recording first."],
    "session-in-use": ["A job is still reading that session.", "Wait for it to finish, or cancel it in the jobs list."],
    "session-exists": ["A session with that name already exists.", "Choose another session name."],
    "bad-session-name": ["That session name cannot be used.", "Use letters, digits, dots, dashes and underscores."],
    "recording-running": ["A recording is already running.", "Stop it before starting another."],
    "not-recording": ["Nothing is being recorded.", "Start a recording first."],
    "no-such-recording": ["That recording has already ended.", "Start a new recording."],
    "bad-session-data": ["The server cannot read this session: it may be damaged.", "Ask whoever runs the server to repair it."],
    "no-frame": ["No camera image near this moment.", "Move the cursor to another moment."],
    "no-such-dataset": ["That dataset has not been converted yet.", "Convert a session first and wait until it has succeeded."],
    "unknown-config": ["That training config is not on the server.", "Pick one from the list."],
    "too-many-jobs": ["The server is already running as many jobs as it allows.", "Wait for one to finish, or cancel one."],
    "no-such-job": ["That job is no longer on the server.", "Pick one from the jobs list."],
    "disk-full": ["The server's disk is full.", "Delete old sessions or datasets to make room."],
    "busy": ["The server is busy.", "Try again in a moment."],
    "too-many-connections": ["The server is busy.", "Try again in a moment."],
    "body-too-large": ["That is too much to send at once.", "Shorten it and try again."],
    "out-of-bounds": ["A value is outside what the server allows.", "Choose a smaller value."],
    "start-timeout": ["The recording did not start in time.", "Try again; if it keeps failing, restart the server."],
    "capture-failed": ["The recorder stopped with an error.", "Check the headset or microphone, then start again."],
    "not-installed": ["Training is not installed on the server.", "Ask whoever runs the server to install it."],
  };
  const GENERIC_FIX = "Try again; if it keeps failing, restart the server.";

  // Server sentences can carry its paths, `vrcap ...` commands, --flags and HTTP routes: none of it is the
  // reader's business on this page.
  function clean(text) {
    return String(text || "")
      .replace(/`[^`]*`/g, "")
      .replace(/(?:GET|POST|DELETE|PUT)\s+\/\S*/g, "")
      .replace(/Authorization:?\s*Bearer\s*\S*/gi, "")
      .replace(/\s--?[a-z][\w-]*(=\S+)?/gi, "")
      .replace(/(?:^|\s)(?:\/[\w.-]+){2,}\/?/g, " ")
      .replace(/\s+([,.;:])/g, "$1")
      .replace(/\s{2,}/g, " ")
      .trim();
  }

  // One sentence for an error from the page's api(): what happened, then the fix, once.
  function explain(err, doing) {
    if (err && err.offline) return "The server cannot be reached, so " + doing + " did not happen. This page reconnects by itself.";
    const known = err && KNOWN[err.code];
    if (known) return known[0] + " " + known[1];
    const what = clean(err && (err.detail || err.message)) || "The server refused this.";
    const sentence = /[.!?]$/.test(what) ? what : what + ".";
    return (doing ? capital(doing) + " failed: " + sentence : sentence) + " " + GENERIC_FIX;
  }

  function capital(s) {
    return s.charAt(0).toUpperCase() + s.slice(1);
  }

  // A microphone level for a person: digital silence is "silent", not a number near -150.
  function level(dbfs) {
    if (dbfs === null || dbfs === undefined || Number.isNaN(dbfs)) return "–";
    if (dbfs <= -90) return "silent";
    if (dbfs <= -60) return "very quiet (" + Math.round(dbfs) + " dB)";
    return Math.round(dbfs) + " dB";
  }

  function seconds(s) {
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
    const m = Math.floor(s / 60), r = Math.round(s - 60 * m);
    return m + " min " + String(r).padStart(2, "0") + " s";
  }

  return { explain, clean, level, seconds, KNOWN };
})();
