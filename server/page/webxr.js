// "Record from this headset": a WebXR session whose every XRFrame, the microphone and notes go to the recorder
// over one WebSocket of binary msgpack messages (docs/WEBXR.md). Needs msgpack.js.
//
// Bounded buffering: messages wait in `queue` while the socket is away or its own buffer is over SOCKET_HIGH;
// past QUEUE_MAX the oldest are dropped and counted (sent as `dropped`, so the server counts them too).
// Clock: pings every PING_MS; each pong makes a `sync` report the recorder fits (offset + drift).
"use strict";

const WebXRCapture = (() => {
  const PROTOCOL = 1;
  const QUEUE_MAX = 400; // ~2-3 s of frames and audio blocks: what a brief Wi-Fi stall or a reconnect holds back
  const SOCKET_HIGH = 256 * 1024; // WebSocket.bufferedAmount above which we queue instead of sending
  const PING_MS = 50; // 10 exchanges per 0.5 s bucket of the fit: the minimum-RTT filter needs choice
  const BURST = 8; // pings at connect, before any frame is sent
  const JOINTS = [
    "wrist", "thumb-metacarpal", "thumb-phalanx-proximal", "thumb-phalanx-distal", "thumb-tip",
    "index-finger-metacarpal", "index-finger-phalanx-proximal", "index-finger-phalanx-intermediate",
    "index-finger-phalanx-distal", "index-finger-tip", "middle-finger-metacarpal",
    "middle-finger-phalanx-proximal", "middle-finger-phalanx-intermediate", "middle-finger-phalanx-distal",
    "middle-finger-tip", "ring-finger-metacarpal", "ring-finger-phalanx-proximal",
    "ring-finger-phalanx-intermediate", "ring-finger-phalanx-distal", "ring-finger-tip",
    "pinky-finger-metacarpal", "pinky-finger-phalanx-proximal", "pinky-finger-phalanx-intermediate",
    "pinky-finger-phalanx-distal", "pinky-finger-tip",
  ];
  const pageNow = () => performance.timeOrigin + performance.now();

  function poseBlob(pose) {
    const a = new Float32Array(13).fill(NaN);
    if (!pose) return [null, 0];
    const p = pose.transform.position, q = pose.transform.orientation;
    a.set([p.x, p.y, p.z, q.x, q.y, q.z, q.w]);
    if (pose.linearVelocity) a.set([pose.linearVelocity.x, pose.linearVelocity.y, pose.linearVelocity.z], 7);
    if (pose.angularVelocity) a.set([pose.angularVelocity.x, pose.angularVelocity.y, pose.angularVelocity.z], 10);
    return [a, pose.emulatedPosition ? 0x3 : 0xf];
  }

  function padBlob(gamepad) {
    const a = new Float32Array(8).fill(NaN);
    let press = 0, touch = 0;
    const b = gamepad.buttons, ax = gamepad.axes;
    const value = (i) => (i < b.length ? b[i].value : NaN);
    a[0] = value(0); a[1] = value(1);
    if (ax.length >= 4) { a[2] = ax[2]; a[3] = ax[3]; }
    a[4] = value(4); a[5] = value(5); a[7] = value(3); // a[6], menu: browsers do not expose it
    b.forEach((btn, i) => { if (btn.pressed) press |= 1 << i; if (btn.touched) touch |= 1 << i; });
    return [a, press, touch];
  }

  function handBlob(frame, hand, space) {
    const a = new Float32Array(25 * 8).fill(NaN);
    JOINTS.forEach((name, j) => {
      const jointSpace = hand.get(name);
      const pose = jointSpace && frame.getJointPose(jointSpace, space);
      if (!pose) return;
      const p = pose.transform.position, q = pose.transform.orientation;
      a.set([p.x, p.y, p.z, q.x, q.y, q.z, q.w, pose.radius], j * 8);
    });
    return a;
  }

  class Recorder {
    // opts: {recording, token, wsUrl, mode, hands, audio, onStatus(text), onStats(stats), onEnd(reason)}
    constructor(opts) {
      this.o = opts;
      this.queue = [];
      this.dropped = 0; // messages this page dropped (queue full)
      this.frames = 0;
      this.audioSamples = 0; // microphone samples handed to the queue (tests wait on seconds of sound, not frames)
      this.audioStamps = []; // blocks' [end frame, page ms]: what the recorder's audio mapping must agree with
      this.audioBlocks = 0;
      this.pongs = 0;
      this.synced = false;
      this.ws = null;
      this.ended = false;
      this.reconnectS = 10;
      this.goneSince = null;
      this.pingId = 0;
      this.rtt = null;
    }

    // Called from the click handler: the XR session and the microphone need the user's gesture.
    async open() {
      const o = this.o;
      if (!navigator.xr) throw new Error("this browser has no WebXR (navigator.xr); open the page in the headset");
      const mode = o.mode || "immersive-vr";
      if (!(await navigator.xr.isSessionSupported(mode))) throw new Error(mode + " is not supported here");
      const optional = ["bounded-floor"];
      if (o.hands) optional.push("hand-tracking");
      this.session = await navigator.xr.requestSession(mode, { requiredFeatures: ["local-floor"], optionalFeatures: optional });
      this.session.addEventListener("end", () => this.stop("the XR session ended"));
      const canvas = document.createElement("canvas");
      const gl = canvas.getContext("webgl2", { xrCompatible: true });
      if (gl.makeXRCompatible) await gl.makeXRCompatible();
      this.gl = gl;
      this.session.updateRenderState({ baseLayer: new XRWebGLLayer(this.session, gl) });
      this.space = await this.session.requestReferenceSpace("local-floor");
      this.features = Array.from(this.session.enabledFeatures || []);
      if (o.audio) await this.openMicrophone();
    }

    async openMicrophone() {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
      this.audio = new AudioContext({ sampleRate: 48000 });
      await this.audio.audioWorklet.addModule("/page/mic-worklet.js");
      const node = new AudioWorkletNode(this.audio, "vrcap-mic", { numberOfOutputs: 1 });
      this.audio.createMediaStreamSource(this.stream).connect(node);
      node.connect(this.audio.destination); // pulled by the graph; the worklet outputs silence
      node.port.onmessage = (ev) => {
        this.audioSamples += ev.data.pcm.byteLength / 2;
        const t = pageNow();
        // Every 8th block, at most 1,000: blocks that reach the main thread while it is busy (the XR session
        // starting) come late; the recording's quiet stretches show the envelope.
        if (this.audioBlocks++ % 8 === 0 && this.audioStamps.length < 1000) {
          this.audioStamps.push([ev.data.frame + ev.data.pcm.byteLength / 2, t]);
        }
        this.post({ k: "audio", i: ev.data.frame, t, pcm: new Uint8Array(ev.data.pcm), dropped: this.dropped });
      };
      if (this.audio.state !== "running") await this.audio.resume();
    }

    start() {
      this.connect();
      this.session.requestAnimationFrame((t, f) => this.onFrame(t, f));
    }

    connect() {
      if (this.ended) return;
      const ws = new WebSocket(this.o.wsUrl);
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      this.synced = false;
      this.pongs = 0;
      ws.onopen = () => {
        this.send(ws, { k: "hello", v: PROTOCOL, token: this.o.token, origin_ms: performance.timeOrigin,
          hands: !!this.o.hands, audio_rate: this.audio ? this.audio.sampleRate : 0, features: this.features });
      };
      ws.onmessage = (ev) => this.onMessage(ws, MsgPack.decode(ev.data));
      ws.onclose = (ev) => this.onClose(ws, ev);
    }

    onMessage(ws, msg) {
      if (msg.k === "welcome") {
        this.reconnectS = msg.reconnect_s;
        this.goneSince = null;
        this.o.onStatus(msg.resumed ? "reconnected: recording resumed" : "recording from this headset");
        for (let i = 0; i < BURST; i++) setTimeout(() => this.ping(ws), i * 15);
        this.pinger = setInterval(() => this.ping(ws), PING_MS);
      } else if (msg.k === "pong") {
        const t4 = pageNow();
        this.rtt = t4 - msg.t1 - (msg.t3 - msg.t2) / 1e6;
        this.send(ws, { k: "sync", t1: msg.t1, t2: msg.t2, t3: msg.t3, t4 });
        // Frames wait for the whole connect burst: one exchange is a mapping only as good as its round trip, and
        // under load the first can be seconds slow; the recorder maps every frame as it arrives.
        if (!this.synced && ++this.pongs >= BURST) { this.synced = true; this.flush(); }
      } else if (msg.k === "stats") {
        this.o.onStats(msg.stats, this);
      }
    }

    onClose(ws, ev) {
      clearInterval(this.pinger);
      if (ws !== this.ws || this.ended) return;
      const final = [4401, 4409, 4410, 1000, 1007, 1008, 1009].includes(ev.code);
      if (final) return this.stop("the server closed the connection: " + (ev.reason || ev.code), ev.code);
      if (this.goneSince === null) this.goneSince = performance.now();
      const waited = (performance.now() - this.goneSince) / 1000;
      if (waited > this.reconnectS) return this.stop("could not reconnect within " + this.reconnectS + " s");
      this.o.onStatus("connection lost; reconnecting (" + waited.toFixed(1) + " s)…");
      setTimeout(() => this.connect(), 500);
    }

    ping(ws) {
      if (ws.readyState !== WebSocket.OPEN || ws !== this.ws) return;
      this.send(ws, { k: "ping", id: ++this.pingId, t1: pageNow() });
    }

    send(ws, msg) {
      ws.send(MsgPack.encode(msg));
    }

    // Frames and audio go through the bounded queue; control messages (hello, ping, sync) do not.
    post(msg) {
      if (this.ended) return;
      this.queue.push(msg);
      if (this.queue.length > QUEUE_MAX) { this.queue.shift(); this.dropped++; }
      this.flush();
    }

    flush() {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN || !this.synced) return;
      while (this.queue.length && ws.bufferedAmount < SOCKET_HIGH) this.send(ws, this.queue.shift());
    }

    note(text, kind, channel) {
      this.post({ k: "note", text, kind, channel, t: pageNow() });
    }

    onFrame(time, frame) {
      if (this.ended) return;
      this.session.requestAnimationFrame((t, f) => this.onFrame(t, f));
      const msg = { k: "frame", n: this.frames++, t: performance.timeOrigin + (frame.predictedDisplayTime ?? time) };
      const [head, headFlags] = poseBlob(frame.getViewerPose(this.space));
      if (head) { msg.head = head; msg.head_f = headFlags; }
      for (const source of this.session.inputSources) {
        const side = source.handedness === "left" ? "l" : source.handedness === "right" ? "r" : null;
        if (!side) continue;
        if (source.hand) {
          msg["hand_" + side] = handBlob(frame, source.hand, this.space);
        }
        if (source.gripSpace) {
          const [grip, flags] = poseBlob(frame.getPose(source.gripSpace, this.space));
          if (grip) { msg["grip_" + side] = grip; msg["grip_" + side + "_f"] = flags; }
        }
        const [aim, aimFlags] = poseBlob(frame.getPose(source.targetRaySpace, this.space));
        if (aim) { msg["aim_" + side] = aim; msg["aim_" + side + "_f"] = aimFlags; }
        if (source.gamepad && !source.hand) {
          const [pad, press, touch] = padBlob(source.gamepad);
          msg["pad_" + side] = pad; msg["press_" + side] = press; msg["touch_" + side] = touch;
        }
      }
      msg.dropped = this.dropped;
      this.post(msg);
      const gl = this.gl, layer = this.session.renderState.baseLayer;
      if (gl && layer) { gl.bindFramebuffer(gl.FRAMEBUFFER, layer.framebuffer); gl.clearColor(0, 0, 0, 1); gl.clear(gl.COLOR_BUFFER_BIT); }
    }

    stop(reason, code) {
      if (this.ended) return;
      this.ended = true;
      clearInterval(this.pinger);
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.flush();
        this.send(this.ws, { k: "bye", reason: reason || "stopped" });
        this.ws.close(1000, "stopped");
      }
      if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
      if (this.audio) this.audio.close();
      if (this.session) this.session.end().catch(() => {});
      this.o.onEnd(reason || "stopped", code);
    }
  }

  return { Recorder, pageNow };
})();
