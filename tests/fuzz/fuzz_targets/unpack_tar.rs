//! The tar reader on arbitrary bytes: never a panic, never a write outside
//! the target (a marker directory beside it must stay empty).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let outer = tempfile::tempdir().unwrap();
    let target = outer.path().join("root");
    let marker = outer.path().join("marker");
    std::fs::create_dir(&target).unwrap();
    std::fs::create_dir(&marker).unwrap();
    let _ = assemble::unpack::unpack(data, &target);
    let escaped: Vec<_> = std::fs::read_dir(outer.path()).unwrap().flatten().map(|e| e.file_name()).filter(|n| n != "root" && n != "marker").collect();
    assert!(escaped.is_empty(), "written outside the target: {escaped:?}");
    assert_eq!(std::fs::read_dir(&marker).unwrap().count(), 0, "written into a sibling directory");
});
