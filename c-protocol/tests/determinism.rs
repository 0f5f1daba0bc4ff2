//! The same inputs give byte-identical images in two processes: this test runs its own binary
//! again as a child (with a cache of its own, so both really compile) and compares the hash and
//! every byte of the two images.

mod support;

use c_protocol::{build_in, cache};
use support::{Paths, TempDir};

const CHILD_OUT: &str = "C_PROTOCOL_TEST_CHILD_OUT";

fn build_ok(tag: &str) -> Vec<u8> {
    let dir = TempDir::new(tag);
    let p = Paths::of("ok.c");
    let defines = ["CONFIG_KPROBES".to_string()];
    cache::encode(&build_in(&p.build(&defines), &dir.0).expect("ok.c builds"))
}

/// In the child: build and write the encoded image where the parent says. In the parent: a no-op.
#[test]
fn child_builds_ok() {
    if let Some(out) = std::env::var_os(CHILD_OUT) {
        std::fs::write(out, build_ok("child")).expect("write the child's image");
    }
}

#[test]
fn two_processes_build_the_same_image() {
    let out = TempDir::new("determinism-out");
    let file = out.0.join("child.img");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_builds_ok", "--test-threads=1"])
        .env(CHILD_OUT, &file)
        .status()
        .expect("run the child");
    assert!(status.success());
    let child = std::fs::read(&file).expect("the child's image");
    let mine = build_ok("parent");
    let (c, m) = (cache::decode(&child).unwrap(), cache::decode(&mine).unwrap());
    assert_eq!(c.hash, m.hash);
    assert_eq!(c.code, m.code);
    assert_eq!(c.data, m.data);
    assert_eq!(child, mine, "byte-identical images, symbols and line tables included");
}
