// The reference integration for camera-sim's HTTP API, in JavaScript.
//
// The same integration as guests/http-vms (Rust): list devices, store a
// snapshot, store a recording. The camera system's address comes from the
// `base-url` setting of the manifest; the host adds its credentials, so this
// code never sees a password.

import { exportIntegration, http, Output, progress, settings, Failed, JobError, Unavailable } from "@corral/guest";

const api = (path) => `${settings.require("base-url").replace(/\/+$/, "")}/vms/v2/${path}`;

export const { discover, thumbnail, extractMedia } = exportIntegration({
  discover() {
    const { cameras } = http.get(api("cameras")).ok().json();
    const devices = cameras.map((camera) => ({
      deviceId: camera.cameraId,
      name: camera.displayName,
      manufacturer: camera.vendor,
      model: camera.modelName,
      latitude: camera.location?.lat,
      longitude: camera.location?.lon,
      capabilities: ["thumbnail", "media"],
    }));
    progress.report(devices.length, devices.length);
    return devices;
  },

  thumbnail(job) {
    const device = job.requireDevice();
    const response = http.get(api(`cameras/${device}/snapshot.jpg`)).ok();
    if (response.header("content-type") !== "image/jpeg") {
      throw new Failed(`${device} sent a snapshot that is not a JPEG`);
    }
    const output = new Output(`${device}.jpg`, "image/jpeg");
    output.splice(response);
    output.finish();
    progress.report(1, 1);
  },

  extractMedia(job) {
    const device = job.requireDevice();
    const { start, end } = job.requireTimeRange();
    const response = http.get(api(`cameras/${device}/archive?from=${start.unixMillis}&to=${end.unixMillis}`)).ok();
    const total = response.contentLength ?? 0;
    progress.report(0, total);
    const output = new Output(`${device}-${start.unixMillis}.ts`, "video/mp2t");
    // Spliced, not read: the recording goes from the camera's response to the
    // upload without passing through this component's memory.
    let moved;
    try {
      moved = output.splice(response, (moved) => progress.report(moved, Math.max(total, moved)));
    } catch (error) {
      // A cut connection is worth another try later.
      if (error instanceof JobError) throw new Unavailable(`recording of ${device} interrupted: ${error.message}`);
      throw error;
    }
    if (total !== 0 && moved !== total) throw new Failed(`${device} sent ${moved} of ${total} bytes`);
    output.finish();
    progress.report(moved, moved);
    return "completed";
  },
});
