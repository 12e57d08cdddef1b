//! The search space of `tune`: a TOML file naming training keys and their ranges, and the
//! constraints every configuration tried must meet.
//!
//! ```toml
//! [params]
//! learning_rate = { log_uniform = [1e-4, 1e-2] }
//! dropout = { uniform = [0.0, 0.2] }
//! n_layer = { int = [2, 6] }
//! warmup_iters = { int = [10, 400], log = true }
//! n_embd = { choice = [64, 96, 128] }
//! arch = { choice = ["gpt2", "llama"] }
//!
//! [constraints]
//! fits = "stm32f405"   # the int8 file within the flash left by the firmware, the session in RAM
//! dtype = "int8"       # weight type of the file that must fit (default int8)
//! group_size = 64
//! ```
//!
//! Every point of the space maps to the unit cube the optimiser works in: floats linearly (or in
//! their logarithm), integers likewise with each integer owning an equal slice, numeric choices as
//! an ordered scale in the order given, other choices (strings, booleans) one dimension each
//! (one-hot; the largest wins).

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{anyhow, bail, Context, Result};
use tinygpt_runtime::board::Board;
use tinygpt_runtime::writer::{self, AlignedBytes, MetaData};
use tinygpt_runtime::{DType, Model};

use crate::config::{parse_toml, TrainConfig};
use crate::data::TextTokenizer;
use crate::export::parse_dtype;
use crate::model::ModelDims;
use crate::train::{self, TRAINER_VERSION};

/// How one parameter is drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// A float, uniform in `[lo, hi]`.
    Uniform { lo: f64, hi: f64 },
    /// A float whose logarithm is uniform in `[ln lo, ln hi]`.
    LogUniform { lo: f64, hi: f64 },
    /// An integer in `lo..=hi`, uniform (or uniform in its logarithm).
    Int { lo: i64, hi: i64, log: bool },
    /// One of the values, as written in the space file.
    Choice(Vec<toml::Value>),
}

/// One searched key.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub dist: Dist,
}

/// A parameter's value in a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Float(f64),
    Int(i64),
    /// Index into the choices.
    Choice(usize),
}

/// One configuration of the space: a value per parameter, in the space's order.
pub type Point = Vec<Value>;

/// What every configuration tried must meet.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraints {
    /// The board whose flash and RAM the model must fit.
    pub board: Option<Board>,
    /// Weight type of the file that must fit.
    pub dtype: DType,
    /// Group size of quantized weights.
    pub group_size: u32,
}

/// A parsed search space.
#[derive(Debug, Clone)]
pub struct Space {
    pub params: Vec<Param>,
    pub constraints: Constraints,
}

