//! `magueyd`: the node daemon. All logic lives in the `maguey-daemon` library.
fn main() -> std::process::ExitCode {
    maguey_daemon::main()
}
