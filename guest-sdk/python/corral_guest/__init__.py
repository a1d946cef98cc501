"""corral_guest: write a camera integration for corral in Python.

A thin layer over the bindings componentize-py generates from corral's WIT
(`wit_world`): an `Integration` base class with one method per job type,
`export` to make it the component's implementation, HTTP to the camera system
(`http.get(url).ok().json()`), output files as file-like objects with
`splice` (the bytes of an HTTP body never enter the guest), `progress`, `log`
and `settings`. Raise `Unavailable`, `Unsupported` or `Failed` to end a job
with that verdict; any other exception fails the job with its last line.

    import corral_guest as corral

    class MyVms(corral.Integration):
        def thumbnail(self, job):
            base = corral.settings.require("base-url")
            response = corral.http.get(f"{base}/snapshot/{job.require_device()}").ok()
            with corral.Output("snapshot.jpg", "image/jpeg") as out:
                out.splice(response)

    WitWorld = corral.export(MyVms)
"""

import json as _json

from componentize_py_types import Err
from wit_world.imports import corral_integration_types as _types
from wit_world.imports import log as _log
from wit_world.imports import outgoing_handler as _handler
from wit_world.imports import output as _output
from wit_world.imports import progress as _progress
from wit_world.imports import settings as _settings
from wit_world.imports import streams as _streams
from wit_world.imports import wasi_http_types as _http

Device = _types.Device
Outcome = _types.Outcome
JobKind = _types.JobKind

# Bytes gathered before they are handed to the host in one call.
_BUFFER = 1 << 20


class JobError(Exception):
    """Ends a job with a verdict the host acts on (see the subclasses)."""

    def to_wit(self):
        return _types.JobError_Failed(str(self))


class Unavailable(JobError):
    """Not now, maybe later (camera offline, busy): the job is released."""

    def to_wit(self):
        return _types.JobError_Unavailable(str(self))


class Unsupported(JobError):
    """Never (unknown device, request not supported): the job is cancelled."""

    def to_wit(self):
        return _types.JobError_Unsupported(str(self))


class Failed(JobError):
    """Something went wrong: the job ends Failed with this message."""


class HttpError(Failed):
    """A request that did not get a usable answer."""


def _close(resource):
    """Drops a WIT resource now rather than when it is collected."""
    if resource is not None:
        resource.__exit__(None, None, None)


class _Job:
    """A job with conveniences; the WIT record's fields are its attributes."""

    def __init__(self, job):
        self.id = job.id
        self.kind = job.kind
        self.device_id = job.device_id
        self.time_range = job.time_range
        self.parameters = dict(job.parameters)

    def require_device(self):
        """The job's device id, or `Unsupported` when it names none."""
        if self.device_id is None:
            raise Unsupported(f"job {self.id} names no device")
        return self.device_id

    def require_time_range(self):
        """The job's time range (`.start.unix_millis`, `.end.rfc3339`, ...)."""
        if self.time_range is None:
            raise Unsupported(f"job {self.id} has no time range")
        return self.time_range


class Integration:
    """Override the methods for the job types the manifest serves."""

    def discover(self, job):
        """Returns a list of `Device`."""
        raise Unsupported("this integration does not serve discovery")

    def thumbnail(self, job):
        """Stores one `image/jpeg` output of `job.require_device()`."""
        raise Unsupported("this integration does not serve thumbnails")

    def extract_media(self, job):
        """Stores the recording; returns `Outcome.COMPLETED` (or `None`) or
        `Outcome.PARTIALLY_COMPLETED`."""
        raise Unsupported("this integration does not serve media requests")


def export(cls):
    """The class componentize-py exports, calling an instance of `cls`:
    write `WitWorld = corral_guest.export(MyVms)` in the app module."""
    integration = cls()

    def call(method, job):
        try:
            return method(_Job(job))
        except JobError as error:
            raise Err(error.to_wit())

    class WitWorld:
        def discover(self, job):
            return list(call(integration.discover, job))

        def thumbnail(self, job):
            call(integration.thumbnail, job)

        def extract_media(self, job):
            return call(integration.extract_media, job) or Outcome.COMPLETED

    return WitWorld


class settings:
    """The integration's non-secret settings, from its manifest."""

    @staticmethod
    def get(name, default=None):
        value = _settings.get(name)
        return default if value is None else value

    @staticmethod
    def require(name):
        value = _settings.get(name)
        if value is None:
            raise Failed(f"setting `{name}` is missing from the manifest")
        return value

    @staticmethod
    def all():
        return dict(_settings.all())


class progress:
    """Progress of the job, shown by the registry as done / total."""

    @staticmethod
    def report(done, total):
        _progress.report(max(0, int(done)), max(0, int(total)))


class log:
    """Log lines, tagged by the host with the job and the integration."""

    @staticmethod
    def debug(message):
        _log.write(_log.Level.DEBUG, str(message))

    @staticmethod
    def info(message):
        _log.write(_log.Level.INFO, str(message))

    @staticmethod
    def warn(message):
        _log.write(_log.Level.WARN, str(message))

    @staticmethod
    def error(message):
        _log.write(_log.Level.ERROR, str(message))


def _http_error(code):
    if isinstance(code, (_http.ErrorCode_HttpRequestDenied, _http.ErrorCode_DestinationIpProhibited)):
        return HttpError(f"request denied by the sandbox: {type(code).__name__[10:]}")
    if isinstance(code, _http.ErrorCode_InternalError) and code.value:
        return Unavailable(f"request failed: {code.value}")
    return Unavailable(f"request failed: {type(code).__name__[10:]}")