fn value_kind(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn as_f64(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Float(f) => Some(*f),
        toml::Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

/// The pair `[lo, hi]` of a range.
fn pair<'v>(key: &str, kind: &str, v: &'v toml::Value) -> Result<(&'v toml::Value, &'v toml::Value)> {
    match v.as_array().map(Vec::as_slice) {
        Some([a, b]) => Ok((a, b)),
        _ => bail!("`{key}`: {kind} needs [low, high], got {v}"),
    }
}

fn check_range(key: &str, lo: f64, hi: f64) -> Result<()> {
    if !(lo.is_finite() && hi.is_finite()) {
        bail!("`{key}`: the range [{lo}, {hi}] must be finite");
    }
    if lo == hi {
        bail!("`{key}`: the range [{lo}, {hi}] is empty (low equals high: set the key in the base config instead)");
    }
    if lo > hi {
        bail!("`{key}`: the range [{lo}, {hi}] is inverted (low above high)");
    }
    Ok(())
}

impl Space {
    /// Parses the space file's text; `base` is the configuration every point starts from (its
    /// keys' types decide which ranges fit which key).
    pub fn parse(text: &str, base: &TrainConfig) -> Result<Space> {
        let mut table = parse_toml(text)?;
        let base_table = toml::Table::try_from(base).context("the base config does not serialize")?;
        let params_table = match table.remove("params") {
            Some(toml::Value::Table(t)) => t,
            Some(v) => bail!("`params` must be a table, got {}", value_kind(&v)),
            None => bail!("no [params] table: the space searches nothing"),
        };
        let constraints = match table.remove("constraints") {
            Some(toml::Value::Table(t)) => Self::parse_constraints(t)?,
            Some(v) => bail!("`constraints` must be a table, got {}", value_kind(&v)),
            None => Constraints { board: None, dtype: DType::I8, group_size: 64 },
        };
        if let Some(k) = table.keys().next() {
            bail!("unknown key `{k}` in the space (expected [params] and [constraints])");
        }
        if params_table.is_empty() {
            bail!("[params] is empty: the space searches nothing");
        }
        let mut params = Vec::new();
        for (key, spec) in params_table {
            if !TrainConfig::known_key(&key) {
                bail!("unknown training key `{key}` in [params]");
            }
            if matches!(key.as_str(), "name" | "corpus" | "alphabet_task" | "stop_at" | "threads" | "log_interval" | "sample_prompt") {
                bail!("`{key}` is not a hyper-parameter: set it in the base config");
            }
            let base_kind = base_table.get(&key).map(value_kind).unwrap_or("a string");
            let toml::Value::Table(spec) = spec else {
                bail!("`{key}`: expected a table such as {{ uniform = [0.0, 1.0] }}, got {}", value_kind(&spec));
            };
            let dist = Self::parse_dist(&key, &spec, base_kind)?;
            params.push(Param { name: key, dist });
        }
        Ok(Space { params, constraints })
    }

    fn parse_constraints(mut t: toml::Table) -> Result<Constraints> {
        let board = match t.remove("fits") {
            None => None,
            Some(toml::Value::String(name)) => Some(Board::by_name(&name).ok_or_else(|| {
                let known: Vec<&str> = tinygpt_runtime::board::BOARDS.iter().map(|b| b.name).collect();
                anyhow!("[constraints] fits = {name:?}: unknown board (known: {})", known.join(", "))
            })?),
            Some(v) => bail!("[constraints] fits must be a board name such as \"stm32f405\", got {}", value_kind(&v)),
        };
        let dtype = match t.remove("dtype") {
            None => DType::I8,
            Some(toml::Value::String(s)) => parse_dtype(&s).context("[constraints] dtype")?,
            Some(v) => bail!("[constraints] dtype must be a string, got {}", value_kind(&v)),
        };
        let group_size = match t.remove("group_size") {
            None => 64,
            Some(toml::Value::Integer(g)) if (1..=1 << 20).contains(&g) => g as u32,
            Some(v) => bail!("[constraints] group_size must be an integer from 1, got {v}"),
        };
        if let Some(k) = t.keys().next() {
            bail!("unknown key `{k}` in [constraints] (expected fits, dtype, group_size)");
        }
        Ok(Constraints { board, dtype, group_size })
    }

    fn parse_dist(key: &str, spec: &toml::Table, base_kind: &str) -> Result<Dist> {
        let mut kinds = spec.keys().filter(|k| k.as_str() != "log");
        let kind = kinds.next().ok_or_else(|| anyhow!("`{key}`: give one of uniform, log_uniform, int, choice"))?.clone();
        if let Some(other) = kinds.next() {
            bail!("`{key}`: `{kind}` and `{other}` both given (one distribution per key)");
        }
        let log = match spec.get("log") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(v) => bail!("`{key}`: log must be true or false, got {v}"),
        };
        let v = &spec[&kind];
        let float_key = || -> Result<()> {
            if base_kind != "a float" {
                bail!("`{key}` takes {base_kind}, not a float range (use int or choice)");
            }
            Ok(())
        };
        let dist = match kind.as_str() {
            "uniform" | "log_uniform" => {
                float_key()?;
                if log {
                    bail!("`{key}`: write log_uniform = [low, high] rather than log = true with {kind}");
                }
                let (a, b) = pair(key, &kind, v)?;
                let (lo, hi) = match (as_f64(a), as_f64(b)) {
                    (Some(lo), Some(hi)) => (lo, hi),
                    _ => bail!("`{key}`: {kind} needs two numbers, got {v}"),
                };
                check_range(key, lo, hi)?;
                if kind == "log_uniform" {
                    if lo <= 0.0 {
                        bail!("`{key}`: log_uniform needs a low above 0, got {lo}");
                    }
                    Dist::LogUniform { lo, hi }
                } else {
                    Dist::Uniform { lo, hi }
                }
            }
            "int" => {
                if base_kind != "an integer" {
                    bail!("`{key}` takes {base_kind}, not an integer range");
                }
                let (a, b) = pair(key, "int", v)?;
                let (lo, hi) = match (a, b) {
                    (toml::Value::Integer(lo), toml::Value::Integer(hi)) => (*lo, *hi),
                    _ => bail!("`{key}`: int needs two integers, got {v}"),
                };
                check_range(key, lo as f64, hi as f64)?;
                if lo < 0 {
                    bail!("`{key}`: training keys are never negative, got low {lo}");
                }
                if log && lo < 1 {
                    bail!("`{key}`: int with log = true needs a low of at least 1, got {lo}");
                }
                Dist::Int { lo, hi, log }
            }
            "choice" => {
                if log {
                    bail!("`{key}`: log does not apply to a choice");
                }
                let Some(values) = v.as_array() else { bail!("`{key}`: choice needs a list of values, got {v}") };
                if values.len() < 2 {
                    bail!("`{key}`: choice needs at least two values, got {}", values.len());
                }
                for (i, x) in values.iter().enumerate() {
                    let kind_ok = value_kind(x) == base_kind || (base_kind == "a float" && matches!(x, toml::Value::Integer(_)));
                    if !kind_ok {
                        bail!("`{key}` takes {base_kind}; choice value {x} is {}", value_kind(x));
                    }
                    if values[..i].contains(x) {
                        bail!("`{key}`: choice value {x} is listed twice");
                    }
                }
                let values = values
                    .iter()
                    .map(|x| match (x, base_kind) {
                        (toml::Value::Integer(i), "a float") => toml::Value::Float(*i as f64),
                        _ => x.clone(),
                    })
                    .collect();
                Dist::Choice(values)
            }
            other => bail!("`{key}`: unknown distribution `{other}` (expected uniform, log_uniform, int, choice)"),
        };
        Ok(dist)
    }

    /// The space written back as TOML, in a canonical form (what the study stores and compares).
    pub fn canonical(&self) -> String {
        let mut s = String::from("[params]\n");
        for p in &self.params {
            let spec = match &p.dist {
                Dist::Uniform { lo, hi } => format!("{{ uniform = [{lo:?}, {hi:?}] }}"),
                Dist::LogUniform { lo, hi } => format!("{{ log_uniform = [{lo:?}, {hi:?}] }}"),
                Dist::Int { lo, hi, log } => format!("{{ int = [{lo}, {hi}], log = {log} }}"),
                Dist::Choice(v) => format!("{{ choice = [{}] }}", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")),
            };
            let _ = writeln!(s, "{} = {spec}", p.name);
        }
        let c = &self.constraints;
        s.push_str("\n[constraints]\n");
        if let Some(b) = c.board {
            let _ = writeln!(s, "fits = {:?}", b.name);
        }
        let _ = writeln!(s, "dtype = {:?}\ngroup_size = {}", c.dtype.name(), c.group_size);
        s
    }

    fn numeric_choices(values: &[toml::Value]) -> bool {
        values.iter().all(|v| as_f64(v).is_some())
    }

    /// Dimensions of the unit cube.
    pub fn dims(&self) -> usize {
        self.params
            .iter()
            .map(|p| match &p.dist {
                Dist::Choice(v) if !Self::numeric_choices(v) => v.len(),
                _ => 1,
            })
            .sum()
    }

    /// A point drawn uniformly (in each parameter's own measure).
    pub fn sample(&self, rng: &mut Rng) -> Point {
        let u: Vec<f64> = (0..self.dims()).map(|_| rng.uniform()).collect();
        self.decode(&u)
    }

    /// The point at `u` in the unit cube.
    pub fn decode(&self, u: &[f64]) -> Point {
        let mut i = 0;
        let mut point = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let c = |x: f64| x.clamp(0.0, 1.0);
            let v = match &p.dist {
                Dist::Uniform { lo, hi } => Value::Float(lo + (hi - lo) * c(u[i])),
                Dist::LogUniform { lo, hi } => Value::Float((lo.ln() + (hi.ln() - lo.ln()) * c(u[i])).exp().clamp(*lo, *hi)),
                Dist::Int { lo, hi, log: false } => {
                    let n = (hi - lo + 1) as f64;
                    Value::Int((lo + (c(u[i]) * n).floor() as i64).min(*hi))
                }
                Dist::Int { lo, hi, log: true } => {
                    let (a, b) = ((*lo as f64 - 0.5).max(0.5).ln(), (*hi as f64 + 0.5).ln());
                    Value::Int(((a + (b - a) * c(u[i])).exp().round() as i64).clamp(*lo, *hi))
                }
                Dist::Choice(v) if Self::numeric_choices(v) => Value::Choice(((c(u[i]) * v.len() as f64).floor() as usize).min(v.len() - 1)),
                Dist::Choice(v) => {
                    let slice = &u[i..i + v.len()];
                    let best = (0..v.len()).fold(0, |b, j| if slice[j] > slice[b] { j } else { b });
                    i += v.len() - 1;
                    Value::Choice(best)
                }
            };
            i += 1;
            point.push(v);
        }
        point
    }

    /// The point's place in the unit cube (the middle of an integer's or choice's slice).
    pub fn encode(&self, point: &Point) -> Vec<f64> {
        let mut u = Vec::with_capacity(self.dims());
        for (p, v) in self.params.iter().zip(point) {
            match (&p.dist, v) {
                (Dist::Uniform { lo, hi }, Value::Float(x)) => u.push((x - lo) / (hi - lo)),
                (Dist::LogUniform { lo, hi }, Value::Float(x)) => u.push((x.ln() - lo.ln()) / (hi.ln() - lo.ln())),
                (Dist::Int { lo, hi, log: false }, Value::Int(x)) => u.push((x - lo) as f64 / (hi - lo + 1) as f64 + 0.5 / (hi - lo + 1) as f64),
                (Dist::Int { lo, hi, log: true }, Value::Int(x)) => {
                    let (a, b) = ((*lo as f64 - 0.5).max(0.5).ln(), (*hi as f64 + 0.5).ln());
                    u.push(((*x as f64).ln() - a) / (b - a))
                }
                (Dist::Choice(vals), Value::Choice(j)) if Self::numeric_choices(vals) => u.push((*j as f64 + 0.5) / vals.len() as f64),
                (Dist::Choice(vals), Value::Choice(j)) => u.extend((0..vals.len()).map(|k| if k == *j { 1.0 } else { 0.0 })),
                _ => u.push(0.5),
            }
        }
        u
    }

    /// The TOML value of `v` for parameter `i`.
    pub fn toml_value(&self, i: usize, v: Value) -> toml::Value {
        match (&self.params[i].dist, v) {
            (Dist::Choice(vals), Value::Choice(j)) => vals[j.min(vals.len() - 1)].clone(),
            (_, Value::Float(x)) => toml::Value::Float(x),
            (_, Value::Int(x)) => toml::Value::Integer(x),
            (_, Value::Choice(j)) => toml::Value::Integer(j as i64),
        }
    }

    /// The point as `key = value` pairs (JSON object) for the study.
    pub fn to_json(&self, point: &Point) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (i, (p, v)) in self.params.iter().zip(point).enumerate() {
            let j = match self.toml_value(i, *v) {
                toml::Value::Float(f) => serde_json::json!(f),
                toml::Value::Integer(n) => serde_json::json!(n),
                toml::Value::Boolean(b) => serde_json::json!(b),
                toml::Value::String(s) => serde_json::json!(s),
                other => serde_json::json!(other.to_string()),
            };
            m.insert(p.name.clone(), j);
        }
        serde_json::Value::Object(m)
    }

    /// The point a study's JSON object describes (`None` when it does not belong to this space).
    pub fn from_json(&self, j: &serde_json::Value) -> Option<Point> {
        let obj = j.as_object()?;
        self.params
            .iter()
            .map(|p| {
                let x = obj.get(&p.name)?;
                Some(match &p.dist {
                    Dist::Uniform { .. } | Dist::LogUniform { .. } => Value::Float(x.as_f64()?),
                    Dist::Int { .. } => Value::Int(x.as_i64()?),
                    Dist::Choice(vals) => Value::Choice(vals.iter().position(|v| {
                        match (v, x) {
                            (toml::Value::Float(a), _) => x.as_f64() == Some(*a),
                            (toml::Value::Integer(a), _) => x.as_i64() == Some(*a),
                            (toml::Value::Boolean(a), _) => x.as_bool() == Some(*a),
                            (toml::Value::String(a), _) => x.as_str() == Some(a.as_str()),
                            _ => false,
                        }
                    })?),
                })
            })
            .collect()
    }

    /// `key=value` pairs for the progress line.
    pub fn describe(&self, point: &Point) -> String {
        self.params
            .iter()
            .zip(point)
            .enumerate()
            .map(|(i, (p, v))| match v {
                Value::Float(x) => format!("{}={}", p.name, short(*x)),
                _ => format!("{}={}", p.name, self.toml_value(i, *v)),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The base configuration with the point's values (validated like a `--set`).
    pub fn apply(&self, base: &TrainConfig, point: &Point) -> Result<TrainConfig> {
        let sets: Vec<String> =
            self.params.iter().zip(point).enumerate().map(|(i, (p, v))| format!("{}={}", p.name, self.toml_value(i, *v))).collect();
        base.with_overrides(&sets)
    }
}

/// A float in 4 significant digits.
pub fn short(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-2 || x.abs() >= 1e4) {
        format!("{x:.3e}")
    } else {
        format!("{}", (x * 1e4).round() / 1e4)
    }
}

/// splitmix64: a small deterministic generator for the samplers.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        crate::tasks::splitmix64(&mut self.0)
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// The sizes a configuration has on the board, as the runtime counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Bytes of the `.tgpt` file in the constraint's dtype.
    pub file_bytes: usize,
    /// [`Model::session_bytes`] at `block_size` with the board's KV cache type.
    pub session_bytes: usize,
}

