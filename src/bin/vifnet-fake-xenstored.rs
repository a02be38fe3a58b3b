//! vifnet-fake-xenstored: a stand-in xenstored on a unix socket, for tests and benchmarks on
//! machines without Xen. The server is `vifnet::xenstore::fake`; this is its command line.
//!
//! Usage: vifnet-fake-xenstored --socket PATH [--load FILE] [--dump-on-exit FILE] [--exit-on-stdin-eof]
//!
//! * Prints `ready` on stdout once it listens; point clients at it with `XENSTORED_PATH=PATH`.
//! * `--load FILE`: a JSON object {"path": "value", ...} to start from (relative paths are under
//!   /local/domain/0), e.g. the backend keys of a vif.
//! * `--dump-on-exit FILE`: on a clean stop, the final tree as the same kind of JSON object, by
//!   absolute path, parents included with empty values.
//!
//! Stopping: SIGTERM, SIGINT or SIGHUP stop it cleanly (connections closed, dump written, socket
//! removed, exit 0). The signals are blocked in every thread and taken synchronously with
//! sigwait(), so nothing runs in a signal handler. With `--exit-on-stdin-eof` it also stops when
//! its stdin closes: give it a pipe, and it goes away even if the test that started it is killed.
//! Not the default, because a backgrounded job in a script has /dev/null as stdin.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;

use vifnet::xenstore::fake;

const USAGE: &str =
    "usage: vifnet-fake-xenstored --socket PATH [--load FILE] [--dump-on-exit FILE] [--exit-on-stdin-eof]";

struct Options {
    socket: PathBuf,
    load: Option<PathBuf>,
    dump_on_exit: Option<PathBuf>,
    exit_on_stdin_eof: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let (mut socket, mut load, mut dump_on_exit, mut exit_on_stdin_eof) = (None, None, None, false);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().map(PathBuf::from).ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--socket" => socket = Some(value("--socket")?),
            "--load" => load = Some(value("--load")?),
            "--dump-on-exit" => dump_on_exit = Some(value("--dump-on-exit")?),
            "--exit-on-stdin-eof" => exit_on_stdin_eof = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let socket = socket.ok_or("--socket PATH is required")?;
    Ok(Options { socket, load, dump_on_exit, exit_on_stdin_eof })
}

/// Blocks the stop signals in this thread, and so in every thread spawned after it, so that
/// only `wait_for_stop_signal` ever sees them.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask only changes
    // the calling thread's mask and is given valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_stop_signal(set: &libc::sigset_t) -> i32 {
    let mut signal = 0;
    // SAFETY: sigwait reads the initialised set and writes one int we own.
    unsafe { libc::sigwait(set, &mut signal) };
    signal
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(problem) if problem.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("vifnet-fake-xenstored: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("vifnet-fake-xenstored: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<(), String> {
    // Before any thread exists, so all of them inherit the blocked mask.
    let stop_signals = block_stop_signals();

    let initial: Option<BTreeMap<String, String>> = match &options.load {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("--load {}: {e}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| format!("--load {}: not a JSON object of strings: {e}", path.display()))?,
            )
        }
        None => None,
    };
    let server =
        fake::try_serve(&options.socket).map_err(|e| format!("cannot listen on {}: {e}", options.socket.display()))?;
    if let Some(tree) = &initial {
        let path = options.load.as_ref().expect("load given").display();
        server.load(tree).map_err(|e| format!("--load {path}: {e}"))?;
    }

    let (stop, stopped) = mpsc::channel::<String>();
    {
        let stop = stop.clone();
        thread::spawn(move || {
            let signal = wait_for_stop_signal(&stop_signals);
            let _ = stop.send(format!("signal {signal}"));
        });
    }
    if options.exit_on_stdin_eof {
        thread::spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
            let _ = stop.send("stdin closed".to_string());
        });
    }

    let mut stdout = io::stdout().lock();
    writeln!(stdout, "ready").and_then(|()| stdout.flush()).map_err(|e| format!("stdout: {e}"))?;
    drop(stdout);

    let _reason = stopped.recv();
    let tree = server.shutdown();
    if let Some(path) = &options.dump_on_exit {
        let mut json = serde_json::to_string_pretty(&tree).expect("a map of strings serialises");
        json.push('\n');
        std::fs::write(path, json).map_err(|e| format!("--dump-on-exit {}: {e}", path.display()))?;
    }
    Ok(())
}
