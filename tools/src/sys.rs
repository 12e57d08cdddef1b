//! The operating system, through the C library: files, memory maps, standard streams, clocks.
//!
//! The static `tinygpt` is `no_std` (std's formatting, panic and backtrace machinery are most of
//! a small program's size), so the little of `std::io`, `std::fs` and `std::time` it needs is
//! here, written against `libc`, with std's behaviour where it shows: error messages such as
//! `No such file or directory (os error 2)`, an ignored SIGPIPE (a closed pipe is an error
//! `EPIPE`, not a kill), writes retried after `EINTR`.

use core::ffi::CStr;
use core::fmt;
use core::time::Duration;

use tinygpt::prelude::*;

/// The error number of the last failed C call.
fn errno() -> i32 {
    // SAFETY: `__errno_location` returns the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

/// A failed operation: an OS error number, or a message.
#[derive(Debug)]
pub enum Error {
    /// `errno` of a failed call.
    Os(i32),
    /// What went wrong, in words.
    Msg(String),
}

/// Result of an operation of this module.
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// The error of the C call that just failed.
    pub fn last() -> Self {
        Error::Os(errno())
    }
    /// Whether the reader of a pipe has gone away.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Os(libc::EPIPE))
    }
    /// Whether the file or directory does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Os(libc::ENOENT))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Os(code) => {
                // SAFETY: `strerror` returns a NUL-terminated string that stays valid until the
                // next call; it is copied out at once (the program is single-threaded here).
                let text = unsafe { CStr::from_ptr(libc::strerror(*code)) };
                write!(f, "{} (os error {code})", text.to_str().unwrap_or("unknown error"))
            }
            Error::Msg(m) => f.write_str(m),
        }
    }
}

impl core::error::Error for Error {}

/// `s` as a NUL-terminated C string; a path holding a NUL byte is an error.
fn c_string(s: &str) -> Result<Vec<u8>> {
    if s.as_bytes().contains(&0) {
        return Err(Error::Msg(format!("the path {s:?} contains a NUL byte")));
    }
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    Ok(v)
}

/// Writing bytes, as `std::io::Write` (the part of it the program uses).
pub trait Write {
    /// Writes all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> Result<()>;
    /// Writes out anything buffered.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// Writes formatted text (what `write!` and `writeln!` call).
    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> Result<()> {
        struct Adapter<'w, W: ?Sized> {
            w: &'w mut W,
            err: Option<Error>,
        }
        impl<W: Write + ?Sized> fmt::Write for Adapter<'_, W> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.w.write_all(s.as_bytes()).map_err(|e| {
                    self.err = Some(e);
                    fmt::Error
                })
            }
        }
        let mut a = Adapter { w: self, err: None };
        match fmt::write(&mut a, args) {
            Ok(()) => Ok(()),
            Err(_) => Err(a.err.unwrap_or_else(|| Error::Msg("formatting failed".to_owned()))),
        }
    }
}