/// Checks configurations against the constraints: the file is written by the runtime's writer
/// (zero weights, the configuration's tokenizer, metadata at its longest) and read back by the runtime,
/// whose length and [`Model::session_bytes`] are compared with the board's budgets.
pub struct Sizer {
    constraints: Constraints,
    tokenizers: HashMap<(String, u32), TextTokenizer>,
    sizes: HashMap<String, Sizes>,
    corpus_name: String,
}

impl Sizer {
    pub fn new(constraints: Constraints) -> Self {
        Sizer { constraints, tokenizers: HashMap::new(), sizes: HashMap::new(), corpus_name: String::new() }
    }

    fn tokenizer(&mut self, cfg: &TrainConfig) -> Result<&TextTokenizer> {
        let key = (cfg.tokenizer.clone(), if cfg.tokenizer == "bpe" { cfg.bpe_vocab_size } else { 0 });
        if !self.tokenizers.contains_key(&key) {
            let data = train::prepare_data(cfg, None)?;
            self.corpus_name = data.corpus_name.clone();
            self.tokenizers.insert(key.clone(), data.tok);
        }
        Ok(&self.tokenizers[&key])
    }

    /// The sizes of `cfg`'s model file and session.
    pub fn sizes(&mut self, cfg: &TrainConfig) -> Result<Sizes> {
        let (dtype, group) = (self.constraints.dtype, self.constraints.group_size);
        let kv = self.constraints.board.map_or(tinygpt_runtime::KvDType::I8, |b| b.kv);
        let tok = self.tokenizer(cfg)?.clone();
        let rc = ModelDims::new(cfg, tok.vocab_size()).runtime_config(dtype, group);
        let key = format!("{rc:?} {} {}", cfg.name, self.corpus_name);
        if let Some(s) = self.sizes.get(&key) {
            return Ok(*s);
        }
        let shapes: HashMap<String, usize> =
            writer::tensor_layout(&rc).into_iter().map(|(n, s)| (n, s.iter().product::<usize>())).collect();
        let meta = MetaData {
            name: cfg.name.clone(),
            corpus: self.corpus_name.clone(),
            // The longest counts (postcard varints): the file a run exports is at most this long.
            train_steps: u64::MAX,
            tokens_seen: u64::MAX,
            val_loss_f32: Some(1.0),
            val_loss_f16: Some(1.0),
            val_loss_i8: Some(1.0),
            trainer_version: TRAINER_VERSION.into(),
        };
        let get = |name: &str| shapes.get(name).map(|&n| vec![0f32; n]);
        let specials: Vec<&str> = tok.specials().iter().map(String::as_str).collect();
        let bytes = writer::encode_model_with_specials(&rc, &tok.to_runtime(), &specials, &meta, &get)
            .map_err(|e| anyhow!("cannot encode the model: {e}"))?;
        let bytes = AlignedBytes::new(&bytes);
        let model = Model::from_bytes(&bytes).map_err(|e| anyhow!("the runtime rejects the model: {e}"))?;
        let s = Sizes { file_bytes: bytes.len(), session_bytes: model.session_bytes(cfg.block_size as usize, kv) };
        self.sizes.insert(key, s);
        Ok(s)
    }

