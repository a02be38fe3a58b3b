//! A small mutation fuzzer with no coverage feedback and no dependencies: cargo-fuzz needs a
//! nightly toolchain, which this project does not require. Each target starts from a corpus
//! of realistic inputs, mutates them with a seeded PRNG (so a run can be replayed), calls the
//! parser inside `catch_unwind`, and checks per call that memory and time stay bounded.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

/// Inputs never grow past this: large enough for long runs (deep nesting, huge lines),
/// small enough to keep thousands of calls a second.
const MAX_LEN: usize = 64 * 1024;
/// Inputs that parsed are kept as further starting points, up to this many.
const POOL_MAX: usize = 512;
/// A call slower than this is reported as a hang (debug build, on a loaded machine).
const SLOW_CALL: Duration = Duration::from_secs(2);
/// Per-call memory bound: a parser may use a fixed amount plus this much per input byte.
/// Anything quadratic in the input blows through it long before MAX_LEN.
const BYTES_PER_INPUT_BYTE: usize = 1024;
const BASE_BYTES: usize = 1 << 20;

/// Tokens that break parsers: delimiters, escapes, line ends, odd unicode, huge numbers.
const GENERIC_TOKENS: &[&str] = &[
    "\"", "'", "(", ")", "[", "]", "{", "}", "=", "+=", ",", ";", ":", "#", "\\", "\\x", "\\x4",
    "\\777", "\\u", "\\U0010FFFF", "\n", "\r\n", "\r", "\0", "\t", " ", "é", "\u{FEFF}",
    "\u{10FFFF}", "\u{200B}", "\u{2028}", "\u{0301}", "😀", "ß", "\u{7f}", "\u{85}",
    "18446744073709551616", "9223372036854775808", "-9223372036854775809", "0x",
    "0xffffffffffffffff", "0777777777777777777777777", "1e999", "-0", "nan", "inf", "true",
    "false", "0", "/", "..", "$(reboot)",
];

/// What `run` needs to know about one target.
pub struct Target {
    /// Also the prefix of saved crash files.
    pub name: &'static str,
    pub seeds: Vec<Vec<u8>>,
    /// Tokens of this target's syntax, inserted beside the generic ones.
    pub tokens: &'static [&'static str],
}

/// Fuzzes `call` (which returns whether the input was accepted, and panics when a property
/// fails) for `VIFNET_FUZZ_SECS`, then fails the test on the first panic, hang or blow-up.
pub fn run(target: Target, call: impl Fn(&[u8]) -> bool) {
    install_quiet_hook();
    let (seed, budget) = (seed_for(target.name), budget());
    // Shown on failure, and always with --nocapture (`make fuzz`): an abort such as a stack
    // overflow loses captured output, so only there is its seed left to replay.
    eprintln!("fuzz {}: seed {seed:#x} for {budget:?} (VIFNET_FUZZ_SEED={seed:#x} replays it)", target.name);
    let mut rng = Rng(seed);
    // A stack overflow aborts the process before any report: a replay keeps each input on
    // disk until the next one replaces it, so the last one left is the culprit.
    let last = std::env::var_os("VIFNET_FUZZ_SEED").map(|_| crash_dir().join(format!("{}-last.bin", target.name)));
    if last.is_some() {
        let _ = std::fs::create_dir_all(crash_dir());
    }
    let tokens = Tokens { own: target.tokens, generic: GENERIC_TOKENS };
    let mut pool = target.seeds.clone();
    let (start, mut stats) = (Instant::now(), Stats::default());
    // Every seed once as written, then mutants until the time is up.
    while stats.runs < target.seeds.len() || start.elapsed() < budget {
        let input = match target.seeds.get(stats.runs) {
            Some(seed) => seed.clone(),
            None => mutant(&mut rng, &pool, &tokens),
        };
        if let Some(last) = &last {
            let _ = std::fs::write(last, &input);
        }
        match check_one(&call, &input) {
            Ok(accepted) => stats.count(accepted),
            Err(failure) => fail(&target, seed, stats.runs, &input, &failure, &call),
        }
        if stats.last_accepted && stats.runs > target.seeds.len() {
            remember(&mut rng, &mut pool, input, target.seeds.len());
        }
    }
    stats.print(target.name, start.elapsed());
}

#[derive(Default)]
struct Stats {
    runs: usize,
    accepted: usize,
    last_accepted: bool,
}

impl Stats {
    fn count(&mut self, accepted: bool) {
        self.runs += 1;
        self.accepted += usize::from(accepted);
        self.last_accepted = accepted;
    }

    fn print(&self, name: &str, took: Duration) {
        let rate = self.runs as f64 / took.as_secs_f64();
        eprintln!("fuzz {name}: {} runs in {took:.1?} ({rate:.0}/s), {} accepted", self.runs, self.accepted);
    }
}

