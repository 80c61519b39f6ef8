//! `maguey-iallocator REQUEST.json` (or `-` for stdin): answer a Ganeti
//! iallocator request on stdout, like htools' hail. Exits 0 whenever a
//! well-formed answer (including `success: false`) was printed, non-zero
//! only for unreadable or unparsable input.

use std::io::Read;

use maguey_placement::alloc::AllocOptions;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = AllocOptions::default();
    let mut file = None;
    for a in &args {
        match a.as_str() {
            "--ignore-soft-errors" => opts.ignore_soft_errors = true,
            "--no-capacity-checks" => opts.capacity_checks = false,
            "--capacity-checks" => opts.capacity_checks = true,
            "-h" | "--help" => {
                println!("usage: maguey-iallocator [--ignore-soft-errors] [--capacity-checks] REQUEST.json|-");
                return;
            }
            f => file = Some(f.to_string()),
        }
    }
    let Some(file) = file else {
        eprintln!(
            "usage: maguey-iallocator [--ignore-soft-errors] [--capacity-checks] REQUEST.json|-"
        );
        std::process::exit(2);
    };
    let body = if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    } else {
        std::fs::read_to_string(&file)
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            eprintln!("Error: cannot read {file}: {e}");
            std::process::exit(1);
        }
    };
    match maguey_placement::ialloc::answer(&body, &opts) {
        Ok(out) => println!("{out}"),
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
    }
}
