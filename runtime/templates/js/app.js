// {{name}}: a corral integration for camera-sim's HTTP API, to start from.
// Change the paths and field names to your camera system's. `corral guests
// build` makes {{name}}.wasm from this folder; `corral guests check` checks it.

import { exportIntegration, http, Output, progress, settings } from "@corral/guest";

const api = (path) => `${settings.require("base-url")}/vms/v2/${path}`;

export const { discover, thumbnail, extractMedia } = exportIntegration({
  discover() {
    const { cameras } = http.get(api("cameras")).ok().json();
    return cameras.map((camera) => ({
      deviceId: camera.cameraId,
      name: camera.displayName,
      manufacturer: camera.vendor ?? "",
      model: camera.modelName ?? "",
      capabilities: ["thumbnail", "media"],
    }));
  },

  thumbnail(job) {
    const device = job.requireDevice();
    const snapshot = http.get(api(`cameras/${device}/snapshot.jpg`)).ok();
    const out = new Output(`${device}.jpg`, "image/jpeg");
    out.splice(snapshot); // host-side: the bytes never enter guest memory
    out.finish();
  },

  extractMedia(job) {
    const device = job.requireDevice();
    const { start, end } = job.requireTimeRange();
    const recording = http.get(api(`cameras/${device}/archive?from=${start.unixMillis}&to=${end.unixMillis}`)).ok();
    const total = recording.contentLength ?? 0;
    const out = new Output(`${device}-${start.unixMillis}.ts`, "video/mp2t");
    out.splice(recording, (moved) => progress.report(moved, Math.max(total, moved)));
    out.finish();
  },
});
