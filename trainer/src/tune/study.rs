//! The study: one SQLite file holding the base configuration and space it was made with, and
//! every trial (parameters, state, values at each evaluation, final value, times, who ran it).
//!
//! Several processes share one study: a trial is taken inside a `BEGIN IMMEDIATE` transaction
//! (SQLite's write lock), which both picks the parameters (seeing every trial taken so far) and
//! records the trial as running, so no two processes take the same trial. A trial left `running`
//! by a process that is gone (same host, dead pid; or no heartbeat for [`STALE_AFTER_S`]) is
//! taken again, from the start.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// A running trial whose heartbeat (its last evaluation) is older than this is taken over by
/// another process, whatever its host.
pub const STALE_AFTER_S: f64 = 3600.0;

/// Where a trial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Complete,
    Pruned,
    Failed,
    /// Stopped by Ctrl-C; taken again by the next process.
    Interrupted,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Complete => "complete",
            State::Pruned => "pruned",
            State::Failed => "failed",
            State::Interrupted => "interrupted",
        }
    }
    fn parse(s: &str) -> State {
        match s {
            "running" => State::Running,
            "complete" => State::Complete,
            "pruned" => State::Pruned,
            "interrupted" => State::Interrupted,
            _ => State::Failed,
        }
    }
}

/// One trial as stored.
#[derive(Debug, Clone)]
pub struct Trial {
    pub number: i64,
    pub state: State,
    /// Parameters as a JSON object (`key: value`).
    pub params: serde_json::Value,
    /// Final value: the best validation loss (complete), the last one (pruned).
    pub value: Option<f64>,
    /// `(step, validation loss)` of each evaluation.
    pub intermediate: Vec<(u64, f64)>,
    pub started: f64,
    pub duration_s: Option<f64>,
    pub host: String,
    pub pid: i64,
    pub heartbeat: f64,
    /// Times the trial was started (more than 1: restarted after an interruption).
    pub attempts: i64,
    /// Which sampler chose the parameters (`random`, `gp`, `startup`).
    pub sampler: String,
    pub message: String,
}

/// Seconds since the epoch.
pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// This machine's name.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn pid_alive(pid: i64) -> bool {
    if pid <= 0 || pid > i32::MAX as i64 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Chooses a new trial's parameters from the trials so far and its number: `(params, sampler)`.
pub type Chooser<'a> = &'a mut dyn FnMut(&[Trial], i64) -> Result<(serde_json::Value, String)>;