/// Keeps an accepted mutant as a starting point, replacing an earlier mutant once full.
fn remember(rng: &mut Rng, pool: &mut Vec<Vec<u8>>, input: Vec<u8>, seeds: usize) {
    if pool.len() < seeds + POOL_MAX {
        pool.push(input);
    } else {
        let slot = seeds + rng.below(POOL_MAX);
        pool[slot] = input;
    }
}

/// One call: `Ok(accepted)`, or what went wrong (panic, hang, memory).
fn check_one(call: &impl Fn(&[u8]) -> bool, input: &[u8]) -> Result<bool, String> {
    let (before, started) = (alloc::reset_peak(), Instant::now());
    IN_TARGET.with(|t| t.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| call(input)));
    IN_TARGET.with(|t| t.set(false));
    let (took, peak) = (started.elapsed(), alloc::peak() - before);
    let accepted = outcome.map_err(|_| LAST_PANIC.with(|p| p.take()).unwrap_or_else(|| "panic".into()))?;
    if took > SLOW_CALL {
        return Err(format!("hang: one call took {took:?}"));
    }
    let limit = BASE_BYTES + BYTES_PER_INPUT_BYTE * input.len();
    if peak > limit as isize {
        return Err(format!("memory: one call held {peak} bytes at once (limit {limit} for {} input bytes)", input.len()));
    }
    Ok(accepted)
}

/// Saves the input (and a shrunk copy), prints how to replay it, and fails the test.
fn fail(target: &Target, seed: u64, run: usize, input: &[u8], failure: &str, call: &impl Fn(&[u8]) -> bool) -> ! {
    let small = shrink(input, failure, call);
    let dir = crash_dir();
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{}-{run}.bin", target.name));
    let _ = std::fs::write(&path, input);
    let _ = std::fs::write(path.with_extension("min.bin"), &small);
    panic!(
        "fuzz {}: {failure}\n  seed {seed:#x}, run {run} (VIFNET_FUZZ_SEED={seed:#x} replays it)\n  input ({} bytes, saved to {}): {}\n  shrunk ({} bytes): {}",
        target.name,
        input.len(),
        path.display(),
        escape(input),
        small.len(),
        escape(&small)
    );
}

/// Removes chunks while the same kind of failure remains, so the report shows its cause.
/// Bounded in time: a hang makes every attempt slow.
fn shrink(input: &[u8], failure: &str, call: &impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let kind = |f: &str| f.split(':').next().unwrap_or_default().to_string();
    let (want, deadline) = (kind(failure), Instant::now() + Duration::from_secs(20));
    let mut best = input.to_vec();
    let mut chunk = best.len().max(1);
    while chunk > 0 && Instant::now() < deadline {
        let mut at = 0;
        while at < best.len() && Instant::now() < deadline {
            let mut candidate = best.clone();
            candidate.drain(at..(at + chunk).min(best.len()));
            match check_one(call, &candidate) {
                Err(f) if kind(&f) == want => best = candidate,
                _ => at += chunk,
            }
        }
        chunk /= 2;
    }
    best
}

/// `target/fuzz-crashes`, beside the test binaries' own `target/tmp`.
fn crash_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("fuzz-crashes")
}

/// Bytes as a Rust-like string literal, on one line.
pub fn escape(bytes: &[u8]) -> String {
    const SHOWN: usize = 2000;
    let text: String = bytes.iter().take(SHOWN).flat_map(|b| std::ascii::escape_default(*b)).map(char::from).collect();
    match bytes.len() > SHOWN {
        true => format!("\"{text}\"... ({} more bytes)", bytes.len() - SHOWN),
        false => format!("\"{text}\""),
    }
}

fn budget() -> Duration {
    let secs = std::env::var("VIFNET_FUZZ_SECS").ok().and_then(|s| s.parse::<f64>().ok());
    Duration::from_secs_f64(secs.unwrap_or(3.0).max(0.0))
}

/// `VIFNET_FUZZ_SEED` (decimal or 0x-hex), else new each run so that runs explore further.
fn seed_for(name: &str) -> u64 {
    let given = std::env::var("VIFNET_FUZZ_SEED").ok().and_then(|s| match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    });
    given.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let name_hash = name.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
        (now.as_nanos() as u64) ^ name_hash
    })
}

thread_local! {
    /// Set while a target runs: its panics are recorded here instead of printed.
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Thousands of expected-to-be-caught panics while shrinking would flood the output; the
/// message and place are kept for the report instead. Panics elsewhere print as usual.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !IN_TARGET.with(|t| t.get()) {
                return default(info);
            }
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let place = info.location().map(|l| l.to_string()).unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("panic at {place}: {message}")));
        }));
    });
}

