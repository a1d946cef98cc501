//! The operator's and the integration author's first hour, run for real: the
//! README's blocks, the registry's command line, its messages and the logs,
//! through the `corral` binary against camera-sim and the registry on loopback.
//! One test binary, so the runtime is linked once.

mod dev_loop;
mod guests_new;
mod logs;
mod messages;
mod readme;
mod registry_cli;
mod support;
