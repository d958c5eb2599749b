// Camera and microphone: ask once, preview the camera, and show the microphone level
// (Web Audio AnalyserNode, RMS of the time-domain signal) so people see they can be heard.

const CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true },
  video: { width: { ideal: 1280 }, height: { ideal: 720 }, facingMode: "user" },
};

/** The local camera and microphone, or an Error whose message a person can act on. */
export async function openMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("This browser cannot use a camera here. Please use a current Chrome, Firefox, Edge or Safari.");
  }
  try {
    return await navigator.mediaDevices.getUserMedia(CONSTRAINTS);
  } catch (error) {
    const messages = {
      NotAllowedError:
        "Teleroom isn't allowed to use your camera and microphone. Allow them in your browser's site settings, then reload this page.",
      NotFoundError: "No camera or microphone was found. Please connect one and reload this page.",
      NotReadableError: "Your camera or microphone is in use by another app. Close it and reload this page.",
      OverconstrainedError: "Your camera doesn't support the needed settings.",
    };
    throw new Error(messages[error.name] || "We couldn't start your camera and microphone.");
  }
}

export function preview(video, stream) {
  video.muted = true;
  video.srcObject = stream;
  video.play().catch(() => {});
}

/**
 * Drive `meter` (a <meter> from 0 to 1) from the stream's microphone; returns stop().
 * Calls `onSound()` once when the level first rises above a whisper.
 */
export function micMeter(stream, meter, onSound = () => {}) {
  const track = stream.getAudioTracks()[0];
  if (!track) return () => {};
  const Context = window.AudioContext || window.webkitAudioContext;
  const audio = new Context();
  const source = audio.createMediaStreamSource(new MediaStream([track]));
  const analyser = audio.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let heard = false;
  let frame = 0;
  let lastShown = -1;
  const resume = () => audio.state === "suspended" && audio.resume();
  document.addEventListener("click", resume, { once: true });
  resume();
  const tick = () => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    const level = Math.min(1, Math.sqrt(sum / samples.length) * 4);
    const shown = Math.round(level * 20) / 20;
    if (shown !== lastShown) {
      meter.value = shown;
      lastShown = shown;
    }
    if (!heard && level > 0.02) {
      heard = true;
      onSound();
    }
    frame = requestAnimationFrame(tick);
  };
  tick();
  return () => {
    cancelAnimationFrame(frame);
    source.disconnect();
    audio.close();
  };
}

export function stopMedia(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}
