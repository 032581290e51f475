// Line charts on canvas with labelled axes and a legend: the loss curves, trajectories, speeds and audio level.
// Drawn at the canvas's shown size times the device pixel ratio, so text stays readable on a phone and crisp on
// a headset. No third-party code: a few dozen lines of 2D context calls.
"use strict";

const Charts = (() => {
  const COLORS = ["#58a6ff", "#f0883e", "#3fb950", "#d2a8ff", "#e3b341", "#ff7b72", "#79c0ff"];
  const AXIS = "#8b949e", GRID = "#30363d", TEXT = "#c9d1d9";

  function niceStep(range, count) {
    const raw = range / Math.max(count, 1);
    const p = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    const m = raw / p;
    return (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * p;
  }

  function ticks(min, max, count) {
    const step = niceStep(max - min, count);
    const out = [];
    for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return { values: out, step };
  }

  function fmt(v, step) {
    const digits = Math.max(0, Math.min(4, -Math.floor(Math.log10(step || 1))));
    return v.toFixed(digits);
  }

  function extent(series, key, given) {
    if (given && given.min !== undefined && given.max !== undefined) return [given.min, given.max];
    let lo = Infinity, hi = -Infinity;
    for (const s of series) for (const v of s[key]) if (v !== null && Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (!Number.isFinite(lo)) return [0, 1];
    if (given && given.min !== undefined) lo = given.min;
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    const pad = (hi - lo) * 0.05;
    return [given && given.min !== undefined ? lo : lo - pad, hi + pad];
  }

  // Size the drawing buffer to the shown size; the height follows data-aspect (height / width).
  function context(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(200, Math.round(canvas.clientWidth || 640));
    const height = Math.round(width * parseFloat(canvas.dataset.aspect || "0.45"));
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    return { g, width, height };
  }

  // opts: {x: {label, min?, max?}, y: {label, min?, max?}, series: [{name, xs, ys, color?, dots?}],
  //        equal: same scale on both axes (a map), cursor: x of a vertical line, marks: [{x, color}], legend}
  function plot(canvas, opts) {
    const { g, width, height } = context(canvas);
    const font = Math.max(12, Math.min(16, Math.round(width / 40)));
    g.font = font + "px system-ui, sans-serif";
    const left = opts.yTicks === false ? font * 1.5 : font * 4.2, right = 12, bottom = font * 3;
    const rows = opts.legend === false ? [] : legendRows(g, opts.series, width - 12, font);
    const top = rows.length ? font * (0.6 + 1.5 * rows.length) : 10;
    const w = width - left - right, h = height - top - bottom;
    let [x0, x1] = extent(opts.series, "xs", opts.x);
    let [y0, y1] = extent(opts.series, "ys", opts.y);
    if (opts.equal) { // one metre is as long across as up: a top-down view must not stretch the room
      const perPx = Math.max((x1 - x0) / w, (y1 - y0) / h);
      const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
      [x0, x1] = [cx - (perPx * w) / 2, cx + (perPx * w) / 2];
      [y0, y1] = [cy - (perPx * h) / 2, cy + (perPx * h) / 2];
    }
    const X = (x) => left + ((x - x0) / (x1 - x0)) * w;
    const Y = (y) => top + (1 - (y - y0) / (y1 - y0)) * h;
    const xt = ticks(x0, x1, Math.max(2, Math.floor(w / (font * 6)))), yt = ticks(y0, y1, Math.max(2, Math.floor(h / (font * 2.5))));
    g.lineWidth = 1;
    g.strokeStyle = GRID;
    g.fillStyle = TEXT;
    g.textAlign = "center";
    g.textBaseline = "top";
    for (const v of xt.values) {
      g.beginPath(); g.moveTo(X(v), top); g.lineTo(X(v), top + h); g.stroke();
      g.fillText(fmt(v, xt.step), X(v), top + h + 4);
    }
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (const v of opts.yTicks === false ? [] : yt.values) {
      g.beginPath(); g.moveTo(left, Y(v)); g.lineTo(left + w, Y(v)); g.stroke();
      g.fillText(fmt(v, yt.step), left - 6, Y(v));
    }
    g.strokeStyle = AXIS;
    g.strokeRect(left, top, w, h);
    g.textAlign = "center";
    g.textBaseline = "bottom";
    g.fillText(opts.x.label || "", left + w / 2, height - 2);
    g.save();
    g.translate(font, top + h / 2);
    g.rotate(-Math.PI / 2);
    g.textBaseline = "middle";
    g.fillText(opts.y.label || "", 0, 0);
    g.restore();
    g.save();
    g.beginPath(); g.rect(left, top, w, h); g.clip();
    for (const m of opts.marks || []) {
      g.fillStyle = m.color;
      g.fillRect(X(m.x) - 1.5, top, Math.max(3, m.width ? X(m.x + m.width) - X(m.x) : 3), h);
    }
    opts.series.forEach((s, i) => {
      const color = s.color || COLORS[i % COLORS.length];
      g.strokeStyle = g.fillStyle = color;
      g.lineWidth = s.width || 2.5;
      if (s.lo) { // a band between lo and ys: a waveform's envelope
        g.globalAlpha = 0.85;
        g.beginPath();
        s.xs.forEach((x, k) => (k ? g.lineTo : g.moveTo).call(g, X(x), Y(s.ys[k] ?? 0)));
        for (let k = s.xs.length - 1; k >= 0; k--) g.lineTo(X(s.xs[k]), Y(s.lo[k] ?? 0));
        g.closePath();
        g.fill();
        g.globalAlpha = 1;
        return;
      }
      if (s.dots) {
        s.xs.forEach((x, k) => { if (s.ys[k] !== null) { g.beginPath(); g.arc(X(x), Y(s.ys[k]), 4, 0, 2 * Math.PI); g.fill(); } });
        return;
      }
      g.beginPath();
      let pen = false;
      s.xs.forEach((x, k) => {
        const y = s.ys[k];
        if (y === null || x === null || !Number.isFinite(y)) { pen = false; return; }
        if (pen) g.lineTo(X(x), Y(y)); else g.moveTo(X(x), Y(y));
        pen = true;
      });
      g.stroke();
      if (s.at) { g.beginPath(); g.arc(X(s.at[0]), Y(s.at[1]), 6, 0, 2 * Math.PI); g.fill(); }
    });
    if (opts.cursor !== undefined && opts.cursor !== null) {
      g.strokeStyle = "#f0f6fc";
      g.lineWidth = 2;
      g.beginPath(); g.moveTo(X(opts.cursor), top); g.lineTo(X(opts.cursor), top + h); g.stroke();
    }
    g.restore();
    drawLegend(g, rows, font);
    return { X, Y, left, top, w, h, x0, x1 };
  }

  // Legend items laid out in rows that fit the width: [[{x, name, color}], ...]
  function legendRows(g, series, maxX, font) {
    const rows = [];
    let row = [], x = 8;
    series.forEach((s, i) => {
      if (!s.name) return;
      const width = font * 2 + g.measureText(s.name).width;
      if (row.length && x + width > maxX) { rows.push(row); row = []; x = 8; }
      row.push({ x, name: s.name, color: s.color || COLORS[i % COLORS.length] });
      x += width;
    });
    if (row.length) rows.push(row);
    return rows;
  }

  function drawLegend(g, rows, font) {
    g.textAlign = "left";
    g.textBaseline = "middle";
    rows.forEach((row, r) => {
      const y = font * (0.3 + 1.5 * r) + font * 0.5;
      for (const item of row) {
        g.fillStyle = item.color;
        g.fillRect(item.x, y - font * 0.4, font, font * 0.8);
        g.fillStyle = TEXT;
        g.fillText(item.name, item.x + font * 1.3, y);
      }
    });
  }

  return { plot, COLORS };
})();
