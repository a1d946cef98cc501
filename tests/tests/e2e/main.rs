//! End-to-end tests: real components in the real runtime against camera-sim on
//! loopback. One test binary, so wasmtime is linked once.

mod agent;
mod azure;
mod camera_sim;
mod console;
mod hostile;
mod hotswap;
mod http_vms;
mod loading;
mod nodes;
mod openapi;
mod ownership;
mod polyglot;
mod registry;
mod scheduling;
mod upload;
