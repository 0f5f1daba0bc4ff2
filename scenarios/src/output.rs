//! Files pokesim writes (artifacts, traces, reports): atomically — to a temporary name in the
//! same directory, then renamed — so a failed or interrupted write never leaves a truncated
//! file where a reader expects a whole one.

use std::path::Path;

/// Writes `contents` to `path` atomically, creating its directory if needed.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let written = std::fs::write(&tmp, contents).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
