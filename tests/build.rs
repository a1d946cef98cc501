//! Builds the test-only guests (`tests/guests/*`: the hostile one, a component
//! of another world) for `wasm32-wasip2`, with the same code as the runtime's
//! build script.

include!("../runtime/build/guests.rs");

fn main() {
    build_guests(
        &[
            ("hostile", "CORRAL_TEST_GUEST_HOSTILE"),
            ("other-world", "CORRAL_TEST_GUEST_OTHER_WORLD"),
        ],
        Path::new("tests/guests"),
    );
}
