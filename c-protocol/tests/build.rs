//! Building C files into kernel images: where symbols land, the line table, and every kind of
//! bad input as its own error.

mod support;

use c_protocol::{build_in, BuildError};
use sim_core::kernel_image::{Service, KCODE_BASE, KCODE_MAX, KDATA_BASE, KDATA_MAX};
use support::{Paths, TempDir};

#[test]
fn a_function_and_globals_land_in_their_regions() {
    let cache = TempDir::new("regions");
    let p = Paths::of("ok.c");
    let img = build_in(&p.build(&[]), &cache.0).expect("ok.c builds");
    assert_eq!(img.source, p.source.display().to_string());
    assert_eq!(img.hash.len(), 32);
    assert!(img.hash.chars().all(|c| c.is_ascii_hexdigit()));

    let code = KCODE_BASE..KCODE_BASE + img.code.len() as u64;
    let data = KDATA_BASE..KDATA_BASE + img.data.len() as u64;
    assert!(!img.code.is_empty() && img.code.len() as u64 <= KCODE_MAX);
    assert!(!img.data.is_empty() && img.data.len() as u64 <= KDATA_MAX);
    for f in ["patch_site", "memcpy"] {
        assert!(code.contains(&img.symbol(f).unwrap()), "{f} in the code region");
    }
    for o in ["patch_count", "new_bytes", "text_mutex"] {
        assert!(data.contains(&img.symbol(o).unwrap()), "{o} in the data region");
    }
    for s in Service::ALL {
        assert_eq!(img.symbol(s.symbol()), Some(s.addr()), "service {}", s.symbol());
    }
    let at = |sym: &str, n: usize| {
        let off = (img.symbol(sym).unwrap() - KDATA_BASE) as usize;
        img.data[off..off + n].to_vec()
    };
    assert_eq!(at("new_bytes", 5), [0xe9, 1, 2, 3, 4]);
    assert_eq!(at("patch_count", 4), [0, 0, 0, 0]);
    assert_eq!(img.symbol("extra_global"), None);
}

#[test]
fn the_call_to_text_poke_targets_its_service_slot() {
    let cache = TempDir::new("calls");
    let img = build_in(&Paths::of("ok.c").build(&[]), &cache.0).expect("ok.c builds");
    let start = img.symbol("patch_site").unwrap();
    let code = &img.code[(start - KCODE_BASE) as usize..];
    // Some `call rel32` (E8) or `jmp rel32` (E9, a tail call) in patch_site reaches the slot.
    let hits = (0..code.len().min(256) - 5).any(|i| {
        let rel = i32::from_le_bytes(code[i + 1..i + 5].try_into().unwrap());
        let target = (start + i as u64 + 5).wrapping_add(rel as i64 as u64);
        code[i] == 0xe8 && target == Service::TextPoke.addr()
    });
    assert!(hits, "patch_site calls text_poke at {:#x}", Service::TextPoke.addr());
}

#[test]
fn the_line_table_maps_the_function_to_its_file_and_line() {
    let cache = TempDir::new("lines");
    let p = Paths::of("ok.c");
    let img = build_in(&p.build(&[]), &cache.0).expect("ok.c builds");
    let f = img.symbol("patch_site").unwrap();
    let row = img.line(f).expect("a row at patch_site");
    assert_eq!(row.addr, f);
    assert_eq!(row.file, p.source.display().to_string());
    assert_eq!(row.line, 8, "clang gives the prologue the opening brace's line");
    assert_eq!(row.function, "patch_site");
    let body: Vec<_> = img.lines.iter().filter(|r| r.function == "patch_site").map(|r| r.line).collect();
    for line in [9, 10, 11, 16] {
        assert!(body.contains(&line), "line {line} of ok.c in patch_site's rows {body:?}");
    }
    let header = p.include.join("pokesim.h").display().to_string();
    let inlined = img.lines.iter().find(|r| r.file == header).expect("a row of the header's inline function");
    assert_eq!((inlined.line, inlined.function.as_str()), (14, "patch_site"));
    assert!(img.lines.windows(2).all(|w| w[0].addr <= w[1].addr), "sorted by address");
    let rt = img.line(img.symbol("memcpy").unwrap()).unwrap();
    assert!(rt.file.ends_with("rt.c") && rt.function == "memcpy", "{rt:?}");
}