/// Writes all of `buf` to file descriptor `fd`, retrying after interruptions.
fn write_fd(fd: i32, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = Error::last();
            if matches!(e, Error::Os(libc::EINTR)) {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(Error::Msg("failed to write whole buffer".to_owned()));
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Standard output or error, unbuffered: every write is a system call (the program writes whole
/// reports at once, and streamed text is flushed piece by piece anyway).
pub struct Stream(i32);

impl Write for Stream {
    fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        write_fd(self.0, buf)
    }
}

/// Standard output.
pub fn stdout() -> Stream {
    Stream(1)
}

/// Standard error.
pub fn stderr() -> Stream {
    Stream(2)
}

/// Standard input with a buffer, read a line at a time.
pub struct Stdin {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl Stdin {
    /// Standard input, nothing read yet.
    pub fn new() -> Self {
        Stdin { buf: vec![0; 8192], pos: 0, end: 0 }
    }

    /// Whether standard input is a terminal.
    pub fn is_terminal(&self) -> bool {
        // SAFETY: `isatty` only inspects the descriptor.
        unsafe { libc::isatty(0) == 1 }
    }

    /// The bytes read but not consumed, reading more if there are none; empty at end of input.
    pub fn fill_buf(&mut self) -> Result<&[u8]> {
        if self.pos == self.end {
            loop {
                // SAFETY: `buf` is valid for writes of its length.
                let n = unsafe { libc::read(0, self.buf.as_mut_ptr().cast(), self.buf.len()) };
                if n < 0 {
                    let e = Error::last();
                    if matches!(e, Error::Os(libc::EINTR)) {
                        continue;
                    }
                    return Err(e);
                }
                self.pos = 0;
                self.end = n as usize;
                break;
            }
        }
        Ok(&self.buf[self.pos..self.end])
    }

    /// Marks `n` bytes of [`Stdin::fill_buf`]'s as used.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }

    /// Appends bytes to `out` up to and including the next `\n`, reading at most `limit` bytes;
    /// returns how many were read (0 at end of input).
    pub fn read_until_newline(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<usize> {
        let mut read = 0;
        while read < limit {
            let avail = self.fill_buf()?;
            if avail.is_empty() {
                break;
            }
            let room = &avail[..avail.len().min(limit - read)];
            match room.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    out.extend_from_slice(&room[..=i]);
                    self.consume(i + 1);
                    return Ok(read + i + 1);
                }
                None => {
                    let n = room.len();
                    out.extend_from_slice(room);
                    self.consume(n);
                    read += n;
                }
            }
        }
        Ok(read)
    }
}

/// What `stat` tells of a file.
#[derive(Clone, Copy)]
pub struct Metadata {
    mode: u32,
    size: u64,
}

impl Metadata {
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
    /// A symbolic link (from [`symlink_metadata`]).
    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.size
    }
}

fn metadata_of(st: &libc::stat) -> Metadata {
    Metadata { mode: st.st_mode, size: st.st_size as u64 }
}

/// An open file (closed when dropped).
pub struct File {
    fd: i32,
}

impl File {
    /// Opens `path` for reading.
    pub fn open(path: &str) -> Result<File> {
        let c = c_string(path)?;
        // SAFETY: `c` is NUL-terminated.
        let fd = unsafe { libc::open(c.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Error::last());
        }
        Ok(File { fd })
    }

    /// Creates (or truncates) `path` for writing.
    fn create(path: &str) -> Result<File> {
        let c = c_string(path)?;
        // SAFETY: `c` is NUL-terminated.
        let fd = unsafe { libc::open(c.as_ptr().cast(), libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC, 0o666) };
        if fd < 0 {
            return Err(Error::last());
        }
        Ok(File { fd })
    }

    /// The file's type and size.
    pub fn metadata(&self) -> Result<Metadata> {
        // SAFETY: `stat` is plain data; `fstat` fills it.
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        if unsafe { libc::fstat(self.fd, &mut st) } != 0 {
            return Err(Error::last());
        }
        Ok(metadata_of(&st))
    }

    /// Reads everything to the end.
    pub fn read_to_end(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `chunk` is valid for writes of its length.
            let n = unsafe { libc::read(self.fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if n < 0 {
                let e = Error::last();
                if matches!(e, Error::Os(libc::EINTR)) {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(());
            }
            out.extend_from_slice(&chunk[..n as usize]);
        }
    }

    fn sync_all(&self) -> Result<()> {
        // SAFETY: plain system call on an open descriptor.
        if unsafe { libc::fsync(self.fd) } != 0 {
            return Err(Error::last());
        }
        Ok(())
    }
}

impl Write for File {
    fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        write_fd(self.fd, buf)
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: the descriptor is this value's and is not used again.
        unsafe { libc::close(self.fd) };
    }
}

/// The whole content of the file at `path`.
pub fn read(path: &str) -> Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut out = Vec::new();
    if let Ok(m) = f.metadata() {
        if m.is_dir() {
            return Err(Error::Os(libc::EISDIR));
        }
        out.reserve(m.len() as usize);
    }
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// The whole content of the file at `path`, which must be UTF-8.
pub fn read_to_string(path: &str) -> Result<String> {
    String::from_utf8(read(path)?).map_err(|_| Error::Msg("stream did not contain valid UTF-8".to_owned()))
}

/// A read-only memory map of a whole file (unmapped when dropped).
pub struct Mmap {
    ptr: *mut u8,
    len: usize,
}

impl Mmap {
    /// Maps all of `file` read-only. The file must not be empty.
    ///
    /// # Safety
    /// The map is valid while the file is not truncated by another process (which the OS reports
    /// as SIGBUS), as for any memory-mapped reader.
    pub unsafe fn map(file: &File) -> Result<Mmap> {
        let len = file.metadata()?.len() as usize;
        // SAFETY: a fresh shared read-only mapping of an open descriptor; checked for failure.
        let ptr = unsafe { libc::mmap(core::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.fd, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(Error::last());
        }
        Ok(Mmap { ptr: ptr.cast(), len })
    }
}

impl core::ops::Deref for Mmap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes, alive as long as `self`.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: the mapping is this value's and is not used again.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// What `lstat` tells of `path` (a symbolic link is not followed).
pub fn symlink_metadata(path: &str) -> Result<Metadata> {
    let c = c_string(path)?;
    // SAFETY: `stat` is plain data; `lstat` fills it.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    if unsafe { libc::lstat(c.as_ptr().cast(), &mut st) } != 0 {
        return Err(Error::last());
    }
    Ok(metadata_of(&st))
}

/// What `stat` tells of `path` (symbolic links followed).
pub fn metadata(path: &str) -> Result<Metadata> {
    let c = c_string(path)?;
    // SAFETY: `stat` is plain data; `stat` fills it.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    if unsafe { libc::stat(c.as_ptr().cast(), &mut st) } != 0 {
        return Err(Error::last());
    }
    Ok(metadata_of(&st))
}

/// The target of the symbolic link at `path`.
fn read_link(path: &str) -> Result<String> {
    let c = c_string(path)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::readlink(c.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(Error::last());
    }
    buf.truncate(n as usize);
    String::from_utf8(buf).map_err(|_| Error::Msg(format!("the link {path} points to a path that is not UTF-8")))
}

/// The directory part of `path` ("" when there is none), as `Path::parent`.
pub fn parent(path: &str) -> &str {
    let p = path.trim_end_matches('/');
    match p.rfind('/') {
        Some(0) => "/",
        Some(i) => p[..i].trim_end_matches('/'),
        None => "",
    }
}

/// The last part of `path`, as `Path::file_name` (`None` for "/", "." or "..").
pub fn file_name(path: &str) -> Option<&str> {
    let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if name.is_empty() || name == "." || name == ".." {
        None
    } else {
        Some(name)
    }
}

/// `dir/name` (`name` alone when `dir` is empty).
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Where [`write_atomic`] would write `path`: the path itself, or a symbolic link's target.
/// Fails when the directory does not exist or something other than a regular file is there.
pub fn check_writable(path: &str) -> Result<String> {
    let mut target = path.to_owned();
    // Follow links (a bounded number, so a loop is an error, not a hang).
    for _ in 0..40 {
        match symlink_metadata(&target) {
            Ok(m) if m.is_symlink() => {
                let link = read_link(&target)?;
                target = if link.starts_with('/') { link } else { join(parent(&target), &link) };
            }
            Ok(m) if m.is_file() => return Ok(target),
            Ok(_) => return Err(Error::Msg(format!("{target} exists and is not a regular file"))),
            Err(e) if e.is_not_found() => {
                let dir = match parent(&target) {
                    "" => ".",
                    d => d,
                };
                if !metadata(dir).is_ok_and(|m| m.is_dir()) {
                    return Err(Error::Msg(format!("directory {dir} does not exist")));
                }
                return Ok(target);
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Msg(format!("{path}: too many levels of symbolic links")))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename.
/// A reader never sees a half-written file, and an existing file survives a failed write. A
/// symbolic link at `path` is followed; something other than a regular file there is an error.
pub fn write_atomic(path: &str, bytes: &[u8]) -> Result<()> {
    let path = check_writable(path)?;
    let dir = match parent(&path) {
        "" => ".",
        d => d,
    };
    let name = file_name(&path).ok_or_else(|| Error::Msg("path has no file name".to_owned()))?;
    // SAFETY: `getpid` cannot fail.
    let pid = unsafe { libc::getpid() };
    let tmp = join(dir, &format!(".{name}.{pid}.tmp"));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        let (from, to) = (c_string(&tmp)?, c_string(&path)?);
        // SAFETY: both are NUL-terminated.
        if unsafe { libc::rename(from.as_ptr().cast(), to.as_ptr().cast()) } != 0 {
            return Err(Error::last());
        }
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        if let Ok(c) = c_string(&tmp) {
            // SAFETY: NUL-terminated.
            unsafe { libc::unlink(c.as_ptr().cast()) };
        }
    }
    result
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A point on the monotonic clock.
#[derive(Clone, Copy)]
pub struct Instant(Duration);

impl Instant {
    /// Now.
    pub fn now() -> Self {
        Instant(clock(libc::CLOCK_MONOTONIC))
    }
    /// Time since `self`.
    pub fn elapsed(&self) -> Duration {
        clock(libc::CLOCK_MONOTONIC).saturating_sub(self.0)
    }
}

/// CPU time the calling thread has used (zero if the clock cannot be read).
pub fn thread_cpu_time() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Ends the process with `code`.
pub fn exit(code: i32) -> ! {
    // SAFETY: nothing is buffered in this program's streams.
    unsafe { libc::exit(code) }
}