    /// `Ok(Err(why))` when `cfg` breaks a constraint.
    pub fn check(&mut self, cfg: &TrainConfig) -> Result<std::result::Result<(), String>> {
        let Some(board) = self.constraints.board else { return Ok(Ok(())) };
        // A model far too large is refused from its shapes alone, before a file is built.
        let vocab = self.tokenizer(cfg)?.vocab_size();
        let rc = ModelDims::new(cfg, vocab).runtime_config(self.constraints.dtype, self.constraints.group_size);
        let numel: usize = writer::tensor_layout(&rc).iter().filter(|(_, s)| s.len() == 2).map(|(_, s)| s[0] * s[1]).sum();
        let lower = match self.constraints.dtype {
            DType::F32 => numel * 4,
            DType::F16 => numel * 2,
            DType::I8 => numel,
            DType::I4 => numel / 2,
        };
        if lower > 2 * board.model_flash() {
            return Ok(Err(format!("{}: the weight matrices alone take {lower} bytes, {} bytes of flash are left for the model", board.name, board.model_flash())));
        }
        let s = self.sizes(cfg)?;
        Ok(board.check(s.file_bytes, s.session_bytes).map_err(|m| format!("{} ({} {}): {m}", board.name, self.constraints.dtype.name(), "weights")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TrainConfig {
        TrainConfig::from_str_with(
            "alphabet_task = true\narch = \"llama\"\nn_layer = 2\nn_head = 2\nn_embd = 32\nblock_size = 16\nbatch_size = 4\nmax_iters = 10\nlearning_rate = 1e-3\n",
            &[],
        )
        .unwrap()
    }

    fn err(text: &str) -> String {
        format!("{:#}", Space::parse(text, &base()).unwrap_err())
    }

    #[test]
    fn parses_every_kind_and_round_trips_points() {
        let s = Space::parse(
            "[params]\nlearning_rate = { log_uniform = [1e-4, 1e-2] }\ndropout = { uniform = [0, 0.2] }\nn_layer = { int = [1, 4] }\nwarmup_iters = { int = [1, 100], log = true }\nn_embd = { choice = [32, 64] }\narch = { choice = [\"gpt2\", \"llama\"] }\n[constraints]\nfits = \"stm32f405\"\n",
            &base(),
        )
        .unwrap();
        assert_eq!(s.dims(), 7);
        let mut rng = Rng::new(1);
        for _ in 0..200 {
            let p = s.sample(&mut rng);
            assert_eq!(s.decode(&s.encode(&p)), p);
            assert_eq!(s.from_json(&s.to_json(&p)).as_ref(), Some(&p));
            let cfg = s.apply(&base(), &p).unwrap();
            assert!((1e-4..=1e-2).contains(&cfg.learning_rate) && (1..=4).contains(&cfg.n_layer) && (1..=100).contains(&cfg.warmup_iters));
        }
        // The canonical text parses to the same space.
        let again = Space::parse(&s.canonical(), &base()).unwrap();
        assert_eq!(again.params, s.params);
        assert_eq!(again.constraints, s.constraints);
    }

    #[test]
    fn bad_spaces_are_one_clear_error() {
        assert!(err("[params]\nlearning_rat = { uniform = [0.1, 0.2] }").contains("unknown training key `learning_rat`"));
        assert!(err("[params]\nlearning_rate = { uniform = [0.1, 0.1] }").contains("empty"));
        assert!(err("[params]\nlearning_rate = { uniform = [0.2, 0.1] }").contains("inverted"));
        assert!(err("[params]\nn_layer = { int = [4, 2] }").contains("inverted"));
        assert!(err("[params]\nlearning_rate = { log_uniform = [0, 0.1] }").contains("above 0"));
        assert!(err("[params]\nn_layer = { uniform = [1.0, 2.0] }").contains("not a float range"));
        assert!(err("[params]\nlearning_rate = { int = [1, 2] }").contains("not an integer range"));
        assert!(err("[params]\narch = { choice = [\"gpt2\"] }").contains("at least two"));
        assert!(err("[params]\narch = { choice = [\"gpt2\", 3] }").contains("is an integer"));
        assert!(err("[params]\nlearning_rate = { gaussian = [1, 2] }").contains("unknown distribution"));
        assert!(err("[params]\n").contains("empty"));
        assert!(err("[params]\nn_layer = { int = [1, 2] }\n[constraints]\nfits = \"esp32\"").contains("unknown board"));
        assert!(err("[params]\nn_layer = { int = [1, 2] }\n[constraint]\n").contains("unknown key `constraint`"));
        for e in [err("[params]\nn_layer = { int = [4, 2] }"), err("[params\n")] {
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn shipped_spaces_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix("-space.toml") {
                let base = TrainConfig::load(&dir.join(format!("{stem}.toml")), &[]).unwrap();
                Space::parse(&std::fs::read_to_string(&p).unwrap(), &base).unwrap_or_else(|e| panic!("{name}: {e:#}"));
                n += 1;
            }
        }
        assert!(n >= 1, "expected configs/board-space.toml");
    }
}
