// AudioWorklet: the microphone as 48 kHz mono int16 blocks, each tagged with the AudioContext frame counter of its
// first sample (the audio clock; docs/WEBXR.md "Microphone"). Runs on the audio thread: no allocation per quantum
// but the block it hands over.
"use strict";

const BLOCK = 960; // 20 ms at 48 kHz: 50 messages a second

class VrcapMic extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Int16Array(BLOCK);
    this.fill = 0;
    this.first = 0;
  }

  // A partial block goes out as it is when the input skips (no input for a quantum): every block's samples are
  // contiguous from its first frame, so the recorder's sample index stays true.
  flush() {
    if (this.fill === 0) return;
    const part = this.block.slice(0, this.fill);
    this.port.postMessage({ frame: this.first, pcm: part.buffer }, [part.buffer]);
    this.fill = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) { this.flush(); return true; } // no input connected yet, or a gap
    if (this.fill > 0 && currentFrame !== this.first + this.fill) this.flush();
    for (let i = 0; i < channel.length; i++) {
      if (this.fill === 0) this.first = currentFrame + i;
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.block[this.fill++] = Math.round(s * 32767);
      if (this.fill === BLOCK) {
        this.port.postMessage({ frame: this.first, pcm: this.block.buffer }, [this.block.buffer]);
        this.block = new Int16Array(BLOCK);
        this.fill = 0;
      }
    }
    return true;
  }
}

registerProcessor("vrcap-mic", VrcapMic);
