//! The kernel configuration a run describes: the `CONFIG_*` options that change what the
//! patching and trap paths do. A verdict is a statement about one configured kernel, so every
//! scenario carries one, every output names it, and it is part of every artifact's name.
//!
//! - `CONFIG_KPROBES`: whether `do_int3()` (`arch/x86/kernel/traps.c`) calls
//!   `kprobe_int3_handler()` (`arch/x86/kernel/kprobes/core.c`) after the patching handler
//!   declines a trap. With it, a trap at an address whose byte is no longer `0xcc` is a
//!   breakpoint "removed right after we hit it": `regs->ip` backs up over the vanished INT3
//!   and the CPU retries after a serializing IRET ([`crate::handler`]). Without it, such a
//!   trap goes on to `notify_die()` and `die("int3")`. Registered kprobes need it.
//!
//! The default is what `arch/x86/configs/x86_64_defconfig` selects (`CONFIG_KPROBES=y`).

use std::fmt;
use std::str::FromStr;

/// The configuration options pokesim models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelConfig {
    /// `CONFIG_KPROBES`.
    pub kprobes: bool,
}

/// The options by name, for files, flags and outputs.
pub const OPTIONS: [&str; 1] = ["CONFIG_KPROBES"];

/// What each option changes, for `pokesim list`.
pub const DESCRIPTIONS: [&str; 1] = [
    "do_int3() asks kprobe_int3_handler() after the patching handler: registered kprobes, and (up to 6.0) a trap whose INT3 has vanished from memory is retried (default y, as x86_64_defconfig)",
];

impl KernelConfig {
    /// `arch/x86/configs/x86_64_defconfig`: `CONFIG_KPROBES=y`.
    pub const DEFCONFIG: KernelConfig = KernelConfig { kprobes: true };

    /// Every configuration, the default first.
    pub const ALL: [KernelConfig; 2] = [KernelConfig { kprobes: true }, KernelConfig { kprobes: false }];

    /// Sets option `name` (`CONFIG_KPROBES`) to `value`.
    pub fn set(&mut self, name: &str, value: bool) -> Result<(), String> {
        match name {
            "CONFIG_KPROBES" => self.kprobes = value,
            _ => return Err(format!("unknown kernel option '{name}' (known: {})", OPTIONS.join(", "))),
        }
        Ok(())
    }

    /// The value of option `name`.
    pub fn get(&self, name: &str) -> Option<bool> {
        match name {
            "CONFIG_KPROBES" => Some(self.kprobes),
            _ => None,
        }
    }

    /// A short tag for file names: `kprobes` or `nokprobes`.
    pub fn tag(&self) -> &'static str {
        if self.kprobes {
            "kprobes"
        } else {
            "nokprobes"
        }
    }

    /// Parses one `NAME=y|n` assignment (as on the command line) into this configuration.
    pub fn assign(&mut self, assignment: &str) -> Result<(), String> {
        let Some((name, value)) = assignment.split_once('=') else {
            return Err(format!("'{assignment}' is not NAME=y or NAME=n (e.g. CONFIG_KPROBES=n)"));
        };
        let value = match value {
            "y" => true,
            "n" => false,
            other => return Err(format!("{name}={other}: the value must be y or n")),
        };
        self.set(name, value)
    }
}

impl Default for KernelConfig {
    fn default() -> Self {
        Self::DEFCONFIG
    }
}

impl fmt::Display for KernelConfig {
    /// `CONFIG_KPROBES=y`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> =
            OPTIONS.iter().map(|o| format!("{o}={}", if self.get(o) == Some(true) { "y" } else { "n" })).collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for KernelConfig {
    type Err = String;

    /// `CONFIG_KPROBES=n` (comma-separated assignments over the default).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut c = KernelConfig::DEFCONFIG;
        for a in s.split(',').filter(|a| !a.is_empty()) {
            c.assign(a.trim())?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for c in KernelConfig::ALL {
            assert_eq!(c.to_string().parse::<KernelConfig>(), Ok(c));
        }
        assert_eq!(KernelConfig::DEFCONFIG.to_string(), "CONFIG_KPROBES=y");
        assert!("CONFIG_KPROBES=maybe".parse::<KernelConfig>().is_err());
        assert!("CONFIG_FOO=y".parse::<KernelConfig>().unwrap_err().contains("unknown kernel option"));
        assert!("KPROBES".parse::<KernelConfig>().is_err());
    }
}
