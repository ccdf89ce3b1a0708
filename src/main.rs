//! The `ringmq` binary: parse flags and config, start the shards, reload certificates,
//! password and ACL files on SIGHUP (and when they change), stop on SIGINT/SIGTERM; and
//! `ringmq passwd FILE USER`.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ringmq::config::{parse_level, resolve, Cli, Command};
use ringmq::{check_io_uring, Node};

/// How often the main thread looks for a signal.
const WAKE: Duration = Duration::from_millis(200);
/// How often it looks whether a listener's files changed.
const WATCH: Duration = Duration::from_secs(2);

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

/// Reads a password: from the terminal, asked twice without echo, or from the first
/// line of standard input.
fn read_password() -> Result<String, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).map_err(|e| format!("cannot read the password: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let ask = |prompt: &str| -> Result<String, String> {
        eprint!("{prompt}");
        // SAFETY: tcgetattr/tcsetattr on standard input with a termios we own; echo is
        // turned off for the one line and restored.
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            let ok = libc::tcgetattr(0, &mut t) == 0;
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            if ok {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
            ok.then_some(saved)
        };
        let mut line = String::new();
        let read = stdin.lock().read_line(&mut line);
        if let Some(t) = saved {
            // SAFETY: as above.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
        eprintln!();
        read.map_err(|e| format!("cannot read the password: {e}"))?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let first = ask("Password: ")?;
    if ask("Reenter password: ")? != first {
        return Err("the passwords do not match".into());
    }
    Ok(first)
}

fn passwd(file: &std::path::Path, user: &str) -> ExitCode {
    let password = match read_password() {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => {
            eprintln!("ringmq: empty password");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("ringmq: {e}");
            return ExitCode::from(2);
        }
    };
    match shards::auth::passwd::set_entry(file, user, password.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmq: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Passwd { file, user }) = &cli.command {
        return passwd(file, user);
    }
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
    let hup = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()) {
        eprintln!("ringmq: cannot install signal handler: {e}");
        return ExitCode::from(1);
    }
    for addr in node.local_addrs() {
        tracing::info!(%addr, shards = node.shards(), partitions = settings.engine.partitions, "listening");
    }
    let mut watched = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(WAKE);
        if hup.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: reloading certificates, password and ACL files");
            node.reload(false);
        } else if watched.elapsed() >= WATCH {
            watched = Instant::now();
            node.reload(true);
        }
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
