// A JavaScript guest with a bug: its thumbnail handler throws an error it does
// not catch. The e2e suite checks that the job fails with the error and its
// stack, escaped.
import { exportIntegration } from "@corral/guest";

function lookup(camera) {
  console.log("looking up \x1b[31mthe camera\x1b[0m");
  return { "cam-0001": { name: "lobby" } }[camera].name;
}

export const { discover, thumbnail, extractMedia } = exportIntegration({
  thumbnail(job) {
    return lookup(`${job.requireDevice()}\nforged line`);
  },
});
