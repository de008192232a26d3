//! `make demo`: a tour of weir over real bytes, with no outside services.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use weir_examples::tour;

fn main() -> ExitCode {
    println!("weir: sans-IO protocol cores. This tour runs each machine on real bytes.");
    println!();
    println!("1. The DRPC wire codec");
    println!(
        "   Conversations recorded from the Go DRPC implementation, read back packet by packet:"
    );
    let started = Instant::now();
    let mut story = String::new();
    match tour::wire::run(&mut story) {
        Ok(summary) => {
            print!("{story}");
            println!();
            println!(
                "   {} conversations, {} packets, {} bytes: decoded and re-encoded byte for byte in {:.1} ms.",
                summary.conversations,
                summary.packets,
                summary.bytes,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        Err(e) => {
            print!("{story}");
            eprintln!("   the wire section failed: {e}");
            return ExitCode::FAILURE;
        }
    }

    println!();
    println!("2. DRPC over a real socket");
    let mut stdout = std::io::stdout();
    match tour::socket::run(&mut stdout, tour::socket::Scale::full()) {
        Ok(summary) if summary.streams_ok == tour::socket::Scale::full().streams => {}
        Ok(summary) => {
            eprintln!("   only {} streams finished correctly", summary.streams_ok);
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("   the socket section failed: {e}");
            return ExitCode::FAILURE;
        }
    }

    println!();
    println!("3. The same calls against Go's own DRPC (storj.io/drpc, compat mode)");
    let peer = tour::go::peer_path();
    if peer.is_file() {
        let mut stdout = std::io::stdout();
        match tour::go::run(&mut stdout) {
            Ok(agreed) => println!("   The Go peer agrees: {agreed} exchanges, both ways."),
            Err(e) => {
                eprintln!("   the Go section failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!(
            "   Skipped: no Go peer at {} (`make go-peer` builds it; `make demo` does).",
            peer.display()
        );
    }

    println!();
    println!("4. Flow-control budgets for replication traffic");
    let mut story = String::new();
    match tour::flow::run_section(&mut story, Path::new("target/demo")) {
        Ok(summary) if summary.violations == 0 => print!("{story}"),
        Ok(summary) => {
            print!("{story}");
            eprintln!(
                "   the simulator saw {} invariant violations",
                summary.violations
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("   the flow section failed: {e}");
            return ExitCode::FAILURE;
        }
    }

    println!();
    println!("5. Span frontiers and checkpoints for a changefeed");
    let mut story = String::new();
    match tour::frontier::run_section(&mut story) {
        Ok(_) => print!("{story}"),
        Err(e) => {
            print!("{story}");
            eprintln!("   the frontier section failed: {e}");
            return ExitCode::FAILURE;
        }
    }

    println!();
    println!("6. Moving live PostgreSQL sessions between servers");
    let mut stdout = std::io::stdout();
    match tour::migration::run(&mut stdout) {
        Ok(summary) if !summary.ran => {}
        Ok(summary) if summary.complete => {}
        Ok(summary) => {
            eprintln!(
                "   {} rows written but {} found",
                summary.written, summary.found
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("   the migration section failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
