//! The macros' compile errors (`tests/ui/<macro>/*.rs` with their `.stderr`) and the programs
//! that must compile (`tests/ui/pass/`).
//!
//! The `.stderr` files are made with the toolchain pinned in `rust-toolchain.toml`; after a
//! deliberate change, regenerate them with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/event/*.rs");
    cases.compile_fail("tests/ui/aggregate/*.rs");
    cases.compile_fail("tests/ui/commands/*.rs");
    cases.compile_fail("tests/ui/projection/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
