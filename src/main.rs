//! The `ringmq` binary: parse flags and config, start the shards, stop on SIGINT/SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use ringmq::config::{parse_level, resolve, Cli};
use ringmq::{check_io_uring, Node};

/// Messages are allocated on one shard and freed on another; glibc's malloc spent about 14%
/// of the broker's CPU on that (bench/RESULTS.md), mimalloc's per-thread free lists far less.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match resolve(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringmq: {e}");
            return ExitCode::from(2);
        }
    };
    let level = parse_level(&settings.log_level).unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    if let Err(e) = check_io_uring() {
        eprintln!("ringmq: {e}");
        return ExitCode::from(1);
    }
    let node = match Node::start(settings.engine.clone()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("ringmq: {e}");
            return ExitCode::from(1);
        }
    };
    let stop = node.stop_flag();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping exits at once.
        let registered = signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()));
        if let Err(e) = registered {
            eprintln!("ringmq: cannot install signal handler: {e}");
            return ExitCode::from(1);
        }
    }
    for addr in node.local_addrs() {
        tracing::info!(%addr, shards = node.shards(), partitions = settings.engine.partitions, "listening");
    }
    match node.join() {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringmq: {e}");
            ExitCode::from(1)
        }
    }
}