class Response:
    """The answer to a request: status, headers and a body to read or splice."""

    def __init__(self, url, inner):
        self.url = url
        self._inner = inner
        self.status = inner.status()

    def header(self, name):
        """The first value of header `name`, or None."""
        values = self._inner.headers().get(name.lower())
        return values[0].decode("utf-8", "replace") if values else None

    @property
    def content_length(self):
        value = self.header("content-length")
        return int(value) if value and value.strip().isdigit() else None

    def ok(self):
        """This response if its status is 2xx; else a 404 is `Unsupported`,
        503 and 429 `Unavailable`, any other status `Failed`."""
        if 200 <= self.status < 300:
            return self
        message = f"{self.url} answered HTTP {self.status}"
        if self.status == 404:
            raise Unsupported(message)
        if self.status in (429, 503):
            raise Unavailable(message)
        raise HttpError(message)

    def _body(self):
        body = self._inner.consume()
        return body, body.stream()

    def bytes(self):
        """The whole body. Fine for small answers; splice big ones."""
        body, stream = self._body()
        chunks = []
        try:
            while True:
                try:
                    chunks.append(stream.blocking_read(64 * 1024))
                except Err as error:
                    if isinstance(error.value, _streams.StreamError_Closed):
                        return b"".join(chunks)
                    raise HttpError(f"bad response body: {error.value.value.to_debug_string()}")
        finally:
            _close(stream)
            _close(body)

    def text(self):
        return self.bytes().decode("utf-8")

    def json(self):
        try:
            return _json.loads(self.bytes())
        except ValueError as error:
            raise HttpError(f"{self.url} did not answer the expected JSON: {error}")


class http:
    """HTTP to the camera system; only hosts the manifest grants answer, and
    the host adds the credentials it names."""

    Response = Response

    @staticmethod
    def get(url, headers=None):
        return http.request("GET", url, headers)

    @staticmethod
    def request(method, url, headers=None):
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise Failed(f"bad URL: {url} has no scheme")
        cut = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
        authority, path = rest[:cut], rest[cut:] or "/"
        if not authority:
            raise Failed(f"bad URL: {url} has no host")
        if path.startswith("?"):
            path = "/" + path
        fields = [(name.lower(), value.encode()) for name, value in (headers or {}).items()]
        request = _http.OutgoingRequest(_http.Fields.from_list(fields))
        methods = {"GET": _http.Method_Get(), "HEAD": _http.Method_Head(), "POST": _http.Method_Post()}
        request.set_method(methods.get(method.upper()) or _http.Method_Other(method.upper()))
        request.set_scheme(
            {"http": _http.Scheme_Http(), "https": _http.Scheme_Https()}.get(scheme.lower())
            or _http.Scheme_Other(scheme)
        )
        request.set_authority(authority)
        request.set_path_with_query(path)
        try:
            pending = _handler.handle(request, None)
        except Err as error:
            raise _http_error(error.value)
        pending.subscribe().block()
        answer = pending.get()
        _close(pending)
        if answer is None or isinstance(answer, Err):
            raise Unavailable("request failed: response already taken")
        inner = answer.value
        if isinstance(inner, Err):
            raise _http_error(inner.value)
        return Response(url, inner.value)


def _stream_error(error):
    if isinstance(error.value, _streams.StreamError_Closed):
        return OSError("output stream closed")
    return OSError(error.value.value.to_debug_string())


class Output:
    """One output file, a file-like object: `write(bytes)` (buffered, handed to
    the host a megabyte at a time), `splice(response)` (host-side), `finish()`.
    As a context manager it finishes on a normal exit; an output never
    finished is discarded and fails the job."""

    def __init__(self, name, content_type):
        try:
            self._file = _output.create(name, content_type)
            self._stream = self._file.stream()
        except Err as error:
            raise Failed(f"output: {type(error.value).__name__[12:]}: {error.value.value}")
        self._buffer = bytearray()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.finish()
        return False

    def writable(self):
        return True

    def write(self, data):
        self._buffer += data
        if len(self._buffer) >= _BUFFER:
            self._flush_buffer()
        return len(data)

    def _flush_buffer(self):
        data, self._buffer = bytes(self._buffer), bytearray()
        while data:
            try:
                permitted = self._stream.check_write()
                if permitted == 0:
                    self._stream.subscribe().block()
                    continue
                self._stream.write(data[:permitted])
            except Err as error:
                raise Failed(f"output: {_stream_error(error)}")
            data = data[permitted:]

    def splice(self, response, on_progress=None):
        """Moves `response`'s body into this file without it entering guest
        memory; calls `on_progress(moved)` after each chunk. Returns the bytes
        moved; a cut connection raises `Unavailable`."""
        self._flush_buffer()
        body, source = response._body()
        moved = 0
        try:
            while True:
                try:
                    n = self._stream.blocking_splice(source, 1 << 62)
                except Err as error:
                    if isinstance(error.value, _streams.StreamError_Closed):
                        return moved
                    raise Unavailable(f"body of {response.url} interrupted: {_stream_error(error)}")
                if n == 0:
                    source.subscribe().block()
                    continue
                moved += n
                if on_progress is not None:
                    on_progress(moved)
        finally:
            _close(source)
            _close(body)

    def finish(self):
        """Stores everything written and keeps the file; returns its length."""
        self._flush_buffer()
        try:
            self._stream.blocking_flush()
            _close(self._stream)
            self._stream = None
            return self._file.finish()
        except Err as error:
            raise Failed(f"output: {error.value}")
