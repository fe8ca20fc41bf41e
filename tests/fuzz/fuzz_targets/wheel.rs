//! The wheel reader on arbitrary bytes: never a panic; a wheel that passes
//! the full check has a readable directory naming its RECORD, and a RECORD
//! line's path is never longer than the line.
#![no_main]

use assemble::python::wheel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let names = wheel::member_names(data);
    if wheel::check(data).is_ok() {
        let names = names.expect("a checked wheel has a readable directory");
        assert!(
            names.iter().any(|n| n.ends_with(".dist-info/RECORD")),
            "a checked wheel without RECORD: {names:?}"
        );
    }
    for line in String::from_utf8_lossy(data).lines() {
        if let Some(path) = wheel::record_path(line) {
            assert!(path.len() <= line.len(), "{line:?} gave {path:?}");
        }
    }
});
