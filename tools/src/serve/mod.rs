//! `tinygpt serve`: a web page and an OpenAI-compatible HTTP API over the runtime.
//!
//! One thread per connection reads a request, validates it and hands a job to a bounded queue;
//! `--parallel` worker threads each own one runtime session (allocated at start-up) and run jobs
//! from the queue, reporting text back over a channel. Completions generate as
//! `tinygpt generate` does, chat replies as `tinygpt chat -p` does, so the same seed and settings
//! give the same text. Ctrl-C or SIGTERM stops accepting, ends open streams with an event that
//! says so, and exits once every connection is answered.

mod api;
mod http;
mod json;
mod slots;
mod stop;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tinygpt_runtime::SamplerConfig;

use crate::cli::{ServeArgs, DEFAULT_SEED};
use crate::modelfile::{self, ModelFile};
use crate::out::human_bytes;
use api::{Limits, Server};
use slots::Queue;

/// Connections served at once beyond the slots and the queue (for quick requests: the page,
/// health, metrics, errors); more get 503 at once.
const EXTRA_CONNECTIONS: usize = 32;

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM set [`SIGNALLED`]; blocking calls are interrupted rather than restarted.
fn install_signal_handlers() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the sigaction
        // struct is fully initialised (zeroed, then the handler and an empty mask set).
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!("cannot install a signal handler: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits up to `ms` for a connection to arrive on `l`.
fn wait_readable(l: &TcpListener, ms: i32) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `p` is one valid pollfd for the listener's open descriptor.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0
}

fn read_key(a: &ServeArgs) -> Result<Option<String>> {
    let key = match (&a.api_key, &a.api_key_file) {
        (Some(k), _) => k.clone(),
        (None, Some(f)) => {
            let s = std::fs::read_to_string(f).with_context(|| format!("cannot read the API key file '{f}'"))?;
            s.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, None) => return Ok(None),
    };
    if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("the API key must be non-empty, without spaces or control characters");
    }
    Ok(Some(key))
}

fn bind(host: &str, port: u16) -> Result<TcpListener> {
    let host = if host == "localhost" { "127.0.0.1" } else { host };
    let addrs: Vec<SocketAddr> =
        (host, port).to_socket_addrs().with_context(|| format!("cannot resolve the host '{host}'"))?.collect();
    let mut last = None;
    for addr in &addrs {
        match TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some((addr, e)),
        }
    }
    match last {
        Some((addr, e)) => Err(anyhow!("cannot listen on {addr}: {e}")),
        None => bail!("the host '{host}' has no address"),
    }
}

pub fn run(a: &ServeArgs) -> Result<()> {
    let api_key = read_key(a)?;
    let file = ModelFile::open(&a.run.model)?;
    let model = file.model()?;
    let ctx = modelfile::context_len(&model, a.run.ctx)?;
    let kv = a.run.kv.into();
    let id = std::path::Path::new(&a.run.model)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "model".to_owned());
    let mut bufs = Vec::with_capacity(a.parallel);
    for _ in 0..a.parallel {
        bufs.push(modelfile::session_buffer(&model, ctx, kv)?);
    }
    let per_slot = bufs.first().map_or(0, Vec::len) as u64;
    let mut sessions = Vec::with_capacity(a.parallel);
    for b in bufs.iter_mut() {
        sessions.push(modelfile::session(&model, b, ctx, kv)?);
    }
    let limits = Limits {
        max_body: a.max_body,
        max_tokens: a.max_tokens,
        timeout: Duration::from_secs(a.timeout),
        default_max_tokens: a.n_predict.min(a.max_tokens),
        sampler: SamplerConfig::default(),
        seed: DEFAULT_SEED,
    };
    let server = Server::new(&model, id, ctx, kv.name(), limits, api_key, a.cors_origin.clone(), Queue::new(a.parallel, a.queue));
    let listener = bind(&a.host, a.port)?;
    let addr = listener.local_addr().context("cannot read the listening address")?;
    install_signal_handlers()?;

    let chat = if server.template.is_some() { "chat model" } else { "base model" };
    let mut so = std::io::stdout().lock();
    let _ = writeln!(
        so,
        "tinygpt serve: {} ({chat}, context {ctx}, kv {}): {} slot(s) x {} = {} of session memory, queue {}",
        file.path(),
        kv.name(),
        a.parallel,
        human_bytes(per_slot),
        human_bytes(per_slot * a.parallel as u64),
        a.queue
    );
    let _ = writeln!(so, "tinygpt serve: listening on http://{addr}/ (Ctrl-C to stop)");
    let _ = so.flush();
    drop(so);

    let open = AtomicUsize::new(0);
    let max_open = a.parallel + a.queue + EXTRA_CONNECTIONS;
    std::thread::scope(|sc| -> Result<()> {
        let server = &server;
        let open = &open;
        for session in sessions {
            std::thread::Builder::new()
                .name("slot".into())
                .spawn_scoped(sc, move || {
                    slots::worker(&server.queue, &server.counters, &server.shutdown, server.template, session)
                })
                .context("cannot start a slot thread")?;
        }
        while !SIGNALLED.load(Ordering::SeqCst) {
            if !wait_readable(&listener, 250) {
                continue;
            }
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                // A connection reset before it was accepted, or out of descriptors for a moment.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if open.load(Ordering::SeqCst) >= max_open {
                server.refuse(stream);
                continue;
            }
            open.fetch_add(1, Ordering::SeqCst);
            let spawned = std::thread::Builder::new().name("conn".into()).spawn_scoped(sc, move || {
                server.handle(stream);
                open.fetch_sub(1, Ordering::SeqCst);
            });
            if spawned.is_err() {
                // The stream moved into the closure that failed to start and is closed with it.
                open.fetch_sub(1, Ordering::SeqCst);
            }
        }
        drop(listener);
        let _ = writeln!(std::io::stdout(), "tinygpt serve: stopping (ending {} open connections)", open.load(Ordering::SeqCst));
        server.shutdown.store(true, Ordering::SeqCst);
        server.queue.close();
        Ok(())
    })?;
    let _ = writeln!(std::io::stdout(), "tinygpt serve: stopped");
    Ok(())
}
