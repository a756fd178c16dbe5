#![no_main]
// The harness (and the properties it asserts) lives in hookline_core::fuzz, so the normal test
// suite replays this target's corpus through exactly the same code.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hookline_core::fuzz::ed25519_signature(data));
