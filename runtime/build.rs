//! Builds the bundled guests (`guests/*`) for `wasm32-wasip2`, so `cargo build`,
//! `cargo test` and `cargo run` need no extra step; the binary embeds
//! http-vms. `my-vms` is the README's "Writing an integration" example, built
//! here once so the README test runs it without a cargo of its own.

include!("build/guests.rs");

fn main() {
    build_guests(
        &[
            ("http-vms", "CORRAL_GUEST_HTTP_VMS"),
            ("my-vms", "CORRAL_GUEST_MY_VMS"),
        ],
        Path::new("guests"),
    );
}
