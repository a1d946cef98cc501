// @corral/guest: write a camera integration for corral in JavaScript.
//
// A thin layer over the imports componentize-js binds from corral's WIT:
// `exportIntegration` turns an object with one method per job type into the
// component's exports, `http.get(url).ok().json()` asks the camera system,
// `Output` is an output file with `write` and `splice` (the bytes of an HTTP
// body never enter the guest), and `progress`, `log`, `settings`. Throw
// `Unavailable`, `Unsupported` or `Failed` to end a job with that verdict; any
// other error fails the job with its message and stack.
//
//   import { exportIntegration, http, Output, settings } from "@corral/guest";
//   export const { discover, thumbnail, extractMedia } = exportIntegration({
//     thumbnail(job) {
//       const response = http.get(`${settings.require("base-url")}/snap/${job.requireDevice()}`).ok();
//       const out = new Output("snapshot.jpg", "image/jpeg");
//       out.splice(response);
//       out.finish();
//     },
//   });
//
// WIT calls are synchronous (componentize-js binds imports synchronously), so
// the SDK is too; a handler may still be an `async` function for its own code
// only if it does not await the host.

import { handle } from "wasi:http/outgoing-handler@0.2.12";
import { Fields, OutgoingRequest } from "wasi:http/types@0.2.12";
import { create } from "corral:integration/output@0.1.0";
import { report } from "corral:integration/progress@0.1.0";
import { write as writeLog } from "corral:integration/log@0.1.0";
import { get as getSetting, all as allSettings } from "corral:integration/settings@0.1.0";

/** Ends a job with a verdict the host acts on; see the subclasses. */
export class JobError extends Error {
  constructor(message, tag = "failed") {
    super(message);
    this.name = new.target.name;
    // componentize-js sends a thrown value's `payload` as the result's error.
    this.payload = { tag, val: message };
  }
}
/** Not now, maybe later (camera offline, busy): the job is released. */
export class Unavailable extends JobError {
  constructor(message) { super(message, "unavailable"); }
}
/** Never (unknown device, unsupported request): the job is cancelled. */
export class Unsupported extends JobError {
  constructor(message) { super(message, "unsupported"); }
}
/** Something went wrong: the job ends Failed with this message. */
export class Failed extends JobError {
  constructor(message) { super(message, "failed"); }
}

/** The job record (`id`, `kind`, `deviceId`, `timeRange`, `parameters`) with helpers. */
class Job {
  constructor(job) {
    Object.assign(this, job);
    this.parameters = Object.fromEntries(job.parameters);
  }
  requireDevice() {
    if (this.deviceId === undefined) throw new Unsupported(`job ${this.id} names no device`);
    return this.deviceId;
  }
  requireTimeRange() {
    if (this.timeRange === undefined) throw new Unsupported(`job ${this.id} has no time range`);
    return this.timeRange;
  }
}

/**
 * The component's exports for `integration` (an object with `discover`,
 * `thumbnail`, `extractMedia`; a missing one is Unsupported):
 * `export const { discover, thumbnail, extractMedia } = exportIntegration({...})`.
 */
export function exportIntegration(integration) {
  const call = (name, what) => (job) => {
    if (typeof integration[name] !== "function") {
      throw new Unsupported(`this integration does not serve ${what}`);
    }
    try {
      return integration[name](new Job(job));
    } catch (error) {
      if (!(error instanceof JobError)) {
        // The bindings report only the error's text and their own stack, so
        // its stack is printed here, in the engine's own form, for the host
        // to quote; the job then fails with it.
        const frames = String(error?.stack ?? "").trim().split("\n").map((frame) => `  ${frame}`);
        console.error(`Uncaught ${error}\nStack:\n${frames.join("\n")}\n`);
      }
      throw error;
    }
  };
  const thumbnail = call("thumbnail", "thumbnails");
  const extractMedia = call("extractMedia", "media requests");
  return {
    discover: call("discover", "discovery"),
    thumbnail: (job) => { thumbnail(job); },
    extractMedia: (job) => extractMedia(job) ?? "completed",
  };
}

/** The integration's non-secret settings, from its manifest. */
export const settings = {
  get: (name, fallback) => getSetting(name) ?? fallback,
  require(name) {
    const value = getSetting(name);
    if (value === undefined) throw new Failed(`setting \`${name}\` is missing from the manifest`);
    return value;
  },
  all: () => Object.fromEntries(allSettings()),
};

/** Progress of the job, shown by the registry as done / total. */
export const progress = {
  report: (done, total) => report(BigInt(Math.max(0, Math.floor(Number(done)))), BigInt(Math.max(0, Math.floor(Number(total))))),
};

/** Log lines, tagged by the host with the job and the integration. */
export const log = Object.fromEntries(
  ["debug", "info", "warn", "error"].map((level) => [level, (message) => writeLog(level, String(message))]),
);

// `HTTP-request-denied` -> `HttpRequestDenied`, as the Rust and Python SDKs name codes.
const codeName = (tag) => String(tag).split("-").map((w) => w[0].toUpperCase() + w.slice(1).toLowerCase()).join("");

function requestError(code) {
  const name = codeName(code?.tag ?? code);
  if (name === "HttpRequestDenied" || name === "DestinationIpProhibited") {
    return new Failed(`request denied by the sandbox: ${name}`);
  }
  return new Unavailable(`request failed: ${code?.val ?? name}`);
}

const errorPayload = (error) => error?.payload ?? error;

