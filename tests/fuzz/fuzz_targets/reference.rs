//! The image reference parser: never a panic; what parses prints back to
//! something that parses to the same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(r) = assemble::registry::Reference::parse(s) {
            let again = assemble::registry::Reference::parse(&r.to_string()).expect("a printed reference parses");
            assert_eq!(again, r);
        }
    }
});
