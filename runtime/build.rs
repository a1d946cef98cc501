//! Builds the bundled guests (`guests/*`) for `wasm32-wasip2`, so `cargo build`,
//! `cargo test` and `cargo run` need no extra step; the binary embeds them.

include!("build/guests.rs");

fn main() {
    build_guests(
        &[("http-vms", "CORRAL_GUEST_HTTP_VMS")],
        Path::new("guests"),
    );
}
