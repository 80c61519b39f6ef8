//! The workspace's binaries, as tests find them: built by `cargo build --workspace --bins`
//! (as `./scripts/test` does) into the target directory of the running test.

use std::path::{Path, PathBuf};

/// The binary `name` beside `exe` (e.g. `magueyd` beside `env!("CARGO_BIN_EXE_maguey")`);
/// panics with what to run when it is missing.
pub fn beside(exe: &Path, name: &str) -> PathBuf {
    let p = exe.with_file_name(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (./scripts/test does)",
        p.display()
    );
    p
}

/// The binary `name` of this workspace: `$MAGUEY_BIN` for `maguey`, else in the target
/// directory the running test binary was built in (`target/debug/deps/..`).
pub fn workspace_bin(name: &str) -> PathBuf {
    if name == "maguey" {
        if let Some(p) = std::env::var_os("MAGUEY_BIN") {
            return PathBuf::from(p);
        }
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .ancestors()
        .skip(1)
        .take(2)
        .find(|d| d.join(name).is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| {
            exe.parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."))
                .to_path_buf()
        });
    beside(&dir.join("x"), name)
}
