//! A small blocking client of the xenstored wire protocol, over the daemon's unix socket or the
//! kernel's `/dev/xen/xenbus` device (same framing on both).
//!
//! One request is in flight at a time: a hotplug call makes a handful of reads and one or two
//! writes, so a synchronous exchange is all it needs. `wire` is the framing, shared with `fake`,
//! the stand-in xenstored that tests and `vifnet-fake-xenstored` run on machines without Xen.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// libxenstore's variable for the daemon socket; when set, it is the only endpoint tried.
pub const XENSTORED_PATH_ENV: &str = "XENSTORED_PATH";
/// Where xenstored listens, newest layout first.
pub const DEFAULT_SOCKETS: [&str; 2] = ["/run/xenstored/socket", "/var/run/xenstored/socket"];
/// The kernel's xenbus device: the way in when xenstored runs in another domain (or has no socket).
pub const XENBUS_DEVICE: &str = "/dev/xen/xenbus";
/// libxl gives a hotplug script 40 s in all; a xenstored silent for 10 s is not coming back.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Commits of `write_all` that xenstored may refuse with EAGAIN before we give up.
pub const COMMIT_ATTEMPTS: u32 = 5;
/// Replies to other requests skipped while waiting for ours, before calling the stream broken.
const STALE_REPLY_LIMIT: usize = 64;

/// The framing of xenstored messages: a 16-byte header of four little-endian u32
/// (type, req_id, tx_id, len) and then `len` bytes of payload, at most [`PAYLOAD_MAX`].
pub mod wire {
    use std::io::{self, Read, Write};

    pub const HEADER_LEN: usize = 16;
    /// XENSTORE_PAYLOAD_MAX: xenstored drops a connection that sends more.
    pub const PAYLOAD_MAX: usize = 4096;

    pub const DIRECTORY: u32 = 1;
    pub const READ: u32 = 2;
    pub const WATCH: u32 = 4;
    pub const TRANSACTION_START: u32 = 6;
    pub const TRANSACTION_END: u32 = 7;
    pub const WRITE: u32 = 11;
    pub const MKDIR: u32 = 12;
    pub const RM: u32 = 13;
    pub const WATCH_EVENT: u32 = 15;
    pub const ERROR: u32 = 16;

    /// A message's name for logs and errors; unknown types by number.
    pub fn type_name(kind: u32) -> String {
        let name = match kind {
            DIRECTORY => "DIRECTORY",
            READ => "READ",
            WATCH => "WATCH",
            TRANSACTION_START => "TRANSACTION_START",
            TRANSACTION_END => "TRANSACTION_END",
            WRITE => "WRITE",
            MKDIR => "MKDIR",
            RM => "RM",
            WATCH_EVENT => "WATCH_EVENT",
            ERROR => "ERROR",
            other => return format!("type {other}"),
        };
        name.to_string()
    }

