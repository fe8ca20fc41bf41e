//! The requirement parser: never a panic on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        // Paths are looked up on disk: keep inputs to names and versions.
        if !s.contains('/') && !s.ends_with(".whl") {
            let _ = assemble::spec::Requirement::parse(s);
        }
    }
});
