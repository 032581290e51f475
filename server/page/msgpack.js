// The subset of MessagePack the WebXR protocol uses (docs/WEBXR.md): maps with string keys, strings, integers,
// float64, booleans, nil, arrays and bin (Uint8Array). Encoding floats always as float64 keeps times exact to
// the microsecond; pose arrays travel as bin of float32, so a frame stays a few hundred bytes.
"use strict";

const MsgPack = (() => {
  const utf8 = new TextEncoder();
  const utf8d = new TextDecoder();
  const STR = [32, 0xa0, 0xd9, 0xda, 0xdb], BIN = [0, 0, 0xc4, 0xc5, 0xc6];
  const ARR = [16, 0x90, 0, 0xdc, 0xdd], MAP = [16, 0x80, 0, 0xde, 0xdf];

  class Writer {
    constructor() { this.buf = new Uint8Array(1024); this.view = new DataView(this.buf.buffer); this.n = 0; }
    room(k) {
      if (this.n + k <= this.buf.length) return;
      let size = this.buf.length * 2;
      while (size < this.n + k) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, this.n));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    u8(v) { this.room(1); this.buf[this.n++] = v; }
    u16(v) { this.room(2); this.view.setUint16(this.n, v); this.n += 2; }
    u32(v) { this.room(4); this.view.setUint32(this.n, v); this.n += 4; }
    bytes(b) { this.room(b.length); this.buf.set(b, this.n); this.n += b.length; }
    // Length headers: [fix form limit, fix base, 8-bit code or 0, 16-bit code, 32-bit code]
    head(form, len) {
      const [limit, fix, c8, c16, c32] = form;
      if (len < limit) return this.u8(fix | len);
      if (c8 && len < 256) { this.u8(c8); return this.u8(len); }
      if (len < 65536) { this.u8(c16); return this.u16(len); }
      this.u8(c32); this.u32(len);
    }
    value(v) {
      if (v === null || v === undefined) return this.u8(0xc0);
      if (v === true || v === false) return this.u8(v ? 0xc3 : 0xc2);
      if (typeof v === "number") {
        if (Number.isInteger(v) && v >= 0 && v < 2 ** 32) {
          if (v < 128) return this.u8(v);
          this.u8(0xce); return this.u32(v);
        }
        if (Number.isInteger(v) && v < 0 && v >= -32) return this.u8(v & 0xff);
        this.u8(0xcb); this.room(8); this.view.setFloat64(this.n, v); this.n += 8; return;
      }
      if (typeof v === "string") { const b = utf8.encode(v); this.head(STR, b.length); return this.bytes(b); }
      if (v instanceof Uint8Array) { this.head(BIN, v.length); return this.bytes(v); }
      if (ArrayBuffer.isView(v)) return this.value(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      if (Array.isArray(v)) { this.head(ARR, v.length); for (const x of v) this.value(x); return; }
      const keys = Object.keys(v).filter((k) => v[k] !== undefined);
      this.head(MAP, keys.length);
      for (const k of keys) { this.value(k); this.value(v[k]); }
    }
  }

  function encode(value) {
    const w = new Writer();
    w.value(value);
    return w.buf.slice(0, w.n);
  }

  function decode(buffer) {
    const b = new Uint8Array(buffer);
    const d = new DataView(b.buffer, b.byteOffset, b.byteLength);
    let p = 0;
    const str = (n) => { const s = utf8d.decode(b.subarray(p, p + n)); p += n; return s; };
    const arr = (n) => { const a = []; for (let i = 0; i < n; i++) a.push(read()); return a; };
    const map = (n) => { const m = {}; for (let i = 0; i < n; i++) { const k = read(); m[k] = read(); } return m; };
    const bin = (n) => { const s = b.slice(p, p + n); p += n; return s; };
    const next = (k, f) => { const v = f(p); p += k; return v; };
    function read() {
      const t = b[p++];
      if (t < 0x80) return t;
      if (t < 0x90) return map(t & 0x0f);
      if (t < 0xa0) return arr(t & 0x0f);
      if (t < 0xc0) return str(t & 0x1f);
      if (t >= 0xe0) return t - 256;
      switch (t) {
        case 0xc0: return null;
        case 0xc2: return false;
        case 0xc3: return true;
        case 0xc4: return bin(next(1, (q) => d.getUint8(q)));
        case 0xc5: return bin(next(2, (q) => d.getUint16(q)));
        case 0xc6: return bin(next(4, (q) => d.getUint32(q)));
        case 0xca: return next(4, (q) => d.getFloat32(q));
        case 0xcb: return next(8, (q) => d.getFloat64(q));
        case 0xcc: return next(1, (q) => d.getUint8(q));
        case 0xcd: return next(2, (q) => d.getUint16(q));
        case 0xce: return next(4, (q) => d.getUint32(q));
        case 0xcf: return next(8, (q) => Number(d.getBigUint64(q)));
        case 0xd0: return next(1, (q) => d.getInt8(q));
        case 0xd1: return next(2, (q) => d.getInt16(q));
        case 0xd2: return next(4, (q) => d.getInt32(q));
        case 0xd3: return next(8, (q) => Number(d.getBigInt64(q)));
        case 0xd9: return str(next(1, (q) => d.getUint8(q)));
        case 0xda: return str(next(2, (q) => d.getUint16(q)));
        case 0xdb: return str(next(4, (q) => d.getUint32(q)));
        case 0xdc: return arr(next(2, (q) => d.getUint16(q)));
        case 0xdd: return arr(next(4, (q) => d.getUint32(q)));
        case 0xde: return map(next(2, (q) => d.getUint16(q)));
        case 0xdf: return map(next(4, (q) => d.getUint32(q)));
        default: throw new Error("msgpack: unsupported type 0x" + t.toString(16));
      }
    }
    return read();
  }

  return { encode, decode };
})();
