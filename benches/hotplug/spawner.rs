//! A small process, forked at the start of `main`, that runs every timed command for the
//! bench: it forks, execs and reaps each one with `wait4` and sends back the child's own
//! rusage and the times of its spawn and exit.
//!
//! Why not `Command` from the bench itself: `ru_maxrss` is the peak of every image a process
//! ran, and a child carries its parent's resident memory until its exec (a fork copies the
//! page tables of the parent's heap; a vfork shares the parent's memory outright). The bench,
//! with a fake xenstored holding 20,000 keys, is larger than vifnet, so its children's peaks
//! would be the bench's. This process is forked before the bench grows, so it stays small.
//!
//! It also runs in the dom0 namespace of the mode being measured (`setns` per request), as
//! libxl's children run in dom0's.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// One command: argv, environment (`KEY=value`), and what its stdin reads (None: /dev/null).
/// An argv of `["@write", path, value]` is a write done in the spawner itself, as a shell's
/// `echo value > path` (a builtin: no process).
#[derive(Clone, Debug, Default)]
pub struct Job {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub stdin: Option<Vec<u8>>,
}

/// What one command did, as `wait4` saw it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Done {
    pub pid: i32,
    /// CLOCK_MONOTONIC, ns: just before the fork, and just after `wait4` returned it.
    pub spawned: u64,
    pub exited: u64,
    /// The raw wait status.
    pub status: i32,
    pub maxrss_kib: u64,
    pub cpu_us: u64,
}

impl Done {
    pub fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }
    pub fn wall_ms(&self) -> f64 {
        (self.exited - self.spawned) as f64 / 1e6
    }
}

/// How a request's jobs run: one after the other (each waited for before the next, as a
/// script runs its commands), or all started at once and then waited for (a burst).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Sequential,
    Concurrent,
}

pub struct Spawner {
    sock: UnixStream,
    pid: i32,
}

