// Builds a JavaScript integration into a component: bundles the app with
// @corral/guest (rolldown; the WIT imports stay external), then runs
// componentize-js on the bundle (its CLI, not `jco componentize`, whose
// `--wit` fails on any path in jco 1.35).
//
//   node build.mjs --sdk <@corral/guest's index.js> --wit <wit dir> --out <x.wasm> <app.js>
//
// Run from the toolchain folder that holds node_modules (the build scripts copy it there).
import { writeFile, mkdir } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { rolldown } from "rolldown";
import { componentize } from "@bytecodealliance/componentize-js";

const { values, positionals } = parseArgs({
  options: { sdk: { type: "string" }, wit: { type: "string" }, out: { type: "string" } },
  allowPositionals: true,
});
if (!values.sdk || !values.wit || !values.out || positionals.length !== 1) {
  console.error("usage: node build.mjs --sdk <index.js> --wit <wit dir> --out <x.wasm> <app.js>");
  process.exit(2);
}
// Named after the component, so stack frames read `http_vms_js.js:12:3`.
const bundle = resolve(values.out).replace(/(\.wasm)?(\.partial)?$/, ".js");
const build = await rolldown({
  input: resolve(positionals[0]),
  external: [/^wasi:/, /^corral:/],
  resolve: { alias: { "@corral/guest": resolve(values.sdk) } },
  logLevel: "warn",
});
await mkdir(dirname(values.out), { recursive: true });
await build.write({ file: bundle, format: "esm" });
// componentize-js 0.23 mangles a source path outside the working folder
// ("../out/bundle.js" becomes "ut/bundle.js"): give it one inside.
const out = resolve(values.out);
const wit = resolve(values.wit);
process.chdir(dirname(bundle));
const { component } = await componentize({
  sourcePath: basename(bundle),
  witPath: wit,
  worldName: "integration",
});
await writeFile(out, component);
console.log(`built ${values.out} (${component.length} bytes)`);
