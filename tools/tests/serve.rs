//! End-to-end tests of `tinygpt serve`: the real binary on a loopback port, spoken to over plain
//! TCP. The oracles are the CLI itself (`tinygpt generate`, `tinygpt chat -p`), run with the same
//! seed and settings, and the server's own `/metrics` for the slots and the queue.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tinygpt::synth::Spec;
use tinygpt_runtime::{Arch, DType};

const BIN: &str = env!("CARGO_BIN_EXE_tinygpt");

/// A running server; killed when dropped.
struct Server {
    child: Child,
    addr: String,
    _out: std::thread::JoinHandle<Vec<String>>,
}

impl Server {
    fn start(model: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "-m"])
            .arg(model)
            .args(["--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tinygpt serve starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
        let mut addr = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let mut l = String::new();
            if lines.read_line(&mut l).expect("read stdout") == 0 {
                break;
            }
            if let Some(rest) = l.split("listening on http://").nth(1) {
                addr = Some(rest.split('/').next().expect("address").to_owned());
                break;
            }
            seen.push(l);
        }
        let addr = addr.unwrap_or_else(|| panic!("no listening line: {seen:?}"));
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        assert!(seen.iter().any(|l| l.contains("of session memory")), "{seen:?}");
        let out = std::thread::spawn(move || lines.lines().map_while(Result::ok).collect());
        Server { child, addr, _out: out }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        s
    }

    /// Sends a raw request and reads the whole response.
    fn raw(&self, request: &[u8]) -> Response {
        let mut s = self.connect();
        s.write_all(request).expect("send");
        read_response(&mut s)
    }

    fn request(&self, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Response {
        let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n", self.addr, body.len());
        for h in headers {
            r.push_str(h);
            r.push_str("\r\n");
        }
        r.push_str("\r\n");
        let mut r = r.into_bytes();
        r.extend_from_slice(body);
        self.raw(&r)
    }

    fn post(&self, path: &str, body: &str) -> Response {
        self.request("POST", path, &["Content-Type: application/json"], body.as_bytes())
    }

    fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    /// A value of `/metrics`.
    fn metric(&self, name: &str) -> f64 {
        let m = self.get("/metrics");
        assert_eq!(m.status, 200);
        m.text()
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).map(|v| v.parse().expect("number")))
            .unwrap_or(0.0)
    }

    /// Waits until no slot is busy and nothing waits.
    fn wait_idle(&self, within: Duration) {
        let start = Instant::now();
        while self.metric("tinygpt_slots_busy") != 0.0 || self.metric("tinygpt_queue_length") != 0.0 {
            assert!(start.elapsed() < within, "slots still busy after {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
    fn json(&self) -> serde::Value {
        serde::parse(&self.text()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
    /// The error message of an OpenAI-shaped error body (asserting its shape).
    fn error(&self) -> String {
        let j = self.json();
        let e = j.get("error").unwrap_or_else(|| panic!("no error object: {}", self.text()));
        assert!(e.get("type").and_then(|t| t.as_str()).is_some(), "{}", self.text());
        assert!(e.get("param").is_some() && e.get("code").is_some(), "{}", self.text());
        e.get("message").and_then(|m| m.as_str()).expect("message").to_owned()
    }
    /// The `data:` payloads of an event stream.
    fn events(&self) -> Vec<String> {
        let t = self.text();
        assert!(t.ends_with("data: [DONE]\n\n"), "stream does not end with [DONE]: {t:?}");
        t.split("\n\n").filter(|e| !e.is_empty()).map(|e| e.strip_prefix("data: ").expect("data event").to_owned()).collect()
    }
}

/// Reads a response: the head, then a body by Content-Length, chunked, or to the end.
fn read_response(s: &mut TcpStream) -> Response {
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut l = String::new();
        assert!(r.read_line(&mut l).expect("read head") > 0, "connection closed before a response: {head:?}");
        if l == "\r\n" {
            break;
        }
        head.push_str(&l);
    }
    let status: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let mut resp = Response { status, head, body: Vec::new() };
    if let Some(n) = resp.header("content-length") {
        let mut body = vec![0; n.parse().expect("length")];
        r.read_exact(&mut body).expect("body");
        resp.body = body;
    } else if resp.header("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let mut l = String::new();
            r.read_line(&mut l).expect("chunk size");
            let n = usize::from_str_radix(l.trim(), 16).unwrap_or_else(|_| panic!("bad chunk size {l:?}"));
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).expect("chunk");
            assert_eq!(&chunk[n..], b"\r\n");
            if n == 0 {
                break;
            }
            resp.body.extend_from_slice(&chunk[..n]);
        }
    } else {
        r.read_to_end(&mut resp.body).expect("body");
    }
    resp
}

/// A tiny JSON reader for the tests (an oracle independent of the server's own).
mod serde {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        Arr(Vec<Value>),
        Obj(Vec<(String, Value)>),
    }
    impl Value {
        pub fn get(&self, k: &str) -> Option<&Value> {
            match self {
                Value::Obj(m) => m.iter().find(|(n, _)| n == k).map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn at(&self, i: usize) -> Option<&Value> {
            match self {
                Value::Arr(a) => a.get(i),
                _ => None,
            }
        }
        pub fn as_str(&self) -> Option<&str> {
            match self {
                Value::Str(s) => Some(s),
                _ => None,
            }
        }
        pub fn as_f64(&self) -> Option<f64> {
            match self {
                Value::Num(n) => Some(*n),
                _ => None,
            }
        }
        pub fn path(&self, p: &str) -> &Value {
            let mut v = self;
            for part in p.split('.') {
                v = match part.parse::<usize>() {
                    Ok(i) => v.at(i),
                    Err(_) => v.get(part),
                }
                .unwrap_or_else(|| panic!("no {p} in {self:?}"));
            }
            v
        }
        pub fn s(&self, p: &str) -> String {
            self.path(p).as_str().unwrap_or_else(|| panic!("{p} is not a string")).to_owned()
        }
        pub fn n(&self, p: &str) -> f64 {
            self.path(p).as_f64().unwrap_or_else(|| panic!("{p} is not a number"))
        }
    }
    pub fn parse(s: &str) -> Result<Value, String> {
        let c: Vec<char> = s.chars().collect();
        let mut i = 0;
        let v = val(&c, &mut i)?;
        ws(&c, &mut i);
        if i != c.len() {
            return Err(format!("trailing data at {i}"));
        }
        Ok(v)
    }
    fn ws(c: &[char], i: &mut usize) {
        while *i < c.len() && c[*i].is_whitespace() {
            *i += 1;
        }
    }
    fn val(c: &[char], i: &mut usize) -> Result<Value, String> {
        ws(c, i);
        let rest: String = c[*i..c.len().min(*i + 5)].iter().collect();
        match c.get(*i) {
            Some('{') => {
                *i += 1;
                let mut m = Vec::new();
                loop {
                    ws(c, i);
                    if c.get(*i) == Some(&'}') {
                        *i += 1;
                        return Ok(Value::Obj(m));
                    }
                    let Value::Str(k) = val(c, i)? else { return Err("key".into()) };
                    ws(c, i);
                    if c.get(*i) != Some(&':') {
                        return Err("colon".into());
                    }
                    *i += 1;
                    m.push((k, val(c, i)?));
                    ws(c, i);
                    if c.get(*i) == Some(&',') {
                        *i += 1;
                    }
                }
            }
            Some('[') => {
                *i += 1;
                let mut a = Vec::new();
                loop {
                    ws(c, i);
                    if c.get(*i) == Some(&']') {
                        *i += 1;
                        return Ok(Value::Arr(a));
                    }
                    a.push(val(c, i)?);
                    ws(c, i);
                    if c.get(*i) == Some(&',') {
                        *i += 1;
                    }
                }
            }
            Some('"') => {
                *i += 1;
                let mut s = String::new();
                loop {
                    match c.get(*i).ok_or("unterminated")? {
                        '"' => {
                            *i += 1;
                            return Ok(Value::Str(s));
                        }
                        '\\' => {
                            *i += 1;
                            match c.get(*i).ok_or("escape")? {
                                'n' => s.push('\n'),
                                't' => s.push('\t'),
                                'r' => s.push('\r'),
                                'b' => s.push('\u{8}'),
                                'f' => s.push('\u{c}'),
                                'u' => {
                                    let h: String = c[*i + 1..*i + 5].iter().collect();
                                    let mut cp = u32::from_str_radix(&h, 16).map_err(|e| e.to_string())?;
                                    *i += 4;
                                    if (0xD800..0xDC00).contains(&cp) {
                                        let l: String = c[*i + 3..*i + 7].iter().collect();
                                        let lo = u32::from_str_radix(&l, 16).map_err(|e| e.to_string())?;
                                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                        *i += 6;
                                    }
                                    s.push(char::from_u32(cp).ok_or("bad code point")?);
                                }
                                other => s.push(*other),
                            }
                            *i += 1;
                        }
                        ch => {
                            s.push(*ch);
                            *i += 1;
                        }
                    }
                }
            }
            _ if rest.starts_with("true") => {
                *i += 4;
                Ok(Value::Bool(true))
            }
            _ if rest.starts_with("false") => {
                *i += 5;
                Ok(Value::Bool(false))
            }
            _ if rest.starts_with("null") => {
                *i += 4;
                Ok(Value::Null)
            }
            _ => {
                let start = *i;
                while *i < c.len() && matches!(c[*i], '-' | '+' | '.' | 'e' | 'E' | '0'..='9') {
                    *i += 1;
                }
                let t: String = c[start..*i].iter().collect();
                t.parse().map(Value::Num).map_err(|_| format!("bad value at {start}: {rest:?}"))
            }
        }
    }
}

/// JSON string literal for request bodies.
fn lit(s: &str) -> String {
    let mut o = String::from('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

struct Models {
    dir: TempDir,
}

impl Models {
    fn new() -> Self {
        Models { dir: tempfile::tempdir().expect("temp dir") }
    }
    fn write(&self, name: &str, spec: &Spec) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, spec.build().expect("synthetic model builds")).expect("write model");
        p
    }
    fn base(&self) -> PathBuf {
        self.write("base.tgpt", &Spec::tiny(Arch::Llama, DType::F32))
    }
    fn chat(&self) -> PathBuf {
        let mut s = Spec::tiny(Arch::Gpt2, DType::I8);
        s.chat = true;
        s.block_size = 128;
        self.write("chat.tgpt", &s)
    }
    /// A slower model (about 1M parameters, context 256), so that a generation lasts long enough
    /// to be interrupted.
    fn slow(&self) -> PathBuf {
        self.write("slow.tgpt", &Spec::shape_1m(Arch::Llama, DType::F32))
    }
}

fn cli(args: &[&str]) -> String {
    let o = Command::new(BIN).args(args).output().expect("tinygpt runs");
    assert!(o.status.success(), "tinygpt {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("UTF-8")
}

/// The streamed text of a completion or chat stream, and the last finish reason.
fn streamed_text(r: &Response) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type").as_deref(), Some("text/event-stream"));
    let mut text = String::new();
    let mut finish = String::new();
    for e in r.events() {
        if e == "[DONE]" {
            continue;
        }
        let j = serde::parse(&e).expect("event JSON");
        let Some(c) = j.get("choices").and_then(|c| c.at(0)) else { continue };
        if let Some(t) = c.get("text").and_then(|t| t.as_str()) {
            text.push_str(t);
        }
        if let Some(t) = c.get("delta").and_then(|d| d.get("content")).and_then(|t| t.as_str()) {
            text.push_str(t);
        }
        if let Some(f) = c.get("finish_reason").and_then(|f| f.as_str()) {
            finish = f.to_owned();
        }
    }
    (text, finish)
}

#[test]
fn completions_match_generate_streamed_or_not() {
    let m = Models::new();
    let model = m.base();
    let srv = Server::start(&model, &["--parallel", "2"]);
    let mp = model.to_str().unwrap();
    let cases: [(&str, u32, f32, u32, f32, u64); 4] = [
        ("ROMEO:", 40, 0.8, 40, 1.0, 42),
        ("To be, or not", 60, 1.3, 0, 0.9, 7),
        ("\n", 25, 0.0, 40, 1.0, 1),
        ("KING", 63, 0.5, 5, 0.5, 12345678901234),
    ];
    for (prompt, n, temp, k, p, seed) in cases {
        let (ns, ts, ks, ps, ss) = (n.to_string(), temp.to_string(), k.to_string(), p.to_string(), seed.to_string());
        let expect = cli(&["generate", "-m", mp, "-p", prompt, "-n", &ns, "--temp", &ts, "--top-k", &ks, "--top-p", &ps, "-s", &ss]);
        let expect = expect.strip_prefix(prompt).expect("generate echoes the prompt").to_owned();
        let body = format!("{{\"model\":\"base\",\"prompt\":{},\"max_tokens\":{n},\"temperature\":{temp},\"top_k\":{k},\"top_p\":{p},\"seed\":{seed}", lit(prompt));
        let r = srv.post("/v1/completions", &format!("{body}}}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j.s("object"), "text_completion");
        assert_eq!(j.s("model"), "base");
        assert_eq!(j.s("choices.0.text"), expect, "prompt {prompt:?} seed {seed}");
        assert_eq!(j.s("choices.0.finish_reason"), "length");
        assert_eq!(j.n("usage.prompt_tokens"), prompt.chars().count() as f64);
        assert_eq!(j.n("usage.completion_tokens"), n as f64);
        assert_eq!(j.n("usage.total_tokens"), (prompt.chars().count() as u32 + n) as f64);
        let s = srv.post("/v1/completions", &format!("{body},\"stream\":true}}"));
        let (text, finish) = streamed_text(&s);
        assert_eq!(text, expect, "streamed text");
        assert_eq!(finish, "length");
        let s = srv.post("/v1/completions", &format!("{body},\"stream\":true,\"stream_options\":{{\"include_usage\":true}}}}"));
        let usage = s.events().iter().rev().nth(1).map(|e| serde::parse(e).unwrap()).unwrap();
        assert_eq!(usage.n("usage.completion_tokens"), n as f64);
    }
    // Defaults are the CLI's: temperature 0.8, top-k 40, top-p 1, seed 42, 256 tokens (here the
    // context of 64 shifts, as the CLI's does).
    let expect = cli(&["generate", "-m", mp, "-p", "A"]);
    let r = srv.post("/v1/completions", "{\"prompt\":\"A\"}");
    assert_eq!(format!("A{}", r.json().s("choices.0.text")), expect);
    assert_eq!(r.json().n("usage.completion_tokens"), 256.0);
}

#[test]
fn stop_strings_cut_the_text() {
    let m = Models::new();
    let model = m.base();
    let srv = Server::start(&model, &[]);
    let full = cli(&["generate", "-m", model.to_str().unwrap(), "-p", "Q", "-n", "60", "-s", "5"]);
    let full = full.strip_prefix('Q').unwrap();
    // Stops taken from the text itself (so that they occur), of one and two characters, and one
    // that never occurs.
    let chars: Vec<char> = full.chars().collect();
    let two: String = chars[20..22].iter().collect();
    for stops in [vec![chars[10].to_string()], vec![two.clone(), "\u{1F600}".into()], vec!["\u{1F600}".to_owned()]] {
        let at = stops.iter().filter_map(|s| full.find(s.as_str())).min();
        let expect = at.map_or(full, |a| &full[..a]);
        let list: Vec<String> = stops.iter().map(|s| lit(s)).collect();
        let body = format!("{{\"prompt\":\"Q\",\"max_tokens\":60,\"seed\":5,\"stop\":[{}]", list.join(","));
        let r = srv.post("/v1/completions", &format!("{body}}}"));
        let j = r.json();
        assert_eq!(j.s("choices.0.text"), expect, "stops {stops:?}");
        assert_eq!(j.s("choices.0.finish_reason"), if at.is_some() { "stop" } else { "length" });
        let (text, finish) = streamed_text(&srv.post("/v1/completions", &format!("{body},\"stream\":true}}")));
        assert_eq!(text, expect, "streamed, stops {stops:?}");
        assert_eq!(finish, j.s("choices.0.finish_reason"));
    }
    // A single string works too.
    let r = srv.post("/v1/completions", &format!("{{\"prompt\":\"Q\",\"max_tokens\":60,\"seed\":5,\"stop\":{}}}", lit(&two)));
    assert_eq!(r.json().s("choices.0.text"), &full[..full.find(&two).unwrap()]);
}

#[test]
fn chat_matches_tinygpt_chat() {
    let m = Models::new();
    let model = m.chat();
    let mp = model.to_str().unwrap();
    let srv = Server::start(&model, &["--parallel", "2"]);
    let (mut stops, mut lengths) = (0, 0);
    for seed in 0..8u64 {
        let q = ["hello there", "What is the hour?", "Speak!", "a"][seed as usize % 4];
        let n = [256, 5, 40, 12][seed as usize % 4];
        let (ss, ns) = (seed.to_string(), n.to_string());
        let mut args = vec!["chat", "-m", mp, "-p", q, "-s", &ss, "-n", &ns, "--temp", "0.9"];
        if seed % 2 == 1 {
            args.extend(["--system", "Be brief."]);
        }
        let expect = cli(&args);
        let expect = expect.strip_suffix('\n').expect("chat -p ends the answer with a newline");
        let system = if seed % 2 == 1 { "{\"role\":\"system\",\"content\":\"Be brief.\"}," } else { "" };
        let body = format!(
            "{{\"model\":\"chat\",\"messages\":[{system}{{\"role\":\"user\",\"content\":{}}}],\"seed\":{seed},\"max_tokens\":{n},\"temperature\":0.9",
            lit(q)
        );
        let r = srv.post("/v1/chat/completions", &format!("{body}}}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j.s("object"), "chat.completion");
        assert_eq!(j.s("choices.0.message.role"), "assistant");
        assert_eq!(j.s("choices.0.message.content"), expect, "seed {seed}");
        let finish = j.s("choices.0.finish_reason");
        let generated = j.n("usage.completion_tokens");
        // "stop" exactly when <|im_end|> was sampled, i.e. before the limit ran out.
        if finish == "stop" {
            stops += 1;
            assert!(generated <= n as f64);
        } else {
            lengths += 1;
            assert_eq!(finish, "length");
            // The limit is max_tokens, or the room left in the context (128).
            let room = 128.0 - j.n("usage.prompt_tokens") + 1.0;
            assert_eq!(generated, (n as f64).min(room));
        }
        let s = srv.post("/v1/chat/completions", &format!("{body},\"stream\":true}}"));
        let events = s.events();
        let first = serde::parse(&events[0]).unwrap();
        assert_eq!(first.s("object"), "chat.completion.chunk");
        assert_eq!(first.s("choices.0.delta.role"), "assistant");
        let (text, sfinish) = streamed_text(&s);
        assert_eq!(text, expect, "streamed, seed {seed}");
        assert_eq!(sfinish, finish);
    }
    assert!(stops > 0 && lengths > 0, "both finish reasons seen ({stops} stop, {lengths} length)");
    // Content given as parts, and a conversation with history, are accepted.
    let r = srv.post(
        "/v1/chat/completions",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]},{\"role\":\"assistant\",\"content\":\"yes\"},{\"role\":\"user\",\"content\":\"and?\"}],\"max_tokens\":3}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn errors_are_openai_shaped_answers() {
    let m = Models::new();
    let model = m.base();
    let srv = Server::start(&model, &["--max-body", "4096", "--max-tokens", "100", "--ctx-size", "32"]);
    let c = "/v1/completions";
    let cases: &[(&str, &str, u16, &str)] = &[
        (c, "{\"prompt\":\"a\"", 400, "not valid JSON"),
        (c, "{\"prompt\":\"a\",}", 400, "not valid JSON"),
        (c, "[1,2]", 400, "must be a JSON object"),
        (c, "", 400, "empty"),
        (c, "{}", 400, "'prompt' is required"),
        (c, "{\"prompt\":5}", 400, "'prompt' must be a string"),
        (c, "{\"prompt\":\"a\",\"max_tokens\":\"5\"}", 400, "'max_tokens' must be a number"),
        (c, "{\"prompt\":\"a\",\"max_tokens\":0}", 400, "between 1 and 100"),
        (c, "{\"prompt\":\"a\",\"max_tokens\":101}", 400, "between 1 and 100"),
        (c, "{\"prompt\":\"a\",\"max_tokens\":2.5}", 400, "whole number"),
        (c, "{\"prompt\":\"a\",\"max_tokens\":-3}", 400, "1 or more"),
        (c, "{\"prompt\":\"a\",\"temperature\":-0.5}", 400, "'temperature' must be 0 or more"),
        (c, "{\"prompt\":\"a\",\"temperature\":1e999}", 400, "finite"),
        (c, "{\"prompt\":\"a\",\"top_p\":0}", 400, "'top_p' must be above 0"),
        (c, "{\"prompt\":\"a\",\"top_p\":1.5}", 400, "'top_p' must be above 0"),
        (c, "{\"prompt\":\"a\",\"top_k\":true}", 400, "'top_k' must be a number"),
        (c, "{\"prompt\":\"a\",\"seed\":-1}", 400, "'seed' must be 0 or more"),
        (c, "{\"prompt\":\"a\",\"seed\":18446744073709551616}", 400, "'seed' must be at most"),
        (c, "{\"prompt\":\"a\",\"stream\":1}", 400, "'stream' must be true or false"),
        (c, "{\"prompt\":\"a\",\"stop\":[1]}", 400, "'stop' must hold strings"),
        (c, "{\"prompt\":\"a\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "more than 4"),
        (c, "{\"prompt\":\"a\",\"n\":2}", 400, "only n = 1"),
        (c, "{\"prompt\":\"a\",\"model\":\"gpt-4\"}", 404, "unknown model 'gpt-4'"),
        (c, "{\"prompt\":\"caf\u{e9}\"}", 400, "'\u{e9}' (U+00E9) is not in the model's vocabulary"),
        (c, "{\"prompt\":\"\"}", 400, "'prompt' is empty"),
        (c, "{\"prompt\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", 400, "33 tokens but the context holds 32"),
        (c, "{\"prompt\":\"a\\ud800\"}", 400, "lone surrogate"),
        ("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 400, "not a chat model"),
        ("/tokenize", "{\"content\":7}", 400, "'content' must be a string"),
        ("/v1/nothing", "{}", 404, "unknown route"),
    ];
    for (path, body, status, msg) in cases {
        let r = srv.post(path, body);
        assert_eq!(r.status, *status, "{path} {body}: {}", r.text());
        assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
        let e = r.error();
        assert!(e.contains(msg), "{body}: {e:?} lacks {msg:?}");
    }
    // Not UTF-8, too large, wrong method, truncated body, garbage.
    let r = srv.request("POST", c, &[], b"{\"prompt\":\"\xff\"}");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("not UTF-8 (invalid byte at offset 11)"), "{}", r.error());
    let r = srv.post(c, &format!("{{\"prompt\":\"{}\"}}", "a".repeat(5000)));
    assert_eq!(r.status, 413);
    assert!(r.error().contains("limit is 4096"));
    let r = srv.get(c);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("POST"));
    // A body cut short (the client closes its side) is answered at once.
    let mut s = srv.connect();
    s.write_all(b"POST /v1/completions HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"prompt\":").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 400);
    assert!(r.error().contains("truncated: 10 of 50 bytes"), "{}", r.error());
    let r = srv.raw(b"HELLO\r\n\r\n");
    assert_eq!(r.status, 400);
    r.error();
    // After all that, the server is healthy and every slot is free.
    let h = srv.get("/health").json();
    assert_eq!(h.s("status"), "ok");
    assert_eq!(h.n("slots_idle"), 1.0);
    srv.wait_idle(Duration::from_secs(5));
    assert_eq!(srv.post(c, "{\"prompt\":\"a\",\"max_tokens\":3}").status, 200);
}

#[test]
fn models_tokenize_health_metrics_page() {
    let m = Models::new();
    let model = m.base();
    let srv = Server::start(&model, &["--ctx-size", "48", "--kv", "f16"]);
    let j = srv.get("/v1/models").json();
    assert_eq!(j.s("object"), "list");
    assert_eq!(j.s("data.0.id"), "base");
    assert_eq!(j.s("data.0.object"), "model");
    assert_eq!(j.n("data.0.meta.n_ctx"), 48.0);
    assert_eq!(srv.get("/v1/models/base").json().s("id"), "base");
    assert_eq!(srv.get("/v1/models/other").status, 404);
    // The tokens are the model's: character ids in the vocabulary's order.
    let t = srv.post("/tokenize", "{\"content\":\"\\n !A\"}").json();
    let ids: Vec<f64> = (0..4).map(|i| t.n(&format!("tokens.{i}"))).collect();
    let chars = tinygpt::synth::SHAKESPEARE_CHARS;
    let expect: Vec<f64> = "\n !A".chars().map(|c| chars.find(c).unwrap() as f64).collect();
    assert_eq!(ids, expect);
    assert_eq!(srv.get("/health").json().s("status"), "ok");
    srv.post("/v1/completions", "{\"prompt\":\"ab\",\"max_tokens\":7}");
    srv.post("/v1/completions", "{\"prompt\":5}");
    let metrics = srv.get("/metrics");
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    let mt = metrics.text();
    for line in ["tinygpt_requests_total{status=\"400\"} 1", "tinygpt_slots_total 1", "tinygpt_queue_capacity 8", "# TYPE tinygpt_slots_busy gauge"] {
        assert!(mt.contains(line), "{line} not in {mt}");
    }
    assert_eq!(srv.metric("tinygpt_prompt_tokens_total"), 2.0);
    assert_eq!(srv.metric("tinygpt_generated_tokens_total"), 7.0);
    let page = srv.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type").as_deref(), Some("text/html; charset=utf-8"));
    let html = page.text();
    assert!(html.contains("const INFO = {\"id\":\"base\""), "model description embedded");
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<link"), "nothing fetched");
    // CORS is off by default; a preflight is answered all the same.
    let o = srv.request("OPTIONS", "/v1/completions", &[], b"");
    assert_eq!(o.status, 204);
    assert!(o.header("access-control-allow-origin").is_none());
}

#[test]
fn api_key_and_cors() {
    let m = Models::new();
    let model = m.base();
    let key = m.dir.path().join("key");
    std::fs::write(&key, "sekrit-123\n").unwrap();
    let srv = Server::start(&model, &["--api-key-file", key.to_str().unwrap(), "--cors-origin", "http://localhost:3000"]);
    let body = b"{\"prompt\":\"a\",\"max_tokens\":2}";
    let ct = "Content-Type: application/json";
    let r = srv.request("POST", "/v1/completions", &[ct], body);
    assert_eq!(r.status, 401);
    assert!(r.error().contains("API key is required"));
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
    let r = srv.request("POST", "/v1/completions", &[ct, "Authorization: Bearer sekrit-12"], body);
    assert_eq!(r.status, 401);
    assert!(r.error().contains("invalid API key"));
    assert_eq!(srv.get("/metrics").status, 401);
    let r = srv.request("POST", "/v1/completions", &[ct, "Authorization: Bearer sekrit-123"], body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin").as_deref(), Some("http://localhost:3000"));
    assert_eq!(srv.get("/health").status, 200);
    assert_eq!(srv.get("/").status, 200);
    let o = srv.request("OPTIONS", "/v1/chat/completions", &["Origin: http://localhost:3000"], b"");
    assert_eq!(o.status, 204);
    assert_eq!(o.header("access-control-allow-headers").as_deref(), Some("Authorization, Content-Type"));
    // A bad key file is one clear error line.
    let empty = m.dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let o = Command::new(BIN).args(["serve", "-m", model.to_str().unwrap(), "--port", "0", "--api-key-file", empty.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "error: the API key must be non-empty, without spaces or control characters\n");
}

/// Starts a streamed completion that would run for a long time and reads its first event.
fn start_long_stream(srv: &Server) -> (TcpStream, BufReader<TcpStream>) {
    let mut s = srv.connect();
    let body = "{\"prompt\":\"a\",\"max_tokens\":100000,\"stream\":true}";
    write!(s, "POST /v1/completions HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    while !line.starts_with("data: ") {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0);
    }
    (s, r)
}

#[test]
fn queue_overflow_gets_503_and_a_hang_up_frees_the_slot() {
    let m = Models::new();
    let model = m.slow();
    let srv = Server::start(&model, &["--parallel", "1", "--queue", "1", "--max-tokens", "100000"]);
    let (a, ra) = start_long_stream(&srv);
    assert_eq!(srv.metric("tinygpt_slots_busy"), 1.0);
    // The second request waits in the queue; the third finds it full.
    let addr = srv.addr.clone();
    let waiting = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let body = "{\"prompt\":\"b\",\"max_tokens\":5}";
        write!(s, "POST /v1/completions HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        read_response(&mut s)
    });
    let start = Instant::now();
    while srv.metric("tinygpt_queue_length") != 1.0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the second request never queued");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = srv.post("/v1/completions", "{\"prompt\":\"c\",\"max_tokens\":5}");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert!(r.error().contains("busy"));
    // Hanging up the stream frees the slot at the next token: the queued request then runs.
    let before = srv.metric("tinygpt_generated_tokens_total");
    drop(ra);
    drop(a);
    let r = waiting.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().s("choices.0.finish_reason"), "length");
    srv.wait_idle(Duration::from_secs(10));
    assert_eq!(srv.metric("tinygpt_cancelled_total{reason=\"disconnect\"}"), 1.0);
    let generated = srv.metric("tinygpt_generated_tokens_total") - before;
    assert!(generated < 2000.0, "{generated} tokens after the hang-up");
    assert_eq!(srv.metric("tinygpt_requests_total{status=\"499\"}"), 1.0);
    assert_eq!(srv.metric("tinygpt_requests_total{status=\"503\"}"), 1.0);
    // A non-streamed request whose client hangs up is freed too.
    let mut s = srv.connect();
    let body = "{\"prompt\":\"a\",\"max_tokens\":100000}";
    write!(s, "POST /v1/completions HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let start = Instant::now();
    while srv.metric("tinygpt_slots_busy") != 1.0 {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(s);
    srv.wait_idle(Duration::from_secs(10));
    assert_eq!(srv.metric("tinygpt_cancelled_total{reason=\"disconnect\"}"), 2.0);
}

#[test]
fn time_limit_and_clean_shutdown() {
    let m = Models::new();
    let model = m.slow();
    let srv = Server::start(&model, &["--parallel", "2", "--timeout", "1", "--max-tokens", "100000"]);
    let r = srv.post("/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":100000}");
    assert_eq!(r.status, 504);
    assert!(r.error().contains("longer than 1 s"));
    assert_eq!(srv.metric("tinygpt_cancelled_total{reason=\"timeout\"}"), 1.0);
    drop(srv);

    // SIGTERM ends an open stream with an event that says so, then [DONE] and the chunked
    // terminator, and the process exits with status 0.
    let mut srv = Server::start(&model, &["--max-tokens", "100000"]);
    let (_a, mut ra) = start_long_stream(&srv);
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(srv.child.id() as i32, libc::SIGTERM) }, 0);
    let mut rest = String::new();
    ra.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("the server is shutting down"), "{}", &rest[rest.len().saturating_sub(300)..]);
    assert!(rest.ends_with("data: [DONE]\n\n\r\n0\r\n\r\n"), "{:?}", &rest[rest.len().saturating_sub(100)..]);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = srv.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_command_lines_are_one_line_errors() {
    let m = Models::new();
    let model = m.base();
    let mp = model.to_str().unwrap();
    for (args, msg) in [
        (vec!["--parallel", "0"], "must be at least 1"),
        (vec!["--port", "70000"], "not a whole number, or too large"),
        (vec!["--ctx-size", "1000"], "larger than the model's block_size"),
        (vec!["--host", "256.1.1.1"], "cannot resolve the host"),
    ] {
        let o = Command::new(BIN).args(["serve", "-m", mp]).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.lines().count() == 1 && err.contains(msg), "{args:?}: {err}");
    }
    // The port is taken.
    let srv = Server::start(&model, &[]);
    let port = srv.addr.rsplit(':').next().unwrap();
    let o = Command::new(BIN).args(["serve", "-m", mp, "--port", port]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error: cannot listen on 127.0.0.1:") && err.lines().count() == 1, "{err}");
}