/// An open study.
pub struct Study {
    conn: Connection,
    host: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    number INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    value REAL,
    started REAL NOT NULL,
    finished REAL,
    duration_s REAL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    heartbeat REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    sampler TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS intermediate (
    trial INTEGER NOT NULL,
    step INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (trial, step)
);
";

/// What a process took: a trial to run, with its parameters.
#[derive(Debug, Clone)]
pub struct Taken {
    pub number: i64,
    pub params: serde_json::Value,
    /// A trial restarted after its process stopped.
    pub restarted: bool,
}

impl Study {
    /// Opens (or creates) the study file.
    pub fn open(path: &Path) -> Result<Study> {
        let conn = Connection::open(path).with_context(|| format!("cannot open study {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(600))?;
        conn.execute_batch(SCHEMA).with_context(|| format!("{} is not a tune study (or is damaged)", path.display()))?;
        Ok(Study { conn, host: host_name() })
    }

    /// Opens an existing study for reading.
    pub fn open_existing(path: &Path) -> Result<Study> {
        if !path.is_file() {
            bail!("no study at {}", path.display());
        }
        Self::open(path)
    }

    /// A value of the study table.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT value FROM study WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    /// Records `entries` in a new study, or checks that an existing one was made with the same:
    /// a difference is an error naming the entry (and the first line that differs).
    pub fn init_or_check(&mut self, entries: &[(&str, &str)]) -> Result<bool> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: i64 = tx.query_row("SELECT COUNT(*) FROM study", [], |r| r.get(0))?;
        if existing == 0 {
            for (k, v) in entries {
                tx.execute("INSERT INTO study (key, value) VALUES (?1, ?2)", params![k, v])?;
            }
            tx.execute("INSERT INTO study (key, value) VALUES ('created', ?1)", params![now().to_string()])?;
            tx.commit()?;
            return Ok(true);
        }
        for (k, v) in entries {
            let stored: Option<String> = tx.query_row("SELECT value FROM study WHERE key = ?1", [k], |r| r.get(0)).optional()?;
            let Some(stored) = stored else { bail!("the study lacks its `{k}`: not made by this version of tune") };
            if stored != *v {
                let diff = stored
                    .lines()
                    .zip(v.lines())
                    .find(|(a, b)| a != b)
                    .map(|(a, b)| format!("`{}` in the study, `{}` now", a.trim(), b.trim()))
                    .unwrap_or_else(|| "lines added or removed".into());
                bail!("the study was made with a different {k} ({diff}): use the same files, or another --study");
            }
        }
        tx.commit()?;
        Ok(false)
    }

    fn stale(host: &str, t: &Trial, now: f64) -> bool {
        t.state == State::Interrupted
            || (t.state == State::Running
                && ((t.host == host && t.pid != std::process::id() as i64 && !pid_alive(t.pid)) || now - t.heartbeat > STALE_AFTER_S))
    }

    /// Takes the next trial: a stopped one again, else a new one (numbered from 0) whose
    /// parameters `choose` gives from the trials so far (`(params, sampler)`), while fewer than
    /// `total` exist. `None` when every trial is taken.
    pub fn take(
        &mut self,
        total: usize,
        choose: Chooser<'_>,
    ) -> Result<Option<Taken>> {
        let now = now();
        let pid = std::process::id() as i64;
        let host = self.host.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let trials = Self::read_trials(&tx)?;
        if let Some(t) = trials.iter().find(|t| Self::stale(&host, t, now)) {
            tx.execute("DELETE FROM intermediate WHERE trial = ?1", [t.number])?;
            tx.execute(
                "UPDATE trials SET state = 'running', value = NULL, started = ?2, finished = NULL, duration_s = NULL, host = ?3, pid = ?4, heartbeat = ?2, attempts = attempts + 1, message = '' WHERE number = ?1",
                params![t.number, now, host, pid],
            )?;
            tx.commit()?;
            return Ok(Some(Taken { number: t.number, params: t.params.clone(), restarted: true }));
        }
        if trials.len() >= total {
            return Ok(None);
        }
        let number = trials.iter().map(|t| t.number + 1).max().unwrap_or(0);
        let (params, sampler) = choose(&trials, number)?;
        tx.execute(
            "INSERT INTO trials (number, state, params, started, host, pid, heartbeat, sampler) VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?3, ?6)",
            params![number, params.to_string(), now, host, pid, sampler],
        )?;
        tx.commit()?;
        Ok(Some(Taken { number, params, restarted: false }))
    }

    /// Records the validation loss of trial `number` at `step` (also its heartbeat).
    pub fn report(&self, number: i64, step: u64, value: f64) -> Result<()> {
        self.conn.execute("INSERT OR REPLACE INTO intermediate (trial, step, value) VALUES (?1, ?2, ?3)", params![number, step as i64, value])?;
        self.conn.execute("UPDATE trials SET heartbeat = ?2 WHERE number = ?1", params![number, now()])?;
        Ok(())
    }

    /// Values at `step` of the complete trials other than `number`.
    pub fn values_at(&self, step: u64, number: i64) -> Result<Vec<f64>> {
        let mut q = self.conn.prepare(
            "SELECT i.value FROM intermediate i JOIN trials t ON t.number = i.trial WHERE t.state = 'complete' AND i.step = ?1 AND i.trial != ?2",
        )?;
        let v = q.query_map(params![step as i64, number], |r| r.get(0))?.collect::<rusqlite::Result<Vec<f64>>>()?;
        Ok(v)
    }

    /// Complete trials.
    pub fn complete_count(&self) -> Result<usize> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM trials WHERE state = 'complete'", [], |r| r.get::<_, i64>(0))? as usize)
    }

    /// Ends trial `number` in `state` with `value`.
    pub fn finish(&self, number: i64, state: State, value: Option<f64>, message: &str) -> Result<()> {
        let t = now();
        self.conn.execute(
            "UPDATE trials SET state = ?2, value = ?3, finished = ?4, duration_s = ?4 - started, heartbeat = ?4, message = ?5 WHERE number = ?1 AND pid = ?6",
            params![number, state.name(), value, t, message, std::process::id() as i64],
        )?;
        Ok(())
    }

    fn read_trials(conn: &Connection) -> Result<Vec<Trial>> {
        let mut q = conn.prepare(
            "SELECT number, state, params, value, started, duration_s, host, pid, heartbeat, attempts, sampler, message FROM trials ORDER BY number",
        )?;
        let mut trials: Vec<Trial> = q
            .query_map([], |r| {
                let params: String = r.get(2)?;
                Ok(Trial {
                    number: r.get(0)?,
                    state: State::parse(&r.get::<_, String>(1)?),
                    params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
                    value: r.get(3)?,
                    intermediate: Vec::new(),
                    started: r.get(4)?,
                    duration_s: r.get(5)?,
                    host: r.get(6)?,
                    pid: r.get(7)?,
                    heartbeat: r.get(8)?,
                    attempts: r.get(9)?,
                    sampler: r.get(10)?,
                    message: r.get(11)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut q = conn.prepare("SELECT trial, step, value FROM intermediate ORDER BY trial, step")?;
        let rows = q.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?)))?;
        for row in rows {
            let (n, step, v) = row?;
            if let Some(t) = trials.iter_mut().find(|t| t.number == n) {
                t.intermediate.push((step as u64, v));
            }
        }
        Ok(trials)
    }

    /// Every trial, by number.
    pub fn trials(&self) -> Result<Vec<Trial>> {
        Self::read_trials(&self.conn)
    }
}