/** The answer to a request: status, headers and a body to read or splice. */
export class Response {
  constructor(url, inner) {
    this.url = url;
    this.inner = inner;
    this.status = inner.status();
  }
  header(name) {
    const [value] = this.inner.headers().get(name.toLowerCase());
    return value === undefined ? undefined : new TextDecoder().decode(value);
  }
  get contentLength() {
    const value = this.header("content-length");
    return value !== undefined && /^\s*\d+\s*$/.test(value) ? Number(value) : undefined;
  }
  /** This response if 2xx; else 404 is Unsupported, 503 and 429 Unavailable, any other Failed. */
  ok() {
    if (this.status >= 200 && this.status < 300) return this;
    const message = `${this.url} answered HTTP ${this.status}`;
    if (this.status === 404) throw new Unsupported(message);
    if (this.status === 429 || this.status === 503) throw new Unavailable(message);
    throw new Failed(message);
  }
  body() {
    const body = this.inner.consume();
    return { body, stream: body.stream() };
  }
  /** The whole body. Fine for small answers; splice big ones. */
  bytes() {
    const { stream } = this.body();
    const chunks = [];
    for (;;) {
      try {
        chunks.push(stream.blockingRead(65536n));
      } catch (error) {
        const payload = errorPayload(error);
        if (payload?.tag === "closed") break;
        throw new Failed(`bad response body: ${payload?.val?.toDebugString?.() ?? error}`);
      }
    }
    const all = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.length, 0));
    chunks.reduce((at, chunk) => (all.set(chunk, at), at + chunk.length), 0);
    return all;
  }
  text() {
    return new TextDecoder().decode(this.bytes());
  }
  json() {
    try {
      return JSON.parse(this.text());
    } catch (error) {
      if (error instanceof JobError) throw error;
      throw new Failed(`${this.url} did not answer the expected JSON: ${error.message}`);
    }
  }
}

/** HTTP to the camera system: only hosts the manifest grants answer, and the host adds the credentials it names. */
export const http = {
  get: (url, headers = {}) => http.request("GET", url, headers),
  request(method, url, headers = {}) {
    const match = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?]+)(.*)$/.exec(url);
    if (!match) throw new Failed(`bad URL: ${url}`);
    const [, scheme, authority, rest] = match;
    const fields = Fields.fromList(
      Object.entries(headers).map(([name, value]) => [name.toLowerCase(), new TextEncoder().encode(value)]),
    );
    const request = new OutgoingRequest(fields);
    const known = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    const upper = method.toUpperCase();
    request.setMethod(known.includes(upper) ? { tag: upper.toLowerCase() } : { tag: "other", val: upper });
    const lower = scheme.toLowerCase();
    request.setScheme(lower === "http" || lower === "https" ? { tag: lower.toUpperCase() } : { tag: "other", val: scheme });
    request.setAuthority(authority);
    request.setPathWithQuery(rest.startsWith("/") ? rest : `/${rest}`);
    let pending;
    try {
      pending = handle(request, undefined);
    } catch (error) {
      throw requestError(errorPayload(error));
    }
    pending.subscribe().block();
    const answer = pending.get();
    if (answer === undefined || answer.tag === "err") throw new Unavailable("request failed: response already taken");
    if (answer.val.tag === "err") throw requestError(answer.val.val);
    return new Response(url, answer.val.val);
  },
};

/**
 * One output file: `write(bytes)` (buffered, handed to the host a megabyte
 * at a time), `splice(response, onProgress)` (host-side), `finish()`. A file
 * never finished is discarded and fails the job.
 */
export class Output {
  constructor(name, contentType) {
    try {
      this.file = create(name, contentType);
      this.stream = this.file.stream();
    } catch (error) {
      const payload = errorPayload(error);
      throw new Failed(`output: ${payload?.tag}: ${payload?.val ?? error}`);
    }
    this.buffered = [];
    this.size = 0;
  }
  write(bytes) {
    const chunk = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
    this.buffered.push(chunk);
    this.size += chunk.length;
    if (this.size >= 1 << 20) this.flushBuffer();
    return chunk.length;
  }
  flushBuffer() {
    for (let chunk of this.buffered) {
      while (chunk.length > 0) {
        const permitted = Number(this.stream.checkWrite());
        if (permitted === 0) {
          this.stream.subscribe().block();
          continue;
        }
        this.stream.write(chunk.subarray(0, permitted));
        chunk = chunk.subarray(permitted);
      }
    }
    this.buffered = [];
    this.size = 0;
  }
  /** Moves `response`'s body into this file host-side; returns the bytes moved. A cut connection is Unavailable. */
  splice(response, onProgress = () => {}) {
    this.flushBuffer();
    const { stream } = response.body();
    let moved = 0;
    for (;;) {
      let n;
      try {
        n = Number(this.stream.blockingSplice(stream, 1n << 62n));
      } catch (error) {
        const payload = errorPayload(error);
        if (payload?.tag === "closed") return moved;
        throw new Unavailable(`body of ${response.url} interrupted: ${payload?.val?.toDebugString?.() ?? error}`);
      }
      if (n === 0) {
        stream.subscribe().block();
        continue;
      }
      moved += n;
      onProgress(moved);
    }
  }
  /** Stores everything written and keeps the file; returns its length. */
  finish() {
    this.flushBuffer();
    this.stream.blockingFlush();
    this.stream[Symbol.dispose]?.();
    this.stream = undefined;
    return Number(this.file.finish());
  }
}
