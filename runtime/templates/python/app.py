"""{{name}}: a corral integration for camera-sim's HTTP API, to start from.

Change the paths and field names to your camera system's. `corral guests
build` makes {{name}}.wasm from this folder; `corral guests check` checks it.
"""

import corral_guest as corral


def api(path):
    return f"{corral.settings.require('base-url')}/vms/v2/{path}"


class Vms(corral.Integration):
    def discover(self, job):
        listed = corral.http.get(api("cameras")).ok().json()
        return [
            corral.Device(
                device_id=camera["cameraId"], name=camera["displayName"],
                manufacturer=camera.get("vendor", ""), model=camera.get("modelName", ""),
                latitude=None, longitude=None, capabilities=["thumbnail", "media"],
            )
            for camera in listed["cameras"]
        ]

    def thumbnail(self, job):
        device = job.require_device()
        snapshot = corral.http.get(api(f"cameras/{device}/snapshot.jpg")).ok()
        with corral.Output(f"{device}.jpg", "image/jpeg") as out:
            out.splice(snapshot)  # host-side: the bytes never enter guest memory

    def extract_media(self, job):
        device, span = job.require_device(), job.require_time_range()
        start, end = span.start.unix_millis, span.end.unix_millis
        recording = corral.http.get(api(f"cameras/{device}/archive?from={start}&to={end}")).ok()
        total = recording.content_length or 0
        with corral.Output(f"{device}-{start}.ts", "video/mp2t") as out:
            out.splice(recording, lambda moved: corral.progress.report(moved, max(total, moved)))


WitWorld = corral.export(Vms)
