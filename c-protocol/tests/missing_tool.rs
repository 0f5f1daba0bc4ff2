//! A missing compiler is an environment error (`Tool`), not a compile error. Its own test
//! binary: the tool's name is read once per process, from `$POKESIM_CLANG` here.

mod support;

use c_protocol::{build_in, builds_run, BuildError};
use support::{Paths, TempDir};

#[test]
fn a_missing_clang_is_a_tool_error() {
    std::env::set_var("POKESIM_CLANG", "/nonexistent/pokesim-test-clang");
    let cache = TempDir::new("missing-tool");
    let e = build_in(&Paths::of("ok.c").build(&[]), &cache.0).unwrap_err();
    let BuildError::Tool { tool, message } = &e else { panic!("expected Tool, got {e:?}") };
    assert_eq!(*tool, "clang");
    assert!(message.contains("/nonexistent/pokesim-test-clang") && message.contains("install clang 14"), "{message}");
    assert_eq!(builds_run(), 0);
}
