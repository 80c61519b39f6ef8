//! `magueyd`: the node daemon. All logic lives in the `maguey-daemon` crate.
fn main() -> std::process::ExitCode {
    maguey_daemon::main()
}
