//! The compile cache: a second build of the same inputs does not run clang; a corrupt entry is
//! rebuilt; a symlink where an entry goes is refused. One test, so that the process-wide
//! `builds_run()` counter is not bumped by another test running in parallel.

mod support;

use c_protocol::{build_in, builds_run, cache, toolchain, BuildError};
use support::{Paths, TempDir};

#[test]
fn a_cache_hit_does_not_recompile() {
    let dir = TempDir::new("cache");
    let p = Paths::of("ok.c");
    let b = p.build(&[]);

    let before = builds_run();
    let first = build_in(&b, &dir.0).expect("ok.c builds");
    assert_eq!(builds_run(), before + 1, "a miss compiles");
    let second = build_in(&b, &dir.0).expect("ok.c from the cache");
    assert_eq!(builds_run(), before + 1, "a hit does not compile");
    assert_eq!(first, second, "the cached image is the built one");

    // The entry is where the content hash and the given paths say.
    let hash = cache::content_hash(&b, &toolchain::tool_versions().unwrap()).unwrap();
    assert_eq!(hash, first.hash);
    let entry = dir.0.join(cache::entry_name(&b, &hash));
    assert!(entry.is_file(), "{}", entry.display());
    assert_eq!(cache::decode(&std::fs::read(&entry).unwrap()).as_ref(), Some(&first));

    // A corrupt (truncated) entry is rebuilt and replaced.
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(build_in(&b, &dir.0).unwrap(), first);
    assert_eq!(builds_run(), before + 2, "a corrupt entry is a miss");
    assert_eq!(std::fs::read(&entry).unwrap(), bytes, "and is rewritten");

    // A symlink where the entry goes is refused, never followed.
    std::fs::remove_file(&entry).unwrap();
    let target = dir.0.join("elsewhere");
    std::os::unix::fs::symlink(&target, &entry).unwrap();
    let e = build_in(&b, &dir.0).unwrap_err();
    assert!(matches!(&e, BuildError::Io { message, .. } if message.contains("not a regular file")), "{e:?}");
    assert!(!target.exists(), "nothing written through the link");
    assert!(std::fs::read_dir(&dir.0).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("build-")));
}
