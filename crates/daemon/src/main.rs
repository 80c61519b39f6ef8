//! `magueyd`: the node daemon. All logic lives in the `maguey-daemon` library.
fn main() -> std::process::ExitCode {
    // Process settings first, while this is the only thread (crates/daemon/src/runtime.rs).
    maguey_daemon::runtime::tune_malloc();
    maguey_daemon::main()
}
