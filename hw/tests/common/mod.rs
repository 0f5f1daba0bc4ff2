//! What the hardware tests share: the host, or why the test cannot run here.

/// The host, or `None` after printing `SKIPPED` with the reason — unless `POKESIM_REQUIRE_HW`
/// is set, which makes a host that cannot a failure.
pub fn host() -> Option<hw::Host> {
    match hw::probe() {
        Ok(h) => Some(h),
        Err(r) if std::env::var_os("POKESIM_REQUIRE_HW").is_some() => panic!("POKESIM_REQUIRE_HW is set: {r}"),
        Err(r) => {
            eprintln!("SKIPPED: {r}");
            None
        }
    }
}
