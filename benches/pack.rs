//! Packs a directory into one layer (gzip or zstd) with assemble's layer writer and
//! prints the wall time, the blob size and its digest. Driven by
//! benches/pack.sh, which measures a peer on the same tree in the same run.
//!
//!     cargo bench --bench pack -- DIR OUTDIR [gzip|zstd]

use std::path::PathBuf;
use std::time::Instant;

use assemble::image::layer::{Compression, Layer, Owner, Select};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (dir, out, compression) = match args.as_slice() {
        [d, o] => (d, o, Compression::Gzip),
        [d, o, c] if c == "zstd" => (d, o, Compression::Zstd),
        [d, o, c] if c == "gzip" => (d, o, Compression::Gzip),
        _ => {
            eprintln!("usage: pack DIR OUTDIR [gzip|zstd]");
            std::process::exit(2);
        }
    };
    let (dir, out) = (PathBuf::from(dir), PathBuf::from(out));
    std::fs::create_dir_all(&out).expect("output directory");
    let start = Instant::now();
    let mut layer = Layer::new();
    layer.add_tree(
        &dir,
        "home/blue/app",
        Owner { uid: 1000, gid: 33 },
        Select::All,
    );
    let blob = layer.write_blob(&out, compression, 0).expect("pack");
    let secs = start.elapsed().as_secs_f64();
    println!("{secs:.3} {} {}", blob.size, blob.digest);
}