/// splitmix64: tiny, fast, and good enough to pick mutations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n`; `n` must not be 0.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A target's own tokens are drawn as often as all the generic ones together: they are
/// what its grammar reacts to.
struct Tokens {
    own: &'static [&'static str],
    generic: &'static [&'static str],
}

impl Tokens {
    fn pick(&self, rng: &mut Rng) -> &'static [u8] {
        let from = if self.own.is_empty() || rng.below(2) == 0 { self.generic } else { self.own };
        rng.pick(from).as_bytes()
    }
}

/// A pool entry with one to four stacked mutations, or now and then plain random bytes.
fn mutant(rng: &mut Rng, pool: &[Vec<u8>], tokens: &Tokens) -> Vec<u8> {
    if rng.below(50) == 0 {
        let len = rng.below(256);
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    let mut input = rng.pick(pool).clone();
    for _ in 0..1 + rng.below(4) {
        mutate(rng, &mut input, pool, tokens);
    }
    input.truncate(MAX_LEN);
    input
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, pool: &[Vec<u8>], tokens: &Tokens) {
    let at = rng.below(input.len() + 1);
    // The byte at `at`, for the mutations that change one in place.
    let byte = at.min(input.len().saturating_sub(1));
    match rng.below(10) {
        0 if !input.is_empty() => input[byte] ^= 1 << rng.below(8),
        1 if !input.is_empty() => {
            let random = rng.next() as u8;
            input[byte] = *rng.pick(&[0, 0x7f, 0x80, 0xff, b'\n', random]);
        }
        2 => input.insert(at, rng.next() as u8),
        3 => {
            let end = (at + 1 + rng.below(16)).min(input.len());
            input.drain(at.min(end)..end);
        }
        4 => {
            let (from, len) = (rng.below(input.len() + 1), rng.below(64));
            let copy = input[from..(from + len).min(input.len())].to_vec();
            input.splice(at..at, copy);
        }
        5 => {
            let other = rng.pick(pool);
            splice(rng, input, at, other);
        }
        6 => {
            let token = tokens.pick(rng);
            input.splice(at..at, token.iter().copied());
        }
        7 => {
            // Long runs: deep nesting, endless quotes or escapes, huge lines.
            let token = tokens.pick(rng);
            let times = 1 + rng.below(MAX_LEN / token.len().max(1) / 2);
            input.splice(at..at, token.iter().copied().cycle().take(token.len() * times));
        }
        8 => nest(rng, input, at),
        _ => {
            let digits = 1 + rng.below(40);
            input.splice(at..at, (0..digits).map(|_| b'0' + rng.below(10) as u8));
        }
    }
}

/// Wraps part of the input in up to thousands of brackets, closed or not: recursive
/// parsers and recursive drops overflow the stack long before memory runs out.
fn nest(rng: &mut Rng, input: &mut Vec<u8>, at: usize) {
    let (open, close) = *rng.pick(&[("(", ")"), ("[", "]"), ("{", "}"), ("[ '', ", "]"), ("a=[", "]")]);
    let depth = 1 + rng.below(MAX_LEN / 8);
    let end = at + rng.below(input.len() - at + 1);
    if rng.below(4) != 0 {
        input.splice(end..end, close.bytes().cycle().take(close.len() * depth));
    }
    input.splice(at..at, open.bytes().cycle().take(open.len() * depth));
}

/// This input up to `at`, then another pool entry from a random place on.
fn splice(rng: &mut Rng, input: &mut Vec<u8>, at: usize, other: &[u8]) {
    let from = rng.below(other.len() + 1);
    input.truncate(at);
    input.extend_from_slice(&other[from..]);
}

/// Counts bytes held per thread, so that each call's peak can be bounded. Every target runs
/// on its own test thread and parsers do not hand memory across threads.
pub mod alloc {
    use super::*;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    /// Starts a new peak at the current level, which it returns.
    pub fn reset_peak() -> isize {
        let live = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(live));
        live
    }

    pub fn peak() -> isize {
        PEAK.with(Cell::get)
    }

    fn grew(bytes: usize) {
        let _ = LIVE.try_with(|l| {
            l.set(l.get() + bytes as isize);
            let _ = PEAK.try_with(|p| p.set(p.get().max(l.get())));
        });
    }

    fn shrank(bytes: usize) {
        let _ = LIVE.try_with(|l| l.set(l.get() - bytes as isize));
    }

    pub struct Counting;

    // SAFETY: every call is passed to the system allocator unchanged; only sizes are counted.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                grew(layout.size());
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                grew(layout.size());
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            shrank(layout.size());
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                shrank(layout.size());
                grew(new_size);
            }
            p
        }
    }
}
