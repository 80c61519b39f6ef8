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
        Ok(b) => std::mem::ManuallyDrop::new(b),
        Err(e) => {
            eprintln!("Error: cannot read {file}: {e}");
            std::process::exit(1);
        }
    };
    // MAGUEY_IALLOC_TIMING=1: phase timings on stderr (for BENCH.md)
    let timing = std::env::var_os("MAGUEY_IALLOC_TIMING").is_some();
    let t0 = std::time::Instant::now();
    let req = match maguey_placement::ialloc::parse_request(&body) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
    };
    let t1 = std::time::Instant::now();
    let (r, cluster) = maguey_placement::ialloc::run_request(req, &opts);
    // the process ends here: skip freeing the cluster piece by piece
    std::mem::forget(cluster);
    let t2 = std::time::Instant::now();
    let out = maguey_placement::ialloc::format_response(&r);
    println!("{out}");
    if timing {
        let t3 = std::time::Instant::now();
        eprintln!(
            "timing: parse {:.3} ms, run {:.3} ms, format+print {:.3} ms",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            (t3 - t2).as_secs_f64() * 1e3
        );
    }
}
