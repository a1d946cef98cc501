"""The reference integration for camera-sim's HTTP API, in Python.

The same integration as guests/http-vms (Rust): list devices, store a
snapshot, store a recording. The camera system's address comes from the
`base-url` setting of the manifest; the host adds its credentials, so this
code never sees a password.
"""

import corral_guest as corral


def api(path):
    base = corral.settings.require("base-url").rstrip("/")
    return f"{base}/vms/v2/{path}"


class HttpVms(corral.Integration):
    def discover(self, job):
        cameras = corral.http.get(api("cameras")).ok().json()["cameras"]
        devices = []
        for camera in cameras:
            location = camera.get("location") or {}
            devices.append(
                corral.Device(
                    device_id=camera["cameraId"],
                    name=camera["displayName"],
                    manufacturer=camera["vendor"],
                    model=camera["modelName"],
                    latitude=location.get("lat"),
                    longitude=location.get("lon"),
                    capabilities=["thumbnail", "media"],
                )
            )
        corral.progress.report(len(devices), len(devices))
        return devices

    def thumbnail(self, job):
        device = job.require_device()
        response = corral.http.get(api(f"cameras/{device}/snapshot.jpg")).ok()
        if response.header("content-type") != "image/jpeg":
            raise corral.Failed(f"{device} sent a snapshot that is not a JPEG")
        with corral.Output(f"{device}.jpg", "image/jpeg") as output:
            output.splice(response)
        corral.progress.report(1, 1)

    def extract_media(self, job):
        device = job.require_device()
        start, end = job.require_time_range().start, job.require_time_range().end
        url = api(f"cameras/{device}/archive?from={start.unix_millis}&to={end.unix_millis}")
        response = corral.http.get(url).ok()
        total = response.content_length or 0
        corral.progress.report(0, total)
        with corral.Output(f"{device}-{start.unix_millis}.ts", "video/mp2t") as output:
            # Spliced, not read: the recording goes from the camera's response
            # to the upload without passing through this component's memory.
            try:
                moved = output.splice(
                    response, lambda moved: corral.progress.report(moved, max(total, moved))
                )
            except corral.JobError as error:
                # A cut connection is worth another try later.
                raise corral.Unavailable(f"recording of {device} interrupted: {error}")
            if total and moved != total:
                raise corral.Failed(f"{device} sent {moved} of {total} bytes")
        corral.progress.report(moved, moved)
        return corral.Outcome.COMPLETED


WitWorld = corral.export(HttpVms)