#[test]
fn defines_reach_the_compiler_and_the_hash() {
    let cache = TempDir::new("defines");
    let p = Paths::of("ok.c");
    let plain = build_in(&p.build(&[]), &cache.0).unwrap();
    let defines = ["POKESIM_MUTANT_EXTRA".to_string()];
    let extra = build_in(&p.build(&defines), &cache.0).unwrap();
    assert_ne!(plain.hash, extra.hash);
    assert_eq!(plain.symbol("extra_global"), None);
    let off = (extra.symbol("extra_global").unwrap() - KDATA_BASE) as usize;
    assert_eq!(extra.data[off..off + 4], 7i32.to_le_bytes());
}

#[test]
fn a_syntax_error_is_a_compile_error_with_file_and_line() {
    let cache = TempDir::new("syntax");
    let p = Paths::of("syntax.c");
    let e = build_in(&p.build(&[]), &cache.0).unwrap_err();
    let BuildError::Compile { source, messages } = &e else { panic!("expected Compile, got {e:?}") };
    assert_eq!(source, &p.source.display().to_string());
    assert!(messages.contains("syntax.c:5:"), "{messages}");
    assert!(messages.contains("error"), "{messages}");
    assert!(e.to_string().contains("syntax.c:5:"), "{e}");
}

#[test]
fn an_undefined_function_is_a_link_error_naming_it() {
    let cache = TempDir::new("undefined");
    let e = build_in(&Paths::of("undefined.c").build(&[]), &cache.0).unwrap_err();
    let BuildError::Link { messages } = &e else { panic!("expected Link, got {e:?}") };
    assert!(messages.contains("undefined symbol `not_in_the_header`"), "{messages}");
    assert!(messages.contains("pokesim.h does not provide it"), "{messages}");
}

#[test]
fn a_too_large_array_is_too_large() {
    let cache = TempDir::new("large");
    let e = build_in(&Paths::of("large.c").build(&[]), &cache.0).unwrap_err();
    let BuildError::TooLarge { what, size, max } = e else { panic!("expected TooLarge, got {e:?}") };
    assert!(what.starts_with("data"), "{what}");
    assert_eq!(max, KDATA_MAX);
    assert!(size >= 2 << 20, "{size}");
}

#[test]
fn too_large_code_and_an_array_past_two_gib_are_too_large() {
    let cache = TempDir::new("bigcode");
    let e = build_in(&Paths::of("bigcode.c").build(&[]), &cache.0).unwrap_err();
    let BuildError::TooLarge { what, size, max } = e else { panic!("expected TooLarge, got {e:?}") };
    assert!(what.starts_with("code"), "{what}");
    assert_eq!(max, KCODE_MAX);
    assert!(size > 0x100000, "{size}");
    let e = build_in(&Paths::of("huge.c").build(&[]), &cache.0).unwrap_err();
    assert!(matches!(e, BuildError::TooLarge { size, .. } if size >= 3 << 30), "{e:?}");
}

#[test]
fn a_file_defining_a_kernel_service_is_refused() {
    let cache = TempDir::new("service");
    let e = build_in(&Paths::of("service.c").build(&[]), &cache.0).unwrap_err();
    let BuildError::Link { messages } = &e else { panic!("expected Link, got {e:?}") };
    assert!(messages.contains("service.c defines `sync_core`, a kernel service"), "{messages}");
}

#[test]
fn thread_local_storage_is_refused() {
    let cache = TempDir::new("tls");
    let e = build_in(&Paths::of("tls.c").build(&[]), &cache.0).unwrap_err();
    let BuildError::Link { messages } = &e else { panic!("expected Link, got {e:?}") };
    assert!(messages.contains("thread-local"), "{messages}");
}

#[test]
fn a_missing_source_is_an_io_error_naming_it() {
    let cache = TempDir::new("missing");
    let e = build_in(&Paths::of("no-such-file.c").build(&[]), &cache.0).unwrap_err();
    assert!(matches!(&e, BuildError::Io { path, .. } if path.ends_with("no-such-file.c")), "{e:?}");
}