impl Spawner {
    /// Forks the spawner. Call first thing in `main`, while the process is single-threaded
    /// and small.
    pub fn start() -> Spawner {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        // SAFETY: single-threaded here, so the child may run anything the parent could.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            drop(ours);
            serve(theirs);
            // SAFETY: leave without running the parent's destructors or atexit handlers.
            unsafe { libc::_exit(0) };
        }
        drop(theirs);
        Spawner { sock: ours, pid }
    }

    /// Runs `jobs` in the network namespace at `netns` (a /run/netns path), their stdout and
    /// stderr appended to `log`.
    pub fn run(&mut self, netns: &str, log: &str, order: Order, jobs: &[Job]) -> Vec<Done> {
        let mut w = Vec::new();
        put_str(&mut w, netns);
        put_str(&mut w, log);
        w.push((order == Order::Concurrent) as u8);
        put_u32(&mut w, jobs.len() as u32);
        for j in jobs {
            put_list(&mut w, &j.argv);
            put_list(&mut w, &j.env);
            match &j.stdin {
                Some(data) => {
                    w.push(1);
                    put_bytes(&mut w, data);
                }
                None => w.push(0),
            }
        }
        let mut frame = (w.len() as u32).to_ne_bytes().to_vec();
        frame.extend(w);
        self.sock.write_all(&frame).expect("spawner: request");
        let mut r = Reader(read_frame(&mut self.sock).expect("spawner: reply (did it die?)"), 0);
        let n = r.u32();
        (0..n)
            .map(|_| Done {
                pid: r.u32() as i32,
                spawned: r.u64(),
                exited: r.u64(),
                status: r.u32() as i32,
                maxrss_kib: r.u64(),
                cpu_us: r.u64(),
            })
            .collect()
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        // EOF ends its loop; then reap it, by its own pid.
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
    }
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a stack timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The spawner's loop: one request, one reply, until the bench closes the socket.
fn serve(mut sock: UnixStream) {
    let mut netns_now = String::new();
    while let Ok(frame) = read_frame(&mut sock) {
        let mut r = Reader(frame, 0);
        let netns = r.string();
        let log = r.string();
        let concurrent = r.u8() == 1;
        let jobs: Vec<Job> = (0..r.u32())
            .map(|_| Job { argv: r.list(), env: r.list(), stdin: (r.u8() == 1).then(|| r.bytes()) })
            .collect();
        if netns != netns_now {
            let f = std::fs::File::open(&netns).unwrap_or_else(|e| panic!("spawner: {netns}: {e}"));
            // SAFETY: setns on a namespace fd; this process has one thread.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "spawner: setns {netns}");
            netns_now = netns;
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("spawner: log");
        let done = if concurrent { burst(&jobs, &log) } else { jobs.iter().map(|j| one(j, &log)).collect() };
        let mut w = Vec::new();
        put_u32(&mut w, done.len() as u32);
        for d in &done {
            put_u32(&mut w, d.pid as u32);
            put_u64(&mut w, d.spawned);
            put_u64(&mut w, d.exited);
            put_u32(&mut w, d.status as u32);
            put_u64(&mut w, d.maxrss_kib);
            put_u64(&mut w, d.cpu_us);
        }
        let mut frame = (w.len() as u32).to_ne_bytes().to_vec();
        frame.extend(w);
        if sock.write_all(&frame).is_err() {
            break;
        }
    }
}

/// Runs one job to its end.
fn one(job: &Job, log: &std::fs::File) -> Done {
    if job.argv[0] == "@write" {
        let spawned = monotonic_ns();
        let ok = std::fs::write(&job.argv[1], &job.argv[2]).is_ok();
        return Done { pid: 0, spawned, exited: monotonic_ns(), status: if ok { 0 } else { 1 << 8 }, ..Done::default() };
    }
    let (pid, spawned) = spawn(job, log);
    let mut done = reap(pid);
    done.spawned = spawned;
    done
}

/// Starts every job, then reaps them in the order they end.
fn burst(jobs: &[Job], log: &std::fs::File) -> Vec<Done> {
    let started: Vec<(i32, u64)> = jobs.iter().map(|j| spawn(j, log)).collect();
    let mut done: Vec<Done> = Vec::with_capacity(jobs.len());
    while done.len() < started.len() {
        // Only the burst's children are ours now: -1 reaps each as soon as it ends.
        let mut d = reap(-1);
        d.spawned = started.iter().find(|(p, _)| *p == d.pid).expect("spawner: a child not of this burst").1;
        done.push(d);
    }
    // Back in the order they were started.
    done.sort_by_key(|d| started.iter().position(|(p, _)| *p == d.pid));
    done
}

fn spawn(job: &Job, log: &std::fs::File) -> (i32, u64) {
    let cstr = |s: &String| CString::new(s.as_str()).unwrap();
    let argv: Vec<CString> = job.argv.iter().map(cstr).collect();
    let env: Vec<CString> = job.env.iter().map(cstr).collect();
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    env_p.push(std::ptr::null());
    let null = CString::new("/dev/null").unwrap();
    let mut pipe = [-1; 2];
    if job.stdin.is_some() {
        // SAFETY: a fresh pipe.
        assert_eq!(unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    }
    let spawned = monotonic_ns();
    // SAFETY: the spawner is single-threaded; the child only dup2s and execs.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "spawner: fork");
    if pid == 0 {
        unsafe {
            let stdin = if pipe[0] >= 0 { pipe[0] } else { libc::open(null.as_ptr(), libc::O_RDONLY) };
            libc::dup2(stdin, 0);
            libc::dup2(log.as_raw_fd(), 1);
            libc::dup2(log.as_raw_fd(), 2);
            libc::execve(argv[0].as_ptr(), argv_p.as_ptr(), env_p.as_ptr());
            libc::_exit(127);
        }
    }
    if let Some(data) = &job.stdin {
        // SAFETY: the pipe's two ends, ours to own from here.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
        drop(r);
        let mut w = std::fs::File::from(w);
        let _ = w.write_all(data);
    }
    (pid, spawned)
}

fn reap(pid: i32) -> Done {
    let mut status = 0;
    // SAFETY: rusage is plain data.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let got = loop {
        // SAFETY: pointers to our stack.
        let got = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if got >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break got;
        }
    };
    assert!(got > 0, "spawner: wait4: {}", std::io::Error::last_os_error());
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Done {
        pid: got,
        spawned: 0,
        exited: monotonic_ns(),
        status,
        maxrss_kib: ru.ru_maxrss as u64,
        cpu_us: us(ru.ru_utime) + us(ru.ru_stime),
    }
}

// The wire format: native-endian integers, length-prefixed strings.

fn read_frame(s: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_ne_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn put_u32(w: &mut Vec<u8>, v: u32) {
    w.extend(v.to_ne_bytes());
}
fn put_u64(w: &mut Vec<u8>, v: u64) {
    w.extend(v.to_ne_bytes());
}
fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    put_u32(w, b.len() as u32);
    w.extend(b);
}
fn put_str(w: &mut Vec<u8>, s: &str) {
    put_bytes(w, s.as_bytes());
}
fn put_list(w: &mut Vec<u8>, l: &[String]) {
    put_u32(w, l.len() as u32);
    for s in l {
        put_str(w, s);
    }
}

struct Reader(Vec<u8>, usize);
impl Reader {
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.0[self.1..self.1 + n];
        self.1 += n;
        s
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_ne_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_ne_bytes(self.take(8).try_into().unwrap())
    }
    fn bytes(&mut self) -> Vec<u8> {
        let n = self.u32() as usize;
        self.take(n).to_vec()
    }
    fn string(&mut self) -> String {
        String::from_utf8(self.bytes()).unwrap()
    }
    fn list(&mut self) -> Vec<String> {
        (0..self.u32()).map(|_| self.string()).collect()
    }
}
