//! Embeds the shipped regression corpus (`corpus/*.toml`) in the library, so that `pokesim
//! corpus` without a directory runs it from an installed or copied binary too.

use std::fmt::Write;
use std::path::Path;

fn main() {
    // Read at run time, not compiled in (`env!`): a build script binary reused from another
    // checkout's target directory must still read this checkout's corpus.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("corpus");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|x| x == "toml"));
    files.sort();
    let mut out = String::from(
        "/// The shipped corpus: `(file name, contents)`, sorted by name.\npub const BUILTIN: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_name().and_then(|n| n.to_str()).expect("corpus file names are UTF-8");
        writeln!(out, "    ({name:?}, include_str!({:?})),", f.display().to_string()).expect("string write");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("builtin_corpus.rs");
    std::fs::write(dest, out).expect("write the embedded corpus");
}
