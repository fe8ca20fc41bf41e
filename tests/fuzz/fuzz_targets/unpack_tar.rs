//! The tar reader on arbitrary bytes: never a panic, never a write outside
//! the target, never a removal outside it: a sibling directory holding a
//! file must keep it, and nothing new may appear beside the target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let outer = tempfile::tempdir().unwrap();
    let target = outer.path().join("root");
    let sibling = outer.path().join("sibling");
    std::fs::create_dir(&target).unwrap();
    std::fs::create_dir(&sibling).unwrap();
    std::fs::write(sibling.join("kept"), b"kept").unwrap();
    let _ = assemble::image::unpack::unpack(data, &target);
    assert!(outer.path().is_dir(), "the target's parent was removed");
    let beside: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "root" && n != "sibling")
        .collect();
    assert!(beside.is_empty(), "written outside the target: {beside:?}");
    let in_sibling: Vec<_> = std::fs::read_dir(&sibling)
        .expect("the sibling directory was removed")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(in_sibling, ["kept"], "the sibling directory was changed");
    assert_eq!(
        std::fs::read(sibling.join("kept")).unwrap(),
        b"kept",
        "a file beside the target was changed"
    );
});
