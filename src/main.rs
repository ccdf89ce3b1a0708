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

/// Transparent huge pages off from the first allocation on (`huge_pages = true` in the
/// config turns them back on in `main`). mimalloc asks for them for its arenas
/// (MADV_HUGEPAGE), which backs memory 2 MiB at a time: 12 of a one-shard broker's 17 MiB
/// at start, and most of what an idle client cost above Mosquitto (bench/RESULTS.md).
/// Runs as a constructor, before the runtime and the argument parsing allocate.
extern "C" fn no_huge_pages() {
    // SAFETY: prctl with integer arguments only; a failure leaves huge pages allowed.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[used]
#[link_section = ".init_array"]
static NO_HUGE_PAGES: extern "C" fn() = no_huge_pages;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match resolve(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringmq: {e}");
            return ExitCode::from(2);
        }
    };
    if settings.huge_pages {
        // SAFETY: prctl with integer arguments only; a failure leaves them off.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) };
    }
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
