//! Slots and the queue: each slot is one runtime session, allocated at start-up and owned by one
//! worker thread; requests wait in a bounded queue for a free slot.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Instant;

use tinygpt_runtime::chat::reply_while;
use tinygpt_runtime::{generate_while, Sampler, SamplerConfig, Session, Template};

use super::http::peer_closed;
use super::stop::StopCut;

/// What a job generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text after a prompt, until the end-of-text token (as `tinygpt generate`).
    Completion,
    /// The assistant's reply to a rendered conversation (as `tinygpt chat -p`).
    Chat,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token or stop string.
    Stop,
    /// `max_tokens` (or the context) ran out.
    Length,
    /// The client went away.
    Disconnected,
    /// The request ran past the time limit.
    TimedOut,
    /// The server is shutting down.
    Shutdown,
}

/// What a slot reports back to the connection that submitted the job.
pub enum Event {
    /// Generation began (the job left the queue).
    Started,
    /// The next piece of text.
    Text(String),
    /// Generation ended.
    Done {
        /// Prompt tokens fed.
        prompt_tokens: usize,
        /// Tokens sampled (a stop token included).
        completion_tokens: usize,
        /// Why it ended.
        finish: Finish,
    },
    /// The runtime failed.
    Failed(String),
}

/// One generation request, ready to run.
pub struct Job {
    /// Completion or chat reply.
    pub kind: Kind,
    /// The prompt (or rendered conversation) as tokens.
    pub tokens: Vec<u32>,
    /// Sampler settings.
    pub sampler: SamplerConfig,
    /// Sampler seed.
    pub seed: u64,
    /// Most tokens to sample.
    pub max_tokens: usize,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Where events go.
    pub events: mpsc::Sender<Event>,
    /// Set by the connection when it can no longer write to the client.
    pub cancel: Arc<AtomicBool>,
    /// The client's connection, watched for a hang-up before every token.
    pub peer: Option<TcpStream>,
    /// When the request runs out of time.
    pub deadline: Instant,
}

struct State {
    jobs: VecDeque<Job>,
    busy: usize,
    closed: bool,
}

/// The bounded queue in front of the slots.
pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    slots: usize,
    capacity: usize,
}

impl Queue {
    /// A queue for `slots` workers that lets `capacity` requests wait.
    pub fn new(slots: usize, capacity: usize) -> Self {
        Queue { state: Mutex::new(State { jobs: VecDeque::new(), busy: 0, closed: false }), ready: Condvar::new(), slots, capacity }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A worker never panics while holding the lock (panics abort the process), so poisoning
        // can only come from a bug elsewhere; the state stays consistent either way.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `job`; `false` (and the job is dropped) when every slot is busy and the queue is full,
    /// or the queue is closed.
    pub fn push(&self, job: Job) -> bool {
        let mut s = self.lock();
        let idle = self.slots - s.busy;
        if s.closed || s.jobs.len() >= self.capacity + idle {
            return false;
        }
        s.jobs.push_back(job);
        drop(s);
        self.ready.notify_one();
        true
    }

    /// Waits for the next job and marks a slot busy; `None` once the queue is closed and empty.
    fn pop(&self) -> Option<Job> {
        let mut s = self.lock();
        loop {
            if let Some(j) = s.jobs.pop_front() {
                s.busy += 1;
                return Some(j);
            }
            if s.closed {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn done(&self) {
        self.lock().busy -= 1;
    }

    /// Lets the workers end once the queue is empty; later pushes fail.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// `(busy slots, waiting requests)`.
    pub fn load(&self) -> (usize, usize) {
        let s = self.lock();
        // A job handed to an idle slot sits in the queue until the slot wakes: not waiting.
        let idle = self.slots - s.busy;
        (s.busy, s.jobs.len().saturating_sub(idle))
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Requests that may wait.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Token counters the slots keep.
#[derive(Default)]
pub struct Counters {
    /// Prompt tokens fed.
    pub prompt_tokens: AtomicU64,
    /// Tokens sampled.
    pub generated_tokens: AtomicU64,
    /// Generations ended because the client went away.
    pub disconnected: AtomicU64,
    /// Generations ended by the time limit.
    pub timed_out: AtomicU64,
}

/// Runs jobs from `queue` in `session` until the queue is closed and empty.
pub fn worker(queue: &Queue, counters: &Counters, shutdown: &AtomicBool, template: Option<Template<'_>>, mut session: Session<'_, '_>) {
    while let Some(job) = queue.pop() {
        let last = run(&mut session, template.as_ref(), &job, counters, shutdown);
        // The slot is free before the client learns that its answer is complete, so that a
        // client sending its next request at once finds it free.
        queue.done();
        let _ = job.events.send(last);
    }
}

/// Runs `job`, sending its text as it comes; returns the last event (`Done` or `Failed`).
fn run(session: &mut Session<'_, '_>, template: Option<&Template<'_>>, job: &Job, counters: &Counters, shutdown: &AtomicBool) -> Event {
    // The receiver may already be gone; then the checks below end the job at once.
    let _ = job.events.send(Event::Started);
    let mut sampler = Sampler::new(job.sampler, job.seed);
    let cut = RefCell::new(StopCut::new(job.stop.clone()));
    let why: Cell<Option<Finish>> = Cell::new(None);
    let send = |text: String| {
        if !text.is_empty() && job.events.send(Event::Text(text)).is_err() {
            why.set(Some(Finish::Disconnected));
        }
    };
    let on_text = |t: &str| send(cut.borrow_mut().push(t));
    let go_on = || {
        if why.get().is_some() || cut.borrow().hit() {
            return false;
        }
        let reason = if job.cancel.load(Ordering::Relaxed) || job.peer.as_ref().is_some_and(peer_closed) {
            Finish::Disconnected
        } else if shutdown.load(Ordering::Relaxed) {
            Finish::Shutdown
        } else if Instant::now() >= job.deadline {
            Finish::TimedOut
        } else {
            return true;
        };
        why.set(Some(reason));
        false
    };
    session.reset();
    let result = match (job.kind, template) {
        (Kind::Chat, Some(t)) => reply_while(session, &mut sampler, t, &job.tokens, job.max_tokens, on_text, go_on),
        (Kind::Chat, None) => return Event::Failed("the model is not a chat model".into()),
        (Kind::Completion, _) => {
            let eot = session.model().tokenizer().eot();
            generate_while(session, &mut sampler, &job.tokens, job.max_tokens, eot.as_slice(), false, on_text, go_on)
        }
    };
    match result {
        Ok(stats) => {
            counters.prompt_tokens.fetch_add(stats.prompt_tokens as u64, Ordering::Relaxed);
            counters.generated_tokens.fetch_add(stats.generated as u64, Ordering::Relaxed);
            let rest = cut.borrow_mut().finish();
            send(rest);
            let finish = match why.get() {
                Some(w) => w,
                None if cut.borrow().hit() || stats.stopped => Finish::Stop,
                None => Finish::Length,
            };
            match finish {
                Finish::Disconnected => counters.disconnected.fetch_add(1, Ordering::Relaxed),
                Finish::TimedOut => counters.timed_out.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
            Event::Done { prompt_tokens: stats.prompt_tokens, completion_tokens: stats.generated, finish }
        }
        Err(e) => Event::Failed(format!("generation failed: {e}")),
    }
}