    #[derive(Debug, thiserror::Error)]
    pub enum WireError {
        #[error("payload of {len} bytes exceeds the xenstore limit of {PAYLOAD_MAX} bytes")]
        TooLong { len: usize },
        /// End of stream between two messages: the peer hung up cleanly.
        #[error("connection closed")]
        Closed,
        #[error("{0}")]
        Io(#[from] io::Error),
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Message {
        pub kind: u32,
        pub req_id: u32,
        pub tx_id: u32,
        pub payload: Vec<u8>,
    }

    impl Message {
        pub fn new(kind: u32, req_id: u32, tx_id: u32, payload: impl Into<Vec<u8>>) -> Self {
            Message { kind, req_id, tx_id, payload: payload.into() }
        }

        /// An answer to this message: xenstored echoes req_id and tx_id.
        pub fn reply(&self, kind: u32, payload: impl Into<Vec<u8>>) -> Self {
            Message::new(kind, self.req_id, self.tx_id, payload)
        }

        /// An ERROR answer carrying an errno name such as "ENOENT".
        pub fn error_reply(&self, errno: &str) -> Self {
            self.reply(ERROR, string_payload(errno))
        }

        /// Header and payload as one buffer, so that a single write() carries a whole message
        /// (the xenbus device wants whole messages).
        pub fn encode(&self) -> Result<Vec<u8>, WireError> {
            let len = self.payload.len();
            if len > PAYLOAD_MAX {
                return Err(WireError::TooLong { len });
            }
            let mut bytes = Vec::with_capacity(HEADER_LEN + len);
            for field in [self.kind, self.req_id, self.tx_id, len as u32] {
                bytes.extend_from_slice(&field.to_le_bytes());
            }
            bytes.extend_from_slice(&self.payload);
            Ok(bytes)
        }

        /// The first message in `bytes` and how many bytes it used; `Ok(None)` while incomplete.
        pub fn decode(bytes: &[u8]) -> Result<Option<(Message, usize)>, WireError> {
            let Some(header) = bytes.get(..HEADER_LEN) else { return Ok(None) };
            let header: &[u8; HEADER_LEN] = header.try_into().expect("slice of HEADER_LEN");
            let (kind, req_id, tx_id, len) = parse_header(header)?;
            let end = HEADER_LEN + len;
            let Some(payload) = bytes.get(HEADER_LEN..end) else { return Ok(None) };
            Ok(Some((Message::new(kind, req_id, tx_id, payload), end)))
        }

        /// Reads one whole message; [`WireError::Closed`] if the stream ends before its first byte.
        pub fn read_from(reader: &mut impl Read) -> Result<Message, WireError> {
            let mut header = [0u8; HEADER_LEN];
            let mut filled = 0;
            while filled < HEADER_LEN {
                match reader.read(&mut header[filled..]) {
                    Ok(0) if filled == 0 => return Err(WireError::Closed),
                    Ok(0) => {
                        let msg = "connection closed in the middle of a message header";
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg).into());
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let (kind, req_id, tx_id, len) = parse_header(&header)?;
            let mut payload = vec![0u8; len];
            reader.read_exact(&mut payload)?;
            Ok(Message::new(kind, req_id, tx_id, payload))
        }

        pub fn write_to(&self, writer: &mut impl Write) -> Result<(), WireError> {
            writer.write_all(&self.encode()?)?;
            writer.flush()?;
            Ok(())
        }
    }

    /// Messages read off a stream through one buffer: a read takes whatever the peer has
    /// sent, often several pipelined replies at once, so a reply costs at most one system
    /// call (`read_from` takes two: the header, then the payload).
    #[derive(Debug, Default)]
    pub struct Inbox {
        buf: Vec<u8>,
    }

    /// Room for a read: many whole messages (each at most a header and PAYLOAD_MAX).
    const READ_CHUNK: usize = 64 * 1024;

    impl Inbox {
        /// The next whole message; [`WireError::Closed`] if the stream ends before its first byte.
        pub fn next(&mut self, reader: &mut impl Read) -> Result<Message, WireError> {
            loop {
                if let Some((m, used)) = Message::decode(&self.buf)? {
                    self.buf.drain(..used);
                    return Ok(m);
                }
                let start = self.buf.len();
                self.buf.resize(start + READ_CHUNK, 0);
                let read = reader.read(&mut self.buf[start..]);
                self.buf.truncate(start + *read.as_ref().unwrap_or(&0));
                match read {
                    Ok(0) if start == 0 => return Err(WireError::Closed),
                    Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed in the middle of a message").into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    /// (type, req_id, tx_id, len), refusing a length over the limit before anything is allocated.
    fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(u32, u32, u32, usize), WireError> {
        let field = |i: usize| u32::from_le_bytes(header[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        let len = field(3) as usize;
        if len > PAYLOAD_MAX {
            return Err(WireError::TooLong { len });
        }
        Ok((field(0), field(1), field(2), len))
    }

    /// `text` + NUL: the payload of READ, RM, DIRECTORY, MKDIR, TRANSACTION_START/END and ERROR.
    pub fn string_payload(text: &str) -> Vec<u8> {
        let mut payload = Vec::with_capacity(text.len() + 1);
        payload.extend_from_slice(text.as_bytes());
        payload.push(0);
        payload
    }

    /// `path` + NUL + `value`, with no NUL after the value.
    pub fn write_payload(path: &str, value: &str) -> Vec<u8> {
        let mut payload = string_payload(path);
        payload.extend_from_slice(value.as_bytes());
        payload
    }

    /// The text of a payload that must be exactly one NUL-terminated string.
    pub fn nul_terminated(payload: &[u8]) -> Option<&[u8]> {
        match payload.split_last() {
            Some((0, text)) if !text.contains(&0) => Some(text),
            _ => None,
        }
    }

    /// The text of a reply string, with or without its trailing NUL (servers differ).
    pub fn reply_text(payload: &[u8]) -> String {
        let text = payload.strip_suffix(&[0]).unwrap_or(payload);
        String::from_utf8_lossy(text).into_owned()
    }
}

use wire::{Message, WireError};

#[derive(Debug, thiserror::Error)]
pub enum XenstoreError {
    #[error("cannot connect to xenstored at {}: {err}", path.display())]
    Connect { path: PathBuf, err: io::Error },
    #[error("no xenstored to talk to: {tried}")]
    Unavailable { tried: String },
    #[error("xenstore {op} {path}: {err}")]
    Io { op: &'static str, path: String, err: io::Error },
    #[error("xenstore {op} {path}: no reply from xenstored within {} s", timeout.as_secs_f32())]
    Timeout { op: &'static str, path: String, timeout: Duration },
    /// xenstored refused: `errno` is its name, e.g. "EACCES", "EINVAL", "E2BIG".
    #[error("xenstore {op} {path}: {errno}")]
    Server { op: &'static str, path: String, errno: String },
    #[error("xenstore {op} {path}: request of {len} bytes exceeds the xenstore limit of {} bytes", wire::PAYLOAD_MAX)]
    TooLong { op: &'static str, path: String, len: usize },
    #[error("xenstore {op} {path:?}: a path cannot contain a NUL byte")]
    InvalidPath { op: &'static str, path: String },
    #[error("xenstore read {path}: value is not UTF-8")]
    NotUtf8 { path: String },
    #[error("xenstore write {path}: transaction still conflicting (EAGAIN) after {attempts} attempts")]
    Conflict { path: String, attempts: u32 },
    #[error("xenstore protocol error: {0}")]
    Protocol(String),
}

impl XenstoreError {
    /// The errno name xenstored answered with, if this is a refusal by the server.
    pub fn errno(&self) -> Option<&str> {
        match self {
            XenstoreError::Server { errno, .. } => Some(errno),
            _ => None,
        }
    }
}

/// The endpoints `connect` tries, in order: only `$XENSTORED_PATH` when it is set, so that a test
/// pointed at a fake can never fall through to the host's real xenstored.
pub fn endpoint_candidates(xenstored_path: Option<OsString>) -> Vec<PathBuf> {
    match xenstored_path {
        Some(path) if !path.is_empty() => vec![PathBuf::from(path)],
        _ => DEFAULT_SOCKETS.iter().chain([&XENBUS_DEVICE]).map(PathBuf::from).collect(),
    }
}

#[derive(Debug)]
enum Channel {
    Socket(UnixStream),
    Device(File),
}

impl Read for Channel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Channel::Socket(s) => s.read(buf),
            Channel::Device(f) => f.read(buf),
        }
    }
}

impl Write for Channel {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Channel::Socket(s) => s.write(buf),
            Channel::Device(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Channel::Socket(s) => s.flush(),
            Channel::Device(f) => f.flush(),
        }
    }
}

/// A connection to xenstored. Paths without a leading '/' are relative to the caller's domain
/// home (/local/domain/0 in dom0); xenstored resolves them, not us.
#[derive(Debug)]
pub struct XenStore {
    channel: Channel,
    endpoint: PathBuf,
    timeout: Duration,
    next_req_id: u32,
    /// Set after an I/O or framing error: the stream may be mid-message, so nothing after it
    /// can be trusted to line up.
    broken: bool,
    /// Replies read but not yet taken.
    inbox: wire::Inbox,
}

/// Why one exchange failed, before the op and path are attached.
enum ExchangeError {
    Wire(WireError),
    Protocol(String),
}

impl XenStore {
    /// `$XENSTORED_PATH` alone if set; otherwise /run/xenstored/socket, /var/run/xenstored/socket,
    /// then /dev/xen/xenbus.
    pub fn connect() -> Result<Self, XenstoreError> {
        let candidates = endpoint_candidates(std::env::var_os(XENSTORED_PATH_ENV));
        if let [only] = candidates.as_slice() {
            return Self::connect_path(only);
        }
        let mut tried = Vec::new();
        for path in &candidates {
            match Self::connect_path(path) {
                Ok(store) => return Ok(store),
                Err(XenstoreError::Connect { path, err }) => tried.push(format!("{}: {err}", path.display())),
                Err(other) => return Err(other),
            }
        }
        Err(XenstoreError::Unavailable { tried: tried.join("; ") })
    }

    /// A unix socket, or a character device such as /dev/xen/xenbus (opened read+write).
    pub fn connect_path(path: &Path) -> Result<Self, XenstoreError> {
        use std::os::unix::fs::FileTypeExt;
        let connect_error = |err| XenstoreError::Connect { path: path.to_path_buf(), err };
        let is_char_device = std::fs::metadata(path).map(|m| m.file_type().is_char_device()).unwrap_or(false);
        let channel = if is_char_device {
            // std cannot time out a File read; the kernel driver answers or fails on its own.
            Channel::Device(OpenOptions::new().read(true).write(true).open(path).map_err(connect_error)?)
        } else {
            let stream = UnixStream::connect(path).map_err(connect_error)?;
            stream.set_read_timeout(Some(DEFAULT_TIMEOUT)).map_err(connect_error)?;
            stream.set_write_timeout(Some(DEFAULT_TIMEOUT)).map_err(connect_error)?;
            Channel::Socket(stream)
        };
        Ok(XenStore { channel, endpoint: path.to_path_buf(), timeout: DEFAULT_TIMEOUT, next_req_id: 1, broken: false, inbox: wire::Inbox::default() })
    }

    /// The socket or device this connection uses.
    pub fn endpoint(&self) -> &Path {
        &self.endpoint
    }

    /// How long to wait for a reply (sockets only; the xenbus device has no timeout).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), XenstoreError> {
        if let Channel::Socket(stream) = &self.channel {
            let failed = |err| XenstoreError::Connect { path: self.endpoint.clone(), err };
            stream.set_read_timeout(Some(timeout)).map_err(failed)?;
            stream.set_write_timeout(Some(timeout)).map_err(failed)?;
        }
        self.timeout = timeout;
        Ok(())
    }

    /// The node's value, or `None` if it does not exist.
    pub fn read(&mut self, path: &str) -> Result<Option<String>, XenstoreError> {
        check_path("read", path)?;
        match self.request("read", path, wire::READ, 0, wire::string_payload(path)) {
            Ok(value) => {
                String::from_utf8(value).map(Some).map_err(|_| XenstoreError::NotUtf8 { path: path.to_string() })
            }
            Err(e) if e.errno() == Some("ENOENT") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads several nodes with one round trip: the requests are sent back to back and
    /// xenstored answers them in order. A hotplug call reads half a dozen keys, and each
    /// round trip is a pair of context switches.
    pub fn read_many(&mut self, paths: &[&str]) -> Result<Vec<Option<String>>, XenstoreError> {
        let replies = self.pipeline("read", paths.iter().map(|p| (*p, wire::READ, wire::string_payload(p))).collect())?;
        paths
            .iter()
            .zip(replies)
            .map(|(path, reply)| match reply {
                Ok(value) => String::from_utf8(value).map(Some).map_err(|_| XenstoreError::NotUtf8 { path: path.to_string() }),
                Err(e) if e.errno() == Some("ENOENT") => Ok(None),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// Writes several nodes, in order, with one round trip and no transaction (each write
    /// is atomic on its own; later ones are applied after earlier ones).
    pub fn write_many(&mut self, pairs: &[(&str, &str)]) -> Result<(), XenstoreError> {
        let replies = self.pipeline("write", pairs.iter().map(|(p, v)| (*p, wire::WRITE, wire::write_payload(p, v))).collect())?;
        replies.into_iter().try_for_each(|r| r.map(drop))
    }

    /// Sends all requests, then collects their replies in order. The outer error is for the
    /// connection; the inner ones are xenstored's answers to each request.
    fn pipeline(
        &mut self,
        op: &'static str,
        requests: Vec<(&str, u32, Vec<u8>)>,
    ) -> Result<Vec<Result<Vec<u8>, XenstoreError>>, XenstoreError> {
        let first = requests.first().map(|(p, _, _)| p.to_string()).unwrap_or_default();
        if self.broken {
            return Err(XenstoreError::Protocol(format!("{op} {first}: connection to {} is unusable after an earlier error", self.endpoint.display())));
        }
        let mut sent = Vec::new();
        let mut bytes = Vec::new();
        for (path, kind, payload) in requests {
            check_path(op, path)?;
            check_len(op, path, payload.len())?;
            let req_id = self.next_req_id;
            self.next_req_id = self.next_req_id.wrapping_add(1);
            let msg = Message::new(kind, req_id, 0, payload);
            match &mut self.channel {
                // One write for the socket; the xenbus device takes one message per write.
                Channel::Socket(_) => bytes.extend(msg.encode().map_err(|_| XenstoreError::TooLong { op, path: path.to_string(), len: 0 })?),
                Channel::Device(_) => {
                    if let Err(e) = msg.write_to(&mut self.channel) {
                        self.broken = true;
                        return Err(XenstoreError::Protocol(format!("{op} {path}: {e:?}")));
                    }
                }
            }
            sent.push((path.to_string(), kind, req_id));
        }
        if !bytes.is_empty() {
            if let Err(err) = io::Write::write_all(&mut self.channel, &bytes) {
                self.broken = true;
                return Err(XenstoreError::Io { op, path: first, err });
            }
        }
        let mut out = Vec::new();
        for (path, kind, req_id) in sent {
            let reply = loop {
                match self.inbox.next(&mut self.channel) {
                    Ok(m) if m.kind == wire::WATCH_EVENT => continue,
                    Ok(m) => break m,
                    Err(e) => {
                        self.broken = true;
                        return Err(XenstoreError::Protocol(format!("{op} {path}: {e:?}")));
                    }
                }
            };
            if reply.req_id != req_id {
                self.broken = true;
                return Err(XenstoreError::Protocol(format!("{op} {path}: reply {} out of order (expected {req_id})", reply.req_id)));
            }
            out.push(match reply.kind {
                wire::ERROR => Err(XenstoreError::Server { op, path, errno: wire::reply_text(&reply.payload) }),
                k if k == kind => Ok(reply.payload),
                other => {
                    self.broken = true;
                    return Err(XenstoreError::Protocol(format!("{op} {path}: got a {} reply", wire::type_name(other))));
                }
            });
        }
        Ok(out)
    }

    /// Creates the node and any missing parents.
    pub fn write(&mut self, path: &str, value: &str) -> Result<(), XenstoreError> {
        self.write_in(0, path, value)
    }

    /// All the writes in one transaction, so a reader sees all of them or none (e.g. hotplug-error
    /// together with hotplug-status=error). A commit refused with EAGAIN is retried from the start.
    pub fn write_all(&mut self, pairs: &[(&str, &str)]) -> Result<(), XenstoreError> {
        let Some((first_path, _)) = pairs.first() else { return Ok(()) };
        // Refuse a doomed batch before opening a transaction we would have to abort.
        for (path, value) in pairs {
            check_path("write", path)?;
            check_len("write", path, wire::write_payload(path, value).len())?;
        }
        for _ in 0..COMMIT_ATTEMPTS {
            let tx_id = self.transaction_start(first_path)?;
            let written = pairs.iter().try_for_each(|(path, value)| self.write_in(tx_id, path, value));
            let outcome = match written {
                Ok(()) => self.transaction_end(tx_id, true, first_path),
                Err(e) => {
                    if !self.broken {
                        // Best effort: a failed abort leaves nothing behind that the error does not already say.
                        let _ = self.transaction_end(tx_id, false, first_path);
                    }
                    Err(e)
                }
            };
            match outcome {
                Err(e) if e.errno() == Some("EAGAIN") => continue,
                other => return other,
            }
        }
        Err(XenstoreError::Conflict { path: first_path.to_string(), attempts: COMMIT_ATTEMPTS })
    }

    /// Removes the node and everything under it; a node that is already gone is success.
    pub fn rm(&mut self, path: &str) -> Result<(), XenstoreError> {
        check_path("rm", path)?;
        match self.request("rm", path, wire::RM, 0, wire::string_payload(path)) {
            Err(e) if e.errno() != Some("ENOENT") => Err(e),
            _ => Ok(()),
        }
    }

    /// Creates an empty node (and missing parents); an existing node is left as it is.
    pub fn mkdir(&mut self, path: &str) -> Result<(), XenstoreError> {
        check_path("mkdir", path)?;
        self.request("mkdir", path, wire::MKDIR, 0, wire::string_payload(path)).map(drop)
    }

    /// The names (not paths) of the node's children; none if the node does not exist.
    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, XenstoreError> {
        check_path("directory", path)?;
        match self.request("directory", path, wire::DIRECTORY, 0, wire::string_payload(path)) {
            Ok(names) => names
                .split(|&b| b == 0)
                .filter(|name| !name.is_empty())
                .map(|name| {
                    String::from_utf8(name.to_vec()).map_err(|_| XenstoreError::NotUtf8 { path: path.to_string() })
                })
                .collect(),
            Err(e) if e.errno() == Some("ENOENT") => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn write_in(&mut self, tx_id: u32, path: &str, value: &str) -> Result<(), XenstoreError> {
        check_path("write", path)?;
        self.request("write", path, wire::WRITE, tx_id, wire::write_payload(path, value)).map(drop)
    }

    /// `path` only labels errors: a transaction is not tied to one node.
    fn transaction_start(&mut self, path: &str) -> Result<u32, XenstoreError> {
        let reply = self.request("transaction start", path, wire::TRANSACTION_START, 0, wire::string_payload(""))?;
        let text = wire::reply_text(&reply);
        text.trim().parse().map_err(|_| {
            self.broken = true;
            XenstoreError::Protocol(format!("transaction start for {path}: {text:?} is not a transaction id"))
        })
    }

    fn transaction_end(&mut self, tx_id: u32, commit: bool, path: &str) -> Result<(), XenstoreError> {
        let (op, flag) = if commit { ("transaction commit", "T") } else { ("transaction abort", "F") };
        self.request(op, path, wire::TRANSACTION_END, tx_id, wire::string_payload(flag)).map(drop)
    }

    /// Sends one request and waits for its reply; ERROR replies become `Server` errors.
    fn request(
        &mut self,
        op: &'static str,
        path: &str,
        kind: u32,
        tx_id: u32,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, XenstoreError> {
        if self.broken {
            let endpoint = self.endpoint.display();
            return Err(XenstoreError::Protocol(format!(
                "{op} {path}: connection to {endpoint} is unusable after an earlier error"
            )));
        }
        check_len(op, path, payload.len())?;
        let req_id = self.next_req_id;
        self.next_req_id = self.next_req_id.wrapping_add(1);
        let reply = self.exchange(Message::new(kind, req_id, tx_id, payload)).map_err(|e| {
            self.broken = true;
            match e {
                ExchangeError::Protocol(text) => XenstoreError::Protocol(format!("{op} {path}: {text}")),
                ExchangeError::Wire(WireError::Io(err))
                    if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    XenstoreError::Timeout { op, path: path.to_string(), timeout: self.timeout }
                }
                ExchangeError::Wire(WireError::Io(err)) => XenstoreError::Io { op, path: path.to_string(), err },
                ExchangeError::Wire(WireError::Closed) => {
                    let err = io::Error::new(io::ErrorKind::UnexpectedEof, "xenstored closed the connection");
                    XenstoreError::Io { op, path: path.to_string(), err }
                }
                ExchangeError::Wire(WireError::TooLong { len }) => {
                    XenstoreError::Protocol(format!("{op} {path}: reply of {len} bytes exceeds the xenstore limit"))
                }
            }
        })?;
        match reply.kind {
            wire::ERROR => {
                Err(XenstoreError::Server { op, path: path.to_string(), errno: wire::reply_text(&reply.payload) })
            }
            k if k == kind => Ok(reply.payload),
            other => {
                self.broken = true;
                let (got, sent) = (wire::type_name(other), wire::type_name(kind));
                Err(XenstoreError::Protocol(format!("{op} {path}: got a {got} reply to {sent}")))
            }
        }
    }

    fn exchange(&mut self, request: Message) -> Result<Message, ExchangeError> {
        request.write_to(&mut self.channel).map_err(ExchangeError::Wire)?;
        for _ in 0..STALE_REPLY_LIMIT {
            let reply = self.inbox.next(&mut self.channel).map_err(ExchangeError::Wire)?;
            // Watch events can arrive unasked on a shared xenbus device; we set no watches.
            if reply.kind != wire::WATCH_EVENT && reply.req_id == request.req_id {
                return Ok(reply);
            }
        }
        Err(ExchangeError::Protocol(format!(
            "no reply with req_id {} among {STALE_REPLY_LIMIT} messages",
            request.req_id
        )))
    }
}

/// A NUL inside a path would end it early on the wire and shift the value into the path.
fn check_path(op: &'static str, path: &str) -> Result<(), XenstoreError> {
    if path.contains('\0') {
        return Err(XenstoreError::InvalidPath { op, path: path.to_string() });
    }
    Ok(())
}

fn check_len(op: &'static str, path: &str, len: usize) -> Result<(), XenstoreError> {
    if len > wire::PAYLOAD_MAX {
        return Err(XenstoreError::TooLong { op, path: path.to_string(), len });
    }
    Ok(())
}

/// A stand-in xenstored for tests and benchmarks on machines without Xen: one tree shared by
/// every connection, relative paths under /local/domain/0, transactions applied immediately.
#[doc(hidden)]
pub mod fake {
    use super::wire::{self, Message, WireError};
    use std::collections::BTreeMap;
    use std::io;
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::thread::{self, JoinHandle};

    /// Where dom0's relative paths land, as xenstored resolves them.
    pub const DOM0_HOME: &str = "/local/domain/0";

    pub type Tree = BTreeMap<String, String>;

    /// A running fake xenstored; dropping it closes every connection and removes the socket.
    pub struct FakeServer {
        socket: PathBuf,
        shared: Arc<Shared>,
        acceptor: Option<JoinHandle<()>>,
    }

    struct Shared {
        tree: Mutex<Tree>,
        stopping: AtomicBool,
        next_tx_id: AtomicU32,
        /// Commits still to refuse with EAGAIN, so tests can exercise retries.
        failing_commits: AtomicU32,
        /// Send a WATCH_EVENT before every reply, as a busy xenbus device might.
        watch_noise: AtomicBool,
    }

    /// Starts a server on `socket`, panicking if it cannot listen (for tests).
    pub fn serve(socket: &Path) -> FakeServer {
        try_serve(socket).unwrap_or_else(|e| panic!("fake xenstored: cannot listen on {}: {e}", socket.display()))
    }

    /// Starts a server on `socket`. A stale socket nobody listens on is replaced; a live one is
    /// an AddrInUse error.
    pub fn try_serve(socket: &Path) -> io::Result<FakeServer> {
        remove_stale_socket(socket)?;
        let listener = UnixListener::bind(socket)?;
        let shared = Arc::new(Shared {
            tree: Mutex::new(Tree::new()),
            stopping: AtomicBool::new(false),
            next_tx_id: AtomicU32::new(1),
            failing_commits: AtomicU32::new(0),
            watch_noise: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new().name("fake-xenstored".into()).spawn(move || accept_loop(listener, shared))?
        };
        Ok(FakeServer { socket: socket.to_path_buf(), shared, acceptor: Some(acceptor) })
    }

    fn remove_stale_socket(socket: &Path) -> io::Result<()> {
        let Ok(meta) = std::fs::symlink_metadata(socket) else { return Ok(()) };
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "path exists and is not a socket"));
        }
        if UnixStream::connect(socket).is_ok() {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, "another server is listening there"));
        }
        std::fs::remove_file(socket)
    }

    impl FakeServer {
        pub fn socket(&self) -> &Path {
            &self.socket
        }

        /// Writes a node as a client would (relative paths under /local/domain/0, parents created).
        pub fn set(&self, path: &str, value: &str) {
            let path = canonical(path).unwrap_or_else(|| panic!("fake xenstored: invalid path {path:?}"));
            set_node(&mut self.lock(), &path, value);
        }

        pub fn get(&self, path: &str) -> Option<String> {
            let path = canonical(path)?;
            get_node(&self.lock(), &path)
        }

        /// Every node by absolute path, parents included (with empty values).
        pub fn dump(&self) -> Tree {
            self.lock().clone()
        }

        /// Adds `tree`'s nodes (paths may be relative) on top of what is there.
        pub fn load(&self, tree: &Tree) -> Result<(), String> {
            let mut nodes = self.lock();
            for (path, value) in tree {
                let path = canonical(path).ok_or_else(|| format!("invalid xenstore path {path:?}"))?;
                set_node(&mut nodes, &path, value);
            }
            Ok(())
        }

        /// Refuses the next `count` transaction commits with EAGAIN.
        pub fn fail_next_commits(&self, count: u32) {
            self.shared.failing_commits.store(count, Ordering::SeqCst);
        }

        /// Precedes every reply with an unasked WATCH_EVENT, to check that clients skip them.
        pub fn send_watch_noise(&self, on: bool) {
            self.shared.watch_noise.store(on, Ordering::SeqCst);
        }

        /// Stops serving and returns the final tree: nothing can change it after this returns.
        pub fn shutdown(mut self) -> Tree {
            self.stop();
            self.dump()
        }

        fn lock(&self) -> MutexGuard<'_, Tree> {
            // A panicking connection thread must not take the tree down with it.
            self.shared.tree.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
        }

        fn stop(&mut self) {
            let Some(acceptor) = self.acceptor.take() else { return };
            self.shared.stopping.store(true, Ordering::SeqCst);
            // accept() has no timeout: a connection of our own wakes it to see the flag. If the
            // socket is already gone we cannot wake it, and leave the thread to die with the process.
            if UnixStream::connect(&self.socket).is_ok() {
                let _ = acceptor.join();
            }
            let _ = std::fs::remove_file(&self.socket);
        }
    }

    impl Drop for FakeServer {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
        let mut clients: Vec<(UnixStream, JoinHandle<()>)> = Vec::new();
        for stream in listener.incoming() {
            if shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            clients.retain(|(_, handle)| !handle.is_finished());
            let Ok(handle_for_stop) = stream.try_clone() else { continue };
            let shared = Arc::clone(&shared);
            if let Ok(handle) =
                thread::Builder::new().name("fake-xenstored-conn".into()).spawn(move || serve_client(stream, &shared))
            {
                clients.push((handle_for_stop, handle));
            }
        }
        // Unblock every client thread's read, then wait for them so the tree is final.
        for (stream, _) in &clients {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        for (_, handle) in clients {
            let _ = handle.join();
        }
    }

    fn serve_client(mut stream: UnixStream, shared: &Shared) {
        loop {
            let request = match Message::read_from(&mut stream) {
                Ok(request) => request,
                // Closed, broken, or an oversize message: xenstored drops such a connection too.
                Err(WireError::Closed | WireError::Io(_) | WireError::TooLong { .. }) => return,
            };
            let reply = answer(shared, &request);
            if shared.watch_noise.load(Ordering::SeqCst) {
                let event = Message::new(wire::WATCH_EVENT, 0, 0, b"/some/node\0token\0".to_vec());
                if event.write_to(&mut stream).is_err() {
                    return;
                }
            }
            if reply.write_to(&mut stream).is_err() {
                return;
            }
        }
    }

    fn answer(shared: &Shared, request: &Message) -> Message {
        let lock = || shared.tree.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let ok = || request.reply(request.kind, wire::string_payload("OK"));
        match request.kind {
            wire::READ | wire::DIRECTORY | wire::RM | wire::MKDIR => {
                let Some(path) = wire::nul_terminated(&request.payload).and_then(path_arg) else {
                    return request.error_reply("EINVAL");
                };
                let mut tree = lock();
                match request.kind {
                    wire::READ => match get_node(&tree, &path) {
                        Some(value) => request.reply(wire::READ, value.into_bytes()),
                        None => request.error_reply("ENOENT"),
                    },
                    wire::DIRECTORY => match children(&tree, &path) {
                        Some(names) => {
                            let listing: Vec<u8> = names.iter().flat_map(|name| wire::string_payload(name)).collect();
                            // xenstored's answer to a listing that does not fit in one message.
                            if listing.len() > wire::PAYLOAD_MAX {
                                return request.error_reply("E2BIG");
                            }
                            request.reply(wire::DIRECTORY, listing)
                        }
                        None => request.error_reply("ENOENT"),
                    },
                    wire::RM if path == "/" => request.error_reply("EINVAL"),
                    wire::RM if remove_subtree(&mut tree, &path) => ok(),
                    wire::RM => request.error_reply("ENOENT"),
                    _ => {
                        if get_node(&tree, &path).is_none() {
                            set_node(&mut tree, &path, "");
                        }
                        ok()
                    }
                }
            }
            wire::WRITE => {
                let Some(split) = request.payload.iter().position(|&b| b == 0) else {
                    return request.error_reply("EINVAL");
                };
                let (path, value) = (&request.payload[..split], &request.payload[split + 1..]);
                let (Some(path), Ok(value)) = (path_arg(path), std::str::from_utf8(value)) else {
                    return request.error_reply("EINVAL");
                };
                set_node(&mut lock(), &path, value);
                ok()
            }
            wire::TRANSACTION_START => {
                if wire::nul_terminated(&request.payload) != Some(b"") {
                    return request.error_reply("EINVAL");
                }
                let tx_id = shared.next_tx_id.fetch_add(1, Ordering::SeqCst);
                request.reply(wire::TRANSACTION_START, wire::string_payload(&tx_id.to_string()))
            }
            wire::TRANSACTION_END => {
                let commit = match wire::nul_terminated(&request.payload) {
                    Some(b"T") => true,
                    Some(b"F") => false,
                    _ => return request.error_reply("EINVAL"),
                };
                if request.tx_id == 0 {
                    return request.error_reply("ENOENT");
                }
                let refuse = commit
                    && shared
                        .failing_commits
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                if refuse {
                    request.error_reply("EAGAIN")
                } else {
                    ok()
                }
            }
            _ => request.error_reply("EINVAL"),
        }
    }

    fn path_arg(bytes: &[u8]) -> Option<String> {
        canonical(std::str::from_utf8(bytes).ok()?)
    }

    /// The absolute form of a node name, or None where xenstored would answer EINVAL: relative
    /// names go under dom0's home; no empty components, no trailing '/', only [A-Za-z0-9-/_@].
    pub fn canonical(path: &str) -> Option<String> {
        let absolute = if path.starts_with('/') { path.to_string() } else { format!("{DOM0_HOME}/{path}") };
        let valid_chars = absolute.bytes().all(|b| b.is_ascii_alphanumeric() || b"-/_@".contains(&b));
        let valid_shape = absolute == "/" || (!absolute.ends_with('/') && !absolute.contains("//"));
        (valid_chars && valid_shape).then_some(absolute)
    }

    fn get_node(tree: &Tree, path: &str) -> Option<String> {
        match tree.get(path) {
            Some(value) => Some(value.clone()),
            None if path == "/" => Some(String::new()),
            None => None,
        }
    }

    /// Writes `path`, creating missing parents with empty values as xenstored does.
    fn set_node(tree: &mut Tree, path: &str, value: &str) {
        for (i, _) in path.match_indices('/').skip(1) {
            tree.entry(path[..i].to_string()).or_default();
        }
        tree.insert(path.to_string(), value.to_string());
    }

    /// Removes `path` and its subtree; false if it did not exist.
    fn remove_subtree(tree: &mut Tree, path: &str) -> bool {
        let prefix = format!("{path}/");
        let below: Vec<String> =
            tree.range(prefix.clone()..).map(|(k, _)| k).take_while(|k| k.starts_with(&prefix)).cloned().collect();
        for key in &below {
            tree.remove(key);
        }
        tree.remove(path).is_some() || !below.is_empty()
    }

    fn children(tree: &Tree, path: &str) -> Option<Vec<String>> {
        get_node(tree, path)?;
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        let names = tree
            .range(prefix.clone()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&prefix))
            .map(|k| &k[prefix.len()..])
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_string)
            .collect();
        Some(names)
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{self, FakeServer};
    use super::wire::{self, Message, WireError};
    use super::*;

    #[test]
    fn pipelined_reads_and_writes_keep_their_order() {
        let mut t = setup();
        let xs = &mut t.client;
        xs.write_many(&[("backend/vif/5/0/mac", "00:16:3e:00:00:05"), ("backend/vif/5/0/ip", "192.0.2.5")]).unwrap();
        let got = xs.read_many(&["backend/vif/5/0/mac", "backend/vif/5/0/nothing", "/local/domain/0/backend/vif/5/0/ip"]).unwrap();
        assert_eq!(got, vec![Some("00:16:3e:00:00:05".to_string()), None, Some("192.0.2.5".to_string())]);
        assert_eq!(xs.read("backend/vif/5/0/ip").unwrap().as_deref(), Some("192.0.2.5"), "the connection is still in step");
    }

    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let dir = std::env::temp_dir().join(format!("vifnet-xenstore-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create test dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A fake server and a client on it. Fields drop in order: server first, then its directory.
    struct Setup {
        client: XenStore,
        server: FakeServer,
        _dir: TempDir,
    }

    fn setup() -> Setup {
        let dir = TempDir::new();
        let server = fake::serve(&dir.0.join("xenstored.sock"));
        let client = XenStore::connect_path(server.socket()).expect("connect to fake xenstored");
        Setup { client, server, _dir: dir }
    }

    #[test]
    fn read_of_a_missing_key_is_none() {
        let mut t = setup();
        assert_eq!(t.client.read("backend/vif/5/0/mac").unwrap(), None);
    }

    #[test]
    fn write_then_read_returns_the_value() {
        let mut t = setup();
        t.client.write("backend/vif/5/0/mac", "00:16:3e:00:00:05").unwrap();
        assert_eq!(t.client.read("backend/vif/5/0/mac").unwrap().as_deref(), Some("00:16:3e:00:00:05"));
        assert_eq!(t.server.get("backend/vif/5/0/mac").as_deref(), Some("00:16:3e:00:00:05"));
    }

    #[test]
    fn empty_value_is_some_empty_string() {
        let mut t = setup();
        t.client.write("backend/vif/5/0/ip", "").unwrap();
        assert_eq!(t.client.read("backend/vif/5/0/ip").unwrap().as_deref(), Some(""));
    }

    #[test]
    fn relative_and_absolute_paths_name_the_same_node() {
        let mut t = setup();
        t.client.write("backend/vif/5/0/mac", "00:16:3e:00:00:05").unwrap();
        assert_eq!(t.client.read("/local/domain/0/backend/vif/5/0/mac").unwrap().as_deref(), Some("00:16:3e:00:00:05"));
        t.client.write("/local/domain/0/backend/vif/5/0/mac", "00:16:3e:00:00:06").unwrap();
        assert_eq!(t.client.read("backend/vif/5/0/mac").unwrap().as_deref(), Some("00:16:3e:00:00:06"));
    }

    #[test]
    fn write_creates_parents_with_empty_values() {
        let mut t = setup();
        t.client.write("backend/vif/5/0/mac", "x").unwrap();
        assert_eq!(t.client.read("backend/vif/5").unwrap().as_deref(), Some(""));
    }

    #[test]
    fn write_all_applies_every_pair_in_one_transaction() {
        let mut t = setup();
        t.client
            .write_all(&[
                ("backend/vif/5/0/hotplug-error", "bridge xenbr9 not found"),
                ("backend/vif/5/0/hotplug-status", "error"),
            ])
            .unwrap();
        assert_eq!(t.server.get("backend/vif/5/0/hotplug-error").as_deref(), Some("bridge xenbr9 not found"));
        assert_eq!(t.server.get("backend/vif/5/0/hotplug-status").as_deref(), Some("error"));
    }

    #[test]
    fn write_all_retries_a_commit_refused_with_eagain() {
        let mut t = setup();
        t.server.fail_next_commits(2);
        t.client.write_all(&[("backend/vif/5/0/hotplug-status", "connected")]).unwrap();
        assert_eq!(t.server.get("backend/vif/5/0/hotplug-status").as_deref(), Some("connected"));
    }

    #[test]
    fn write_all_gives_up_after_repeated_eagain_naming_the_path() {
        let mut t = setup();
        t.server.fail_next_commits(COMMIT_ATTEMPTS + 1);
        let err = t.client.write_all(&[("backend/vif/5/0/hotplug-status", "connected")]).unwrap_err();
        assert!(matches!(err, XenstoreError::Conflict { attempts: COMMIT_ATTEMPTS, .. }), "{err:?}");
        assert!(err.to_string().contains("backend/vif/5/0/hotplug-status"), "{err}");
    }

    #[test]
    fn write_all_of_nothing_is_a_no_op() {
        let mut t = setup();
        t.client.write_all(&[]).unwrap();
    }

    #[test]
    fn rm_removes_the_whole_subtree_and_nothing_beside_it() {
        let mut t = setup();
        t.client.write("backend/vif/5/0/mac", "a").unwrap();
        t.client.write("backend/vif/5/0/bridge", "xenbr0").unwrap();
        // "0-x" and "00" sort around "0/..."; removing 0 must leave them.
        t.client.write("backend/vif/5/0-x", "keep").unwrap();
        t.client.write("backend/vif/5/00/mac", "keep").unwrap();
        t.client.rm("backend/vif/5/0").unwrap();
        assert_eq!(t.client.read("backend/vif/5/0").unwrap(), None);
        assert_eq!(t.client.read("backend/vif/5/0/mac").unwrap(), None);
        assert_eq!(t.client.read("backend/vif/5/0/bridge").unwrap(), None);
        assert_eq!(t.client.read("backend/vif/5/0-x").unwrap().as_deref(), Some("keep"));
        assert_eq!(t.client.read("backend/vif/5/00/mac").unwrap().as_deref(), Some("keep"));
    }

    #[test]
    fn rm_of_a_missing_node_succeeds() {
        let mut t = setup();
        t.client.rm("backend/vif/99/0").unwrap();
    }

    #[test]
    fn directory_lists_immediate_children_by_name() {
        let mut t = setup();
        t.client.write("backend/vif/5/0/mac", "a").unwrap();
        t.client.write("backend/vif/5/1/mac", "b").unwrap();
        t.client.write("backend/vif/7/0/mac", "c").unwrap();
        assert_eq!(t.client.directory("backend/vif").unwrap(), vec!["5", "7"]);
        assert_eq!(t.client.directory("/local/domain/0/backend/vif/5").unwrap(), vec!["0", "1"]);
        assert_eq!(t.client.directory("backend/vif/5/0/mac").unwrap(), Vec::<String>::new());
        assert_eq!(t.client.directory("/").unwrap(), vec!["local"]);
    }

    #[test]
    fn directory_of_a_missing_node_is_empty() {
        let mut t = setup();
        assert_eq!(t.client.directory("backend/vif/42").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn mkdir_creates_an_empty_node_and_keeps_an_existing_value() {
        let mut t = setup();
        t.client.mkdir("backend/vif/5/0").unwrap();
        assert_eq!(t.client.read("backend/vif/5/0").unwrap().as_deref(), Some(""));
        t.client.write("backend/vif/5/0/mac", "a").unwrap();
        t.client.mkdir("backend/vif/5/0/mac").unwrap();
        assert_eq!(t.client.read("backend/vif/5/0/mac").unwrap().as_deref(), Some("a"));
    }

    #[test]
    fn oversize_payload_is_refused_before_sending() {
        let mut t = setup();
        let big = "x".repeat(wire::PAYLOAD_MAX);
        let err = t.client.write("backend/vif/5/0/mac", &big).unwrap_err();
        assert!(matches!(err, XenstoreError::TooLong { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("backend/vif/5/0/mac") && text.contains("4096"), "{text}");
        // Nothing was sent, so the connection is still good and the node untouched.
        assert_eq!(t.client.read("backend/vif/5/0/mac").unwrap(), None);
        let err = t.client.write_all(&[("a", "b"), ("backend/vif/5/0/mac", &big)]).unwrap_err();
        assert!(matches!(err, XenstoreError::TooLong { .. }), "{err:?}");
        assert_eq!(t.client.read("a").unwrap(), None);
    }

    #[test]
    fn server_refusal_names_op_path_and_errno() {
        let mut t = setup();
        let err = t.client.write("backend//vif", "x").unwrap_err();
        assert_eq!(err.errno(), Some("EINVAL"));
        assert_eq!(err.to_string(), "xenstore write backend//vif: EINVAL");
        // A refusal is an answer, not a broken stream: the connection goes on.
        t.client.write("backend/vif/5/0/mac", "a").unwrap();
    }

    #[test]
    fn path_with_nul_is_refused_client_side() {
        let mut t = setup();
        let err = t.client.write("backend\0evil", "x").unwrap_err();
        assert!(matches!(err, XenstoreError::InvalidPath { .. }), "{err:?}");
    }

    #[test]
    fn connect_to_a_missing_socket_names_the_path() {
        let dir = TempDir::new();
        let path = dir.0.join("no-such-socket");
        let err = XenStore::connect_path(&path).unwrap_err();
        assert!(matches!(err, XenstoreError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn xenstored_path_is_the_only_endpoint_when_set() {
        assert_eq!(endpoint_candidates(Some("/tmp/fake.sock".into())), vec![PathBuf::from("/tmp/fake.sock")]);
        let defaults = endpoint_candidates(None);
        assert_eq!(
            defaults,
            ["/run/xenstored/socket", "/var/run/xenstored/socket", "/dev/xen/xenbus"].map(PathBuf::from)
        );
        assert_eq!(endpoint_candidates(Some("".into())), defaults);
    }

    #[test]
    fn watch_events_between_replies_are_skipped() {
        let mut t = setup();
        t.server.send_watch_noise(true);
        t.client.write("backend/vif/5/0/mac", "a").unwrap();
        assert_eq!(t.client.read("backend/vif/5/0/mac").unwrap().as_deref(), Some("a"));
    }

    #[test]
    fn connections_share_one_tree() {
        let mut t = setup();
        let mut other = XenStore::connect_path(t.server.socket()).unwrap();
        t.client.write("backend/vif/5/0/mac", "a").unwrap();
        assert_eq!(other.read("backend/vif/5/0/mac").unwrap().as_deref(), Some("a"));
        t.server.set("/local/domain/5/name", "web");
        assert_eq!(other.read("/local/domain/5/name").unwrap().as_deref(), Some("web"));
    }

    #[test]
    fn concurrent_clients_all_land() {
        let t = setup();
        let socket = t.server.socket().to_path_buf();
        let writers: Vec<_> = (0..4)
            .map(|domid| {
                let socket = socket.clone();
                std::thread::spawn(move || {
                    let mut client = XenStore::connect_path(&socket).unwrap();
                    for devid in 0..50 {
                        client
                            .write_all(&[(&format!("backend/vif/{domid}/{devid}/hotplug-status"), "connected")])
                            .unwrap();
                    }
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        let tree = t.server.dump();
        assert_eq!(tree.keys().filter(|k| k.ends_with("/hotplug-status")).count(), 200);
    }

    #[test]
    fn silent_server_times_out_and_the_connection_is_not_reused() {
        let dir = TempDir::new();
        let path = dir.0.join("silent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut client = XenStore::connect_path(&path).unwrap();
        let _accepted = listener.accept().unwrap();
        client.set_timeout(Duration::from_millis(100)).unwrap();
        let err = client.read("backend/vif/5/0/mac").unwrap_err();
        assert!(matches!(err, XenstoreError::Timeout { .. }), "{err:?}");
        assert!(err.to_string().contains("backend/vif/5/0/mac"), "{err}");
        let err = client.read("backend/vif/5/0/mac").unwrap_err();
        assert!(matches!(err, XenstoreError::Protocol(_)), "{err:?}");
    }

    #[test]
    fn server_hanging_up_is_an_io_error() {
        let dir = TempDir::new();
        let path = dir.0.join("hangup.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut client = XenStore::connect_path(&path).unwrap();
        drop(listener.accept().unwrap());
        let err = client.read("backend/vif/5/0/mac").unwrap_err();
        assert!(matches!(err, XenstoreError::Io { .. }), "{err:?}");
    }

    #[test]
    fn wire_round_trip() {
        let msg = Message::new(wire::WRITE, 7, 3, wire::write_payload("backend/vif/5/0/mac", "00:16:3e:00:00:05"));
        let bytes = msg.encode().unwrap();
        assert_eq!(bytes.len(), wire::HEADER_LEN + msg.payload.len());
        assert_eq!(&bytes[..4], &11u32.to_le_bytes());
        assert_eq!(&bytes[12..16], &(msg.payload.len() as u32).to_le_bytes());
        assert_eq!(Message::decode(&bytes).unwrap(), Some((msg.clone(), bytes.len())));
        assert_eq!(Message::read_from(&mut &bytes[..]).unwrap(), msg);
        // A prefix is not yet a message; two back to back come out one at a time.
        assert_eq!(Message::decode(&bytes[..bytes.len() - 1]).unwrap(), None);
        assert_eq!(Message::decode(&bytes[..5]).unwrap(), None);
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(Message::decode(&two).unwrap(), Some((msg, bytes.len())));
    }

    /// A reader that hands out at most `chunk` bytes a call, and counts its calls.
    struct Trickle<'a> {
        bytes: &'a [u8],
        chunk: usize,
        reads: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            let n = self.chunk.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn the_inbox_takes_pipelined_replies_with_one_read_and_torn_ones_whole() {
        let msgs: Vec<Message> = (1..=6).map(|i| Message::new(wire::READ, i, 0, format!("value {i}\0").into_bytes())).collect();
        let bytes: Vec<u8> = msgs.iter().flat_map(|m| m.encode().unwrap()).collect();
        let mut all_at_once = Trickle { bytes: &bytes, chunk: usize::MAX, reads: 0 };
        let mut inbox = wire::Inbox::default();
        for m in &msgs {
            assert_eq!(&inbox.next(&mut all_at_once).unwrap(), m);
        }
        assert_eq!(all_at_once.reads, 1, "six replies, one system call");
        assert!(matches!(inbox.next(&mut all_at_once), Err(WireError::Closed)));
        let mut torn = Trickle { bytes: &bytes, chunk: 5, reads: 0 };
        let mut inbox = wire::Inbox::default();
        for m in &msgs {
            assert_eq!(&inbox.next(&mut torn).unwrap(), m);
        }
        let mut cut = Trickle { bytes: &bytes[..20], chunk: 7, reads: 0 };
        let mut inbox = wire::Inbox::default();
        assert!(matches!(inbox.next(&mut cut), Err(WireError::Io(_))), "a message cut short is an error, not a hang");
    }

    #[test]
    fn wire_refuses_oversize_and_reports_clean_and_torn_ends() {
        let big = Message::new(wire::WRITE, 1, 0, vec![b'x'; wire::PAYLOAD_MAX + 1]);
        assert!(matches!(big.encode(), Err(WireError::TooLong { len }) if len == wire::PAYLOAD_MAX + 1));
        let mut header = Message::new(wire::READ, 1, 0, Vec::new()).encode().unwrap();
        header[12..16].copy_from_slice(&5000u32.to_le_bytes());
        assert!(matches!(Message::decode(&header), Err(WireError::TooLong { len: 5000 })));
        assert!(matches!(Message::read_from(&mut &b""[..]), Err(WireError::Closed)));
        assert!(matches!(Message::read_from(&mut &header[..7]), Err(WireError::Io(_))));
    }

    #[test]
    fn fake_rejects_names_xenstored_would_reject() {
        assert_eq!(fake::canonical("backend/vif/5/0").as_deref(), Some("/local/domain/0/backend/vif/5/0"));
        assert_eq!(fake::canonical("/").as_deref(), Some("/"));
        for bad in ["backend/vif/", "/local//domain", "backend/vif 5", "", "/local/domain/0/"] {
            assert_eq!(fake::canonical(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fake_answers_einval_to_unknown_types_and_stays_up() {
        let mut t = setup();
        let mut raw = UnixStream::connect(t.server.socket()).unwrap();
        Message::new(99, 5, 0, wire::string_payload("x")).write_to(&mut raw).unwrap();
        let reply = Message::read_from(&mut raw).unwrap();
        assert_eq!((reply.kind, reply.req_id, wire::reply_text(&reply.payload).as_str()), (wire::ERROR, 5, "EINVAL"));
        t.client.write("a", "b").unwrap();
    }
}
